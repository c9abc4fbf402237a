"""Hand-labeled ground truth, read from a COCO instances file or a YOLO(-seg) dataset into one checked form.

Either way the result is a pycocotools ``COCO`` with image, category and annotation ids renumbered from 1 (in the
order given), every annotation with ``bbox``, ``area`` and ``iscrowd``, and images known by file name, so that the
predictions of a labeled dataset can be matched to them by name. Renumbering is not cosmetic: pycocotools stores the
matched ground-truth id in ``dtMatches`` and reads 0 as "unmatched", so perfect predictions against ground truth
whose annotation ids start at 0 score AP 0.97 instead of 1.0 (measured).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from grounded_sam.errors import UserInputError
from grounded_sam.labeling.folders import find_images
from grounded_sam.ontology import load_mapping_file

MAX_COCO_BYTES = 1 << 30  # a COCO file of 50 000 images with polygons is ~500 MB
_EXIF_ORIENTATION = 0x0112  # 5 to 8: the picture is shown turned by 90 degrees


@dataclass
class GroundTruth:
    """Checked ground truth: ``coco`` (pycocotools, ids from 1) and where it came from.

    Attributes:
        coco: images with ``file_name``, ``width``, ``height``; annotations with ``bbox`` [x, y, w, h] pixels,
            ``area``, ``iscrowd`` and, for masks, ``segmentation`` (polygons or RLE); categories with ``name``.
        source: the file or folder it was read from, for messages.
    """

    coco: COCO
    source: str

    @property
    def categories(self) -> list[str]:
        """Category names in id order (ids 1, 2, ...)."""
        return [category["name"] for category in self.coco.dataset["categories"]]

    @property
    def has_masks(self) -> bool:
        """Whether every annotation has a mask, so that mask AP can be computed."""
        return all(annotation.get("segmentation") for annotation in self.coco.dataset["annotations"])

    def image_ids_by_name(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        """(file_name -> id, base name -> ids): how predictions find their image."""
        full, base = {}, {}
        for image in self.coco.dataset["images"]:
            name = image["file_name"].replace("\\", "/")
            full[name] = image["id"]
            base.setdefault(PurePosixPath(name).name, []).append(image["id"])
        return full, base


def load_ground_truth(source: str | os.PathLike | Mapping | GroundTruth) -> GroundTruth:
    """Ground truth from a COCO instances ``.json`` file, a YOLO dataset folder (with ``data.yaml``), a COCO
    instances dict, or a :class:`GroundTruth` (returned as is).

    Raises:
        FileNotFoundError: the path does not exist.
        UserInputError: the file or folder is not valid ground truth; the message names what is wrong and where.
    """
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, Mapping):
        return coco_ground_truth(source, "given as a dict")
    path = Path(source)
    if path.is_dir():
        return read_yolo_dataset(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Ground truth not found: {path} (give a COCO instances .json file or a YOLO dataset folder with data.yaml)"
        )
    return read_coco_file(path)


def read_coco_file(path: Path) -> GroundTruth:
    """A COCO instances file (``images``, ``annotations``, ``categories``), checked and renumbered."""
    size = path.stat().st_size
    if size > MAX_COCO_BYTES:
        raise UserInputError(f"Ground-truth file {path} is {size} bytes, over the {MAX_COCO_BYTES} byte limit")
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"Ground-truth file {path} is not UTF-8 JSON: {error}") from None
    if not isinstance(content, Mapping):
        raise UserInputError(f"Ground-truth file {path} must hold a COCO object, got {type(content).__name__}")
    return coco_ground_truth(content, str(path))


def coco_ground_truth(instances: Mapping, source: str) -> GroundTruth:
    """A COCO instances dict checked (images with file_name, width and height; categories with unique names;
    annotations on known images and categories, with a box or a mask) and renumbered from 1."""

    def refuse(problem: str):
        raise UserInputError(f"Ground truth {source}: {problem}")

    for key in ("images", "annotations", "categories"):
        if not isinstance(instances.get(key), list):
            refuse(f"no {key!r} list; a COCO instances file has images, annotations and categories")
    try:
        images = {item["id"]: _image(item, index + 1) for index, item in enumerate(instances["images"])}
        categories = {item["id"]: (index + 1, str(item["name"])) for index, item in enumerate(instances["categories"])}
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        refuse(f"an image or category lacks {error} (images need id, file_name, width, height; categories id, name)")
    doubled = [name for name, count in Counter(name for _, name in categories.values()).items() if count > 1]
    if doubled:
        refuse(f"category names must be unique, {doubled[0]!r} is given twice")
    annotations = []
    for item in instances["annotations"]:
        if not isinstance(item, Mapping):
            refuse(f"an annotation is {type(item).__name__}, not an object")
        image, category = images.get(item.get("image_id")), categories.get(item.get("category_id"))
        if image is None or category is None:
            refuse(f"annotation {item.get('id')!r} names an unknown image_id or category_id")
        try:
            annotations.append(_annotation(item, image, category[0], len(annotations) + 1, refuse))
        except (TypeError, ValueError, OverflowError) as error:
            refuse(f"annotation {item.get('id')!r} is malformed ({error}); see the COCO format's annotation fields")
    dataset = {
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [{"id": new_id, "name": name} for new_id, name in categories.values()],
    }
    return GroundTruth(_index(dataset), source)


def _image(item: Mapping, new_id: int) -> dict:
    width, height = int(item["width"]), int(item["height"])
    if width < 1 or height < 1:
        raise ValueError("a positive width and height")
    return {"id": new_id, "file_name": str(item["file_name"]), "width": width, "height": height}


def _annotation(item: Mapping, image: dict, category_id: int, new_id: int, refuse) -> dict:
    segmentation = item.get("segmentation") or None
    bbox = item.get("bbox")
    rle = None
    if segmentation is not None:
        rle = _to_rle(segmentation, image, refuse)
    if bbox is None:
        if rle is None:
            refuse(f"annotation {item.get('id')!r} has neither a bbox nor a segmentation")
        bbox = [float(value) for value in mask_utils.toBbox(rle)]
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        refuse(f"annotation {item.get('id')!r} has a bbox that is not [x, y, width, height]: {bbox!r}")
    area = item.get("area")
    if area is None:
        area = float(mask_utils.area(rle)) if rle is not None else float(bbox[2] * bbox[3])
    annotation = {
        "id": new_id,
        "image_id": image["id"],
        "category_id": category_id,
        "bbox": [float(value) for value in bbox],
        "area": float(area),
        "iscrowd": int(item.get("iscrowd", 0)),
    }
    if segmentation is not None:
        annotation["segmentation"] = segmentation
    return annotation


def _to_rle(segmentation, image: dict, refuse) -> dict:
    height, width = image["height"], image["width"]
    if isinstance(segmentation, Mapping) and list(segmentation.get("size", [])) != [height, width]:
        size = segmentation.get("size")
        refuse(f"a mask of image {image['file_name']!r} has size {size}, but the image is {height} x {width}")
    try:
        if isinstance(segmentation, list):
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
        if float(mask_utils.area(rle)) > height * width:  # counts that do not add up to the image
            raise ValueError("counts")
        return rle
    except Exception:  # noqa: BLE001 - pycocotools raises a bare Exception for some malformed inputs
        refuse(f"a segmentation of image {image['file_name']!r} is neither polygons nor RLE of its size")


def _index(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def read_yolo_dataset(folder: Path) -> GroundTruth:
    """A YOLO detection or segmentation dataset: ``data.yaml`` (``names``; ``train``/``val``/``test`` folders of
    images, relative to the folder holding data.yaml) and a label file per image in the matching ``labels`` folder
    (ultralytics' rule: the last ``images`` in the path becomes ``labels``, the extension ``.txt``).

    A line ``class cx cy w h`` is a box; ``class x1 y1 x2 y2 ...`` (3 points or more) a polygon, coordinates
    normalised to the image as it is shown (after EXIF rotation). Each line is one object (YOLO has no multi-part
    objects); an image without a label file has none.
    """
    data_file = folder / "data.yaml"
    if not data_file.is_file():
        raise UserInputError(f"Ground-truth folder {folder} has no data.yaml (a YOLO dataset's names and splits)")
    content = load_mapping_file(data_file, what="YOLO data file")
    names = content.get("names") if isinstance(content, Mapping) else None
    if isinstance(names, Mapping):
        names = [names[key] for key in sorted(names)]
    if not isinstance(names, list) or not names:
        raise UserInputError(f"YOLO data file {data_file} has no 'names' list of classes")
    images, annotations = [], []
    for image_path in _yolo_images(folder, content, data_file):
        width, height = _shown_size(image_path)
        image = {"id": len(images) + 1, "file_name": image_path.name, "width": width, "height": height}
        images.append(image)
        for line_number, values in _label_lines(_label_path(image_path)):
            annotations.append(_yolo_object(values, image, len(names), len(annotations) + 1, line_number))
    categories = [{"id": index + 1, "name": str(name)} for index, name in enumerate(names)]
    return GroundTruth(_index({"images": images, "annotations": annotations, "categories": categories}), str(folder))


def _yolo_images(folder: Path, content: Mapping, data_file: Path) -> list[Path]:
    folders = []
    for key in ("train", "val", "test"):
        value = content.get(key)
        folders += [value] if isinstance(value, str) else list(value or [])
    if not folders:
        raise UserInputError(f"YOLO data file {data_file} names no train, val or test image folder")
    found = []
    for relative in dict.fromkeys(folders):
        images = folder / str(relative)
        if not images.is_dir():
            raise UserInputError(f"YOLO data file {data_file} names {relative!r}, which is not a folder in {folder}")
        found += [images / name for name in find_images(images, recursive=True)]
    return found


def _label_path(image_path: Path) -> Path:
    parts = list(image_path.parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def _label_lines(path: Path):
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield (path, number), [float(value) for value in line.split()]
            except ValueError:
                raise UserInputError(f"YOLO label {path} line {number} holds something that is not a number") from None


def _yolo_object(values: list[float], image: dict, classes: int, new_id: int, where) -> dict:
    path, number = where
    class_id, coordinates = values[0], values[1:]
    if not all(-0.01 <= value <= 1.01 for value in coordinates):  # also NaN; 1e12 would rasterise for ever
        raise UserInputError(f"YOLO label {path} line {number}: coordinates must be fractions of the image in [0, 1]")
    if not class_id.is_integer() or not 0 <= class_id < classes:
        raise UserInputError(f"YOLO label {path} line {number}: class {values[0]:g} is not one of the {classes} names")
    width, height = image["width"], image["height"]
    annotation = {"id": new_id, "image_id": image["id"], "category_id": int(class_id) + 1, "iscrowd": 0}
    if len(coordinates) == 4:
        cx, cy, w, h = coordinates
        annotation["bbox"] = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
        annotation["area"] = w * width * h * height
        return annotation
    if len(coordinates) < 6 or len(coordinates) % 2:
        raise UserInputError(f"YOLO label {path} line {number} is neither a box (4 values) nor a polygon (x y pairs)")
    polygon = [value * (width if index % 2 == 0 else height) for index, value in enumerate(coordinates)]
    xs, ys = polygon[0::2], polygon[1::2]
    annotation["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]  # the polygon's extent
    annotation["segmentation"] = [polygon]
    annotation["area"] = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))))
    return annotation


def _shown_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as it is shown, from its header (EXIF rotation applied, nothing decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
    except (OSError, SyntaxError, ValueError) as error:
        raise UserInputError(f"Ground-truth image {path} cannot be read: {error}") from None
    return (height, width) if turned else (width, height)

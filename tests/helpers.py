"""Test helpers: a model with canned, image-dependent outputs, folders of good and bad images, and ways to compare
labeled datasets. Fixtures built from these live in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam import CaptionOntology, label_folder
from grounded_sam.detections import empty_detections

ONTOLOGY = {"a dog": "dog", "puppy": "dog", "a person": "person"}  # what the scripted tiny Florence-2 is asked for


class CannedModel:
    """Stands in for GroundedSAM2 in labeling tests: 'bright' = pixels over 200, 'dark' = pixels under 50.

    Each non-empty region is one detection (box from its mask, confidence = its share of the image), so outputs
    depend on the image and are known exactly. Counts batches and can be told to fail on certain image widths.
    """

    def __init__(self, fail_on_width: int | None = None):
        self.ontology = CaptionOntology({"bright thing": "bright", "dark thing": "dark"})
        self.batches: list[int] = []
        self.fail_on_width = fail_on_width

    def settings(self) -> dict:
        return {"model": "canned"}

    def predict_arrays(self, images):
        self.batches.append(len(images))
        if any(image.shape[1] == self.fail_on_width for image in images):
            raise RuntimeError("canned failure")
        return [canned_detections(image) for image in images]


def canned_detections(image: np.ndarray) -> sv.Detections:
    gray = image.mean(axis=2)
    masks = [mask for mask in (gray > 200, gray < 50) if mask.any()]
    class_ids = [class_id for class_id, mask in enumerate((gray > 200, gray < 50)) if mask.any()]
    if not masks:
        return empty_detections(*gray.shape)
    mask = np.stack(masks)
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(mask).astype(np.float32),
        mask=mask,
        confidence=mask.mean(axis=(1, 2)).astype(np.float32),
        class_id=np.array(class_ids),
        data={"class_name": np.array(["bright", "dark"])[class_ids]},
    )


def scene(height: int = 48, width: int = 64, seed: int = 0, empty: bool = False) -> np.ndarray:
    """Mid-gray RGB image with a bright disk and a dark ring with a hole (unless empty)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    if empty:
        return image
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.integers(10, height - 10), rng.integers(10, width // 2 - 4)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 240
    distance = (yy - height // 2) ** 2 + (xx - 3 * width // 4) ** 2
    image[(distance < 100) & (distance > 16)] = 10
    return image


def make_good_images(folder: Path, count: int, empty_every: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        empty = bool(empty_every) and index % empty_every == 0
        path = folder / f"img_{index:03d}.png"
        Image.fromarray(scene(seed=index, empty=empty)).save(path)
        paths.append(path)
    return paths


def make_hostile_folder(root: Path) -> tuple[set[str], set[str]]:
    """Every odd case a real folder has. Returns (relative paths that must be labeled, those that must be skipped)."""
    base = Image.fromarray(scene())
    good = {
        "plain.jpg": lambda p: base.save(p, quality=95),
        "UPPER.JPG": lambda p: base.save(p, format="JPEG"),
        "köpek.png": lambda p: base.save(p),
        "猫.webp": lambda p: base.save(p, lossless=True),
        "gray.png": lambda p: base.convert("L").save(p),
        "rgba.png": lambda p: base.convert("RGBA").save(p),
        "palette.png": lambda p: base.convert("P").save(p),
        "cmyk.jpg": lambda p: base.convert("CMYK").save(p),
        "sixteen.png": lambda p: Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(p),
        "picture.bmp": lambda p: base.save(p),
        "picture.tiff": lambda p: base.save(p),
        "rotated.jpg": lambda p: _save_rotated(base, p),
        "dup.png": lambda p: base.save(p),
        "nested/a/dup.png": lambda p: base.save(p),
        "nested/b/dup.png": lambda p: Image.fromarray(scene(seed=5)).save(p),
        "nested/b/deeper/Dup.PNG": lambda p: base.save(p),
    }
    root.mkdir(parents=True, exist_ok=True)
    jpeg = root / "source.jpg.bytes"
    base.save(jpeg, format="JPEG")
    bad = {
        "zero.jpg": b"",
        "text.png": b"just some notes, not a picture",
        "truncated.jpg": jpeg.read_bytes()[: jpeg.stat().st_size // 2],
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "nested/unsupported.tif": None,
    }
    jpeg.unlink()
    for name, write in good.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write(root / name)
    for name, content in bad.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if content is None:  # two samples per pixel with RGB photometric: a layout Pillow cannot decode
            Image.fromarray(np.zeros((10, 20), np.uint8)).save(root / name, tiffinfo={277: 2, 262: 2})
        else:
            (root / name).write_bytes(content)
    (root / "notes.txt").write_text("not an image extension: ignored")
    (root / "folder.jpg").mkdir()  # a directory with an image extension: ignored
    (root / "nested" / "loop").symlink_to("..", target_is_directory=True)  # symlink loop: must not hang
    return set(good), set(bad)


def _save_rotated(image: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the labeled image is (64, 48), not (48, 64)
    image.save(path, exif=exif, quality=95)


def label_quietly(model, source, output, **options):
    """``label_folder`` without a progress bar or summary."""
    options.setdefault("verbose", False)
    options.setdefault("progress", False)
    return label_folder(model, source, output_folder=output, **options)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a labeled folder and its bytes, except report.json (it holds timings)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "report.json"
    }


def without_path(files: dict[str, bytes]) -> dict[str, bytes]:
    """A snapshot without data.yaml, which holds the dataset's absolute path."""
    return {name: content for name, content in files.items() if name != "data.yaml"}


def coco_of_every_split(dataset: Path) -> dict:
    """A labeled dataset's COCO files (one per split) as one COCO instances dict: ground truth made of its own
    labels. Image and annotation ids are unique over the splits already."""
    merged = {"images": [], "annotations": [], "categories": []}
    for path in sorted((dataset / "annotations").glob("instances_*.json")):
        content = json.loads(path.read_text(encoding="utf-8"))
        merged["categories"] = content["categories"]
        merged["images"] += content["images"]
        merged["annotations"] += content["annotations"]
    return merged


def write_mp4(path: Path, frames: list[np.ndarray], rate: int = 10) -> Path:
    """An x264 mp4 of (H, W, 3) uint8 RGB frames (PyAV, which supervision brings)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

"""Pure converters between ``sv.Detections`` and what a labeled dataset stores: YOLO lines, COCO entries, records.

No file I/O here (see ``writer``). Masks are stored as COCO RLE (pycocotools), which is exact; polygons come from
supervision's mask-to-polygon conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import supervision as sv
from pycocotools import mask as mask_utils
from supervision.dataset.formats.yolo import detections_to_yolo_annotations, object_to_yolo
from supervision.dataset.utils import approximate_mask_with_polygons

from grounded_sam.detections import detections_to_json


def yolo_lines(
    detections: sv.Detections, image_shape: tuple[int, ...], boxes_only: bool = False, approximation: float = 0.0
) -> tuple[list[str], list[int]]:
    """YOLO label lines for one image, and for each line the index of the detection it came from.

    Args:
        detections: one image's detections; class_id indexes the dataset's class list.
        image_shape: (H, W) or (H, W, C) of the image, to normalise coordinates.
        boxes_only: write ``class cx cy w h`` boxes instead of polygons.
        approximation: fraction of polygon points supervision may drop (0 keeps every contour point).

    Segmentation lines come from supervision's conversion: one line per connected part of a mask, each hole joined
    to its outer contour by a zero-width seam so that filling the polygon leaves the hole empty. A detection with an
    empty mask is written as its box.
    """
    lines: list[str] = []
    sources: list[int] = []
    for index in range(len(detections)):
        single = detections[index : index + 1]
        if boxes_only:
            single = sv.Detections(xyxy=single.xyxy, class_id=single.class_id)
        try:
            written = detections_to_yolo_annotations(single, image_shape, approximation_percentage=approximation)
        except ValueError:  # supervision finds no seam inside the mask for some hole (see _seamed_polygons)
            class_id = int(single.class_id[0])
            written = [
                object_to_yolo(None, class_id, image_shape, polygon) for polygon in _seamed_polygons(single.mask[0])
            ]
        lines += written
        sources += [index] * len(written)
    return lines, sources


def _seamed_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """One polygon per connected part of ``mask``, each hole joined to the part's outline by a zero-width seam.

    supervision joins holes only along seams that stay on the mask and raises when a hole has none (masks riddled
    with holes). Here each hole joins the nearest vertex already in the polygon, as ultralytics' converter does; a
    seam that crosses background marks its one-pixel line as mask when the polygon is filled, a far smaller error
    than filling the holes.
    """
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for index, contour in enumerate(contours):
        if hierarchy[0][index][3] != -1:  # a hole: attached to its outline below
            continue
        polygon = contour.reshape(-1, 2)
        child = hierarchy[0][index][2]
        while child != -1:
            hole = contours[child].reshape(-1, 2)
            distances = np.linalg.norm(hole[:, None, :].astype(float) - polygon[None, :, :], axis=2)
            at_hole, at_polygon = np.unravel_index(np.argmin(distances), distances.shape)
            loop = np.roll(hole, -at_hole, axis=0)
            polygon = np.concatenate([polygon[: at_polygon + 1], loop, loop[:1], polygon[at_polygon:]])
            child = hierarchy[0][child][0]
        if len(polygon) >= 3:
            polygons.append(polygon)
    return polygons


def coco_polygons(mask: np.ndarray, approximation: float = 0.0) -> list[list[float]]:
    """COCO polygon segmentation of a mask: one flat ``[x1, y1, x2, y2, ...]`` list per contour (supervision's
    conversion), parts and hole outlines alike.

    COCO fills every polygon of an annotation, so holes come out filled. Use RLE (the default) where holes matter.
    """
    polygons = approximate_mask_with_polygons(mask, approximation_percentage=approximation)
    return [[float(value) for value in polygon.reshape(-1)] for polygon in polygons if len(polygon) >= 3]


def detections_to_record(
    detections: sv.Detections, coco_segmentation: str = "rle", approximation: float = 0.0
) -> list[dict]:
    """One image's detections as a record stores them: :func:`grounded_sam.detections.detections_to_json` rows,
    plus COCO polygons (and their area) when ``coco_segmentation == "polygon"``."""
    entries = detections_to_json(detections)
    if coco_segmentation == "polygon" and detections.mask is not None:
        for entry, mask in zip(entries, detections.mask):
            entry["polygons"] = coco_polygons(mask, approximation)
            if entry["polygons"]:  # COCO's area of a polygon annotation is the polygons' (holes filled)
                height, width = mask.shape
                polygon_rle = mask_utils.merge(mask_utils.frPyObjects(entry["polygons"], height, width))
                entry["polygon_area"] = int(mask_utils.area(polygon_rle))
    return entries


def coco_annotation(entry: dict, annotation_id: int, image_id: int, segmentation: str = "rle", score: bool = False):
    """One COCO annotation from a record entry. category_id is class_id + 1 (COCO ids start at 1, as supervision
    writes them); bbox is [x, y, width, height] of the detected box; area is the mask's pixel count."""
    x1, y1, x2, y2 = entry["xyxy"]
    annotation = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": entry["class_id"] + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": entry.get("area", (x2 - x1) * (y2 - y1)),
        "iscrowd": 0,
        "segmentation": [],
    }
    if segmentation == "polygon" and entry.get("polygons"):
        annotation["segmentation"], annotation["area"] = entry["polygons"], entry["polygon_area"]
    elif "mask" in entry:  # also a mask too thin for a polygon (a dot, a one-pixel line): RLE keeps it readable
        annotation["segmentation"] = entry["mask"]
    if score and entry.get("confidence") is not None:
        annotation["score"] = entry["confidence"]
    return annotation


def coco_categories(classes: Sequence[str]) -> list[dict]:
    """COCO categories for a class list, ids from 1 in class order."""
    return [{"id": index + 1, "name": name, "supercategory": "none"} for index, name in enumerate(classes)]


def data_yaml(output_folder: str, classes: Sequence[str], splits: Sequence[str]) -> dict:
    """The YOLO ``data.yaml`` content: absolute ``path``, split folders relative to it, ``nc`` and ``names``."""
    content = {"path": output_folder, "train": "train/images", "val": "valid/images"}
    if "test" in splits:
        content["test"] = "test/images"
    content.update(nc=len(classes), names=list(classes))
    return content

"""The one data type every stage passes on, ``supervision.Detections``: the names of its extra fields, the empty
result, masks as COCO RLE, and the one JSON form (``predict``'s files, a dataset's records and the app all use it).

Fields, as every stage fills them: ``xyxy`` (n, 4) float32 pixels of the original image, ``mask`` (n, H, W) bool,
``confidence`` (n,) float32 in [0, 1], ``class_id`` (n,) int into the ontology's class list, and in ``data`` the
keys below. No file I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import supervision as sv
from pycocotools import mask as mask_utils

CLASS_NAME = "class_name"  # (n,) str: the class each detection labels
PROMPT = "prompt"  # (n,) str: the ontology prompt (caption) that found it
MASK_SCORE = "mask_score"  # (n,) float32: SAM's predicted IoU of the mask
LOW_RES_LOGITS = "low_res_logits"  # (n, 256, 256) float32: SAM's mask logits, to refine a mask with more clicks
OBJECT_INDEX = "object_index"  # (n,) int: which object of a prompted call a row belongs to


def empty_detections(height: int, width: int, masks: bool = True) -> sv.Detections:
    """No detection, well-formed: xyxy (0, 4) float32, mask (0, H, W) bool (or None), confidence (0,) float32,
    class_id (0,) int, data["class_name"] (0,) str."""
    return sv.Detections(
        xyxy=np.zeros((0, 4), dtype=np.float32),
        mask=np.zeros((0, height, width), dtype=bool) if masks else None,
        confidence=np.zeros(0, dtype=np.float32),
        class_id=np.zeros(0, dtype=int),
        data={CLASS_NAME: np.array([], dtype=str)},
    )


def mask_to_rle(mask: np.ndarray) -> dict:
    """(H, W) bool mask (any non-zero value counts as mask) -> COCO compressed RLE ``{"size": [H, W], "counts": str}``
    (JSON-ready)."""
    cells = np.asarray(mask, dtype=bool).view(np.uint8)
    # pycocotools reads column-major; OpenCV's transpose makes that copy ~10x faster than np.asfortranarray (OpenCV
    # has no empty matrices: a 0-pixel mask takes the numpy copy).
    column_major = cv2.transpose(cells).T if cells.size else np.asfortranarray(cells)
    rle = mask_utils.encode(column_major)
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO compressed RLE -> (H, W) bool mask."""
    height, width = rle["size"]
    # supervision rather than pycocotools' decode, which warns under numpy 2; C order for OpenCV users downstream
    return np.ascontiguousarray(sv.rle_to_mask(rle["counts"], (width, height)))


def short_float(value) -> float:
    """A float32 as the shortest decimal that reads back as the same float32 (12.864, not 12.864000320434570)."""
    return float(str(np.float32(value)))


def detections_to_json(detections: sv.Detections) -> list[dict]:
    """One row per detection, JSON-ready and exact: ``class_id``, ``xyxy``, ``confidence`` (None when unknown), and
    when present ``class_name``, ``prompt``, ``mask_score``, ``mask`` (COCO RLE) with ``area`` (its pixel count).
    Floats are float32 written as their shortest decimal, so they read back as the same float32."""
    rows = []
    for index in range(len(detections)):
        row = {
            "class_id": int(detections.class_id[index]) if detections.class_id is not None else None,
            "xyxy": [short_float(value) for value in detections.xyxy[index]],
            "confidence": None if detections.confidence is None else short_float(detections.confidence[index]),
        }
        for key in (CLASS_NAME, PROMPT):
            if key in detections.data:
                row[key] = str(detections.data[key][index])
        if MASK_SCORE in detections.data:
            row[MASK_SCORE] = short_float(detections.data[MASK_SCORE][index])
        if detections.mask is not None:
            row["mask"] = mask_to_rle(detections.mask[index])
            row["area"] = int(np.count_nonzero(detections.mask[index]))
        rows.append(row)
    return rows


def detections_from_json(
    rows: Sequence[dict], height: int, width: int, classes: Sequence[str] | None = None
) -> sv.Detections:
    """Inverse of :func:`detections_to_json`. ``classes`` names the class of each ``class_id`` when the rows carry
    no ``class_name``."""
    if not rows:
        return empty_detections(height, width)
    class_id = np.array([row["class_id"] for row in rows], dtype=int)
    confidences = [row.get("confidence") for row in rows]
    data = {}
    if all(CLASS_NAME in row for row in rows):
        data[CLASS_NAME] = np.array([row[CLASS_NAME] for row in rows], dtype=str)
    elif classes is not None:
        data[CLASS_NAME] = np.array([classes[index] for index in class_id], dtype=str)
    if all(PROMPT in row for row in rows):
        data[PROMPT] = np.array([row[PROMPT] for row in rows], dtype=str)
    if all(MASK_SCORE in row for row in rows):
        data[MASK_SCORE] = np.array([row[MASK_SCORE] for row in rows], dtype=np.float32)
    return sv.Detections(
        xyxy=np.array([row["xyxy"] for row in rows], dtype=np.float32).reshape(-1, 4),
        mask=np.stack([rle_to_mask(row["mask"]) for row in rows]) if all("mask" in row for row in rows) else None,
        confidence=None if None in confidences else np.array(confidences, dtype=np.float32),
        class_id=class_id,
        data=data,
    )


def masks_to_detections(masks: np.ndarray, scores: np.ndarray, data: dict | None = None) -> sv.Detections:
    """Detections from (n, H, W) bool masks: xyxy the masks' boxes, confidence = data["mask_score"] = scores."""
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32) if len(masks) else np.zeros((0, 4), np.float32),
        mask=masks,
        confidence=scores,
        data={**(data or {}), MASK_SCORE: scores},
    )

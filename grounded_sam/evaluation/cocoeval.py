"""pycocotools' COCOeval, run and read: AP as COCO defines it, AP per class, precision and recall at a confidence,
and AP against ``min_confidence``, all from COCOeval's own matching (no metric of our own).

pycocotools rather than faster-coco-eval: both give identical numbers (measured on 500 images x 10 objects, bbox and
segm, every stat and every class), faster-coco-eval is 2-3x faster, but it does not expose ``evalImgs`` (the
per-image matching that precision/recall at a confidence needs), and pycocotools takes about a second per 500 images
per IoU type: plenty for hand-labeled sets.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_FOR_PR = 0.5  # precision/recall are counted at IoU 0.5, area "all", up to 100 detections per image and class


def quiet(function, *args, **kwargs):
    """Calls a pycocotools function with its prints (loadRes, evaluate, accumulate, summarize) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


def run_cocoeval(ground_truth: COCO, results: list[dict], iou_type: str, image_ids: Sequence[int]) -> COCOeval:
    """``evaluate()``, ``accumulate()``, ``summarize()`` of ``results`` (COCO result dicts) on ``image_ids``.

    Works with no results at all (``loadRes([])`` raises IndexError); ``loadRes`` gets a copy, as it adds ids, areas
    and polygons to the dicts it is given.
    """
    detections = quiet(ground_truth.loadRes, copy.deepcopy(results)) if results else _no_results(ground_truth)
    evaluator = COCOeval(ground_truth, detections, iou_type)
    evaluator.params.imgIds = sorted(image_ids)
    quiet(evaluator.evaluate)
    quiet(evaluator.accumulate)
    quiet(evaluator.summarize)
    return evaluator


def _no_results(ground_truth: COCO) -> COCO:
    empty = COCO()
    empty.dataset = {
        "images": list(ground_truth.dataset["images"]),
        "categories": copy.deepcopy(ground_truth.dataset["categories"]),
        "annotations": [],
    }
    quiet(empty.createIndex)
    return empty


def _value(number: float) -> float | None:
    """COCO's -1 ("no ground truth") as None."""
    return None if number < 0 else float(number)


def per_class_ap(evaluator: COCOeval, iou: float | None = None) -> dict[str, float | None]:
    """AP per category name, as ``summarize`` averages it: ``precision[t, :, k, area all, maxDets 100]`` over the
    entries > -1, for every IoU threshold (AP@[.5:.95]) or only ``iou``. None for a category without ground truth."""
    precision = evaluator.eval["precision"]  # (T IoUs, R recall points, K categories, A areas, M maxDets)
    names = {category["id"]: category["name"] for category in evaluator.cocoGt.dataset["categories"]}
    rows = slice(None) if iou is None else [_iou_index(evaluator, iou)]
    result = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[rows, :, k, 0, -1]
        values = values[values > -1]
        result[names[category_id]] = float(values.mean()) if values.size else None
    return result


def _iou_index(evaluator: COCOeval, iou: float) -> int:
    return int(np.argmin(np.abs(evaluator.params.iouThrs - iou)))


def summary(evaluator: COCOeval) -> dict:
    """``AP`` (@[.5:.95]), ``AP50``, ``AP75`` as ``COCOeval.stats[0:3]`` (area all, 100 detections), the same per
    class (``per_class``, ``per_class_AP50``), and ``precision`` / ``recall`` of every detection at IoU 0.5."""
    stats = evaluator.stats
    precision, recall = precision_recall_at(evaluator, 0.0)
    return {
        "AP": _value(stats[0]),
        "AP50": _value(stats[1]),
        "AP75": _value(stats[2]),
        "per_class": per_class_ap(evaluator),
        "per_class_AP50": per_class_ap(evaluator, 0.5),
        "precision": precision,
        "recall": recall,
    }


def precision_recall_at(
    evaluator: COCOeval, min_confidence: float, iou: float = IOU_FOR_PR
) -> tuple[float | None, float | None]:
    """Precision and recall of the detections scoring >= ``min_confidence``, all classes pooled.

    The matching is COCOeval's own (``evalImgs``: area "all", up to 100 detections per image and class, greedy by
    decreasing score, crowd and ignored ground truth left out) at IoU ``iou``. Matching greedily by score means that
    dropping the detections under a threshold changes no match above it, so one ``evaluate()`` serves every
    threshold. Precision is None when no detection is kept, recall None without ground truth.
    """
    t = _iou_index(evaluator, iou)
    area = evaluator.params.areaRng[0]
    true_positives = false_positives = ground_truth = 0
    for entry in evaluator.evalImgs:
        if entry is None or entry["aRng"] != area:
            continue
        ground_truth += int((~np.asarray(entry["gtIgnore"], dtype=bool)).sum())
        scores = np.asarray(entry["dtScores"])
        if scores.size == 0:
            continue
        kept = scores >= min_confidence
        counted = kept & ~np.asarray(entry["dtIgnore"][t], dtype=bool)
        matched = np.asarray(entry["dtMatches"][t]) > 0
        true_positives += int((counted & matched).sum())
        false_positives += int((counted & ~matched).sum())
    kept_total = true_positives + false_positives
    precision = true_positives / kept_total if kept_total else None
    recall = true_positives / ground_truth if ground_truth else None
    return precision, recall


def ap_at_min_confidence(evaluator: COCOeval, min_confidence: float) -> tuple[float | None, float | None]:
    """(AP@[.5:.95], AP50) of only the detections scoring >= ``min_confidence``: ``accumulate()`` again on
    ``evalImgs`` with the lower-scoring detections cut, which equals a fresh COCOeval on the filtered results."""
    trimmed = copy.copy(evaluator)
    trimmed.evalImgs = [None if entry is None else _cut(entry, min_confidence) for entry in evaluator.evalImgs]
    quiet(trimmed.accumulate)
    quiet(trimmed.summarize)
    return _value(trimmed.stats[0]), _value(trimmed.stats[1])


def _cut(entry: dict, min_confidence: float) -> dict:
    keep = np.asarray(entry["dtScores"]) >= min_confidence
    cut = dict(entry)
    cut["dtIds"] = [value for value, kept in zip(entry["dtIds"], keep) if kept]
    cut["dtScores"] = [value for value, kept in zip(entry["dtScores"], keep) if kept]
    cut["dtMatches"] = np.asarray(entry["dtMatches"])[:, keep]
    cut["dtIgnore"] = np.asarray(entry["dtIgnore"])[:, keep]
    return cut


def sweep(evaluator: COCOeval, thresholds: Sequence[float]) -> list[dict]:
    """One row per threshold: ``min_confidence``, ``AP``, ``AP50``, ``precision``, ``recall`` of the detections
    kept at that threshold (what labeling again with that ``min_confidence`` would score)."""
    rows = []
    for threshold in thresholds:
        ap, ap50 = ap_at_min_confidence(evaluator, threshold)
        precision, recall = precision_recall_at(evaluator, threshold)
        rows.append(
            {"min_confidence": float(threshold), "AP": ap, "AP50": ap50, "precision": precision, "recall": recall}
        )
    return rows


def sweep_thresholds(min_confidence: float = 0.0, step: float = 0.05) -> list[float]:
    """``min_confidence`` (the dataset's own), then every multiple of ``step`` above it, under 1."""
    above = [round(k * step, 6) for k in range(1, round(1 / step)) if k * step > min_confidence + 1e-9]
    return [float(min_confidence), *above]

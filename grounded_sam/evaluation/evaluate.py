"""Label quality against hand-labeled ground truth: box and mask AP of a labeled dataset, or of any detections.

Predictions come from a dataset's records (``.grounded-sam/records``), never from its YOLO files: the records keep
every detection's confidence (which AP ranks by: with every confidence fixed at 1, AP depends on the order
detections are listed in, measured 0.83 vs 0.78 for the same boxes) and exact RLE masks. Images are matched to the
ground truth by file name and classes by name; what matches on one side only is left out and reported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import supervision as sv

from grounded_sam.detections import detections_to_json, mask_to_rle, rle_to_mask
from grounded_sam.errors import UserInputError
from grounded_sam.evaluation.cocoeval import run_cocoeval, summary, sweep_thresholds
from grounded_sam.evaluation.cocoeval import sweep as sweep_rows
from grounded_sam.evaluation.ground_truth import GroundTruth, load_ground_truth
from grounded_sam.labeling.records import SETTINGS_FILE, read_header, read_record, record_files
from grounded_sam.segmentation.cleanup import MaskCleanup

IOU_TYPES = ("bbox", "segm")
_LISTED = 20  # names of unmatched images kept in a report


def evaluate_dataset(
    dataset: str | os.PathLike,
    ground_truth,
    sweep: bool | Sequence[float] = False,
    cleanup: MaskCleanup | None = None,
) -> dict:
    """Box and mask AP of a dataset written by ``label`` against ground truth, with COCOeval.

    Args:
        dataset: the labeled folder (its records are read, every split together).
        ground_truth: a COCO instances file, a YOLO dataset folder, a COCO dict or a :class:`GroundTruth`.
        sweep: also AP, precision and recall against ``min_confidence``: True for the dataset's own min_confidence
            and every 0.05 above it, or the thresholds to use.
        cleanup: also evaluate the masks cleaned this way (``segm_cleaned``): what labeling with these clean-up
            options would have written, as clean-up is a function of each full-resolution mask.

    Returns:
        the report (JSON-ready): ``bbox`` and ``segm`` (None without masks on both sides) each with ``AP``,
        ``AP50``, ``AP75``, ``per_class`` {class: AP}, ``per_class_AP50``, ``precision``, ``recall`` (IoU 0.5, every
        detection) and with ``sweep`` its rows; ``images`` and ``classes`` say what was matched; ``notes`` what was
        left out. AP values are None where the ground truth has no object to find.

    Raises:
        FileNotFoundError: no dataset at ``dataset``, or no ground truth at that path.
        UserInputError: bad ground truth, no image in common, image sizes that differ, or a dataset whose
            detector gave no confidences.
    """
    root = Path(dataset).absolute()
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise FileNotFoundError(f"{root} is not a dataset written by grounded-sam (no {settings_path})")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    truth = load_ground_truth(ground_truth)
    records = [(path, read_header(path)) for path in record_files(root)]
    keys = [(header["source"], PurePosixPath(header["source"]).name, header["name"]) for _, header in records]
    matched = _match(truth, keys, str(root))
    predictions = {}
    for image_id, index in matched.items():
        path, header = records[index]
        _check_size(truth, image_id, (header["height"], header["width"]), header["source"])
        predictions[image_id] = read_record(path)[1]
    min_confidence = float(settings.get("model", {}).get("min_confidence", 0.0))
    return evaluate_entries(
        truth, predictions, settings["dataset"]["classes"], min_confidence, sweep, cleanup, len(records)
    )


def evaluate_detections(
    ground_truth,
    detections: Mapping[str, sv.Detections],
    classes: Sequence[str],
    sweep: bool | Sequence[float] = False,
    cleanup: MaskCleanup | None = None,
) -> dict:
    """The report of :func:`evaluate_dataset` for detections in memory: ``{file name: sv.Detections}`` (class_id
    into ``classes``, confidence, xyxy pixels, optional (n, H, W) masks), matched to the ground truth by name."""
    truth = load_ground_truth(ground_truth)
    names = list(detections)
    matched = _match(truth, [(name, PurePosixPath(name).name) for name in names], "the detections")
    predictions = {}
    for image_id, index in matched.items():
        found = detections[names[index]]
        if found.mask is not None:
            _check_size(truth, image_id, found.mask.shape[1:], names[index])
        predictions[image_id] = detections_to_json(found)
    return evaluate_entries(truth, predictions, list(classes), 0.0, sweep, cleanup, len(names))


def evaluate_entries(
    truth: GroundTruth,
    predictions: Mapping[int, list[dict]],
    classes: Sequence[str],
    min_confidence: float = 0.0,
    sweep: bool | Sequence[float] = False,
    cleanup: MaskCleanup | None = None,
    predicted_images: int | None = None,
) -> dict:
    """The report for ``{ground-truth image id: record entries}`` (``detections_to_json`` rows: class_id into
    ``classes``, xyxy, confidence, optional RLE mask); ``predicted_images`` counts the images predictions came for."""
    categories = {name: index + 1 for index, name in enumerate(truth.categories)}
    image_ids = sorted(predictions)
    has_masks = truth.has_masks and all("mask" in entry for entries in predictions.values() for entry in entries)
    thresholds = sweep_thresholds(min_confidence) if sweep is True else list(sweep or [])
    report = {
        "ground_truth": truth.source,
        "images": _image_counts(truth, image_ids, predicted_images),
        "classes": _class_counts(truth, image_ids, classes),
        "min_confidence": min_confidence,
        "notes": _notes(truth, image_ids, classes, has_masks),
    }
    for iou_type in IOU_TYPES:
        report[iou_type] = None
        if iou_type == "bbox" or has_masks:
            results = coco_results(predictions, classes, categories, iou_type)
            report[iou_type] = _summary(truth, results, iou_type, image_ids, thresholds)
    if cleanup is not None and cleanup.active and has_masks:
        report["mask_cleanup"] = cleanup.settings()
        results = coco_results(predictions, classes, categories, "segm", cleanup)
        report["segm_cleaned"] = _summary(truth, results, "segm", image_ids, thresholds)
    return report


def _summary(truth: GroundTruth, results: list[dict], iou_type: str, image_ids, thresholds) -> dict:
    evaluator = run_cocoeval(truth.coco, results, iou_type, image_ids)
    result = summary(evaluator)
    if thresholds:
        result["sweep"] = sweep_rows(evaluator, thresholds)
    return result


def coco_results(
    predictions: Mapping[int, list[dict]],
    classes: Sequence[str],
    categories: Mapping[str, int],
    iou_type: str,
    cleanup: MaskCleanup | None = None,
) -> list[dict]:
    """COCO result dicts of the entries whose class the ground truth has: ``bbox`` [x, y, w, h] for boxes,
    ``segmentation`` (RLE) for masks, never both (with both, loadRes takes a mask's area from its box, which moves
    detections between the small/medium/large ranges)."""
    results = []
    for image_id, entries in predictions.items():
        for entry in entries:
            category_id = categories.get(classes[entry["class_id"]])
            if category_id is None:
                continue
            if entry.get("confidence") is None:
                raise UserInputError(
                    "The dataset's detections have no confidence, and AP ranks detections by it: label with a "
                    "detector that gives confidences"
                )
            result = {"image_id": image_id, "category_id": category_id, "score": float(entry["confidence"])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = entry["xyxy"]
                result["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            elif cleanup is not None:
                result["segmentation"] = mask_to_rle(cleanup.clean(rle_to_mask(entry["mask"])))
            else:
                result["segmentation"] = dict(entry["mask"])
            results.append(result)
    return results


def _match(truth: GroundTruth, keys: Sequence[tuple[str, ...]], what: str) -> dict[int, int]:
    """{ground-truth image id: index of the prediction}: each prediction's keys tried in order against the ground
    truth's full file names, then against its base names where those are unique."""
    full, base = truth.image_ids_by_name()
    matched: dict[int, int] = {}
    for index, names in enumerate(keys):
        for name in names:
            image_id = full.get(name)
            if image_id is None and len(base.get(PurePosixPath(name).name, [])) == 1:
                image_id = base[PurePosixPath(name).name][0]
            if image_id is not None:
                if image_id in matched:
                    raise UserInputError(
                        f"Two images of {what} match the ground-truth image {names[0]!r}; give the ground truth "
                        "file names with their folders (as labeled with recursive=True)"
                    )
                matched[image_id] = index
                break
    if not matched:
        example = next(iter(full), "none")
        raise UserInputError(
            f"No image of {what} is in the ground truth {truth.source} (ground-truth file names such as "
            f"{example!r} are matched to the labeled images' file names)"
        )
    return matched


def _check_size(truth: GroundTruth, image_id: int, size, name: str) -> None:
    image = truth.coco.imgs[image_id]
    if (image["height"], image["width"]) != tuple(size):
        raise UserInputError(
            f"Image {name} is {size[1]} x {size[0]} as labeled but {image['width']} x {image['height']} in the "
            f"ground truth {truth.source}; the ground truth must be drawn on the same images (after EXIF rotation)"
        )


def _image_counts(truth: GroundTruth, image_ids: Sequence[int], predicted_images: int | None) -> dict:
    evaluated = set(image_ids)
    left_out = [image["file_name"] for image in truth.coco.dataset["images"] if image["id"] not in evaluated]
    counts = {
        "evaluated": len(image_ids),
        "ground_truth_only": len(left_out),
        "ground_truth_only_names": left_out[:_LISTED],
    }
    if predicted_images is not None:
        counts["labeled_only"] = predicted_images - len(image_ids)
    return counts


def _class_counts(truth: GroundTruth, image_ids: Sequence[int], classes: Sequence[str]) -> dict:
    wanted = set(image_ids)
    names = {index + 1: name for index, name in enumerate(truth.categories)}
    objects = Counter(
        names[annotation["category_id"]]
        for annotation in truth.coco.dataset["annotations"]
        if annotation["image_id"] in wanted and not annotation["iscrowd"]
    )
    return {
        "objects": {name: objects.get(name, 0) for name in truth.categories},
        "labeled_only": [name for name in classes if name not in names.values()],
        "ground_truth_only": [name for name in truth.categories if name not in classes],
    }


def _notes(truth: GroundTruth, image_ids, classes, has_masks: bool) -> list[str]:
    notes = []
    left_out = len(truth.coco.dataset["images"]) - len(image_ids)
    if left_out:
        notes.append(f"{left_out} ground-truth images are not in the labeled images and were left out")
    unknown = [name for name in classes if name not in truth.categories]
    if unknown:
        notes.append(f"classes the ground truth lacks were left out: {', '.join(unknown)}")
    missing = [name for name in truth.categories if name not in classes]
    if missing:
        notes.append(f"classes never labeled (AP 0 where the ground truth has objects): {', '.join(missing)}")
    if not has_masks:
        side = "the ground truth" if not truth.has_masks else "the labels"
        notes.append(f"mask AP not computed: {side} lack masks for some objects")
    return notes

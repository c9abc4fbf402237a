"""What evaluation and mask clean-up cost on the CPU: pycocotools' COCOeval on a synthetic gold set, and the
clean-up of a full-HD SAM-like mask (pinholes, specks, a stray part), inside the image and cut by its border.

    python benchmarks/evaluation.py                       # 500 images x 10 objects at 640 x 480; 1920 x 1080 masks
    python benchmarks/evaluation.py --images 50 --repeat 3

Prints JSON: seconds for box + mask AP (with and without the min_confidence sweep), and milliseconds per mask for
each clean-up step and the three together.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import supervision as sv

from grounded_sam.detections import mask_to_rle
from grounded_sam.evaluation import evaluate_detections
from grounded_sam.segmentation.cleanup import MaskCleanup, fill_holes, keep_largest_part, remove_specks


def gold_set(images: int, objects: int, height: int = 480, width: int = 640, seed: int = 0):
    """(COCO instances, predictions {file name: sv.Detections}, classes): ellipses on a grid as ground truth;
    predictions jittered by a few pixels, a tenth missed, two false positives per image."""
    rng = np.random.default_rng(seed)
    columns = int(np.ceil(np.sqrt(objects)))
    cell_w, cell_h = width // columns, height // int(np.ceil(objects / columns))
    yy, xx = np.mgrid[:height, :width]
    truth = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    predictions = {}
    for index in range(images):
        name = f"{index:05d}.jpg"
        truth["images"].append({"id": index + 1, "file_name": name, "width": width, "height": height})
        boxes, masks = [], []
        for k in range(objects):
            cx, cy = (k % columns + 0.5) * cell_w, (k // columns + 0.5) * cell_h
            rx, ry = rng.uniform(0.2, 0.45) * cell_w, rng.uniform(0.2, 0.45) * cell_h
            mask = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
            box = [cx - rx, cy - ry, 2 * rx, 2 * ry]
            truth["annotations"].append(
                {"id": len(truth["annotations"]) + 1, "image_id": index + 1, "category_id": 1 + k % 2,
                 "bbox": box, "segmentation": mask_to_rle(mask), "area": float(mask.sum()), "iscrowd": 0}
            )  # fmt: skip
            boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]])
            masks.append(np.roll(mask, int(rng.integers(-3, 4)), axis=1))
        keep = rng.random(objects) > 0.1
        xyxy = np.array(boxes, np.float32)[keep] + rng.normal(0, 2, (keep.sum(), 4)).astype(np.float32)
        false = np.zeros((2, height, width), bool)
        false[:, :10, :10] = True
        predictions[name] = sv.Detections(
            xyxy=np.concatenate([xyxy, np.array([[0, 0, 10, 10]] * 2, np.float32)]),
            mask=np.concatenate([np.array(masks)[keep], false]),
            confidence=rng.uniform(0.05, 1.0, keep.sum() + 2).astype(np.float32),
            class_id=np.concatenate([np.arange(objects)[keep] % 2, [0, 1]]),
        )
    return truth, predictions, ["a", "b"]


def sam_like_mask(height: int = 1080, width: int = 1920, at_border: bool = False, seed: int = 0) -> np.ndarray:
    """An object of about a sixth of the image with 40 pinholes, 30 specks of 1 to 25 pixels around it and a stray
    part of 400 pixels; in the middle of the image, or cut by its left border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    cx, cy, rx, ry = (width / 8 if at_border else width / 2), height / 2, width / 5, height / 4
    mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    for _ in range(40):
        y, x = int(cy + rng.uniform(-0.5, 0.5) * ry), int(max(0, cx + rng.uniform(-0.5, 0.5) * rx))
        mask[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = False
    for _ in range(30):
        angle = rng.uniform(0, 2 * np.pi)
        y, x = int(cy + 1.15 * ry * np.sin(angle)), int(max(0, cx + 1.15 * rx * np.cos(angle)))
        mask[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
    mask[int(cy + ry) - 10 : int(cy + ry) + 10, int(cx + rx) - 10 : int(cx + rx) + 10] = True
    return mask


def _seconds(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is reported")
    arguments = parser.parse_args()
    truth, predictions, classes = gold_set(arguments.images, arguments.objects)
    report = evaluate_detections(truth, predictions, classes)
    result = {
        "images": arguments.images,
        "objects_per_image": arguments.objects,
        "box_AP": round(report["bbox"]["AP"], 4),
        "mask_AP": round(report["segm"]["AP"], 4),
        "evaluate_seconds": round(
            _seconds(lambda: evaluate_detections(truth, predictions, classes), arguments.repeat), 2
        ),
        "evaluate_with_sweep_seconds": round(
            _seconds(lambda: evaluate_detections(truth, predictions, classes, sweep=True), arguments.repeat), 2
        ),
    }
    for name, at_border in (("inside", False), ("at_border", True)):
        mask = sam_like_mask(at_border=at_border)
        steps = {
            "fill_holes_100": lambda mask=mask: fill_holes(mask, 100),
            "remove_specks_100": lambda mask=mask: remove_specks(mask, 100),
            "keep_largest_part": lambda mask=mask: keep_largest_part(mask),
            "all_three": lambda mask=mask: MaskCleanup(100, 100, True).clean(mask),
        }
        result[f"cleanup_ms_per_1920x1080_mask_{name}"] = {
            step: round(1000 * _seconds(function, max(5, arguments.repeat)), 1) for step, function in steps.items()
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Segmenting image files into a folder of pictures and JSON results (what ``grounded-sam predict`` does)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
from PIL import Image
from tqdm.auto import tqdm

from .annotate import annotate
from .dataset_files import atomic_write_text
from .folders import find_images, output_names
from .formats import mask_to_rle
from .images import InvalidImageError, load_image


def detections_to_json(detections: sv.Detections, source: str, height: int, width: int) -> dict:
    """One image's results as JSON-ready data: per detection class, prompt, confidence, xyxy box, SAM's mask score
    and the mask as COCO RLE."""
    rows = []
    for index in range(len(detections)):
        row = {
            "class_id": int(detections.class_id[index]),
            "class_name": str(detections.data["class_name"][index]),
            "prompt": str(detections.data["prompt"][index]) if "prompt" in detections.data else None,
            "confidence": round(float(detections.confidence[index]), 4),
            "xyxy": [round(float(value), 2) for value in detections.xyxy[index]],
        }
        if "mask_score" in detections.data:
            row["mask_score"] = round(float(detections.data["mask_score"][index]), 4)
        if detections.mask is not None:
            row["mask"] = mask_to_rle(detections.mask[index])
        rows.append(row)
    return {"image": source, "width": width, "height": height, "detections": rows}


def predict_files(model, source: str | Path, output: str | Path, recursive: bool = False, batch_size: int = 8,
                  progress: bool = True) -> dict:
    """Runs ``model`` (a ``GroundedSAM2``) on an image file or every image of a folder.

    Writes ``output/NAME.jpg`` (the image with masks, boxes and "class 0.87" labels) and ``output/NAME.json``
    (:func:`detections_to_json`) per image; names are the folder's relative paths flattened as in labeling.
    Unreadable images are skipped and listed. Returns counts: found, written, skipped, per_class, output.
    """
    source, output = Path(source), Path(output)
    if source.is_file():
        root, relative = source.parent, [PurePosixPath(source.name)]
    else:
        root, relative = source, find_images(source, recursive=recursive, exclude=[output])
        if not relative:
            raise FileNotFoundError(f"No images found in {source}{'' if recursive else ' (recursive: also sub-folders)'}")
    output.mkdir(parents=True, exist_ok=True)
    names = output_names(relative)
    summary = {"found": len(relative), "written": 0, "skipped": [], "per_class": Counter(), "output": str(output)}
    with tqdm(total=len(relative), unit="img", disable=None if progress else True, desc="Segmenting") as bar:
        for start in range(0, len(relative), batch_size):
            batch = _load(root, relative[start : start + batch_size], summary["skipped"])
            if batch:
                for (item, image), detections in zip(batch, model.predict_arrays([image for _, image in batch])):
                    _write(output, names[item], str(root / item), image, detections)
                    summary["written"] += 1
                    summary["per_class"].update(detections.data["class_name"].tolist())
            bar.update(len(relative[start : start + batch_size]))
    summary["per_class"] = {name: summary["per_class"].get(name, 0) for name in model.ontology.classes()}
    return summary


def _load(root: Path, items, skipped: list) -> list[tuple[PurePosixPath, np.ndarray]]:
    loaded = []
    for item in items:
        try:
            loaded.append((item, load_image(root / item)))
        except (InvalidImageError, OSError) as error:
            skipped.append({"path": str(item), "reason": str(error)})
    return loaded


def _write(output: Path, name: str, source: str, image: np.ndarray, detections: sv.Detections) -> None:
    stem = PurePosixPath(name).stem
    Image.fromarray(annotate(image, detections)).save(output / f"{stem}.jpg", quality=92)
    content = detections_to_json(detections, source, *image.shape[:2])
    atomic_write_text(output / f"{stem}.json", json.dumps(content, ensure_ascii=False))

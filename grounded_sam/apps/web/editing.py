"""What each editing action does to a workspace: find objects by text or "find everything", segment everything, add
an object from a box or a click, refine a mask with clicks. The callers hold the session's lock.

Every SAM 2 call here goes to the image's cached embedding (:func:`embedding`), computed once per image and model:
a click runs the mask decoder only. A click refines a mask from its prompt box (if any) plus every click so far, so
the same clicks always give the same mask.
"""

from __future__ import annotations

import supervision as sv

from grounded_sam.detections import CLASS_NAME, PROMPT, mask_to_rle
from grounded_sam.ontology import CaptionOntology

from .models import AppModels
from .state import Detection, Workspace


def embedding(models: AppModels, workspace: Workspace):
    """The workspace image's SAM 2 embedding for ``models``, encoded on first use."""
    if workspace.embedding is None or workspace.embedded_by is not models:
        workspace.embedding, workspace.embedded_by = None, None  # another model's: let it go before encoding
        workspace.embedding, workspace.embedded_by = models.encode(workspace.image), models
    return workspace.embedding


def find(
    models: AppModels,
    workspace: Workspace,
    ontology: CaptionOntology | None,
    task: str,
    min_confidence: float,
    nms_threshold: float | None,
    keep: bool = False,
) -> list[Detection]:
    """The detector's boxes for the prompts (or every object, for ``task="object_detection"`` without prompts), each
    segmented by SAM 2 in one decoder pass; they replace the workspace's detections unless ``keep``."""
    found = models.detect(workspace.image, ontology, task, min_confidence, nms_threshold)
    if not keep:
        workspace.detections.clear()
    if not len(found):
        return []
    masks = models.decode(embedding(models, workspace), boxes=found.xyxy)
    return [
        workspace.add(
            class_name=str(found.data[CLASS_NAME][index]),
            confidence=round(float(found.confidence[index]), 4),
            box=[round(float(value), 2) for value in found.xyxy[index]],
            rle=mask_to_rle(masks.mask[index]),
            source=str(found.data[PROMPT][index]),
            mask_score=round(float(masks.confidence[index]), 4),
        )
        for index in range(len(found))
    ]


def everything(models: AppModels, workspace: Workspace, class_name: str, options: dict, keep: bool = False):
    """SAM 2's segment-everything: every mask it finds, as objects of ``class_name`` (confidence: SAM's predicted
    IoU); they replace the workspace's detections unless ``keep``."""
    found = models.everything(workspace.image, **options)
    if not keep:
        workspace.detections.clear()
    return [
        _add_mask(workspace, found, index, class_name, "everything", confidence=float(found.confidence[index]))
        for index in range(len(found))
    ]


def add_from_box(models: AppModels, workspace: Workspace, class_name: str, box: list[float]) -> Detection:
    """A missed object from a drawn box (x1, y1, x2, y2 pixels)."""
    result = models.decode(embedding(models, workspace), boxes=[box])
    detection = _add_mask(workspace, result, 0, class_name, "box", box=box)
    detection.edited = True
    return detection


def add_from_click(models: AppModels, workspace: Workspace, class_name: str, point: list[float]) -> Detection:
    """A missed object from one click on it (x, y pixels)."""
    result = models.decode(embedding(models, workspace), points=[[point]], labels=[[1]])
    detection = _add_mask(workspace, result, 0, class_name, "click")
    detection.points, detection.labels, detection.edited = [point], [1], True
    return detection


def refine(models: AppModels, workspace: Workspace, detection: Detection, point: list[float], label: int) -> Detection:
    """One more click on a detection (1: part of the object, 0: not): its box and all its clicks through the mask
    decoder, on the cached embedding."""
    points, labels = [*detection.points, point], [*detection.labels, label]
    prompt = {"points": [points], "labels": [labels]}
    if detection.box is not None:
        prompt["boxes"] = [detection.box]
    result = models.decode(embedding(models, workspace), **prompt)
    detection.set_mask(result.mask[0], result.confidence[0])
    detection.points, detection.labels, detection.edited = points, labels, True
    return detection


def _add_mask(workspace, result: sv.Detections, index: int, class_name: str, source: str, box=None, confidence=None):
    return workspace.add(
        class_name=class_name,
        confidence=None if confidence is None else round(confidence, 4),
        box=box,
        rle=mask_to_rle(result.mask[index]),
        source=source,
        mask_score=round(float(result.confidence[index]), 4),
    )

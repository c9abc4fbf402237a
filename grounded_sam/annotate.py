"""Pictures of results, drawn with supervision's annotators: masks, boxes and "class 0.87" labels; cut-outs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv

from grounded_sam.detections import CLASS_NAME
from grounded_sam.errors import UserInputError
from grounded_sam.images import ImageInput, load_image


def detection_labels(detections: sv.Detections) -> list[str]:
    """ "class 0.87" per detection (the class name when known, else the row number; the confidence when known)."""
    names = detections.data.get(CLASS_NAME)
    labels = []
    for index in range(len(detections)):
        name = str(names[index]) if names is not None else f"#{index}"
        confidence = detections.confidence[index] if detections.confidence is not None else None
        labels.append(name if confidence is None else f"{name} {confidence:.2f}")
    return labels


def annotate(
    image: ImageInput,
    detections: sv.Detections,
    labels: Sequence[str] | None = None,
    opacity: float = 0.5,
    color_lookup: sv.ColorLookup | None = None,
) -> np.ndarray:
    """Draws masks, boxes and labels on a copy of ``image``.

    Args:
        image: a path, PIL image or (H, W, 3) uint8 RGB array.
        detections: results for that image (masks optional).
        labels: one text per detection; default "class 0.87".
        opacity: mask opacity.
        color_lookup: what the colours follow (``sv.ColorLookup.TRACK``: the tracker id); default the class, or
            the row when there is no class_id.

    Returns:
        (H, W, 3) uint8 RGB array.
    """
    canvas = load_image(image).copy()
    if len(detections) == 0:
        return canvas
    lookup = color_lookup or (sv.ColorLookup.CLASS if detections.class_id is not None else sv.ColorLookup.INDEX)
    resolution = (canvas.shape[1], canvas.shape[0])
    thickness = sv.calculate_optimal_line_thickness(resolution)
    if detections.mask is not None:
        canvas = sv.MaskAnnotator(color_lookup=lookup, opacity=opacity).annotate(canvas, detections)
    canvas = sv.BoxAnnotator(color_lookup=lookup, thickness=thickness).annotate(canvas, detections)
    texts = list(labels) if labels is not None else detection_labels(detections)
    label = sv.LabelAnnotator(
        color_lookup=lookup,
        smart_position=True,
        text_thickness=max(1, thickness // 2),
        text_scale=max(0.35, sv.calculate_optimal_text_scale(resolution)),
        text_padding=max(2, thickness * 2),
    )
    return label.annotate(canvas, detections, labels=texts)


def plot(image: ImageInput, detections: sv.Detections | None = None, size: tuple[int, int] = (10, 10)) -> None:
    """Shows ``image`` (annotated with ``detections`` when given) in a notebook or a matplotlib window."""
    pixels = annotate(image, detections) if detections is not None else load_image(image)
    sv.plot_image(pixels[:, :, ::-1], size=size)  # supervision plots OpenCV's BGR order


def cutout(image: ImageInput, mask: np.ndarray) -> np.ndarray:
    """One object on a transparent background, cropped to its mask's box (as for photo retouching).

    Args:
        image: a path, PIL image or (H, W, 3) uint8 RGB array.
        mask: (H, W) bool mask of the object, at the image's size.

    Returns:
        (h, w, 4) uint8 RGBA: the image's pixels, alpha 255 inside the mask and 0 outside; h, w span the mask's box.

    Raises:
        UserInputError: the mask is empty or not the image's size.
    """
    pixels = load_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pixels.shape[:2]:
        raise UserInputError(f"mask must be (H, W) = {pixels.shape[:2]} like the image, got {mask.shape}")
    if not mask.any():
        raise UserInputError("The mask is empty: there is nothing to cut out")
    x1, y1, x2, y2 = sv.mask_to_xyxy(mask[None])[0].astype(int)
    alpha = mask.astype(np.uint8) * 255
    return np.dstack([pixels, alpha])[y1 : y2 + 1, x1 : x2 + 1]

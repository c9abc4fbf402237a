"""Checking and shaping SAM prompts (clicks, boxes, previous mask logits) given in original-image pixels.

Pure functions: no model here. A prompt batch holds N objects; each object has its own clicks (any number,
padded), an optional box and an optional low-resolution mask from an earlier prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grounded_sam.errors import UserInputError

POINT_PAD_LABEL = -10  # transformers' Sam2Processor pads ragged click lists with this label; the model skips them


@dataclass
class PromptBatch:
    """N objects' prompts in pixels of the original image.

    Attributes:
        points: (N, P, 2) float32 x, y, or None; padded entries hold -10.
        labels: (N, P) int64, 1 foreground / 0 background / -10 padding, or None.
        boxes: (N, 4) float32 x1, y1, x2, y2, or None.
        masks: (N, h, w) float32 low-resolution mask logits, or None.
    """

    points: np.ndarray | None
    labels: np.ndarray | None
    boxes: np.ndarray | None
    masks: np.ndarray | None

    def __len__(self) -> int:
        for value in (self.boxes, self.points, self.masks):
            if value is not None:
                return len(value)
        return 0


def build_prompts(points, labels, boxes, mask_input, image_size: tuple[int, int], mask_size: tuple[int, int]):
    """Validates user prompts and returns a :class:`PromptBatch`.

    Args:
        points: one object's clicks as (P, 2), several objects' as (N, P, 2) or a list of (P_i, 2) lists.
        labels: matching (P,), (N, P) or list of (P_i,) lists of 1 (foreground) and 0 (background).
        boxes: (4,) or (N, 4) x1, y1, x2, y2.
        mask_input: (h, w) or (N, h, w) mask logits from an earlier prediction (``data["low_res_logits"]``).
        image_size: (H, W) of the original image.
        mask_size: (h, w) the model takes as mask input.

    Raises:
        UserInputError: nothing given, shapes or counts that do not match, labels other than 0/1, coordinates that are
            not finite or lie outside the image, boxes with x2 < x1 or y2 < y1.
    """
    if points is None and labels is not None:
        raise UserInputError("labels were given without points")
    if points is None and boxes is None and mask_input is None:
        raise UserInputError("Give at least one prompt: points (with labels), boxes or mask_input")
    point_array, label_array = _points(points, labels, image_size)
    box_array = _boxes(boxes, image_size)
    mask_array = _masks(mask_input, mask_size)
    counts = {
        name: len(value)
        for name, value in (("points", point_array), ("boxes", box_array), ("mask_input", mask_array))
        if value is not None
    }
    if len(set(counts.values())) > 1:
        described = ", ".join(f"{count} from {name}" for name, count in counts.items())
        raise UserInputError(
            f"Prompts disagree on the number of objects ({described}); give one entry per object to each"
        )
    return PromptBatch(point_array, label_array, box_array, mask_array)


def _points(points, labels, image_size):
    if points is None:
        return None, None
    if labels is None:
        raise UserInputError("points need labels: 1 for a foreground click, 0 for a background click, one per point")
    groups, label_groups = _as_groups(points, 2, "points"), _as_label_groups(labels)
    point_counts, label_counts = [len(group) for group in groups], [len(group) for group in label_groups]
    if point_counts != label_counts:
        raise UserInputError(
            f"points and labels do not match: {point_counts} points vs {label_counts} labels per object; give one "
            "label per point"
        )
    for group in groups:
        _check_inside(group, image_size, "point")
    # Padded here (with the processor's own -10) so a PromptBatch is plain arrays; the processor keeps -10 as padding.
    longest = max(len(group) for group in groups)
    padded_points = np.full((len(groups), longest, 2), POINT_PAD_LABEL, dtype=np.float32)
    padded_labels = np.full((len(groups), longest), POINT_PAD_LABEL, dtype=np.int64)
    for index, (group, label_group) in enumerate(zip(groups, label_groups)):
        padded_points[index, : len(group)] = group
        padded_labels[index, : len(group)] = label_group
    return padded_points, padded_labels


def _as_groups(points, width: int, name: str) -> list[np.ndarray]:
    """(P, 2) -> one group; (N, P, 2) or a list of (P_i, 2) -> N groups."""
    try:
        array = np.asarray(points, dtype=np.float64)
        groups = [array] if array.ndim == 2 else list(array) if array.ndim == 3 else None
    except ValueError:  # ragged: one list per object with different lengths
        groups = [np.asarray(group, dtype=np.float64) for group in points]
    if groups is None or not groups or any(g.ndim != 2 or g.shape[1] != width or len(g) == 0 for g in groups):
        raise UserInputError(
            f"{name} must be (P, 2) for one object or (N, P, 2) / a list of (P, 2) for N objects, "
            f"with at least one point each; got {np.shape(points) if not groups else 'ragged lists'}"
        )
    return groups


def _as_label_groups(labels) -> list[np.ndarray]:
    try:
        array = np.asarray(labels)
        if array.dtype == object:
            raise ValueError
        groups = [array] if array.ndim == 1 else list(array) if array.ndim == 2 else []
    except ValueError:
        groups = [np.asarray(group) for group in labels]
    checked = []
    for group in groups:
        group = np.asarray(group)
        # checked before any conversion: 0.7 or "1" must not pass as 0 or 1
        if group.ndim != 1 or group.dtype.kind not in "biuf" or not np.isin(group, (0, 1)).all():
            raise UserInputError(
                f"labels must be 1 (foreground) or 0 (background), one per point; got {group.tolist()}"
            )
        checked.append(group.astype(np.int64))
    return checked


def _boxes(boxes, image_size):
    if boxes is None:
        return None
    array = np.asarray(boxes, dtype=np.float64)
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0:
        raise UserInputError(f"boxes must be (4,) or (N, 4) as x1, y1, x2, y2 pixels; got shape {np.shape(boxes)}")
    _check_inside(array.reshape(-1, 2), image_size, "box corner")
    if (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
        raise UserInputError(f"boxes must be x1, y1, x2, y2 with x1 <= x2 and y1 <= y2; got {array.tolist()}")
    return array.astype(np.float32)


def _masks(mask_input, mask_size):
    if mask_input is None:
        return None
    array = np.asarray(mask_input, dtype=np.float32)
    array = array[None] if array.ndim == 2 else array
    if array.ndim != 3 or len(array) == 0 or tuple(array.shape[1:]) != tuple(mask_size):
        raise UserInputError(
            f"mask_input must be ({mask_size[0]}, {mask_size[1]}) or (N, {mask_size[0]}, {mask_size[1]}) mask "
            f"logits, as in an earlier result's data['low_res_logits']; got shape {np.shape(mask_input)}"
        )
    return array


def _check_inside(coordinates: np.ndarray, image_size, what: str) -> None:
    height, width = image_size
    if not np.isfinite(coordinates).all():
        raise UserInputError(f"Every {what} must have finite coordinates; got {coordinates.tolist()}")
    x, y = coordinates[:, 0], coordinates[:, 1]
    outside = (x < 0) | (x > width) | (y < 0) | (y > height)
    if outside.any():
        raise UserInputError(
            f"{what.capitalize()} {coordinates[outside][0].tolist()} lies outside the {width}x{height} image; "
            "coordinates are x, y in pixels of the original image"
        )

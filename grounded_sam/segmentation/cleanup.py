"""Mask clean-up: fill small holes, remove small specks, keep only the largest part.

SAM's masks are noisy: pinholes, specks of a few pixels beside the object, disjoint bits. The rules are Meta's SAM 2
predictor's (``sam2/utils/transforms.py``, ``postprocess_masks``): holes are 8-connected background regions of at
most ``max_hole_area`` pixels, filled first; then sprinkles (specks) are 8-connected foreground regions of at most
``max_sprinkle_area`` pixels, removed. A small background region touching the image border counts as a hole too, and
a mask made only of specks comes out empty. Meta applies them to the 256 x 256 low-resolution logits; here they work
on the full-resolution bool masks, so areas are pixels of the original image and the same rule serves any segmenter.
transformers' ``Sam2ImageProcessor.post_process_masks`` takes ``max_hole_area`` / ``max_sprinkle_area`` but ignores
them (a "TODO: add connected components kernel" in 5.24), hence the OpenCV connected components here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from grounded_sam.errors import UserInputError


def small_components(binary: np.ndarray, max_area: int) -> np.ndarray:
    """(H, W) bool: the pixels of the 8-connected components of ``binary`` with at most ``max_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.view(np.uint8), connectivity=8)
    small = np.zeros(count, dtype=bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area  # label 0 is the other side
    return small[labels] if small.any() else np.zeros(binary.shape, dtype=bool)


def fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """(H, W) bool mask with its background regions of at most ``max_area`` pixels filled (a copy)."""
    mask = np.asarray(mask, dtype=bool)
    if max_area <= 0:
        return mask.copy()
    window = _box(mask, margin=1)
    if window is None:  # the mask's box touches the image border (or there is no mask): label the whole image
        return mask | small_components(~mask, max_area)
    # Connected components cost time in proportion to the pixels labeled (~55 ms for a full-HD image), so only the
    # box around the mask is labeled. Its 1-pixel frame is background and joins all background outside the box.
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask[window]).view(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    outside = labels[0, 0]
    areas[outside] += mask.size - labels.size
    small = areas <= max_area
    small[0] = False  # the mask itself
    filled = mask.copy()
    filled[window] |= small[labels]
    return filled


def remove_specks(mask: np.ndarray, max_area: int) -> np.ndarray:
    """(H, W) bool mask without its parts of at most ``max_area`` pixels (a copy; it may come out empty)."""
    mask = np.asarray(mask, dtype=bool)
    cleaned = mask.copy()
    window = _box(mask)
    if max_area > 0 and window is not None:  # every part lies inside the mask's box
        cleaned[window] &= ~small_components(mask[window], max_area)
    return cleaned


def keep_largest_part(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask reduced to its largest 8-connected part (the first of equal ones); empty stays empty."""
    mask = np.asarray(mask, dtype=bool)
    window = _box(mask)
    if window is None:
        return mask.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask[window].view(np.uint8), connectivity=8)
    if count <= 2:
        return mask.copy()
    largest = np.zeros_like(mask)
    largest[window] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return largest


def _box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """Slices of the mask's bounding box grown by ``margin`` pixels; None for an empty mask, or when the grown box
    does not fit inside the image."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0] - margin, rows[-1] + 1 + margin, columns[0] - margin, columns[-1] + 1 + margin
    if top < 0 or left < 0 or bottom > mask.shape[0] or right > mask.shape[1]:
        return None
    return slice(top, bottom), slice(left, right)


@dataclass(frozen=True)
class MaskCleanup:
    """What to clean from every mask, in this order: holes, then specks, then every part but the largest.

    Args:
        max_hole_area: fill holes of at most this many pixels (0: off).
        max_sprinkle_area: remove specks of at most this many pixels (0: off).
        keep_largest_part: keep only each mask's largest connected part.
    """

    max_hole_area: int = 0
    max_sprinkle_area: int = 0
    keep_largest_part: bool = False

    def __post_init__(self):
        for name in ("max_hole_area", "max_sprinkle_area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise UserInputError(f"{name} must be a whole number of pixels >= 0 (0: off), got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "keep_largest_part", bool(self.keep_largest_part))

    @property
    def active(self) -> bool:
        return self.max_hole_area > 0 or self.max_sprinkle_area > 0 or self.keep_largest_part

    def settings(self) -> dict:
        """The options, JSON-ready (what a dataset stores)."""
        return {
            "max_hole_area": self.max_hole_area,
            "max_sprinkle_area": self.max_sprinkle_area,
            "keep_largest_part": self.keep_largest_part,
        }

    def clean(self, mask: np.ndarray) -> np.ndarray:
        """One (H, W) bool mask, cleaned (a copy)."""
        mask = remove_specks(fill_holes(mask, self.max_hole_area), self.max_sprinkle_area)
        return keep_largest_part(mask) if self.keep_largest_part else mask

    def apply(self, masks: np.ndarray) -> np.ndarray:
        """(n, H, W) bool masks, each cleaned; returned as they are when nothing is to be cleaned."""
        if not self.active or len(masks) == 0:
            return masks
        return np.stack([self.clean(mask) for mask in masks])

"""Batches over image files: loading that skips unreadable files, and a predictor that isolates failures.

Shared by labeling and ``grounded-sam predict``, so both skip and report the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv

from grounded_sam.images import InvalidImageError, load_image

MAX_CONSECUTIVE_MODEL_FAILURES = 8  # more in a row than this is a broken setup, not a few bad images


def load_batch(
    root: Path, batch: Sequence[PurePosixPath], skipped: list, max_pixels: int | None = None
) -> list[tuple[PurePosixPath, np.ndarray]]:
    """Loads ``root / source`` for each source as (source, (H, W, 3) uint8 RGB); unreadable ones, and images over
    ``max_pixels``, go to ``skipped`` as ``{"path", "reason"}``."""
    loaded = []
    for source in batch:
        try:
            loaded.append((source, load_image(root / source, max_pixels)))
        except (InvalidImageError, OSError) as error:  # OSError: the file vanished or cannot be opened
            skipped.append({"path": str(source), "reason": str(error)})
    return loaded


class IsolatingPredictor:
    """Runs a batch through the model; if the batch fails, retries its images one by one and skips those that fail
    alone, so one image the model cannot take does not end the run. Many failures in a row re-raise."""

    def __init__(self, model, skipped: list):
        self.model, self.skipped, self.failures_in_a_row = model, skipped, 0

    def __call__(self, loaded: list) -> list[tuple[tuple[PurePosixPath, np.ndarray], sv.Detections]]:
        if len(loaded) > 1:
            try:
                results = list(zip(loaded, self.model.predict_arrays([image for _, image in loaded])))
                self.failures_in_a_row = 0
                return results
            except Exception:  # noqa: BLE001 -- retried per image below, where the failing one is found and reported
                pass
        return [result for item in loaded for result in self._alone(item)]

    def _alone(self, item) -> list:
        source, image = item
        try:
            results = [(item, self.model.predict_arrays([image])[0])]
        except Exception as error:
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= MAX_CONSECUTIVE_MODEL_FAILURES:
                raise RuntimeError(
                    f"The model failed on {self.failures_in_a_row} images in a row (last: {source}); this looks like "
                    "a setup problem, not bad images. Finished images are kept; rerun to continue once fixed"
                ) from error
            self.skipped.append({"path": str(source), "reason": f"model failed: {type(error).__name__}: {error}"})
            return []
        self.failures_in_a_row = 0
        return results

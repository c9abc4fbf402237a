"""The seam between the pipeline and a detector: what any detector must do, and what it says it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import supervision as sv


@runtime_checkable
class Detector(Protocol):
    """Anything that finds an ontology's prompts in a batch of images.

    ``detect(images)`` takes (H, W, 3) uint8 RGB arrays and returns one ``sv.Detections`` per image: xyxy float32
    pixels of that image, confidence in [0, 1], class_id into the ontology's ``classes()``, and
    data["class_name"] and data["prompt"]. One model call per batch is the rule; an image with nothing found gets an
    empty Detections. Optionally, ``settings()`` returns what its results depend on (JSON-ready), which a labeled
    dataset stores so that resuming with another detector is refused.
    """

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]: ...


def part_settings(part) -> dict:
    """What a pipeline part (detector or segmenter) says it is: its ``settings()``, or, for a part without one, its
    class, so that a dataset labeled with one part is not resumed with another."""
    settings = getattr(part, "settings", None)
    if callable(settings):
        return dict(settings())
    kind = type(part)
    return {"type": f"{kind.__module__}.{kind.__qualname__}"}

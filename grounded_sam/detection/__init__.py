"""Detection: text prompts -> boxes. The :class:`Detector` protocol and Florence-2 behind it."""

from grounded_sam.detection.base import Detector, part_settings
from grounded_sam.detection.florence2 import (
    OBJECT_DETECTION,
    OPEN_VOCABULARY,
    PHRASE_GROUNDING,
    TASKS,
    Florence2Detector,
)

__all__ = [
    "Detector",
    "Florence2Detector",
    "OBJECT_DETECTION",
    "OPEN_VOCABULARY",
    "PHRASE_GROUNDING",
    "TASKS",
    "part_settings",
]

"""Detection: text prompts -> boxes. The :class:`Detector` protocol; Florence-2, Grounding DINO and OWLv2 behind it."""

from grounded_sam.detection.base import Detector, part_settings
from grounded_sam.detection.florence2 import (
    OBJECT_DETECTION,
    OPEN_VOCABULARY,
    PHRASE_GROUNDING,
    TASKS,
    Florence2Detector,
)
from grounded_sam.detection.grounding_dino import GroundingDinoDetector
from grounded_sam.detection.owlv2 import Owlv2Detector

__all__ = [
    "Detector",
    "Florence2Detector",
    "GroundingDinoDetector",
    "OBJECT_DETECTION",
    "OPEN_VOCABULARY",
    "Owlv2Detector",
    "PHRASE_GROUNDING",
    "TASKS",
    "part_settings",
]

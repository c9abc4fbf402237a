"""grounded-sam: text-grounded segmentation and auto-labeling with Florence-2 and SAM 2.

The public names below load on first use, so that ``import grounded_sam`` (and ``grounded-sam --help``) stays fast:
torch and transformers are imported only when a name that needs them is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grounded_sam.lazy import lazy_exports

__version__ = "0.1.0"

_WHERE = {
    "CaptionOntology": "grounded_sam.ontology",
    "Detector": "grounded_sam.detection",
    "Florence2Detector": "grounded_sam.detection",
    "GroundedSAM2": "grounded_sam.pipeline",
    "GroundingDinoDetector": "grounded_sam.detection",
    "GroundedSAMError": "grounded_sam.errors",
    "ImageState": "grounded_sam.segmentation",
    "InvalidImageError": "grounded_sam.errors",
    "InvalidVideoError": "grounded_sam.errors",
    "LabelOptions": "grounded_sam.labeling",
    "LabelReport": "grounded_sam.labeling",
    "LabeledDataset": "grounded_sam.labeling",
    "ModelNotAvailableError": "grounded_sam.errors",
    "OutputFolderError": "grounded_sam.errors",
    "Owlv2Detector": "grounded_sam.detection",
    "OutputWriteError": "grounded_sam.errors",
    "PRESETS": "grounded_sam.models",
    "PipelineSpec": "grounded_sam.pipeline",
    "Sam2Segmenter": "grounded_sam.segmentation",
    "Sam3Backend": "grounded_sam.segmentation",
    "Segmenter": "grounded_sam.segmentation",
    "UserInputError": "grounded_sam.errors",
    "VideoSegmenter": "grounded_sam.segmentation.video",
    "annotate": "grounded_sam.annotate",
    "label_folder": "grounded_sam.labeling",
    "load_image": "grounded_sam.images",
    "plot": "grounded_sam.annotate",
    "show_app": "grounded_sam.apps.web",
    "write_review": "grounded_sam.apps.review",
}
__all__ = [*_WHERE, "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)


if TYPE_CHECKING:
    from grounded_sam.annotate import annotate, plot
    from grounded_sam.apps.review import write_review
    from grounded_sam.apps.web import show_app
    from grounded_sam.detection import Detector, Florence2Detector, GroundingDinoDetector, Owlv2Detector
    from grounded_sam.errors import (
        GroundedSAMError,
        InvalidImageError,
        InvalidVideoError,
        ModelNotAvailableError,
        OutputFolderError,
        OutputWriteError,
        UserInputError,
    )
    from grounded_sam.images import load_image
    from grounded_sam.labeling import LabeledDataset, LabelOptions, LabelReport, label_folder
    from grounded_sam.models import PRESETS
    from grounded_sam.ontology import CaptionOntology
    from grounded_sam.pipeline import GroundedSAM2, PipelineSpec
    from grounded_sam.segmentation import ImageState, Sam2Segmenter, Sam3Backend, Segmenter
    from grounded_sam.segmentation.video import VideoSegmenter

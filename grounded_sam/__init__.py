"""grounded-sam: text-grounded segmentation and auto-labeling with Florence-2 and SAM 2."""

from .annotate import annotate, plot
from .dataset_writer import OutputFolderError, OutputWriteError
from .detector import Florence2Detector
from .images import InvalidImageError, load_image
from .interactive import ImageState, Segmenter
from .labeled_dataset import LabeledDataset
from .labeling import LabelReport, label_folder
from .models import PRESETS, ModelNotAvailableError
from .ontology import CaptionOntology
from .pipeline import GroundedSAM2
from .review import write_review
from .segmenter import Sam2Segmenter

__version__ = "0.1.0"

__all__ = [
    "CaptionOntology",
    "Florence2Detector",
    "GroundedSAM2",
    "ImageState",
    "InvalidImageError",
    "LabelReport",
    "LabeledDataset",
    "ModelNotAvailableError",
    "OutputFolderError",
    "OutputWriteError",
    "PRESETS",
    "Sam2Segmenter",
    "Segmenter",
    "label_folder",
    "load_image",
    "annotate",
    "plot",
    "write_review",
    "__version__",
]

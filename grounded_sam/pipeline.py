"""GroundedSAM2: text prompts -> Florence-2 boxes -> SAM 2 masks, batched, as supervision.Detections."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np
import supervision as sv
import torch

from .batching import chunks
from .detector import PHRASE_GROUNDING, Florence2Detector, check_generation_options
from .device import resolve_autocast_dtype, resolve_device
from .engine import compile_decoding, compile_encoders
from .images import ImageInput, load_image
from .interactive import Segmenter
from .labeled_dataset import LabeledDataset
from .labeling import label_folder
from .errors import UserInputError
from .models import load_florence2, load_sam2, resolve_preset
from .ontology import CaptionOntology
from .segmenter import Sam2Segmenter


class GroundedSAM2:
    """Text-grounded segmentation: finds the ontology's prompts with Florence-2 and segments each box with SAM 2.

    Args:
        ontology: prompts to look for and the class each one labels.
        florence: Florence-2 hub id or local directory; None takes the preset's.
        sam: SAM 2 hub id, local directory, or Meta checkpoint file (``sam2.1_hiera_tiny.pt``...); None takes the
            preset's.
        preset: ``"default"`` (Florence-2-large + SAM 2.1 base-plus), ``"fast"`` (base + tiny) or ``"accurate"``
            (large + large).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (bfloat16 autocast on CUDA, float32 elsewhere), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        task: ``"phrase_grounding"`` (one caption with every prompt) or ``"open_vocabulary"`` (one query per prompt).
        min_confidence: boxes below this confidence are dropped before segmentation.
        nms_threshold: IoU above which overlapping boxes are suppressed (supervision's NMS); None turns NMS off.
        class_agnostic_nms: suppress across classes too (default: only boxes of the same class).
        multimask_output: let SAM propose three masks per box and keep the best-scoring one.
        max_new_tokens: Florence-2 generation budget per sequence.
        num_beams: 1 for greedy decoding, more for beam search.
        sam_size: size of a Meta checkpoint file (tiny, small, base_plus, large); inferred from the file when None.
        compile: ``torch.compile`` both image encoders and Florence-2's greedy decoding
            (:func:`grounded_sam.engine.compile_encoders`, :func:`grounded_sam.engine.compile_decoding`): worth it
            for long labeling runs on a GPU; the first batch of each size pays the compilation.
    """

    def __init__(
        self,
        ontology: CaptionOntology,
        florence: str | os.PathLike | None = None,
        sam: str | os.PathLike | None = None,
        preset: str = "default",
        device: str | torch.device = "auto",
        dtype: str = "auto",
        task: str = PHRASE_GROUNDING,
        min_confidence: float = 0.0,
        nms_threshold: float | None = 0.7,
        class_agnostic_nms: bool = False,
        multimask_output: bool = False,
        max_new_tokens: int = 1024,
        num_beams: int = 1,
        sam_size: str | None = None,
        compile: bool = False,
    ):
        if not isinstance(ontology, CaptionOntology):
            raise UserInputError(
                f"ontology must be a CaptionOntology, got {type(ontology).__name__}; "
                "wrap a dict with CaptionOntology({'a dog': 'dog'})"
            )
        self._settings = pipeline_settings(
            florence, sam, preset, device, dtype, task, min_confidence, nms_threshold, class_agnostic_nms,
            multimask_output, max_new_tokens, num_beams,
        )
        chosen = resolve_preset(preset)
        self.ontology = ontology
        self.device = resolve_device(device)
        autocast_dtype = resolve_autocast_dtype(dtype, self.device)
        florence_model, florence_processor = load_florence2(florence or chosen.florence, self.device)
        sam_model, sam_processor = load_sam2(sam or chosen.sam, self.device, size=sam_size)
        self.detector = Florence2Detector(
            florence_model, florence_processor, ontology, task=task, max_new_tokens=max_new_tokens,
            num_beams=num_beams, autocast_dtype=autocast_dtype,
        )
        self.detector.captions()  # a prompt too long for Florence-2 fails here, once, not on every image
        self.segmenter = Sam2Segmenter(sam_model, sam_processor, multimask_output, autocast_dtype)
        if compile:
            compile_encoders(self)
            compile_decoding(self.detector)
        self.min_confidence = min_confidence
        self.nms_threshold = nms_threshold
        self.class_agnostic_nms = class_agnostic_nms

    def settings(self) -> dict:
        """The models (hub id or local path) and options the detections depend on; a labeled dataset stores them so
        that resuming it with other settings is refused."""
        return dict(self._settings)

    def predict(self, image: ImageInput) -> sv.Detections:
        """Segments the ontology's prompts in one image.

        Args:
            image: a path (EXIF orientation applied), a PIL image, or an (H, W, 3) uint8 RGB array.

        Returns:
            ``sv.Detections`` with xyxy (n, 4) float32 pixels, mask (n, H, W) bool, confidence (n,) float32 in
            [0, 1], class_id (n,) int into ``ontology.classes()``, and data["class_name"], data["prompt"],
            data["mask_score"]. No detection gives an empty Detections with mask shape (0, H, W).
        """
        return self.predict_batch([image], batch_size=1)[0]

    def predict_batch(self, images: Sequence[ImageInput], batch_size: int = 8) -> list[sv.Detections]:
        """Segments a list of images, ``batch_size`` at a time; returns one ``sv.Detections`` per image, in order.

        Images are read one batch at a time. A bad input raises (``FileNotFoundError`` or ``InvalidImageError``)
        naming the input; a job that must go on past bad files loads each with :func:`load_image` first.
        """
        if isinstance(images, (str, os.PathLike, np.ndarray)):
            raise ValueError("predict_batch takes a list of images; use predict() for a single image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results: list[sv.Detections] = []
        for batch in chunks(images, batch_size):
            results += self.predict_arrays([load_image(image) for image in batch])
        return results

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Runs one batch of already-loaded (H, W, 3) uint8 RGB arrays through detection, filtering and segmentation."""
        boxes = [self._filter(found) for found in self.detector.detect(images)]
        return self.segmenter.segment(images, boxes)

    def refine(
        self, image: ImageInput, detections: sv.Detections, points: Mapping[int, Sequence], labels: Mapping[int, Sequence]
    ) -> sv.Detections:
        """Fixes wrong masks with clicks: each chosen detection's box plus its clicks goes through SAM 2 again.

        Args:
            image: the image the detections belong to.
            detections: a result of ``predict`` for that image.
            points: detection index -> its clicks, x, y pixels (e.g. ``{2: [[120, 80]]}``).
            labels: detection index -> one label per click, 1 "part of the object", 0 "not part of it".

        Returns:
            a copy of ``detections`` where the chosen rows have the new mask and data["mask_score"]; boxes, classes
            and confidences are kept. All chosen rows are decoded in one mask-decoder call.
        """
        if set(points) != set(labels):
            raise ValueError(f"points and labels must name the same detections, got {sorted(points)} and {sorted(labels)}")
        chosen = sorted(points)
        if any(not 0 <= index < len(detections) for index in chosen):
            raise ValueError(f"detection indices must be in [0, {len(detections)}), got {chosen}")
        refined = copy.deepcopy(detections)
        if not chosen:
            return refined
        image = load_image(image)
        height, width = image.shape[:2]
        if refined.mask is None:  # box-only detections: the refined rows get masks, the others empty ones
            refined.mask = np.zeros((len(refined), height, width), dtype=bool)
        if "mask_score" not in refined.data:
            refined.data["mask_score"] = np.zeros(len(refined), dtype=np.float32)
        boxes = np.clip(detections.xyxy[chosen], 0, [width, height, width, height])
        segmenter = Segmenter.from_model(self.segmenter.model, self.segmenter.processor, self.segmenter.autocast_dtype)
        result = segmenter.predict(
            segmenter.set_image(image), boxes=boxes,
            points=[points[index] for index in chosen], labels=[labels[index] for index in chosen],
        )
        refined.mask[chosen] = result.mask
        refined.data["mask_score"][chosen] = result.data["mask_score"]
        return refined

    def label(
        self,
        input_folder: str | os.PathLike,
        extension: str | Sequence[str] | None = None,
        output_folder: str | os.PathLike | None = None,
        **options,
    ) -> LabeledDataset:
        """Labels a folder of images into a YOLO-seg + COCO dataset; rerunning the same call resumes it.

        Keeps autodistill's signature (``label(input_folder, extension=".jpg", output_folder=None)``);
        ``extension=None`` takes every common image format. ``output_folder`` defaults to
        ``<input_folder>_labeled``. Keyword options (``recursive``, ``split``, ``seed``, ``formats``,
        ``yolo_boxes_only``, ``coco_segmentation``, ``polygon_approximation``, ``keep_empty``,
        ``record_confidence``, ``overwrite``, ``link``, ``batch_size``, ``workers``, ``progress``, ``verbose``) are those of
        :func:`grounded_sam.labeling.label_folder` and README "Auto-label a folder".

        Returns:
            the dataset written, every split together, as a ``supervision.DetectionDataset`` that reads masks from
            disk when accessed; its ``report`` attribute holds the run's ``LabelReport``.
        """
        report = label_folder(self, input_folder, extension, output_folder, **options)
        return LabeledDataset(report.output_folder, report=report)

    def _filter(self, detections: sv.Detections) -> sv.Detections:
        detections = detections[detections.confidence >= self.min_confidence]
        if self.nms_threshold is not None and len(detections) > 1:
            detections = detections.with_nms(threshold=self.nms_threshold, class_agnostic=self.class_agnostic_nms)
        return detections


def pipeline_settings(
    florence=None, sam=None, preset: str = "default", device="auto", dtype: str = "auto", task: str = PHRASE_GROUNDING,
    min_confidence: float = 0.0, nms_threshold: float | None = 0.7, class_agnostic_nms: bool = False,
    multimask_output: bool = False, max_new_tokens: int = 1024, num_beams: int = 1,
) -> dict:
    """What ``GroundedSAM2(...)`` with these arguments would give as ``settings()``, computed without loading a model
    (so that a labeling run can be checked against its dataset first). Raises for invalid options."""
    if not 0.0 <= min_confidence <= 1.0:
        raise UserInputError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if nms_threshold is not None and not 0.0 < nms_threshold <= 1.0:
        raise UserInputError(f"nms_threshold must be in (0, 1] or None, got {nms_threshold}")
    check_generation_options(task, max_new_tokens, num_beams)
    chosen = resolve_preset(preset)
    precision = resolve_autocast_dtype(dtype, resolve_device(device))
    return {
        "florence": source_identity(florence or chosen.florence), "sam": source_identity(sam or chosen.sam),
        "task": task, "min_confidence": min_confidence, "nms_threshold": nms_threshold,
        "class_agnostic_nms": class_agnostic_nms, "multimask_output": multimask_output,
        "max_new_tokens": max_new_tokens, "num_beams": num_beams,
        "precision": "float32" if precision is None else str(precision).removeprefix("torch."),
    }


def source_identity(source: str | os.PathLike) -> str:
    """A model source as a dataset records it: a hub id as given, a local folder or file as its absolute path (the
    same from any working directory)."""
    text = str(source)
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text

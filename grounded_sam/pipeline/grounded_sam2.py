"""GroundedSAM2: text prompts -> detector boxes -> SAM 2 masks, batched, as supervision.Detections."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import supervision as sv
import torch

from grounded_sam.detection.base import part_settings
from grounded_sam.detection.florence2 import PHRASE_GROUNDING, Florence2Detector
from grounded_sam.device import chunks, precision_name, resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS, ImageInput, load_image
from grounded_sam.models.hub import load_florence2, load_sam2, require_available
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline.spec import PipelineSpec, pipeline_settings
from grounded_sam.segmentation.segmenter import Segmenter


class GroundedSAM2:
    """Text-grounded segmentation: finds the ontology's prompts with a detector (Florence-2 by default) and segments
    each box with SAM 2.

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
        compile: ``torch.compile`` the parts (both image encoders, and Florence-2's greedy decoding with a static KV
            cache): worth it for long labeling runs on a GPU; the first batch of each size pays the compilation.
        detector: a built detector to use instead of loading Florence-2: any object with
            ``detect(images) -> list[sv.Detections]`` (:class:`~grounded_sam.Detector`); the Florence-2 options
            are then not used.
        segmenter: a built segmenter to use instead of loading SAM 2: any object with
            ``segment(images, detections) -> list[sv.Detections]``, such as :class:`~grounded_sam.Segmenter`.
        video_segmenter: the :class:`~grounded_sam.VideoSegmenter` :meth:`track` uses; by default it is loaded on
            the first ``track`` call from the same SAM 2 source. ``segmenter=video.image_segmenter(),
            video_segmenter=video`` holds one SAM 2 in memory for images and video.

    ``spec`` holds what the pipeline was built from (a :class:`PipelineSpec`) when it loaded both models itself, else
    None.
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
        *,
        detector=None,
        segmenter=None,
        video_segmenter=None,
    ):
        if not isinstance(ontology, CaptionOntology):
            raise UserInputError(
                f"ontology must be a CaptionOntology, got {type(ontology).__name__}; "
                "wrap a dict with CaptionOntology({'a dog': 'dog'})"
            )
        if detector is not None and florence is not None:
            raise UserInputError("Give either detector=... (a built detector) or florence=... (a model to load)")
        if segmenter is not None and (sam is not None or sam_size is not None):
            raise UserInputError("Give either segmenter=... (a built segmenter) or sam=... (a model to load)")
        spec = PipelineSpec(
            ontology.to_dict(),
            None if florence is None else str(florence),
            None if sam is None else str(sam),
            preset,
            str(device),
            dtype,
            task,
            min_confidence,
            nms_threshold,
            class_agnostic_nms,
            multimask_output,
            max_new_tokens,
            num_beams,
            sam_size,
            compile,
        )
        self.ontology = ontology
        self.min_confidence, self.nms_threshold, self.class_agnostic_nms = (
            min_confidence,
            nms_threshold,
            class_agnostic_nms,
        )
        self.spec = spec if detector is None and segmenter is None else None
        self.detector, self.segmenter, self.video_segmenter = detector, segmenter, video_segmenter
        if detector is None or segmenter is None:
            resolved = resolve_device(device)
            autocast_dtype = resolve_autocast_dtype(dtype, resolved)
            needed = [(spec.florence_source, "Florence-2", "florence")] * (detector is None)
            require_available(needed + [(spec.sam_source, "SAM 2", "sam")] * (segmenter is None))
            if detector is None:
                self.detector = Florence2Detector(
                    *load_florence2(spec.florence_source, resolved),
                    ontology,
                    task=task,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    autocast_dtype=autocast_dtype,
                )
            if segmenter is None:
                self.segmenter = Segmenter.from_model(
                    *load_sam2(spec.sam_source, resolved, size=sam_size), autocast_dtype, multimask_output
                )
        if compile:
            for part in (self.detector, self.segmenter):
                if callable(getattr(part, "compile", None)):
                    part.compile()

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> GroundedSAM2:
        """Builds the pipeline a :class:`PipelineSpec` describes."""
        return cls(CaptionOntology(spec.ontology), **spec.options())

    @property
    def device(self) -> torch.device:
        """Where the segmenter runs (the CPU for parts that do not say)."""
        return getattr(self.segmenter, "device", None) or getattr(self.detector, "device", torch.device("cpu"))

    def settings(self) -> dict:
        """What the detections depend on: each part's settings (model and options) and the filtering in between. A
        labeled dataset stores this, so that resuming it with other settings is refused."""
        return pipeline_settings(
            part_settings(self.detector),
            part_settings(self.segmenter),
            self.min_confidence,
            self.nms_threshold,
            self.class_agnostic_nms,
        )

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
            raise UserInputError("predict_batch takes a list of images; use predict() for a single image")
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        results: list[sv.Detections] = []
        for batch in chunks(images, batch_size):
            results += self.predict_arrays([load_image(image) for image in batch])
        return results

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Runs one batch of already-loaded (H, W, 3) uint8 RGB arrays through detection, filtering and segmentation."""
        boxes = [self._filter(found) for found in self.detector.detect(images)]
        return self.segmenter.segment(images, boxes)

    def track(
        self,
        video,
        detect_every: int = 10,
        iou_threshold: float = 0.5,
        patience: int = 30,
        offload: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> Iterator[tuple[int, sv.Detections]]:
        """Tracks the ontology's prompts through a video: detection on the first frame and every ``detect_every``
        frames, SAM 2's video model with its memory on every frame (:mod:`grounded_sam.pipeline.tracking`).

        Args:
            video: a video file, a folder of frames, or a list or iterator of (H, W, 3) uint8 RGB arrays; decoded
                one frame at a time.
            detect_every: frames between detections; a detection that overlaps no tracked object starts a new one.
            iou_threshold: mask IoU at or above which a detection is the object already tracked there.
            patience: frames an object may be absent (SAM 2's object score <= 0) in a row before it ends.
            offload: keep SAM 2's state on the CPU (long videos on a small GPU).
            max_pixels: refuse frames with more pixels than this (None: no limit).

        Returns:
            an iterator of ``(frame_index, sv.Detections)`` for every frame that decodes, in order: mask (n, H, W)
            bool, xyxy (n, 4) float32 the mask's box, tracker_id (n,) the object's id (from 1, never reused),
            confidence (n,) float32 SAM 2's object score as a probability, class_id, data["class_name"] and
            data["prompt"] of the detection that started the object, data["object_score"] the score logit.
        """
        from grounded_sam.pipeline.tracking import TrackingOptions, track_by_text

        options = TrackingOptions(detect_every, iou_threshold, patience, offload)

        def detect(images):
            return [self._filter(found) for found in self.detector.detect(images)]

        return track_by_text(detect, self._video_segmenter(), video, options, max_pixels)

    def _video_segmenter(self):
        if self.video_segmenter is None:
            from grounded_sam.segmentation.video import VideoSegmenter

            if self.spec is not None:
                source, size = self.spec.sam_source, self.spec.sam_size
            elif getattr(getattr(self.segmenter, "model", None), "config", None) is not None:
                source, size = self.segmenter.model.config.name_or_path, None
            else:
                raise UserInputError(
                    "track() needs SAM 2's video model: pass GroundedSAM2(..., video_segmenter=VideoSegmenter(...))"
                )
            precision = precision_name(getattr(self.segmenter, "autocast_dtype", None))
            self.video_segmenter = VideoSegmenter(sam=source, device=self.device, dtype=precision, sam_size=size)
        return self.video_segmenter

    def refine(
        self,
        image: ImageInput,
        detections: sv.Detections,
        points: Mapping[int, Sequence],
        labels: Mapping[int, Sequence],
    ) -> sv.Detections:
        """Fixes wrong masks with clicks (the pipeline's own SAM 2): see :meth:`Segmenter.refine`."""
        return self.segmenter.refine(image, detections, points, labels)

    def label(
        self,
        input_folder: str | os.PathLike,
        extension: str | Sequence[str] | None = None,
        output_folder: str | os.PathLike | None = None,
        **options,
    ):
        """Labels a folder of images into a YOLO-seg + COCO dataset; rerunning the same call resumes it.

        Keeps autodistill's signature (``label(input_folder, extension=".jpg", output_folder=None)``);
        ``extension=None`` takes every common image format. ``output_folder`` defaults to
        ``<input_folder>_labeled``. The keyword options are the fields of :class:`grounded_sam.LabelOptions`
        (README "Auto-label a folder").

        Returns:
            the dataset written, every split together, as a ``supervision.DetectionDataset`` that reads masks from
            disk when accessed; its ``report`` attribute holds the run's ``LabelReport``.
        """
        from grounded_sam.labeling.dataset import LabeledDataset
        from grounded_sam.labeling.job import label_folder

        report = label_folder(self, input_folder, extension, output_folder, **options)
        return LabeledDataset(report.output_folder, report=report)

    def _filter(self, detections: sv.Detections) -> sv.Detections:
        if detections.confidence is not None:
            detections = detections[detections.confidence >= self.min_confidence]
        if self.nms_threshold is not None and len(detections) > 1:
            detections = detections.with_nms(threshold=self.nms_threshold, class_agnostic=self.class_agnostic_nms)
        return detections

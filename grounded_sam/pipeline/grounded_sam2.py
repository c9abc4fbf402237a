"""GroundedSAM2: text prompts -> detector boxes -> SAM 2 masks (or SAM 3 alone), batched, as supervision.Detections."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import supervision as sv
import torch

from grounded_sam.detection.base import part_settings
from grounded_sam.detection.florence2 import PHRASE_GROUNDING, Florence2Detector
from grounded_sam.detection.grounding_dino import GroundingDinoDetector
from grounded_sam.detection.owlv2 import Owlv2Detector
from grounded_sam.device import chunks, precision_name, resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS, ImageInput, load_image
from grounded_sam.models.hub import (
    load_florence2,
    load_grounding_dino,
    load_owlv2,
    load_sam2,
    load_sam3,
    require_available,
)
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline.spec import PipelineSpec, pipeline_settings
from grounded_sam.segmentation.sam3 import Sam3Backend
from grounded_sam.segmentation.segmenter import Segmenter


class GroundedSAM2:
    """Text-grounded segmentation: finds the ontology's prompts with a detector (Florence-2 by default; Grounding DINO
    or OWLv2) and segments each box with SAM 2; or, with ``backend="sam3"``, finds and segments them with SAM 3 alone.

    Args:
        ontology: prompts to look for and the class each one labels.
        florence: Florence-2 hub id or local directory; None takes the preset's.
        sam: SAM 2 hub id, local directory, or Meta checkpoint file (``sam2.1_hiera_tiny.pt``...); None takes the
            preset's. With ``backend="sam3"``: SAM 3's hub id or directory (None: ``facebook/sam3``).
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
        compile: ``torch.compile`` the parts that have a ``compile()`` (both image encoders, and Florence-2's greedy
            decoding with a static KV cache; the other detectors run eager): worth it for long labeling runs on a GPU;
            the first batch of each size pays the compilation.
        detector: which detector to load: ``"florence2"`` (the default), ``"grounding-dino"`` or ``"owlv2"``; or a
            built detector to use as is: any object with ``detect(images) -> list[sv.Detections]``
            (:class:`~grounded_sam.Detector`), for which nothing is loaded and the detector options are not used.
        max_hole_area: fill holes of at most this many pixels (of the original image) in every mask; 0: off.
        max_sprinkle_area: then remove specks (parts) of at most this many pixels; 0: off. Meta's SAM 2 rules, see
            :mod:`grounded_sam.segmentation.cleanup`.
        keep_largest_part: then keep only the largest connected part of every mask.
        segmenter: a built segmenter to use instead of loading SAM 2: any object with
            ``segment(images, detections) -> list[sv.Detections]``, such as :class:`~grounded_sam.Segmenter`.
        detector_model: the detector's hub id or local directory; None takes Florence-2's from ``florence`` or the
            preset, ``IDEA-Research/grounding-dino-tiny`` or ``google/owlv2-base-patch16-ensemble``.
        box_threshold: Grounding DINO, OWLv2 and SAM 3 keep boxes scoring above this (None: 0.35, 0.1 and 0.5).
        text_threshold: Grounding DINO also needs the box's best prompt token above this (None: 0.25).
        backend: ``"grounded-sam2"`` (a detector, then SAM 2 on its boxes) or ``"sam3"`` (SAM 3 finds and segments
            the prompts in one model; its weights are gated).
        video_segmenter: the :class:`~grounded_sam.VideoSegmenter` :meth:`track` uses; by default it is loaded on
            the first ``track`` call from the same SAM 2 source. ``segmenter=video.image_segmenter(),
            video_segmenter=video`` holds one SAM 2 in memory for images and video.

    ``spec`` holds what the pipeline was built from (a :class:`PipelineSpec`) when it loaded its models itself, else
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
        max_hole_area: int = 0,
        max_sprinkle_area: int = 0,
        keep_largest_part: bool = False,
        *,
        detector=None,
        segmenter=None,
        detector_model: str | os.PathLike | None = None,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        backend: str = "grounded-sam2",
        video_segmenter=None,
    ):
        if not isinstance(ontology, CaptionOntology):
            raise UserInputError(
                f"ontology must be a CaptionOntology, got {type(ontology).__name__}; "
                "wrap a dict with CaptionOntology({'a dog': 'dog'})"
            )
        built_detector = None if detector is None or isinstance(detector, str) else detector
        if built_detector is not None and (florence, detector_model, box_threshold, text_threshold) != (None,) * 4:
            raise UserInputError(
                "Give either detector=... (a built detector) or florence=... / detector_model=... and thresholds "
                "(a model to load)"
            )
        if segmenter is not None and (sam is not None or sam_size is not None or backend == "sam3"):
            raise UserInputError(
                "Give either segmenter=... (a built segmenter) or sam=... (a model to load); backend='sam3' has none"
            )
        spec = PipelineSpec(
            ontology.to_dict(),
            florence=None if florence is None else str(florence),
            sam=None if sam is None else str(sam),
            preset=preset,
            device=str(device),
            dtype=dtype,
            task=task,
            min_confidence=min_confidence,
            nms_threshold=nms_threshold,
            class_agnostic_nms=class_agnostic_nms,
            multimask_output=multimask_output,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            sam_size=sam_size,
            compile=compile,
            detector=detector if isinstance(detector, str) else "florence2",
            detector_model=None if detector_model is None else str(detector_model),
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            backend=backend,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
            keep_largest_part=keep_largest_part,
        )
        if segmenter is not None and spec.mask_cleanup.active:
            raise UserInputError(
                "Mask clean-up options apply to the SAM 2 that GroundedSAM2 loads; with segmenter=..., give them to "
                "it: Segmenter(..., max_hole_area=...)"
            )
        self.ontology = ontology
        self.min_confidence, self.nms_threshold, self.class_agnostic_nms = (
            min_confidence,
            nms_threshold,
            class_agnostic_nms,
        )
        self.spec = spec if built_detector is None and segmenter is None else None
        self.detector, self.segmenter = self._build_parts(spec, built_detector, segmenter)
        self.video_segmenter = video_segmenter
        if compile:
            for part in (self.detector, self.segmenter):
                if callable(getattr(part, "compile", None)):
                    part.compile()

    def _build_parts(self, spec: PipelineSpec, detector, segmenter):
        """(detector, segmenter): those given, and the ones ``spec`` names loaded, every model checked available
        first. With the SAM 3 backend the segmenter is None (SAM 3's detections carry their masks)."""
        load_segmenter = segmenter is None and spec.backend == "grounded-sam2"
        if detector is not None and not load_segmenter:
            return detector, segmenter
        device = resolve_device(spec.device)
        autocast_dtype = resolve_autocast_dtype(spec.dtype, device)
        sources = spec.model_sources()  # the detector's, then SAM 2's (none with the SAM 3 backend)
        require_available(sources[:1] * (detector is None) + sources[1:] * load_segmenter)
        if detector is None:
            detector = _load_detector(spec, self.ontology, device, autocast_dtype)
        if load_segmenter:
            model, processor = load_sam2(spec.sam_source, device, size=spec.sam_size)
            segmenter = Segmenter.from_model(
                model,
                processor,
                autocast_dtype,
                spec.multimask_output,
                spec.max_hole_area,
                spec.max_sprinkle_area,
                spec.keep_largest_part,
            )
        return detector, segmenter

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
            None if self.segmenter is None else part_settings(self.segmenter),
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
        """Runs one batch of already-loaded (H, W, 3) uint8 RGB arrays through detection, filtering and segmentation
        (none with the SAM 3 backend, whose detections come with masks)."""
        found = [self._filter(detections) for detections in self.detector.detect(images)]
        return found if self.segmenter is None else self.segmenter.segment(images, found)

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
        if self.video_segmenter is None and self.spec is not None and self.spec.backend == "sam3":
            raise UserInputError("track() follows objects with SAM 2's video model: use backend='grounded-sam2'")
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
        if self.segmenter is None:
            raise UserInputError("refine needs SAM 2: build the pipeline with backend='grounded-sam2'")
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
        return filter_boxes(detections, self.min_confidence, self.nms_threshold, self.class_agnostic_nms)


def filter_boxes(
    detections: sv.Detections,
    min_confidence: float = 0.0,
    nms_threshold: float | None = 0.7,
    class_agnostic_nms: bool = False,
) -> sv.Detections:
    """The boxes a pipeline keeps between detection and segmentation: confidence at ``min_confidence`` or above, then
    supervision's NMS (``nms_threshold`` None: no NMS)."""
    if detections.confidence is not None:
        detections = detections[detections.confidence >= min_confidence]
    if nms_threshold is not None and len(detections) > 1:
        detections = detections.with_nms(threshold=nms_threshold, class_agnostic=class_agnostic_nms)
    return detections


def _load_detector(spec: PipelineSpec, ontology: CaptionOntology, device: torch.device, autocast_dtype):
    """The detector (or SAM 3 backend) ``spec`` names, loaded: the one place detectors are built from sources."""
    source, kind = spec.detector_source, spec.detector_kind
    if kind == "sam3":
        model, processor = load_sam3(source, device)
        return Sam3Backend(
            model, processor, ontology, spec.box_threshold, autocast_dtype=autocast_dtype, cleanup=spec.mask_cleanup
        )
    if kind == "grounding-dino":
        model, processor = load_grounding_dino(source, device)
        return GroundingDinoDetector(
            model, processor, ontology, spec.box_threshold, spec.text_threshold, autocast_dtype=autocast_dtype
        )
    if kind == "owlv2":
        return Owlv2Detector(*load_owlv2(source, device), ontology, spec.box_threshold, autocast_dtype=autocast_dtype)
    return Florence2Detector(
        *load_florence2(source, device, spec.model_sources()[0][2]),
        ontology,
        task=spec.task,
        max_new_tokens=spec.max_new_tokens,
        num_beams=spec.num_beams,
        autocast_dtype=autocast_dtype,
    )

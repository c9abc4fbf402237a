"""The models of one app process: a detector (Florence-2, Grounding DINO or OWLv2) and SAM 2 built once (from a
``PipelineSpec``, or taken from a ``GroundedSAM2`` already loaded), shared by every session, every call under one lock.

A request never builds a model: a text prompt gets the detector's ``with_ontology`` (the loaded model with that
request's prompts), and a click is one ``Segmenter.predict`` on the image's cached embedding (the mask decoder
only). The page may switch to another model pair among :class:`ModelChoices`; each pair loads on first use and stays.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import supervision as sv

from grounded_sam.detection.florence2 import OBJECT_DETECTION, Florence2Detector
from grounded_sam.models.hub import is_cached
from grounded_sam.models.presets import PRESETS
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline.grounded_sam2 import GroundedSAM2, filter_boxes
from grounded_sam.pipeline.spec import PipelineSpec
from grounded_sam.segmentation.segmenter import ImageState, Segmenter

from .state import AppError

# GroundedSAM2 is built with an ontology; the app's requests bring their own prompts.
_BUILD_ONTOLOGY = {"object": "object"}
# A preset is a Florence-2 + SAM 2 pair: its spec drops another detector the app was started with.
_PRESET_DETECTOR = {"detector": "florence2", "detector_model": None, "box_threshold": None, "text_threshold": None}


class AppModels:
    """A detector (for text prompts, and with Florence-2 "find everything"; optional) and SAM 2 (clicks, boxes,
    everything).

    Every model call holds :attr:`lock`: requests run on Starlette's thread pool, two inferences at once on one CPU or
    GPU only slow each other down, and a detector serves one thread at a time.

    Args:
        segmenter: a :class:`~grounded_sam.Segmenter`.
        detector: a built detector with ``with_ontology`` (``Florence2Detector``, ``GroundingDinoDetector``,
            ``Owlv2Detector``) whose model and options each request's prompts reuse, or None (then only clicks,
            boxes and segment-everything work).
        options: the starting thresholds and task (a ``PipelineSpec``'s; the page may change the thresholds).
        name: how the page names this pair.
    """

    def __init__(self, segmenter: Segmenter, detector, options: PipelineSpec, name: str):
        self.segmenter, self.detector, self.options, self.name = segmenter, detector, options, name
        self.lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: PipelineSpec, name: str | None = None) -> AppModels:
        """Loads the pair ``spec`` names (its ontology, if any, is only the page's starting prompts)."""
        if spec.backend != "grounded-sam2":
            raise AppError("The app segments with SAM 2: use backend='grounded-sam2' (SAM 3 is not offered there)")
        pipeline = GroundedSAM2.from_spec(dataclasses.replace(spec, ontology=spec.ontology or _BUILD_ONTOLOGY))
        return cls(pipeline.segmenter, pipeline.detector, spec, name or describe(spec))

    @classmethod
    def from_pipeline(cls, pipeline: GroundedSAM2, name: str = "this model") -> AppModels:
        """Reuses a loaded pipeline's models (nothing is loaded): a notebook's ``GroundedSAM2``."""
        if not isinstance(pipeline.segmenter, Segmenter):
            raise AppError("The app needs a grounded_sam.Segmenter (SAM 2) as the pipeline's segmenter")
        detector = pipeline.detector if callable(getattr(pipeline.detector, "with_ontology", None)) else None
        options = PipelineSpec(
            pipeline.ontology.to_dict(),
            min_confidence=pipeline.min_confidence,
            nms_threshold=pipeline.nms_threshold,
            class_agnostic_nms=pipeline.class_agnostic_nms,
        )
        return cls(pipeline.segmenter, detector, options, name)

    @property
    def finds_everything(self) -> bool:
        """Whether "find everything" works: Florence-2's object detection, the one detector that needs no prompts."""
        return isinstance(self.detector, Florence2Detector)

    def detect(
        self,
        image: np.ndarray,
        ontology: CaptionOntology | None,
        task: str,
        min_confidence: float,
        nms_threshold: float | None,
    ) -> sv.Detections:
        """The detector's boxes for ``ontology`` in an (H, W, 3) uint8 RGB image (with Florence-2,
        ``task="object_detection"`` and no ontology: every object it knows), filtered as the pipeline filters them.
        No masks."""
        if self.detector is None:
            raise AppError("These models have no detector: text prompts need one (--florence, --detector or --preset)")
        if task == OBJECT_DETECTION and ontology is None and not self.finds_everything:
            raise AppError("Find everything needs Florence-2; this detector finds only what you type")
        if ontology is None and task != OBJECT_DETECTION:
            raise AppError("Type at least one prompt, e.g. 'a dog, a person', or use Find everything")
        if self.finds_everything:
            detector = self.detector.with_ontology(ontology, task=task)
        else:
            detector = self.detector.with_ontology(ontology)
        with self.lock:
            found = detector.detect([image])[0]
        return filter_boxes(found, min_confidence, nms_threshold, self.options.class_agnostic_nms)

    def encode(self, image: np.ndarray) -> ImageState:
        """SAM 2's image encoder on an (H, W, 3) uint8 RGB image: the embedding every click reuses."""
        with self.lock:
            return self.segmenter.set_image(image)

    def decode(self, state: ImageState, **prompts) -> sv.Detections:
        """One mask-decoder pass on a cached embedding (``Segmenter.predict``'s points, labels, boxes)."""
        with self.lock:
            return self.segmenter.predict(state, **prompts)

    def everything(self, image: np.ndarray, **options) -> sv.Detections:
        """``Segmenter.segment_everything`` (it encodes the image itself, crop by crop)."""
        with self.lock:
            return self.segmenter.segment_everything(image, **options)

    def describe(self) -> dict:
        """What the page shows about these models."""
        settings = self.segmenter.settings()
        detector = self.detector.settings() if self.detector is not None else None
        return {
            "name": self.name,
            "detector": detector["type"] if detector else None,
            "detector_model": detector["model"] if detector else None,
            "sam": settings["model"],
            "device": str(self.segmenter.device),
        }


def describe(spec: PipelineSpec) -> str:
    """``"preset fast"``, or the two models' sources."""
    if spec.florence is None and spec.sam is None and spec.detector == "florence2" and spec.detector_model is None:
        return f"preset {spec.preset}"
    return f"{spec.detector_source} + {spec.sam_source}"


class ModelChoices:
    """The model pairs a page may use, by name: the app's own first, then (when it was started from a spec) each
    preset whose two models are already in the local Hugging Face cache, so that a page never makes the server
    download anything. A pair loads on first use and stays loaded; loading holds a lock, so two pages asking at once
    load it once."""

    def __init__(self, first: AppModels, specs: dict[str, PipelineSpec] | None = None):
        self.default = first.name
        self._loaded = {first.name: first}
        self._specs = {name: spec for name, spec in (specs or {}).items() if name != first.name}
        self._lock = threading.Lock()

    @classmethod
    def with_cached_presets(cls, first: AppModels) -> ModelChoices:
        """``first`` and the presets available offline, with ``first``'s device, precision and options."""
        specs = {}
        for preset, models in PRESETS.items():
            if is_cached(models.florence) and is_cached(models.sam):
                specs[f"preset {preset}"] = dataclasses.replace(
                    first.options, **_PRESET_DETECTOR, florence=None, sam=None, sam_size=None, preset=preset
                )
        return cls(first, specs)

    def names(self) -> list[str]:
        return [*self._loaded, *(name for name in self._specs if name not in self._loaded)]

    def get(self, name: str | None) -> AppModels:
        """The pair called ``name`` (the default for None), loaded if it is not yet."""
        name = name or self.default
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._specs:
            raise AppError(f"No model pair {name!r}; choose one of {self.names()}", 404)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = AppModels.from_spec(self._specs[name], name)
        return self._loaded[name]

    def listing(self) -> list[dict]:
        return [{"name": name, "loaded": name in self._loaded} for name in self.names()]

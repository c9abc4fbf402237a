"""What a GroundedSAM2 is built from, without building it: picklable, comparable, cheap.

A spec is what crosses to other processes (Ray workers build their own pipeline from it) and what the command line
checks a dataset's stored settings against before any model loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from grounded_sam.detection import grounding_dino, owlv2
from grounded_sam.detection.florence2 import PHRASE_GROUNDING, check_generation_options, florence2_settings
from grounded_sam.device import resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.models.hub import load_tokenizer_and_config
from grounded_sam.models.presets import DETECTOR_MODELS, SAM3_MODEL, resolve_preset
from grounded_sam.ontology import CaptionOntology
from grounded_sam.segmentation import sam3
from grounded_sam.segmentation.cleanup import MaskCleanup
from grounded_sam.segmentation.segmenter import sam2_settings

DETECTORS = ("florence2", "grounding-dino", "owlv2")
BACKENDS = ("grounded-sam2", "sam3")  # a detector then SAM 2 on its boxes; or SAM 3 alone, text -> masks
# (box_threshold, text_threshold) each detector (and SAM 3) takes when none is given; None: it has no such option.
DEFAULT_THRESHOLDS = {
    "florence2": (None, None),  # its boxes have no threshold of their own: min_confidence filters them
    "grounding-dino": (grounding_dino.DEFAULT_BOX_THRESHOLD, grounding_dino.DEFAULT_TEXT_THRESHOLD),
    "owlv2": (owlv2.DEFAULT_BOX_THRESHOLD, None),
    "sam3": (sam3.DEFAULT_BOX_THRESHOLD, None),
}


@dataclass(frozen=True)
class PipelineSpec:
    """The sources and options of a ``GroundedSAM2`` (see its arguments for each one; ``detector`` here is the name
    of the detector to load).

    Creating a spec checks the options; :meth:`settings` says what the built pipeline's ``settings()`` will be,
    and :meth:`build` loads the models.
    """

    ontology: dict[str, str] = field(default_factory=dict)
    florence: str | None = None
    sam: str | None = None
    preset: str = "default"
    device: str = "auto"
    dtype: str = "auto"
    task: str = PHRASE_GROUNDING
    min_confidence: float = 0.0
    nms_threshold: float | None = 0.7
    class_agnostic_nms: bool = False
    multimask_output: bool = False
    max_new_tokens: int = 1024
    num_beams: int = 1
    sam_size: str | None = None
    compile: bool = False
    detector: str = "florence2"
    detector_model: str | None = None
    box_threshold: float | None = None
    text_threshold: float | None = None
    backend: str = "grounded-sam2"
    max_hole_area: int = 0
    max_sprinkle_area: int = 0
    keep_largest_part: bool = False

    def __post_init__(self):
        if not 0.0 <= self.min_confidence <= 1.0:
            raise UserInputError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.nms_threshold is not None and not 0.0 < self.nms_threshold <= 1.0:
            raise UserInputError(f"nms_threshold must be in (0, 1] or None, got {self.nms_threshold}")
        check_generation_options(self.task, self.max_new_tokens, self.num_beams)
        MaskCleanup(self.max_hole_area, self.max_sprinkle_area, self.keep_largest_part)  # checks them
        resolve_preset(self.preset)
        for name in ("florence", "sam", "detector_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))  # paths as text: picklable and comparable
        self._check_detector_options()
        defaults = DEFAULT_THRESHOLDS[self.detector_kind]
        for name, default in zip(("box_threshold", "text_threshold"), defaults):
            value = getattr(self, name)
            if value is not None and default is None:
                raise UserInputError(f"{name} is not an option of {self.detector_kind}{_THRESHOLD_HINT}")
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserInputError(f"{name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, default if value is None else float(value))

    def _check_detector_options(self) -> None:
        """Refuses options that name what the chosen detector or backend does not use."""
        if self.backend not in BACKENDS:
            raise UserInputError(f"Unknown backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.detector not in DETECTORS:
            raise UserInputError(f"Unknown detector {self.detector!r}: choose one of {', '.join(DETECTORS)}")
        if self.backend == "sam3":
            given = [
                name
                for name, value in (
                    ("detector", self.detector != "florence2"),
                    ("florence", self.florence),
                    ("detector_model", self.detector_model),
                    ("sam_size", self.sam_size),
                    ("multimask_output", self.multimask_output),
                )
                if value
            ]
            if given:
                raise UserInputError(
                    f"backend='sam3' does not use {', '.join(name + '=...' for name in given)}: SAM 3 finds and "
                    "segments the prompts itself (sam=... names its model)"
                )
        elif self.florence is not None and (self.detector != "florence2" or self.detector_model is not None):
            raise UserInputError(
                f"florence=... names the Florence-2 model; with detector={self.detector!r} give detector_model=... "
                "alone"
            )

    @property
    def detector_kind(self) -> str:
        """What finds the prompts: the detector's name, or ``"sam3"`` for the SAM 3 backend."""
        return "sam3" if self.backend == "sam3" else self.detector

    @property
    def detector_source(self) -> str:
        """The model the detector (or SAM 3) loads."""
        if self.backend == "sam3":
            return self.sam or SAM3_MODEL
        if self.detector == "florence2":
            return self.detector_model or self.florence_source
        return self.detector_model or DETECTOR_MODELS[self.detector]

    def model_sources(self) -> list[tuple[str, str, str]]:
        """(source, what, option) of each model to load, detector first: what ``require_available`` checks."""
        what = {"florence2": "Florence-2", "grounding-dino": "Grounding DINO", "owlv2": "OWLv2", "sam3": "SAM 3"}
        if self.backend == "sam3":
            return [(self.detector_source, what["sam3"], "sam")]
        option = "florence" if self.detector == "florence2" and self.detector_model is None else "detector_model"
        return [(self.detector_source, what[self.detector], option), (self.sam_source, "SAM 2", "sam")]

    @property
    def florence_source(self) -> str:
        return self.florence or resolve_preset(self.preset).florence

    @property
    def sam_source(self) -> str:
        return self.sam or resolve_preset(self.preset).sam

    def check_prompts(self) -> None:
        """Refuses (``UserInputError``) prompts the chosen detector cannot read, as the built one would, loading only
        its tokenizer and config: so that the command line refuses them before it writes anything. (Florence-2's
        limit depends on its processor: it is checked when the detector is built.)"""
        checks = {"grounding-dino": grounding_dino, "owlv2": owlv2, "sam3": sam3}
        if self.detector_kind in checks:
            tokenizer, config = load_tokenizer_and_config(*self.model_sources()[0])
            checks[self.detector_kind].check_prompts(tokenizer, config, list(self.ontology))

    @property
    def mask_cleanup(self) -> MaskCleanup:
        return MaskCleanup(self.max_hole_area, self.max_sprinkle_area, self.keep_largest_part)

    def settings(self) -> dict:
        """``build().settings()``, computed without loading a model (the device is probed for the precision)."""
        precision = resolve_autocast_dtype(self.dtype, resolve_device(self.device))
        return pipeline_settings(
            self.detector_settings(precision),
            None
            if self.backend == "sam3"
            else sam2_settings(self.sam_source, self.multimask_output, precision, self.mask_cleanup),
            self.min_confidence,
            self.nms_threshold,
            self.class_agnostic_nms,
        )

    def detector_settings(self, precision) -> dict:
        """The settings the built detector (or SAM 3) will give, at autocast dtype ``precision``."""
        source, kind = self.detector_source, self.detector_kind
        if kind == "grounding-dino":
            return grounding_dino.grounding_dino_settings(source, self.box_threshold, self.text_threshold, precision)
        if kind == "owlv2":
            return owlv2.owlv2_settings(source, self.box_threshold, owlv2.NMS_THRESHOLD, precision)
        if kind == "sam3":
            return sam3.sam3_settings(source, self.box_threshold, precision, self.mask_cleanup)
        return florence2_settings(source, self.task, self.max_new_tokens, self.num_beams, precision)

    def options(self) -> dict:
        """The keyword arguments of ``GroundedSAM2`` this spec stands for (all but the ontology)."""
        options = asdict(self)
        del options["ontology"]
        return options

    def build(self):
        """Loads the models: ``GroundedSAM2(CaptionOntology(ontology), **options())``."""
        from grounded_sam.pipeline.grounded_sam2 import GroundedSAM2

        return GroundedSAM2(CaptionOntology(self.ontology), **self.options())


_THRESHOLD_HINT = (
    " (box_threshold: grounding-dino, owlv2, backend='sam3'; text_threshold: grounding-dino; every detector's boxes "
    "can be filtered with min_confidence)"
)


def pipeline_settings(
    detector: dict, segmenter: dict | None, min_confidence: float, nms_threshold: float | None, class_agnostic_nms: bool
) -> dict:
    """What a labeled dataset stores about the pipeline: each part's settings (``segmenter`` None: SAM 3 segments
    what it finds itself) and the filtering in between."""
    return {
        "detector": detector,
        "segmenter": segmenter,
        "min_confidence": min_confidence,
        "nms_threshold": nms_threshold,
        "class_agnostic_nms": class_agnostic_nms,
    }

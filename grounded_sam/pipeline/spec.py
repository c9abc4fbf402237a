"""What a GroundedSAM2 is built from, without building it: picklable, comparable, cheap.

A spec is what crosses to other processes (Ray workers build their own pipeline from it) and what the command line
checks a dataset's stored settings against before any model loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from grounded_sam.detection.florence2 import PHRASE_GROUNDING, check_generation_options, florence2_settings
from grounded_sam.device import resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.models.presets import resolve_preset
from grounded_sam.ontology import CaptionOntology
from grounded_sam.segmentation.cleanup import MaskCleanup
from grounded_sam.segmentation.segmenter import sam2_settings


@dataclass(frozen=True)
class PipelineSpec:
    """The sources and options of a Florence-2 + SAM 2 ``GroundedSAM2`` (see its arguments for each one).

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
        for name in ("florence", "sam"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))  # paths as text: picklable and comparable

    @property
    def florence_source(self) -> str:
        return self.florence or resolve_preset(self.preset).florence

    @property
    def sam_source(self) -> str:
        return self.sam or resolve_preset(self.preset).sam

    @property
    def mask_cleanup(self) -> MaskCleanup:
        return MaskCleanup(self.max_hole_area, self.max_sprinkle_area, self.keep_largest_part)

    def settings(self) -> dict:
        """``build().settings()``, computed without loading a model (the device is probed for the precision)."""
        precision = resolve_autocast_dtype(self.dtype, resolve_device(self.device))
        return pipeline_settings(
            florence2_settings(self.florence_source, self.task, self.max_new_tokens, self.num_beams, precision),
            sam2_settings(self.sam_source, self.multimask_output, precision, self.mask_cleanup),
            self.min_confidence,
            self.nms_threshold,
            self.class_agnostic_nms,
        )

    def options(self) -> dict:
        """The keyword arguments of ``GroundedSAM2`` this spec stands for (all but the ontology)."""
        options = asdict(self)
        del options["ontology"]
        return options

    def build(self):
        """Loads the models: ``GroundedSAM2(CaptionOntology(ontology), **options())``."""
        from grounded_sam.pipeline.grounded_sam2 import GroundedSAM2

        return GroundedSAM2(CaptionOntology(self.ontology), **self.options())


def pipeline_settings(
    detector: dict, segmenter: dict, min_confidence: float, nms_threshold: float | None, class_agnostic_nms: bool
) -> dict:
    """What a labeled dataset stores about the pipeline: each part's settings and the filtering in between."""
    return {
        "detector": detector,
        "segmenter": segmenter,
        "min_confidence": min_confidence,
        "nms_threshold": nms_threshold,
        "class_agnostic_nms": class_agnostic_nms,
    }

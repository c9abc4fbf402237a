"""The pipeline: GroundedSAM2 built from parts (or from a spec), and the engine that keeps it busy on many files."""

from grounded_sam.pipeline.grounded_sam2 import GroundedSAM2
from grounded_sam.pipeline.spec import PipelineSpec

__all__ = ["GroundedSAM2", "PipelineSpec"]

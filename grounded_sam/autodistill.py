"""The documented path of the autodistill base model; see :mod:`grounded_sam.integrations.autodistill`."""

from grounded_sam.integrations.autodistill import GroundedSAM2

__all__ = ["GroundedSAM2"]

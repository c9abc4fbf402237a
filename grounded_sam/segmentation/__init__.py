"""Segmentation: SAM 2 from boxes, clicks and mask inputs, segment-everything, refinement (one core); SAM 3 from
text."""

from __future__ import annotations

import torch

from grounded_sam.segmentation.sam3 import Sam3Backend
from grounded_sam.segmentation.segmenter import ImageState, Segmenter


def Sam2Segmenter(  # noqa: N802 -- the box stage's earlier name, kept so that code written for it keeps working
    model, processor, multimask_output: bool = False, autocast_dtype: torch.dtype | None = None
) -> Segmenter:
    """The grounding pipeline's box stage around a built ``Sam2Model``: ``Segmenter.from_model(...)``, whose
    :meth:`~Segmenter.segment` adds masks to box Detections."""
    return Segmenter.from_model(model, processor, autocast_dtype, multimask_output)


__all__ = ["ImageState", "Sam2Segmenter", "Sam3Backend", "Segmenter"]

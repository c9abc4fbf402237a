"""Where models come from: presets, hub ids, local folders and Meta's checkpoint files -> loaded transformers models.

``load_florence2``, ``load_grounding_dino``, ``load_owlv2``, ``load_sam2`` and ``load_sam3`` (each ``(source, device)``)
return (model, processor) in eval mode; ``load_sam2_video(source, device)`` returns SAM 2's video model (memory bank
included) from the same sources as ``load_sam2``.
"""

from grounded_sam.errors import ModelNotAvailableError
from grounded_sam.models.hub import (
    download_preset,
    is_cached,
    load_florence2,
    load_grounding_dino,
    load_owlv2,
    load_sam2,
    load_sam2_video,
    load_sam3,
    require_available,
    source_identity,
)
from grounded_sam.models.presets import PRESETS, ModelPreset, resolve_preset

__all__ = [
    "ModelNotAvailableError",
    "ModelPreset",
    "PRESETS",
    "download_preset",
    "is_cached",
    "load_florence2",
    "load_grounding_dino",
    "load_owlv2",
    "load_sam2",
    "load_sam2_video",
    "load_sam3",
    "require_available",
    "resolve_preset",
    "source_identity",
]

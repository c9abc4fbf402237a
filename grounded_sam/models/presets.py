"""The model pairs grounded-sam offers by name."""

from __future__ import annotations

from dataclasses import dataclass

from grounded_sam.errors import UserInputError


@dataclass(frozen=True)
class ModelPreset:
    florence: str
    sam: str
    description: str


# transformers-native checkpoints. microsoft/Florence-2-* hold remote code; florence-community/* are the same weights
# converted for transformers' own Florence2ForConditionalGeneration.
PRESETS = {
    "fast": ModelPreset("florence-community/Florence-2-base", "facebook/sam2.1-hiera-tiny", "base + tiny"),
    "default": ModelPreset(
        "florence-community/Florence-2-large",
        "facebook/sam2.1-hiera-base-plus",
        "large + base-plus, the pair autodistill-grounded-sam-2 uses",
    ),
    "accurate": ModelPreset("florence-community/Florence-2-large", "facebook/sam2.1-hiera-large", "large + large"),
}


def resolve_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserInputError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)} (preset=...)") from None


# The model each other detector loads when no detector_model=... is given, and SAM 3's (backend="sam3").
DETECTOR_MODELS = {
    "grounding-dino": "IDEA-Research/grounding-dino-tiny",
    "owlv2": "google/owlv2-base-patch16-ensemble",
}
SAM3_MODEL = "facebook/sam3"

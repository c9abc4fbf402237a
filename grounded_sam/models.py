"""Where models are built: presets, hub ids or local directories -> loaded transformers models and processors.

Loading goes through ``from_pretrained``, so the Hugging Face cache, ``HF_HOME`` and ``HF_HUB_OFFLINE`` work as
everywhere else in transformers; Meta's SAM 2 checkpoint files are read with ``torch.load(..., weights_only=True)``
(see ``checkpoints``). No repository code is ever run (``trust_remote_code`` is never set).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import CHECKPOINT_SUFFIXES, default_sam2_processor, is_checkpoint_file, load_sam2_checkpoint
from .errors import InvalidCheckpointError, ModelNotAvailableError, UserInputError

logger = logging.getLogger(__name__)


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
        "florence-community/Florence-2-large", "facebook/sam2.1-hiera-base-plus",
        "large + base-plus, the pair autodistill-grounded-sam-2 uses",
    ),
    "accurate": ModelPreset("florence-community/Florence-2-large", "facebook/sam2.1-hiera-large", "large + large"),
}


def resolve_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserInputError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None


def load_florence2(source: str | os.PathLike, device: torch.device):
    """Loads ``Florence2ForConditionalGeneration`` and its processor from a hub id or local directory, in eval mode."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    _check_model_type(source, ("florence2",), "Florence-2", "florence")
    model = _from_pretrained(Florence2ForConditionalGeneration, source, "Florence-2", "florence", dtype=torch.float32)
    processor = _from_pretrained(AutoProcessor, source, "Florence-2 processor", "florence")
    return model.to(device).eval(), processor


def load_sam2(source: str | os.PathLike, device: torch.device, size: str | None = None):
    """Loads ``Sam2Model`` and ``Sam2Processor`` in eval mode from a hub id, a local transformers directory, or an
    official Meta checkpoint file (``sam2.1_hiera_*.pt``; ``size`` inferred from it unless given)."""
    from transformers import Sam2Model, Sam2Processor

    if is_checkpoint_file(source):
        return load_sam2_checkpoint(source, size).to(device), default_sam2_processor()
    if size is not None and not str(source).endswith(CHECKPOINT_SUFFIXES):
        raise UserInputError(f"sam_size is for Meta .pt checkpoint files; {source} is a hub id or folder with its own config")
    if str(source).endswith(CHECKPOINT_SUFFIXES):
        raise ModelNotAvailableError(
            f"SAM 2 checkpoint file not found: {source}. checkpoints/download_ckpts.sh downloads Meta's files"
        )
    _check_model_type(source, SAM2_MODEL_TYPES, "SAM 2", "sam")
    model = _from_pretrained(Sam2Model, source, "SAM 2", "sam", dtype=torch.float32)
    processor = _from_pretrained(Sam2Processor, source, "SAM 2 processor", "sam")
    return model.to(device).eval(), processor


SAM2_MODEL_TYPES = ("sam2", "sam2_video")  # the hub's sam2.1 repos are saved from Sam2VideoModel; both load


def _check_model_type(source, expected: tuple[str, ...], what: str, argument: str) -> None:
    """Refuses, before any weights load, a model whose config is of another kind (a SAM folder given as Florence-2
    would otherwise load with random weights and fail on every image)."""
    from transformers import PretrainedConfig

    config = _from_pretrained(PretrainedConfig.get_config_dict, source, what, argument)[0]
    if config.get("model_type") not in expected:
        raise InvalidCheckpointError(
            f"{source} is a {config.get('model_type') or 'model of unknown type'} model, not {what} "
            f"({argument}=... expects a {' or '.join(expected)} model)"
        )


def _from_pretrained(cls, source, what: str, argument: str, **options):
    # Weights load as float32 whatever dtype the checkpoint was saved in; reduced precision comes from autocast.
    source = str(source)
    looks_local = os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source)
    if looks_local and not Path(source).expanduser().is_dir():
        raise ModelNotAvailableError(f"{what} directory not found: {source} (pass an existing directory or a hub id)")
    load = cls.from_pretrained if isinstance(cls, type) else cls
    try:
        return load(str(Path(source).expanduser()) if looks_local else source, **options)
    except OSError as error:
        raise ModelNotAvailableError(_not_available_message(source, what, argument, error)) from error


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _not_available_message(source: str, what: str, argument: str, error: Exception) -> str:
    offline = _offline()
    where = "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline else "could not be loaded"
    hint = ""
    if source.startswith("microsoft/Florence-2"):
        hint = f" microsoft/ repos need remote code; use {source.replace('microsoft/', 'florence-community/')}."
    return (
        f"{what} '{source}' {where}.{hint} To use it offline, download it once on a machine with network: "
        f"`hf download {source}`, or pass a local directory with "
        f"{argument}=... . Details: {error}"
    )


def is_cached(repo_id: str) -> bool:
    """Whether a hub model is in the local Hugging Face cache (so it loads with HF_HUB_OFFLINE=1). Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def download_preset(name: str) -> list[tuple[str, str]]:
    """Downloads a preset's Florence-2 and SAM 2 into the Hugging Face cache; returns (hub id, local folder) pairs."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    preset = resolve_preset(name)
    downloaded = []
    for repo_id in (preset.florence, preset.sam):
        try:
            downloaded.append((repo_id, snapshot_download(repo_id)))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
            offline = " (HF_HUB_OFFLINE is set: unset it to download)" if _offline() else ""
            raise ModelNotAvailableError(f"Could not download {repo_id}{offline}: {error}") from error
    return downloaded

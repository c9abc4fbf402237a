"""Loading models: hub ids or local directories -> transformers models and processors, in eval mode.

Loading goes through ``from_pretrained``, so the Hugging Face cache, ``HF_HOME`` and ``HF_HUB_OFFLINE`` work as
everywhere else in transformers; Meta's SAM 2 checkpoint files are read with ``torch.load(..., weights_only=True)``
(see ``checkpoints``). No repository code is ever run (``trust_remote_code`` is never set).

A hub model already in the cache loads without touching the network. One that is not, while the hub cannot be
reached, is refused at once, naming every such model (huggingface_hub would otherwise retry each file for tens of
seconds before failing). A gated repo (``facebook/sam3``) that the hub refuses ends in a message saying how to get
access.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from grounded_sam.errors import InvalidCheckpointError, ModelNotAvailableError, UserInputError
from grounded_sam.models.checkpoints import (
    CHECKPOINT_SUFFIXES,
    default_sam2_processor,
    is_checkpoint_file,
    load_sam2_checkpoint,
    load_sam2_video_checkpoint,
)
from grounded_sam.models.presets import resolve_preset

logger = logging.getLogger(__name__)


def load_florence2(source: str | os.PathLike, device: torch.device, argument: str = "florence"):
    """Loads ``Florence2ForConditionalGeneration`` and its processor from a hub id or local directory, in eval mode.
    ``argument`` is the option that named ``source``, for messages."""
    from transformers import Florence2ForConditionalGeneration

    return _load_model(Florence2ForConditionalGeneration, source, device, "Florence-2", argument, ("florence2",))


def load_grounding_dino(source: str | os.PathLike, device: torch.device, argument: str = "detector_model"):
    """Loads a Grounding DINO or MM Grounding DINO (``IDEA-Research/grounding-dino-tiny``...) and its processor, in
    eval mode."""
    from transformers import AutoModelForZeroShotObjectDetection

    types = ("grounding-dino", "mm-grounding-dino")
    return _load_model(AutoModelForZeroShotObjectDetection, source, device, "Grounding DINO", argument, types)


def load_owlv2(source: str | os.PathLike, device: torch.device, argument: str = "detector_model"):
    """Loads ``Owlv2ForObjectDetection`` (``google/owlv2-base-patch16-ensemble``...) and its processor, in eval mode."""
    from transformers import Owlv2ForObjectDetection

    return _load_model(Owlv2ForObjectDetection, source, device, "OWLv2", argument, ("owlv2",))


def load_sam3(source: str | os.PathLike, device: torch.device, argument: str = "sam"):
    """Loads ``Sam3Model`` (text -> instance masks) and ``Sam3Processor``, in eval mode. ``facebook/sam3`` is gated:
    without access the error says how to get it."""
    from transformers import Sam3Model

    # facebook/sam3 is saved from the video model (model_type sam3_video); Sam3Model loads its detector from it
    return _load_model(Sam3Model, source, device, "SAM 3", argument, ("sam3", "sam3_video"))


def load_tokenizer_and_config(source: str | os.PathLike, what: str, argument: str):
    """A model's tokenizer and config, without its weights: for checks before the weights load."""
    from transformers import AutoConfig, AutoTokenizer

    require_available([(source, what, argument)])
    tokenizer = _from_pretrained(AutoTokenizer, source, f"{what} tokenizer", argument)
    return tokenizer, _from_pretrained(AutoConfig, source, what, argument)


def _load_model(cls, source, device: torch.device, what: str, argument: str, model_types: tuple[str, ...]):
    """(model in eval mode on ``device``, processor): available, of the right kind, then loaded, in that order."""
    from transformers import AutoProcessor

    require_available([(source, what, argument)])
    _check_model_type(source, model_types, what, argument)
    model = _from_pretrained(cls, source, what, argument, dtype=torch.float32)
    processor = _from_pretrained(AutoProcessor, source, f"{what} processor", argument)
    return model.to(device).eval(), processor


def load_sam2(source: str | os.PathLike, device: torch.device, size: str | None = None):
    """Loads ``Sam2Model`` and ``Sam2Processor`` in eval mode from a hub id, a local transformers directory, or an
    official Meta checkpoint file (``sam2.1_hiera_*.pt``; ``size`` inferred from it unless given). A folder saved
    from ``Sam2VideoModel`` (as the hub's sam2.1 repos are) loads its image part."""
    from transformers import Sam2Model, Sam2Processor

    if _checked_sam2_source(source, size):
        return load_sam2_checkpoint(source, size).to(device), default_sam2_processor()
    require_available([(source, "SAM 2", "sam")])
    _check_model_type(source, SAM2_MODEL_TYPES, "SAM 2", "sam")
    with _quiet_model_type_notice():
        model = _from_pretrained(Sam2Model, source, "SAM 2", "sam", dtype=torch.float32)
    processor = _from_pretrained(Sam2Processor, source, "SAM 2 processor", "sam")
    return model.to(device).eval(), processor


def load_sam2_video(source: str | os.PathLike, device: torch.device, size: str | None = None, model_class=None):
    """Loads a ``Sam2VideoModel`` (or ``model_class``, a subclass of it) in eval mode, memory bank included, from a
    hub id, a local folder saved from ``Sam2VideoModel`` (the hub's sam2.1 repos and ``grounded_sam.testing``'s tiny
    model are), or an official Meta checkpoint file.

    No processor: video frames are preprocessed as Meta's video predictor does and prompts go into the session
    directly (``grounded_sam.segmentation.video_session``); both need only the model's ``config.image_size``.

    Raises:
        InvalidCheckpointError: a folder saved from the image-only ``Sam2Model``, which has no memory bank.
    """
    from transformers import Sam2VideoModel

    model_class = model_class or Sam2VideoModel
    if _checked_sam2_source(source, size):
        return load_sam2_video_checkpoint(source, size, model_class=model_class).to(device)
    require_available([(source, "SAM 2", "sam")])
    if _model_type(source, "SAM 2", "sam") == "sam2":
        raise InvalidCheckpointError(
            f"{source} holds SAM 2's image model only (saved from Sam2Model, without the memory bank video needs); "
            "use a folder saved from Sam2VideoModel (as the hub's facebook/sam2.1-* repos are) or Meta's .pt file"
        )
    _check_model_type(source, ("sam2_video",), "SAM 2", "sam")
    return _from_pretrained(model_class, source, "SAM 2", "sam", dtype=torch.float32).to(device).eval()


def _checked_sam2_source(source, size: str | None) -> bool:
    """Whether ``source`` is a Meta checkpoint file; refuses ``size`` for anything else and a missing ``.pt``."""
    if is_checkpoint_file(source):
        return True
    if size is not None and not str(source).endswith(CHECKPOINT_SUFFIXES):
        raise UserInputError(
            f"sam_size is for Meta .pt checkpoint files; {source} is a hub id or folder with its own config"
        )
    if str(source).endswith(CHECKPOINT_SUFFIXES):
        raise ModelNotAvailableError(
            f"SAM 2 checkpoint file not found: {source}. checkpoints/download_ckpts.sh downloads Meta's files"
        )
    return False


@contextlib.contextmanager
def _quiet_model_type_notice():
    """Hides transformers' notice that a ``sam2_video`` config instantiates a ``sam2`` model: the image model is a
    subset of the video model and loads from the same folder by design (its unused memory weights are skipped)."""

    def keep(record: logging.LogRecord) -> bool:
        return "to instantiate a model of type" not in record.getMessage()

    logger = logging.getLogger("transformers.configuration_utils")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


SAM2_MODEL_TYPES = ("sam2", "sam2_video")  # the hub's sam2.1 repos are saved from Sam2VideoModel; both load


def _check_model_type(source, expected: tuple[str, ...], what: str, argument: str) -> None:
    """Refuses, before any weights load, a model whose config is of another kind (a SAM folder given as Florence-2
    would otherwise load with random weights and fail on every image)."""
    model_type = _model_type(source, what, argument)
    if model_type not in expected:
        raise InvalidCheckpointError(
            f"{source} is a {model_type or 'model of unknown type'} model, not {what} "
            f"({argument}=... expects a {' or '.join(expected)} model)"
        )


def _model_type(source, what: str, argument: str) -> str | None:
    from transformers import PretrainedConfig

    return _from_pretrained(PretrainedConfig.get_config_dict, source, what, argument)[0].get("model_type")


def source_identity(source: str | os.PathLike) -> str:
    """A model source as a dataset records it: a hub id as given, a local folder or file as its absolute path (the
    same from any working directory)."""
    text = str(source)
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def require_available(sources) -> None:
    """Refuses at once, before anything loads, the hub models that are neither local nor cached while the hub cannot
    be reached, and local paths mistyped as hub ids. ``sources``: (source, what, argument) triples, e.g.
    ``(id, "Florence-2", "florence")``."""
    for source, what, _ in sources:
        if _is_hub_id(str(source)):
            _refuse_mistyped_folder(str(source), what)
    missing = [
        (source, what, argument)
        for source, what, argument in sources
        if _is_hub_id(str(source)) and not is_cached(str(source))
    ]
    if missing and not _hub_reachable():
        reason = "HF_HUB_OFFLINE is set" if _offline() else "the Hugging Face hub cannot be reached"
        names = "; ".join(f"{what} '{source}' ({argument}=...)" for source, what, argument in missing)
        downloads = " and ".join(f"`hf download {source}`" for source, _, _ in missing)
        gated = "".join(gated_access(str(source)) for source, _, _ in missing if str(source) in GATED)
        raise ModelNotAvailableError(
            f"Not in the local Hugging Face cache, and {reason}: {names}. Download once on a machine with network "
            f"({downloads}), or pass local folders.{gated}"
        )


# Hub repos whose files need a license accepted first; any other gated repo is recognised by the hub's answer.
GATED = ("facebook/sam3",)


def gated_access(repo_id: str) -> str:
    """How to get access to a gated hub repo, as a sentence for error messages."""
    return (
        f" {repo_id} is gated: accept its license on https://huggingface.co/{repo_id} (signed in to the hub), then "
        f"log in on this machine with `hf auth login` (or set HF_TOKEN) and run `hf download {repo_id}`."
    )


def _is_hub_id(source: str) -> bool:
    return not (os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source))


def _from_pretrained(cls, source, what: str, argument: str, **options):
    # Weights load as float32 whatever dtype the checkpoint was saved in; reduced precision comes from autocast.
    source = str(source)
    if not _is_hub_id(source) and not Path(source).expanduser().is_dir():
        raise ModelNotAvailableError(f"{what} directory not found: {source} (pass an existing directory or a hub id)")
    if _is_hub_id(source):
        _refuse_mistyped_folder(source, what)
        if is_cached(source) or not _hub_reachable():
            options["local_files_only"] = True  # no request to the hub for what is here already
    load = cls.from_pretrained if isinstance(cls, type) else cls
    try:
        return load(str(Path(source).expanduser()) if not _is_hub_id(source) else source, **options)
    except OSError as error:
        raise ModelNotAvailableError(_not_available_message(source, what, argument, error)) from error


def _refuse_mistyped_folder(source: str, what: str) -> None:
    """``models/florenc`` looks like a hub id, but when ``models/`` is a folder here it is a mistyped path."""
    parent = Path(source).parent
    if str(parent) in ("", ".") or not parent.is_dir():
        return
    close = difflib.get_close_matches(Path(source).name, [entry.name for entry in parent.iterdir()], n=1)
    hint = f" Did you mean {parent / close[0]}?" if close else ""
    raise ModelNotAvailableError(
        f"{what} directory not found: {source} ({parent}/ exists here, so this is not a hub id).{hint}"
    )


def _hub_reachable() -> bool:
    """Whether the hub answers a TCP connection within 3 s (asked once per process); False when offline is set."""
    return not _offline() and _hub_answers()


@functools.cache
def _hub_answers() -> bool:
    from huggingface_hub import constants

    address = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((address.hostname, address.port or 443), timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 -- any failure to connect (DNS, refused, timeout, a test's guard) means no hub
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _not_available_message(source: str, what: str, argument: str, error: Exception) -> str:
    if _is_gated_refusal(error):
        return f"{what} '{source}' could not be loaded: access was refused.{gated_access(source)} Details: {error}"
    offline = _offline()
    where = "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline else "could not be loaded"
    hint = ""
    if source.startswith("microsoft/Florence-2"):
        hint = f" microsoft/ repos need remote code; use {source.replace('microsoft/', 'florence-community/')}."
    if source in GATED:
        hint += gated_access(source)
    return (
        f"{what} '{source}' {where}.{hint} To use it offline, download it once on a machine with network: "
        f"`hf download {source}`, or pass a local directory with "
        f"{argument}=... . Details: {error}"
    )


def _is_gated_refusal(error: BaseException | None) -> bool:
    """Whether the hub refused a download because the repo is gated (transformers wraps that in an OSError)."""
    from huggingface_hub.errors import GatedRepoError

    while error is not None:
        if isinstance(error, GatedRepoError):
            return True
        error = error.__cause__ or error.__context__
    return False


def is_cached(repo_id: str) -> bool:
    """Whether a hub model is in the local Hugging Face cache (so it loads with HF_HUB_OFFLINE=1). Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id (huggingface_hub's HFValidationError)
        return False


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

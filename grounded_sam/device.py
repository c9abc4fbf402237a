"""Device and precision choices, made when a model is built (never at import)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from grounded_sam.errors import UserInputError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserInputError(f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    _check_available(resolved)
    return resolved


def _check_available(device: torch.device) -> None:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserInputError(
                f"device {str(device)!r} was asked for, but torch sees no CUDA GPU here; use "
                "'auto' or 'cpu' (or install a CUDA build of torch)"
            )
        if device.index is not None and device.index >= count:
            raise UserInputError(
                f"device {str(device)!r} was asked for, but torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserInputError("device 'mps' was asked for, but Apple's MPS is not available here; use 'auto' or 'cpu'")


def resolve_autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``dtype`` on ``device``, or None for plain float32.

    ``"auto"`` is bfloat16 on CUDA GPUs that support it (float16 on older ones) and float32 elsewhere.
    """
    if dtype == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise UserInputError(f"Unknown dtype {dtype!r}: choose 'auto', {', '.join(map(repr, _DTYPES))}")
    return None if dtype == "float32" else _DTYPES[dtype]


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """How a part's precision is recorded: ``"float32"`` (no autocast), ``"bfloat16"`` or ``"float16"``."""
    return "float32" if autocast_dtype is None else str(autocast_dtype).removeprefix("torch.")


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None):
    """A ``torch.autocast`` context for ``dtype`` on ``device``, or a no-op context when ``dtype`` is None.

    On CUDA, reduced precision also lets the float32 matmuls and convolutions autocast leaves alone use TF32 tensor
    cores, for the duration of the context only (the flags are process-wide, so they are restored on exit).
    ``dtype="float32"`` keeps full float32.
    """
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype), _tf32(device.type == "cuda"):
        yield


@contextlib.contextmanager
def _tf32(enabled: bool):
    if not enabled:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of ``items`` of ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def images_per_pass(device: torch.device, batch: int) -> int:
    """How many images an image encoder (Florence-2's DaViT, SAM 2's Hiera) or SAM 2's mask decoder takes per pass.

    GPUs take the whole batch. CPUs take one image at a time: on a 2-core AVX2 CPU both encoders run 20-25 % slower
    per image in batches of 4 than one by one, and the mask decoder slower on 32 boxes of 8 images than on each
    image's 4 (BENCHMARKS.md, "Labeling throughput"; ``benchmarks/encoder_batch.py``): larger activations fall out
    of cache, and a CPU gains no parallelism from the batch dimension that its threads do not already give.
    """
    return max(1, batch) if device.type != "cpu" else 1

"""Florence-2 decoding internals, kept in one place: the confidence hook, the static KV cache, compiled decoding.

These reach into transformers' generation (a forward hook on ``lm_head``, ``StaticCache``, a private field of
``CompileConfig``); nothing else in grounded-sam does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import transformers
from packaging.version import Version
from transformers import CompileConfig, EncoderDecoderCache, StaticCache

# generate() takes a cache as `cache` from transformers 5.24 (`past_key_values` warns there and goes in 6.0).
CACHE_ARGUMENT = "cache" if Version(transformers.__version__) >= Version("5.24") else "past_key_values"


class LocationLogProbs:
    """Records, during greedy ``generate``, the log-probability the raw logits give each ``<loc_*>`` token.

    transformers' ``output_logits`` keeps a (rows x vocabulary) tensor per step (~200 MB per row over 1024 steps for
    Florence-2); confidence only needs the location tokens, so this hook on ``lm_head`` keeps 1000 values per step.
    It reads the raw logits, like ``output_logits``: processed scores make forced tokens look certain.

    The hook is registered once and records only inside :meth:`recording`. When ``generate`` compiles the decoder
    (static cache, :func:`decoding_options`), a hook added per call, or one whose state the compiler traces, would
    recompile the decoder at every step; this one stays outside the compiled graph, and its values are copies made
    there, which CUDA graphs cannot overwrite on their next replay. Call :meth:`remove` when done with it.
    """

    def __init__(self, lm_head: torch.nn.Module, location_ids: torch.Tensor, bin_of_token: torch.Tensor):
        self.location_ids, self.bin_of_token = location_ids, bin_of_token
        self.steps: list[torch.Tensor] | None = None
        self.hook = lm_head.register_forward_hook(torch.compiler.disable(self._record))

    def remove(self) -> None:
        self.hook.remove()

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Records into the list it yields: (rows, 1000) log-probabilities per decoding step."""
        steps = self.steps = []
        try:
            yield steps
        finally:
            self.steps = None

    def _record(self, module, inputs, logits):
        if self.steps is not None:
            last = logits[:, -1].float()
            self.steps.append(last.index_select(-1, self.location_ids) - last.logsumexp(-1, keepdim=True))

    def gather(self, steps: list[torch.Tensor], sequences: torch.Tensor) -> torch.Tensor:
        """(rows, length) log-probabilities aligned with ``sequences``; 0 where the token is not a location."""
        location = torch.stack(steps, dim=1)  # (rows, steps, bins); step t wrote sequences[:, t + 1]
        bins = self.bin_of_token[sequences[:, 1 : 1 + location.shape[1]]]
        values = location.gather(-1, bins.clamp(min=0)[..., None])[..., 0]
        values = values.where(bins >= 0, torch.zeros_like(values))
        return torch.cat([torch.zeros_like(values[:, :1]), values], dim=1)


class StaticCacheKeeper:
    """The static KV cache compiled decoding writes into, kept from call to call and reset in between.

    transformers makes a new static cache on every ``generate`` call, and CUDA graphs recorded on the old cache's
    addresses would be recorded again for every batch (torch's cudagraph trees re-record on a static input's new
    address). Only the last batch shape's cache is kept, so an out-of-memory retry with fewer images does not hold
    the larger one beside the new one.

    Attributes:
        shape: (rows, encoder length, max_new_tokens) of the cache held, or None.
        cache: the ``EncoderDecoderCache`` held, or None.
    """

    def __init__(self, model, max_new_tokens: int):
        self.model, self.max_new_tokens = model, max_new_tokens
        self.shape: tuple[int, int, int] | None = None
        self.cache: EncoderDecoderCache | None = None

    def for_batch(self, rows: int, encoder_length: int) -> EncoderDecoderCache:
        shape = (rows, encoder_length, self.max_new_tokens)
        if self.shape != shape:
            self.shape = self.cache = None  # freed before the next one is allocated
            config = self.model.config.get_text_config(decoder=True)
            self.cache = EncoderDecoderCache(
                StaticCache(config=config, max_cache_len=self.max_new_tokens),
                StaticCache(config=config, max_cache_len=encoder_length),
            )
            self.shape = shape
        self.cache.reset()
        return self.cache


def decoding_options(device: torch.device, num_beams: int) -> dict | None:
    """The ``generate`` options that make greedy decoding run compiled, or None where it stays eager (beam search,
    and devices transformers does not compile on, such as Apple MPS).

    Eager decoding pays Python and kernel-launch overhead for every layer at every step (about 2 500 operator calls
    per step at Florence-2-large's depth, counted with torch.profiler), the same at batch 1 as at batch 64, so on a
    GPU that overhead, not the math, bounds the decoder. Compiled, a step is a couple of CUDA graph replays on CUDA
    (transformers' default ``reduce-overhead`` mode; the confidence hook runs between them) and fused kernels on the
    CPU. Each new batch size compiles once more. The static cache holds ``max_new_tokens`` positions for every
    sequence from the start (Florence-2-large in bf16: about 80 MB per sequence at 1024), so a lower
    ``max_new_tokens`` leaves room for larger batches.
    """
    if num_beams != 1 or device.type not in ("cuda", "xpu", "cpu"):
        return None
    options: dict = {"cache_implementation": "static"}
    if device.type == "cpu":
        # transformers compiles on its own only on accelerators; CUDA graphs do not exist on the CPU.
        options["compile_config"] = CompileConfig(mode="default")
        # A private field of transformers ("to compile on e.g. CPU"); tests/test_florence2.py fails if it stops working.
        options["compile_config"]._compile_all_devices = True
    return options

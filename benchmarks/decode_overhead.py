"""Florence-2 decoding cost per step when the arithmetic is negligible: what Python and kernel launches cost.

The model has a real Florence-2's depth (base: 6 + 6 text layers, large: 12 + 12) and vocabulary, but tiny widths,
so a decoding step does almost no math: its time is the per-step overhead that eager decoding pays whatever the
batch size. Compared with the same decoding compiled the way ``GroundedSAM2(compile=True)`` does it
(``Florence2Detector.compile``: static KV cache, compiled by transformers' ``generate``; CUDA graphs on CUDA).

    python benchmarks/decode_overhead.py                       # CPU, large's depth, 16 sequences
    python benchmarks/decode_overhead.py --device cuda         # on a GPU: eager vs CUDA graphs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def tiny_wide_model(depth: str, device: str):
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    sys.path.insert(0, str(Path(__file__).parent))
    from real_size import _BART_COMMON, _DAVIT_COMMON, FLORENCE2_SIZES, FLORENCE_VOCAB, IMAGE_TOKEN_ID

    layers = FLORENCE2_SIZES[depth]["text"]["encoder_layers"]
    config = Florence2Config(
        vision_config=dict(
            **_DAVIT_COMMON, embed_dim=[8] * 4, num_heads=[1] * 4, num_groups=[1] * 4, projection_dim=64
        ),
        text_config=dict(
            **_BART_COMMON,
            d_model=64,
            encoder_layers=layers,
            decoder_layers=layers,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_position_embeddings=1024,
            vocab_size=FLORENCE_VOCAB,
        ),
        image_token_id=IMAGE_TOKEN_ID,
    )
    torch.manual_seed(0)
    return Florence2ForConditionalGeneration(config).eval().to(device)


def seconds_per_step(model, rows: int, tokens: int, device: str, **options) -> float:
    """Seconds per decoding step after the first, ``rows`` sequences at once."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    ids = torch.full((rows, 600), 5, device=device)
    ids[:, :577] = model.config.image_token_id
    features = torch.randn(rows, 577, 64, device=device)

    def decode():
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                **options,
            )
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(count):
        nonlocal tokens
        tokens = count
        decode()  # warm-up (and compilation)
        started = time.perf_counter()
        decode()
        return time.perf_counter() - started

    steps = tokens
    return (timed(steps) - timed(1)) / (steps - 1)  # the prefill (text encoder, first step) taken out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", choices=["base", "large"], default="large")
    parser.add_argument("--rows", type=int, default=16, help="sequences decoded together")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from grounded_sam.detection.florence2_decoding import decoding_options

    model = tiny_wide_model(args.depth, args.device)
    eager = seconds_per_step(model, args.rows, args.tokens, args.device)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        seconds_per_step(model, args.rows, 11, args.device)
    counts = {event.key: event.count for event in profiler.key_averages()}
    calls = sum(count for key, count in counts.items() if key.startswith("aten::"))
    steps = counts.get("aten::argmax", 0)  # greedy decoding: one argmax per step (prefill calls spread over them)
    calls_per_step = calls / steps if steps else float("nan")

    options = decoding_options(torch.device(args.device), num_beams=1)  # what Florence2Detector.compile() uses
    compiled = seconds_per_step(model, args.rows, args.tokens, args.device, **options)
    print(f"Florence-2 {args.depth} depth, tiny widths, {args.rows} sequences x {args.tokens} tokens on {args.device}")
    print(f"eager:    {eager * 1e3:7.2f} ms per step (about {calls_per_step:.0f} aten calls per step)")
    print(f"compiled: {compiled * 1e3:7.2f} ms per step (static KV cache, compiled by transformers' generate)")


if __name__ == "__main__":
    main()

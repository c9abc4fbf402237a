"""Seconds per image of the two image encoders, one image per pass against a batch: is batching worth it here?

    python benchmarks/encoder_batch.py                     # Florence-2 base + SAM 2.1 tiny, batch 4, on the CPU
    python benchmarks/encoder_batch.py --pair default --batch 16 --device cuda

Real-size random-weight models (``real_size.py``); the best of two timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from throughput import PAIRS, models_for


def seconds_per_image(encode, pixels, device: str, repeats: int = 2) -> float:
    encode(pixels)
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        encode(pixels)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best / len(pixels)


def main() -> None:
    from transformers import Florence2ForConditionalGeneration, Sam2Model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=PAIRS, default="fast")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "grounded-sam-bench")
    args = parser.parse_args()
    florence_dir, sam_dir = models_for(args.pair, args.models)
    florence = Florence2ForConditionalGeneration.from_pretrained(florence_dir).to(args.device).eval()
    sam = Sam2Model.from_pretrained(sam_dir).to(args.device).eval()
    encoders = {
        "Florence-2 vision encoder": (lambda x: florence.get_image_features(x), 768),
        "SAM 2 image encoder": (lambda x: sam.get_image_embeddings(x), 1024),
    }
    with torch.inference_mode():
        for name, (encode, side) in encoders.items():
            for batch in (1, args.batch):
                pixels = torch.randn(batch, 3, side, side, device=args.device)
                print(
                    f"{name:26} batch {batch:3}: {seconds_per_image(encode, pixels, args.device):.3f} s/image",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Peak host memory of labeling N and 10 x N images: it must stay flat, since results are written as they come.

Runs each size in a fresh process with tiny random-weight models (no download), on synthetic images, and prints
one row per size: images, seconds, RSS once the models are loaded, peak RSS, and the growth between the two.

    python benchmarks/labeling_memory.py                 # N = 40, then 400
    python benchmarks/labeling_memory.py --images 100 --size 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def child(workdir: Path, count: int, size: int, batch_size: int) -> dict:
    from PIL import Image

    from grounded_sam import CaptionOntology, GroundedSAM2
    from grounded_sam.testing import build_tiny_florence2, build_tiny_sam2

    script = "a dog<loc_100><loc_120><loc_450><loc_600>Persons<loc_400><loc_100><loc_900><loc_400>"
    florence = build_tiny_florence2(workdir / "florence", script=script)
    sam = build_tiny_sam2(workdir / "sam")
    model = GroundedSAM2(
        CaptionOntology({"a dog": "dog", "a person": "person"}),
        florence=florence,
        sam=sam,
        device="cpu",
        dtype="float32",
        max_new_tokens=32,
    )
    photos = workdir / f"photos_{count}"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(photos / f"{index:05d}.png")
    model.predict_arrays([np.zeros((size, size, 3), np.uint8)])  # warm-up, so both sizes start from the same state
    loaded = _peak_rss_mb()
    started = time.perf_counter()
    model.label(photos, output_folder=workdir / f"out_{count}", batch_size=batch_size, progress=False, verbose=False)
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    return {
        "images": count,
        "seconds": round(seconds, 1),
        "peak_before_mb": round(loaded),
        "peak_mb": round(peak),
        "growth_mb": round(peak - loaded),
        "rss_end_mb": round(_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40, help="N: the small run labels N images, the large 10 N")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.child:
        print(json.dumps(child(args.workdir, args.child, args.size, args.batch_size)))
        return
    print(f"{'images':>7} {'seconds':>8} {'peak after load MB':>19} {'peak MB':>8} {'growth MB':>10}")
    for count in (args.images, 10 * args.images):
        with tempfile.TemporaryDirectory() as workdir:
            command = [
                sys.executable,
                __file__,
                "--child",
                str(count),
                "--workdir",
                workdir,
                "--size",
                str(args.size),
                "--batch-size",
                str(args.batch_size),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{row['images']:>7} {row['seconds']:>8} {row['peak_before_mb']:>19} {row['peak_mb']:>8} "
                f"{row['growth_mb']:>10}"
            )


if __name__ == "__main__":
    main()

"""Latency of one click refinement in the app, with SAM 2.1 tiny at real size (random weights) on this machine.

Both sides run the app's own click (``grounded_sam.apps.web.editing.refine``: the detection's box plus every click
so far through SAM 2, the mask upsampled to the image and kept as RLE):

- decoder only: on the image's cached embedding, as the app does (the embedding is computed once per image);
- re-encoding: the same click with the embedding dropped first, so SAM 2's image encoder runs again (what an app
  without the cache pays per click).

Also timed: the image encoder alone, and the 1-bit PNG of the new mask that the page receives.

    python benchmarks/app_click.py [--clicks 5] [--sizes 1024x768,4000x3000] [--sam DIR] [--out result.json]

``--sam`` takes a SAM 2 folder instead of the real-size random SAM 2.1 tiny (the tests use a tiny one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from grounded_sam.apps.web import editing, pictures
from grounded_sam.apps.web.models import AppModels
from grounded_sam.apps.web.state import Workspace
from grounded_sam.pipeline import PipelineSpec
from grounded_sam.segmentation import Segmenter


def real_size_tiny() -> Segmenter:
    """SAM 2.1 hiera-tiny's architecture with random weights, and the processor of the real checkpoints."""
    from transformers import Sam2Model

    from grounded_sam.models.checkpoints import default_sam2_processor, sam2_config

    torch.manual_seed(0)
    return Segmenter.from_model(Sam2Model(sam2_config("tiny")).eval(), default_sam2_processor())


def photo(width: int, height: int) -> np.ndarray:
    """scikit-image's astronaut resized to (height, width, 3) uint8 RGB."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def measure(models: AppModels, width: int, height: int, clicks: int) -> dict:
    """Seconds per step for one image: encoding, and ``clicks`` clicks on one object both ways."""
    workspace = Workspace(image=photo(width, height), name=f"{width}x{height}")
    editing.embedding(models, workspace)  # warm-up: the first pass allocates
    workspace.embedding = None
    _, encode = timed(lambda: editing.embedding(models, workspace))
    box = [width * 0.2, height * 0.2, width * 0.7, height * 0.8]
    detection = editing.add_from_box(models, workspace, "object", box)
    rng = np.random.default_rng(0)
    points = [[float(rng.uniform(box[0], box[2])), float(rng.uniform(box[1], box[3]))] for _ in range(clicks)]
    labels = [0 if index % 3 == 2 else 1 for index in range(clicks)]
    cached, reencoded, preview = [], [], []
    for point, label in zip(points, labels):
        _, seconds = timed(lambda point=point, label=label: editing.refine(models, workspace, detection, point, label))
        cached.append(seconds)
        _, seconds = timed(lambda: pictures.mask_data_url(detection.mask, (255, 0, 0)))
        preview.append(seconds)
    detection.points, detection.labels = [], []  # the same clicks again, each paying the image encoder
    for point, label in zip(points, labels):
        workspace.embedding = None
        _, seconds = timed(lambda point=point, label=label: editing.refine(models, workspace, detection, point, label))
        reencoded.append(seconds)
    return {
        "encode_s": round(encode, 3),
        "click_decoder_only_s": [round(value, 4) for value in cached],
        "click_with_reencode_s": [round(value, 3) for value in reencoded],
        "mask_png_s": [round(value, 4) for value in preview],
        "median_decoder_only_s": round(statistics.median(cached), 4),
        "median_with_reencode_s": round(statistics.median(reencoded), 3),
        "ratio": round(statistics.median(reencoded) / statistics.median(cached), 1),
        "load_average": [round(value, 1) for value in os.getloadavg()],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--sizes", default="1024x768,4000x3000")
    parser.add_argument("--sam", default=None, help="a SAM 2 folder (default: real-size SAM 2.1 tiny, random)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    segmenter = Segmenter(args.sam, device="cpu", dtype="float32") if args.sam else real_size_tiny()
    models = AppModels(segmenter, None, PipelineSpec(), "benchmark")
    report = {
        "sam": args.sam or "sam2.1 hiera-tiny architecture, random weights",
        "device": str(segmenter.device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_start": [round(value, 1) for value in os.getloadavg()],
        "sizes": {},
    }
    for size in args.sizes.split(","):
        width, height = (int(value) for value in size.split("x"))
        report["sizes"][size] = measure(models, width, height, args.clicks)
        print(size, json.dumps(report["sizes"][size]), flush=True)
    if args.out:
        with open(args.out, "w") as file:
            json.dump(report, file, indent=2)
    return report


if __name__ == "__main__":
    main()

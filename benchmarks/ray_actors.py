"""Labeling on Ray: 1 against 2 actors on this machine, tiny models, as a ratio in one run.

Each side labels the same folder of 1024 x 768 JPEGs with ``label_folder(..., ray=True, actors=N)`` on one local Ray
(started once, CPU only). Runs go in ABBA order (1, 2, 2, 1 actors) so that the drift of a shared machine falls on
both sides alike. Two times per run:

- wall: the whole ``label_folder`` call, actor start (importing torch, building the pipeline) included;
- steady: first record written -> last record written, over the images between (the rate once the actors are up).

The tiny models (``grounded_sam.testing``) do little model work, so what is measured is mostly the host side each
actor does for its images (decode, SAM 2 pre-processing, mask conversion, label files): the part that scales with
actors on a CPU box. The ratio cannot exceed the number of free cores; the load average after each run is printed
beside it (on a shared machine other processes take their part).

    pip install -e ".[ray]"
    python benchmarks/ray_actors.py                    # 160 images, about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ONTOLOGY = {"a dog": "dog", "a cat": "cat"}


def make_images(folder: Path, count: int) -> None:
    """``count`` JPEGs of 1024 x 768: smooth random colour fields (JPEG-compressible, unlike noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    for index in range(count):
        small = generator.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((1024, 768), Image.BILINEAR).save(folder / f"photo_{index:04d}.jpg", quality=90)


def one_run(spec, photos: Path, output: Path, actors: int, batch_size: int) -> dict:
    from grounded_sam import label_folder

    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    report = label_folder(
        spec,
        photos,
        output_folder=output,
        ray=True,
        actors=actors,
        batch_size=batch_size,
        progress=False,
        verbose=False,
    )
    wall = time.perf_counter() - started
    # Label files are written by the actors as each image is done (records are rewritten at the end, with ids).
    written = sorted(path.stat().st_mtime for path in output.glob("*/labels/*.txt"))
    steady = (len(written) - 1) / (written[-1] - written[0])
    return {
        "actors": actors,
        "labeled": report.labeled_this_run,
        "wall_s": wall,
        "steady_images_per_s": steady,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    arguments = parser.parse_args()

    import ray

    from grounded_sam import PipelineSpec
    from grounded_sam.testing import DEMO_SCRIPT, build_tiny_florence2, build_tiny_sam2

    work = arguments.work or Path(tempfile.mkdtemp(prefix="ray_actors_"))
    florence, sam = build_tiny_florence2(work / "florence", script=DEMO_SCRIPT), build_tiny_sam2(work / "sam")
    make_images(work / "photos", arguments.images)
    spec = PipelineSpec(ONTOLOGY, florence=florence, sam=sam, device="cpu")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        runs = [one_run(spec, work / "photos", work / "out", actors, arguments.batch_size) for actors in (1, 2, 2, 1)]
    finally:
        ray.shutdown()
    print(f"{arguments.images} images of 1024 x 768, tiny models, batch {arguments.batch_size}, {os.cpu_count()} cores")
    print("| actors | labeled | wall s | steady images/s | load average after |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run['actors']} | {run['labeled']} | {run['wall_s']:.1f} | {run['steady_images_per_s']:.2f} "
            f"| {run['load']:.1f} |"
        )
    for key, label in (("steady_images_per_s", "steady rate"), ("wall_s", "wall time")):
        one = statistics.mean(run[key] for run in runs if run["actors"] == 1)
        two = statistics.mean(run[key] for run in runs if run["actors"] == 2)
        ratio = two / one if key == "steady_images_per_s" else one / two
        print(f"2 actors against 1, {label}: {ratio:.2f}x")
    if arguments.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

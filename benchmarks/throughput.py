"""Labeling throughput: the usual loop against grounded-sam's engine, same images, same real-size models.

The usual loop is what autodistill-grounded-sam-2 does today (autodistill 0.1.29, autodistill-florence-2 0.1.1):
one image at a time, Florence-2 in float32 with beam search (3 beams) on one phrase-grounding caption of every class,
SAM 2's image encoder once per image and its mask decoder once per box (each mask copied back on its own), every
result kept in memory and written at the end with supervision's ``as_yolo``. The engine is ``GroundedSAM2.label``
with its defaults (greedy decoding, batches, bf16 on CUDA, loading ahead and writing behind).

Models are real-size architectures with random weights (``real_size.py``, nothing downloaded), so the text they write
is noise: both sides decode exactly ``--tokens`` new tokens, hand SAM 2 the same four boxes per image, and write the
same ellipse-shaped masks (SAM 2's noise masks are computed, then replaced), so both do the same amount of work.
Each side runs in its own process (clean peak memory) after one warm-up image.

    python benchmarks/throughput.py                          # CPU: fast pair, 6 images (a few minutes)
    python benchmarks/throughput.py --pair default --images 64 --batch-size 16      # on a GPU
    python benchmarks/throughput.py --pair accurate --images 64 --sides engine      # FLOP floor on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAIRS = {
    "fast": ("base", "tiny"),
    "default": ("large", "base_plus"),
    "accurate": ("large", "large"),
    "tiny": ("testing", "testing"),  # grounded_sam.testing's tiny models, built in seconds: smoke runs only
}
CLASSES = {"a person": "person", "a cat": "cat", "a cup": "cup", "a rocket": "rocket"}


def fixed_boxes(width: int, height: int) -> np.ndarray:
    """Four disjoint boxes (xyxy pixels), one per class, the same on both sides."""
    corners = np.array(
        [[0.05, 0.05, 0.45, 0.45], [0.55, 0.05, 0.95, 0.45], [0.05, 0.55, 0.45, 0.95], [0.55, 0.55, 0.95, 0.95]],
        dtype=np.float32,
    )
    return corners * np.array([width, height, width, height], dtype=np.float32)


def ellipse_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, H, W) bool: the ellipse inscribed in each box. Random weights give noise masks, whose polygons are neither
    realistic nor writable by supervision ("No foreground-contained seam"); both sides write these instead, after
    SAM 2 has done its full work."""
    rows, columns = np.mgrid[:height, :width]
    masks = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        masks.append(((columns - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1)
    return np.array(masks, dtype=bool).reshape(len(boxes), height, width)


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` JPEG photos of 1024 x 768 (scikit-image's samples, resized), as a user's folder would hold."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    samples = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    paths = []
    for index in range(count):
        path = folder / f"photo_{index:04d}.jpg"
        Image.fromarray(samples[index % len(samples)]).resize((1024, 768)).save(path, quality=90)
        paths.append(path)
    return paths


def models_for(pair: str, cache: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(Path(__file__).parent))
    from real_size import build_florence2, build_sam2

    if pair == "tiny":
        from grounded_sam.testing import build_tiny_florence2, build_tiny_sam2

        def build_florence2(path, _):
            return build_tiny_florence2(path)

        def build_sam2(path, _):
            return build_tiny_sam2(path)

    florence_size, sam_size = PAIRS[pair]
    florence, sam = cache / f"florence2-{florence_size}", cache / f"sam2-{sam_size}"
    if not (florence / "config.json").is_file():
        build_florence2(florence, florence_size)
    if not (sam / "config.json").is_file():
        build_sam2(sam, sam_size)
    return florence, sam


# --- the usual loop ------------------------------------------------------------------------------------------------
def usual_loop(florence_dir, sam_dir, paths, output, tokens, device, stopwatch=None):
    import cv2
    import supervision as sv
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Florence2ForConditionalGeneration, Sam2Model, Sam2Processor

    florence = Florence2ForConditionalGeneration.from_pretrained(florence_dir, dtype=torch.float32).to(device).eval()
    processor = AutoProcessor.from_pretrained(florence_dir)
    sam = Sam2Model.from_pretrained(sam_dir).to(device).eval()
    sam_processor = Sam2Processor.from_pretrained(sam_dir)
    classes = list(dict.fromkeys(CLASSES.values()))
    caption = "<CAPTION_TO_PHRASE_GROUNDING>A photo of " + ", and ".join(classes) + "."
    sam_autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    )

    @torch.inference_mode()
    def predict(path):
        image = Image.fromarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        inputs = processor(text=caption, images=image, return_tensors="pt").to(device)
        generated = florence.generate(
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"],
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            num_beams=3,
            do_sample=False,
            early_stopping=False,
        )
        # The text is decoded, but not parsed: the locally built processor has no hub post-processing config, and
        # random weights write no usable box anyway; both sides get the same fixed boxes (parsing costs ~1 ms).
        processor.batch_decode(generated, skip_special_tokens=False)
        boxes = fixed_boxes(*image.size)
        rgb = np.asarray(image)
        with sam_autocast:
            sam_inputs = sam_processor(images=rgb, return_tensors="pt").to(device)
            embeddings = sam.get_image_embeddings(sam_inputs["pixel_values"])
            masks = []
            for box in boxes:  # SAM2ImagePredictor.predict(box=box) per detection
                prompt = sam_processor(
                    input_boxes=[[box.tolist()]], original_sizes=sam_inputs["original_sizes"], return_tensors="pt"
                ).to(device)
                output = sam(image_embeddings=embeddings, input_boxes=prompt["input_boxes"], multimask_output=False)
                mask = sam_processor.post_process_masks(output.pred_masks.float().cpu(), sam_inputs["original_sizes"])
                masks.append(mask[0][0, 0].numpy())
        return sv.Detections(
            xyxy=boxes,
            mask=ellipse_masks(boxes, *np.array(masks).shape[1:]),
            class_id=np.arange(len(boxes)),
            confidence=np.ones(len(boxes), dtype=np.float32),
        )

    if stopwatch is not None:
        _profile_stages(stopwatch, florence, sam, sam_processor)
    predict(paths[0])  # warm-up
    _sync(device)
    if stopwatch is not None:
        stopwatch.reset()
    started = time.perf_counter()
    annotations = {str(path): predict(path) for path in paths}  # autodistill keeps everything until the end
    written = time.perf_counter()
    sv.DetectionDataset(classes=classes, images=[str(path) for path in paths], annotations=annotations).as_yolo(
        images_directory_path=str(output / "images"),
        annotations_directory_path=str(output / "labels"),
        data_yaml_path=str(output / "data.yaml"),
        min_image_area_percentage=0.01,
    )
    _sync(device)
    if stopwatch is not None:
        stopwatch.seconds["writing the dataset (as_yolo)"] = time.perf_counter() - written
    return time.perf_counter() - started


# --- the engine ----------------------------------------------------------------------------------------------------
class FixedBoxes:
    """The engine's detector, run in full (vision encoder, fixed-length decoding, parsing), with its boxes replaced
    by :func:`fixed_boxes` so that SAM 2 gets the same work as in the usual loop."""

    def __init__(self, detector):
        self.detector = detector

    def detect(self, images):
        import supervision as sv

        self.detector.detect(images)
        names = list(CLASSES.values())
        return [
            sv.Detections(
                xyxy=fixed_boxes(image.shape[1], image.shape[0]),
                confidence=np.ones(4, np.float32),
                class_id=np.arange(4),
                data={"class_name": np.array(names), "prompt": np.array(list(CLASSES))},
            )
            for image in images
        ]


class EllipseMasks:
    """The engine's segmenter, run in full, with its masks replaced by :func:`ellipse_masks`, as on the other side."""

    def __init__(self, segmenter):
        self.segmenter = segmenter

    def segment(self, images, detections):
        segmented = self.segmenter.segment(images, detections)
        for image, found in zip(images, segmented):
            found.mask = ellipse_masks(found.xyxy, *image.shape[:2])
        return segmented


def engine(florence_dir, sam_dir, paths, output, tokens, device, batch_size, workers, compile, stopwatch=None):
    from grounded_sam import CaptionOntology, GroundedSAM2, load_image

    model = GroundedSAM2(
        CaptionOntology(CLASSES),
        florence=florence_dir,
        sam=sam_dir,
        device=device,
        max_new_tokens=tokens,
        compile=compile,
    )
    model.detector.model.generation_config.min_new_tokens = tokens  # fixed length, as on the other side
    if stopwatch is not None:
        _profile_stages(stopwatch, model.detector.model, model.segmenter.model, model.segmenter.processor)
        stopwatch.wrap(model, "predict_arrays", "model, all stages (main thread)")
    model.detector, model.segmenter = FixedBoxes(model.detector), EllipseMasks(model.segmenter)
    warm_up = min(batch_size, len(paths)) if compile or model.device.type == "cuda" else 1  # full batch: compile
    model.predict_arrays([load_image(paths[0])] * warm_up)
    _sync(model.device)
    if stopwatch is not None:
        stopwatch.reset()
    started = time.perf_counter()
    model.label(
        paths[0].parent, output_folder=output, batch_size=batch_size, workers=workers, progress=False, verbose=False
    )
    _sync(model.device)
    seconds = time.perf_counter() - started
    stages = dict(stopwatch.seconds) if stopwatch is not None else None
    flops = _flops_per_image(model, load_image(paths[0]))
    if stopwatch is not None:
        stopwatch.seconds = stages
    return seconds, flops


def _flops_per_image(model, image) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # Counted on the eager path: the same operators, and no compiling under the counter's dispatch mode.
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        model.predict_arrays([image])
    return counter.get_total_flops()


# --- the host side alone -------------------------------------------------------------------------------------------
class InstantModel:
    """Answers at once with the benchmark's four boxes and ellipse masks (made once per image size): labeling with
    it measures what the engine's host side (decoding, mask conversion, YOLO + COCO writes) can take per second, the
    ceiling for any accelerator."""

    def __init__(self):
        from grounded_sam import CaptionOntology

        self.ontology, self.masks = CaptionOntology(CLASSES), {}

    def settings(self) -> dict:
        return {"model": "instant"}

    def predict_arrays(self, images):
        import supervision as sv

        results = []
        for image in images:
            height, width = image.shape[:2]
            boxes = fixed_boxes(width, height)
            if (height, width) not in self.masks:
                self.masks[height, width] = ellipse_masks(boxes, height, width)
            results.append(
                sv.Detections(
                    xyxy=boxes,
                    mask=self.masks[height, width].copy(),
                    class_id=np.arange(4),
                    confidence=np.ones(4, np.float32),
                    data={"class_name": np.array(list(CLASSES.values()))},
                )
            )
        return results


def host_side(paths, output, batch_size, workers) -> float:
    from grounded_sam import label_folder

    started = time.perf_counter()
    label_folder(
        InstantModel(),
        paths[0].parent,
        output_folder=output,
        batch_size=batch_size,
        workers=workers,
        progress=False,
        verbose=False,
    )
    return time.perf_counter() - started


def matmul_rate(device: str) -> float:
    """Measured dense matmul FLOP/s: bf16 on CUDA (the floor the issue names), float32 on CPU."""
    import torch

    cuda = device.startswith("cuda")
    size, dtype = (8192, torch.bfloat16) if cuda else (2048, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    repeats = 50 if cuda else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


class Stopwatch:
    """Per-stage wall time: wraps methods of live objects and adds up their seconds (synchronizing CUDA around
    each call, which costs a little overlap: use it to see where time goes, not for the headline figure)."""

    def __init__(self, device: str):
        self.device, self.seconds = device, {}

    def wrap(self, owner, name: str, stage: str) -> None:
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            _sync(self.device)
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.seconds = {}


def _profile_stages(stopwatch, florence, sam, sam_processor) -> None:
    stopwatch.wrap(florence.model, "get_image_features", "florence vision encoder")
    stopwatch.wrap(florence, "generate", "florence generate (usual: + vision encoder)")
    stopwatch.wrap(sam, "get_image_embeddings", "sam image encoder")
    stopwatch.wrap(sam, "forward", "sam mask decoder")
    stopwatch.wrap(sam_processor, "post_process_masks", "sam mask upsampling")


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_side(args) -> dict:
    """In a child process: one side, timed, with its peak memory."""
    import torch

    from grounded_sam.device import resolve_device

    device = str(resolve_device(args.device))
    torch.manual_seed(0)
    paths = sorted(Path(args.photos).glob("*.jpg"))
    output = Path(tempfile.mkdtemp(prefix=f"{args.side}_"))
    stopwatch = Stopwatch(device) if args.profile else None
    if args.side == "usual":
        seconds, flops = usual_loop(args.florence, args.sam, paths, output, args.tokens, device, stopwatch), None
    elif args.side == "host":
        seconds, flops = host_side(paths, output / "dataset", args.batch_size, args.workers), None
    else:
        seconds, flops = engine(
            args.florence,
            args.sam,
            paths,
            output / "dataset",
            args.tokens,
            device,
            args.batch_size,
            args.workers,
            args.compile,
            stopwatch,
        )
    return {
        "side": args.side,
        "images": len(paths),
        "seconds": seconds,
        "images_per_second": len(paths) / seconds,
        "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "flops_per_image": flops,
        "device": device,
        "threads": torch.get_num_threads(),
        "stages": stopwatch.seconds if stopwatch is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Labeling throughput: the usual loop against the engine.")
    parser.add_argument(
        "--pair",
        choices=PAIRS,
        default="fast",
        help="fast: base + tiny, default: large + base-plus, accurate: large + large, tiny: the tests' tiny models",
    )
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=40, help="new tokens decoded per sequence, both sides")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's image encoders and decoding")
    parser.add_argument(
        "--sides",
        default="usual,engine",
        help="any of usual, engine, host (the engine's file "
        "handling alone, with a model that answers at once: the most images/s the host can feed)",
    )
    parser.add_argument("--profile", action="store_true", help="also print seconds per image in each stage")
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "grounded-sam-bench")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--photos", help=argparse.SUPPRESS)
    parser.add_argument("--florence-dir", dest="florence", help=argparse.SUPPRESS)
    parser.add_argument("--sam-dir", dest="sam", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args)))
        return
    sides = args.sides.split(",")
    florence, sam = models_for(args.pair, args.models) if set(sides) - {"host"} else (None, None)
    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch) / "photos"
        make_images(photos, args.images)
        results = {}
        for side in sides:
            command = [
                sys.executable,
                __file__,
                "--side",
                side,
                "--photos",
                str(photos),
                "--florence-dir",
                str(florence),
                "--sam-dir",
                str(sam),
                "--tokens",
                str(args.tokens),
                "--batch-size",
                str(args.batch_size),
                "--workers",
                str(args.workers),
                "--device",
                args.device,
                *(["--compile"] if args.compile else []),
                *(["--profile"] if args.profile else []),
            ]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if done.returncode != 0:
                sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    report(args, results)


def report(args, results: dict) -> None:
    device = next(iter(results.values()))["device"]
    print(
        f"pair {args.pair} {PAIRS[args.pair]}, {args.images} images 1024x768, {args.tokens} new tokens, "
        f"batch {args.batch_size}, device {device}"
    )
    print(f"{'side':8} {'images/s':>9} {'seconds':>8} {'peak host MB':>13} {'peak GPU MB':>12}")
    for side, row in results.items():
        gpu = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
        print(f"{side:8} {row['images_per_second']:9.3f} {row['seconds']:8.1f} {row['peak_host_mb']:13.0f} {gpu:>12}")
    for side, row in results.items():
        for stage, seconds in (row["stages"] or {}).items():
            print(f"  {side:8} {stage:40} {seconds / row['images']:8.3f} s/image")
    if {"usual", "engine"} <= results.keys():
        ratio = results["engine"]["images_per_second"] / results["usual"]["images_per_second"]
        print(f"engine / usual loop: {ratio:.2f}x")
    if "engine" in results:
        flops = results["engine"]["flops_per_image"]
        rate = matmul_rate(device)
        floor = flops / rate  # seconds per image if every FLOP ran at the measured matmul rate
        achieved = 1 / results["engine"]["images_per_second"]
        kind = "bf16" if device.startswith("cuda") else "float32"
        print(
            f"engine FLOPs per image {flops / 1e12:.3f} TFLOP; {kind} matmul rate {rate / 1e12:.2f} TFLOP/s; "
            f"FLOP floor {floor * 1e3:.0f} ms/image; reached {100 * floor / achieved:.0f} % of it"
        )


if __name__ == "__main__":
    main()

"""Seconds per image of each detector at real size (random weights) on the CPU, side by side in one run.

    flock /tmp/grounded-sam-bench.lock nice -n 10 python benchmarks/detectors.py          # every detector
    python benchmarks/detectors.py owlv2-base grounding-dino-tiny --repeats 3            # some

Each detector runs in its own process (so each peak memory is its own) through grounded-sam's own detector class,
the call labeling makes (``detect([image])``): Florence-2 base and large (built by ``benchmarks/real_size.py``;
random weights decode exactly ``--tokens`` tokens per caption, as in the throughput benchmark), Grounding DINO tiny
and base, OWLv2 base/16 and SAM 3 (which also makes the masks: no SAM 2 pass follows it, while every other row is
followed by SAM 2's, see BENCHMARKS.md). One 1024 x 768 photo, three prompts, float32, one warm-up call (under
``FlopCounterMode``, which counts matmul, convolution and attention FLOPs but not Grounding DINO's ``grid_sample``),
then ``--repeats`` timed calls; the best is reported, with the float32 matmul rate measured just before it (the
machine may be shared) and the seconds each main stage took.

Real-size configs (no config.json can be downloaded here):
- Grounding DINO: transformers' ``convert_grounding_dino_to_hf.py`` (``get_grounding_dino_config``): tiny = Swin-T
  (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224), base = Swin-B (embed 128, depths 2-2-18-2, heads
  4-8-16-32, window 12, 384), out_indices 2-4; the rest ``GroundingDinoConfig`` defaults (d_model 256, 6 + 6 layers,
  900 queries, 256 text tokens) and bert-base-uncased (``BertConfig`` defaults); images to shortest edge 800, longest
  1333. MM Grounding DINO tiny has grounding-dino-tiny's architecture (its speed is the same).
- OWLv2 base/16 (ensemble or not: one architecture): ``Owlv2Config`` defaults (ViT-B/16 768 x 12, text 512 x 12,
  projection 512) at 960 px, the ``Owlv2ImageProcessor`` size.
- SAM 3: ``Sam3Config`` defaults (ViT 1024 x 32 at 1008 px, CLIP text 1024 x 24, DETR 6 + 6, 200 queries), which
  match ultralytics' ``build_sam3``.
Parameter counts: 172.3 M, 232.3 M, 155.0 M and 840.4 M (the hub's 848 M for SAM 3 also counts its tracker).
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

PROMPTS = {"a dog": "dog", "a cat": "cat", "a car": "car"}
IMAGE_SIZE = (1024, 768)  # width, height: a phone photo's aspect, as in the other benchmarks
_SWIN = {
    "tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224),
    "base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384),
}


def photo():
    """A 1024 x 768 RGB photo (scikit-image's astronaut, resized)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize(IMAGE_SIZE))


def _clip_ids(tokenizer) -> dict:
    """The text config's special ids of a local CLIP tokenizer (the text tower pools at the end-of-text token)."""
    return dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )


def florence2(size: str, tiny: bool, workdir: Path, tokens: int):
    import torch

    from grounded_sam.detection import Florence2Detector
    from grounded_sam.models import load_florence2
    from grounded_sam.testing import build_tiny_florence2

    if tiny:
        folder = build_tiny_florence2(workdir / "florence")
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from real_size import build_florence2

        folder = build_florence2(workdir / f"florence2-{size}", size)
    model, processor = load_florence2(folder, torch.device("cpu"))
    model.generation_config.min_new_tokens = tokens  # random weights: a fixed length, not wherever EOS falls
    detector = Florence2Detector(model, processor, _ontology(), max_new_tokens=tokens)
    language = model.model.language_model
    return detector, {"vision": model.model.vision_tower, "encoder": language.encoder, "decoder": language.decoder}


def grounding_dino(size: str, tiny: bool, workdir: Path):
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from grounded_sam.detection import GroundingDinoDetector
    from grounded_sam.models import load_grounding_dino
    from grounded_sam.testing import build_bert_tokenizer, build_tiny_grounding_dino

    if tiny:
        model, processor = load_grounding_dino(build_tiny_grounding_dino(workdir / "gdino"), torch.device("cpu"))
    else:
        backbone = SwinConfig(out_indices=[2, 3, 4], **_SWIN[size])
        config = GroundingDinoConfig(backbone_config=backbone, text_config=BertConfig())
        model = GroundingDinoForObjectDetection(config).eval()
        processor = GroundingDinoProcessor(GroundingDinoImageProcessor(), build_bert_tokenizer())
    stages = {"swin": model.model.backbone, "bert": model.model.text_backbone, "encoder": model.model.encoder}
    return GroundingDinoDetector(model, processor, _ontology()), {**stages, "decoder": model.model.decoder}


def owlv2(tiny: bool, workdir: Path):
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from grounded_sam.detection import Owlv2Detector
    from grounded_sam.models import load_owlv2
    from grounded_sam.testing import build_clip_tokenizer, build_tiny_owlv2

    if tiny:
        model, processor = load_owlv2(build_tiny_owlv2(workdir / "owlv2"), torch.device("cpu"))
    else:
        tokenizer = build_clip_tokenizer(model_max_length=16)
        config = Owlv2Config(text_config=_clip_ids(tokenizer), vision_config=dict(image_size=960))
        model = Owlv2ForObjectDetection(config).eval()
        processor = Owlv2Processor(Owlv2ImageProcessor(), tokenizer)
    return Owlv2Detector(model, processor, _ontology()), {"vision": model.owlv2.vision_model}


def sam3(tiny: bool, workdir: Path):
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from grounded_sam.models import load_sam3
    from grounded_sam.segmentation import Sam3Backend
    from grounded_sam.testing import build_clip_tokenizer, build_tiny_sam3

    if tiny:
        model, processor = load_sam3(build_tiny_sam3(workdir / "sam3"), torch.device("cpu"))
    else:
        tokenizer = build_clip_tokenizer(model_max_length=32)
        # Sam3Config's own text tower (CLIP 1024 x 24) with the local tokenizer's ids: a text_config dict of ids
        # alone would fall back to CLIPTextConfig's smaller defaults (512 x 12).
        text_config = {**Sam3Config().text_config.to_dict(), **_clip_ids(tokenizer)}
        model = Sam3Model(Sam3Config(text_config=text_config)).eval()
        processor = Sam3Processor(Sam3ImageProcessor(), tokenizer)
    stages = {"vision": model.vision_encoder, "text": model.text_encoder, "detr encoder": model.detr_encoder}
    stages |= {"detr decoder": model.detr_decoder, "mask decoder": model.mask_decoder}
    return Sam3Backend(model, processor, _ontology()), stages


def _ontology():
    from grounded_sam import CaptionOntology

    return CaptionOntology(PROMPTS)


BUILDERS = {
    "florence2-base": lambda tiny, workdir, tokens: florence2("base", tiny, workdir, tokens),
    "florence2-large": lambda tiny, workdir, tokens: florence2("large", tiny, workdir, tokens),
    "grounding-dino-tiny": lambda tiny, workdir, tokens: grounding_dino("tiny", tiny, workdir),
    "grounding-dino-base": lambda tiny, workdir, tokens: grounding_dino("base", tiny, workdir),
    "owlv2-base": lambda tiny, workdir, tokens: owlv2(tiny, workdir),
    "sam3": lambda tiny, workdir, tokens: sam3(tiny, workdir),
}


class StageClock:
    """Seconds spent in named modules (forward hooks), summed over calls since the last :meth:`reset`."""

    def __init__(self, modules: dict):
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(lambda _module, _inputs, name=name: self._start(name))
            module.register_forward_hook(lambda _module, _inputs, _output, name=name: self._stop(name))

    def _start(self, name: str) -> None:
        self._started[name] = time.perf_counter()

    def _stop(self, name: str) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - self._started.pop(name)

    def reset(self) -> None:
        self.seconds = {}


def matmul_rate() -> float:
    """This moment's float32 matmul rate on this CPU, FLOP/s (the machine may be shared, so seconds move)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    started = time.perf_counter()
    for _ in range(8):
        a @ b
    return 8 * 2 * 1024**3 / (time.perf_counter() - started)


def measure(kind: str, tiny: bool = False, repeats: int = 2, tokens: int = 40, workdir: Path | None = None) -> dict:
    """Builds ``kind`` and times ``detect([photo])``: one warm-up under the FLOP counter, then ``repeats`` runs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as scratch:
        detector, stages = BUILDERS[kind](tiny, Path(workdir or scratch), tokens)
        image, clock = photo(), StageClock(stages)
        with FlopCounterMode(display=False) as counter:
            detector.detect([image])
        runs, rates, stage_seconds = [], [], {}
        for _ in range(repeats):
            rates.append(matmul_rate())
            clock.reset()
            started = time.perf_counter()
            found = detector.detect([image])[0]
            runs.append(time.perf_counter() - started)
            if runs[-1] == min(runs):
                stage_seconds = dict(clock.seconds)
        best = runs.index(min(runs))
        return {
            "detector": kind,
            "params_M": round(sum(p.numel() for p in detector.model.parameters()) / 1e6, 1),
            "s_per_image": round(runs[best], 3),
            "runs_s": [round(run, 3) for run in runs],
            "tflop_per_image": round(counter.get_total_flops() / 1e12, 3),
            "matmul_tflops_at_best": round(rates[best] / 1e12, 4),
            "stages_s": {name: round(value, 3) for name, value in stage_seconds.items()},
            "detections": len(found),
            "torch_threads": torch.get_num_threads(),
        }


def _table(rows: list[dict]) -> str:
    lines = [
        "| detector | params | s/image | TFLOP/image | matmul TFLOP/s at run | stages, s | peak RSS |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['detector']} | failed: {row['error'][-200:]} | | | | | |")
            continue
        stages = ", ".join(f"{name} {value:.1f}" for name, value in row["stages_s"].items())
        lines.append(
            f"| {row['detector']} | {row['params_M']} M | {row['s_per_image']:.1f} | {row['tflop_per_image']:.2f} | "
            f"{row['matmul_tflops_at_best']:.3f} | {stages} | {row['peak_rss_MB'] / 1024:.1f} GB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", metavar="DETECTOR", help=f"some of {', '.join(BUILDERS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=40, help="Florence-2's new tokens per caption")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the tiny test models instead (checks the script runs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.kinds) - set(BUILDERS)
    if unknown:
        parser.error(f"unknown detector(s) {', '.join(sorted(unknown))}: choose from {', '.join(BUILDERS)}")
    args.kinds = args.kinds or list(BUILDERS)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        result = measure(args.kinds[0], args.tiny, args.repeats, args.tokens)
        result["peak_rss_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = []
    for kind in args.kinds:
        flags = ["--repeats", str(args.repeats), "--tokens", str(args.tokens), "--threads", str(args.threads)]
        command = [sys.executable, __file__, kind, "--child", *flags, *(["--tiny"] * args.tiny)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        line = next((text for text in done.stdout.splitlines() if text.startswith("RESULT ")), None)
        rows.append(json.loads(line[7:]) if line else {"detector": kind, "error": done.stderr.strip()})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f}, {args.threads} torch threads\n")
    print(_table(rows))


if __name__ == "__main__":
    main()

"""The benchmark scripts run end to end (on the tiny models here), so they do not rot between measurements."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
pytestmark = pytest.mark.slow


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_throughput_sides_run_and_do_the_same_work(florence_dir, sam_dir, tmp_path):
    throughput = _load("throughput")
    paths = throughput.make_images(tmp_path / "photos", 3)
    usual = throughput.Stopwatch("cpu")
    seconds = throughput.usual_loop(florence_dir, sam_dir, paths, tmp_path / "usual", 4, "cpu", usual)
    assert seconds > 0 and len(list((tmp_path / "usual" / "labels").glob("*.txt"))) == 3
    engine = throughput.Stopwatch("cpu")
    seconds, flops = throughput.engine(florence_dir, sam_dir, paths, tmp_path / "engine", 4, "cpu", 2, 2, False, engine)
    assert seconds > 0 and flops > 0
    assert len(list((tmp_path / "engine").glob("*/labels/*.txt"))) == 3
    for stopwatch in (usual, engine):
        assert {"sam image encoder", "sam mask decoder"} <= stopwatch.seconds.keys()
    # same boxes and masks written on both sides: one YOLO line per fixed box
    usual_lines = sorted(len(p.read_text().splitlines()) for p in (tmp_path / "usual" / "labels").glob("*.txt"))
    engine_lines = sorted(len(p.read_text().splitlines()) for p in (tmp_path / "engine").glob("*/labels/*.txt"))
    assert usual_lines == engine_lines == [4, 4, 4]


def test_ellipse_masks_fill_their_boxes():
    throughput = _load("throughput")
    masks = throughput.ellipse_masks(np.array([[10, 20, 50, 40]], dtype=np.float32), 60, 80)
    assert masks.shape == (1, 60, 80) and masks[0, 30, 30] and not masks[0, 5, 5]
    assert abs(masks.sum() - np.pi * 20 * 10) < 20


def test_host_side_labels_every_image_with_the_fixed_boxes(tmp_path):
    throughput = _load("throughput")
    paths = throughput.make_images(tmp_path / "photos", 3)
    seconds = throughput.host_side(paths, tmp_path / "dataset", batch_size=2, workers=2)
    labels = sorted((tmp_path / "dataset").glob("*/labels/*.txt"))
    assert seconds > 0 and len(labels) == 3
    assert all(len(path.read_text().splitlines()) == 4 for path in labels)


def test_engine_side_runs_compiled(florence_dir, sam_dir, tmp_path):
    """``--compile``: full-batch warm-up, labeling and the FLOP count on compiled encoders and decoding."""
    throughput = _load("throughput")
    paths = throughput.make_images(tmp_path / "photos", 2)
    seconds, flops = throughput.engine(florence_dir, sam_dir, paths, tmp_path / "engine", 4, "cpu", 2, 2, True)
    assert seconds > 0 and flops > 0


def test_decode_overhead_runs_eager_and_compiled(monkeypatch, capsys):
    decode_overhead = _load("decode_overhead")
    monkeypatch.setattr(sys, "argv", ["decode_overhead.py", "--depth", "base", "--rows", "2", "--tokens", "3"])
    decode_overhead.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("eager:") and lines[2].startswith("compiled:") and "nan" not in lines[1]


USUAL_LOG = """pair default ('large', 'base_plus'), 16 images 1024x768, 40 new tokens, batch 8, device cuda
side      images/s  seconds  peak host MB  peak GPU MB
usual        2.500      6.4          7000         9000
"""
COMPILED_LOG = """pair default ('large', 'base_plus'), 128 images 1024x768, 40 new tokens, batch 16, device cuda
side      images/s  seconds  peak host MB  peak GPU MB
engine      61.250      2.1          9000        31000
engine FLOPs per image 2.404 TFLOP; bfloat16 matmul rate 780.00 TFLOP/s; FLOP floor 3 ms/image; reached 19 % of it
"""


def test_the_gpu_check_summary_reads_what_the_benchmarks_print(tmp_path):
    """benchmarks/gpu/report.py parses the benchmarks' printed figures: if their format changes, this fails here
    rather than on a lent GPU machine."""
    report = _load("gpu/report")
    for step, text in (("usual", USUAL_LOG), ("default-compiled", COMPILED_LOG)):
        (tmp_path / f"{step}.log").write_text(text)
        report.record(tmp_path, step, "ok", "0", "60.0", "150", str(tmp_path / f"{step}.log"), "python ...")
    summary = report.summary(tmp_path)
    assert "| usual loop, default pair, one image at a time | 2.500 images/s | |" in summary
    assert "61.25 images/s = **24.5x** the usual loop | >= 20x |" in summary
    rows = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"floor_percent": 19' in rows[1] and '"peak_gpu_mb": 31000.0' in rows[1]


@pytest.mark.parametrize("kind", ["florence2-base", "grounding-dino-tiny", "owlv2-base", "sam3"])
def test_detector_speed_benchmark_runs_each_detector(kind, tmp_path):
    detectors = _load("detectors")
    result = detectors.measure(kind, tiny=True, repeats=1, tokens=8, workdir=tmp_path)
    assert result["detector"] == kind and result["s_per_image"] > 0 and result["params_M"] > 0
    assert result["stages_s"] and all(seconds >= 0 for seconds in result["stages_s"].values())


def test_video_memory_runs_both_ways_on_the_same_frames(sam_dir, capsys):
    video_memory = _load("video_memory")
    rows = video_memory.main([3, 6], ["stream", "usual"], str(sam_dir), "cpu", 1)
    assert [(row["mode"], row["frames"]) for row in rows] == [("stream", 3), ("usual", 3), ("stream", 6), ("usual", 6)]
    assert all(row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0 and row["fps"] > 0 for row in rows)
    assert "stream: peak RSS 3 -> 6 frames" in capsys.readouterr().out

"""What only a CUDA GPU can show: bf16 autocast end to end, compiled decoding on CUDA graphs that are recorded once,
out-of-memory halving under a real memory cap. Run by benchmarks/gpu/run.sh on a lent GPU machine (this file imports
only what that bare machine has); skipped everywhere else."""

import logging
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam import CaptionOntology, GroundedSAM2
from grounded_sam.pipeline.engine import Engine

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _images(count: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def cuda_models(florence_dir, sam_dir, ontology):
    def build(**options):
        return GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cuda", max_new_tokens=64, **options)

    return build


def test_out_of_memory_halves_the_batch_under_a_real_memory_cap(florence_dir, sam_dir, tmp_path, caplog):
    """Caps this process's GPU memory between what one image needs and what a batch of 16 needs: the engine must
    halve the batch, warn, and label every image as an uncapped run does. First in the file: no CUDA graph pool of
    another test holds memory yet."""
    ontology = CaptionOntology({"a dog": "dog", "a person": "person"})
    model = GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cuda", max_new_tokens=64)
    big = _images(16, 2400, 3200)  # full-size pixels and masks dominate the memory: it grows with the batch

    def peak(count: int) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model.predict_arrays(big[:count])
        return torch.cuda.max_memory_allocated()

    single, whole = peak(1), peak(16)
    if whole < 2 * single:
        pytest.skip(f"a batch of 16 needs {whole} bytes, one image {single}: too close to force a halving")
    expected = [found.xyxy for found in model.predict_batch(big, batch_size=4)]
    for index, image in enumerate(big):
        Image.fromarray(image).save(tmp_path / f"big_{index:02d}.png")
    sources = [PurePosixPath(f"big_{index:02d}.png") for index in range(16)]
    engine, results = Engine(model, batch_size=16, workers=0), {}
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((single + whole) / 2 / torch.cuda.get_device_properties(0).total_memory)
    try:
        with caplog.at_level(logging.WARNING, logger="grounded_sam.pipeline.engine"):
            engine.run(tmp_path, sources, lambda source, image, found: results.__setitem__(source, found), [])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert engine.batch_size < 16 and "Out of GPU memory" in caplog.text
    assert [results[source].xyxy.tolist() for source in sources] == [boxes.tolist() for boxes in expected]


def test_bf16_autocast_runs_end_to_end_and_agrees_with_float32(cuda_models):
    fast, exact = cuda_models(), cuda_models(dtype="float32")
    assert (
        fast.settings()["detector"]["precision"] == "bfloat16"
        and fast.settings()["segmenter"]["precision"] == "bfloat16"
    )
    images = _images(4)
    for low, full in zip(fast.predict_batch(images, batch_size=4), exact.predict_batch(images, batch_size=4)):
        assert low.mask.dtype == bool and low.confidence.dtype == np.float32 and low.xyxy.dtype == np.float32
        assert np.array_equal(low.class_id, full.class_id)  # the scripted decoder's margins survive bf16
        np.testing.assert_allclose(low.xyxy, full.xyxy, atol=1.0)
        np.testing.assert_allclose(low.confidence, full.confidence, atol=2e-2)
        assert (low.mask == full.mask).mean() > 0.9


def _count_recordings(monkeypatch) -> list:
    """Counts CUDA graph recordings (torch has no public counter for them: this wraps its recording method)."""
    from torch._inductor import cudagraph_trees

    recorded = []
    real = cudagraph_trees.CUDAGraphTreeManager.record_function

    def counting(self, *args, **kwargs):
        recorded.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cudagraph_trees.CUDAGraphTreeManager, "record_function", counting)
    return recorded


def test_compiled_decoding_records_cuda_graphs_once_and_then_replays(cuda_models, monkeypatch):
    import torch._dynamo

    torch._dynamo.reset()
    recorded = _count_recordings(monkeypatch)
    model = cuda_models(compile=True)
    first, second, third = _images(4), _images(4, 400, 600), _images(4, 360, 480)
    model.predict_batch(first, batch_size=4)  # warm-up: compiles
    model.predict_batch(second, batch_size=4)  # records the graphs (cudagraph trees record on the second run)
    after_recording = len(recorded)
    address = model.detector.static_cache.cache.self_attention_cache.layers[0].keys.data_ptr()
    with torch._dynamo.config.patch(error_on_recompile=True):
        results = model.predict_batch(third, batch_size=4)
    assert after_recording > 0, "no CUDA graph was recorded: decoding did not run on CUDA graphs"
    assert len(recorded) == after_recording, "CUDA graphs were recorded again for a batch of the same size"
    assert model.detector.static_cache.cache.self_attention_cache.layers[0].keys.data_ptr() == address
    eager = cuda_models().predict_batch(third, batch_size=4)
    for compiled_result, eager_result in zip(results, eager):
        assert np.array_equal(compiled_result.class_id, eager_result.class_id)
        np.testing.assert_allclose(compiled_result.xyxy, eager_result.xyxy, atol=1.0)


def _moving_frames(count: int, height: int = 240, width: int = 320) -> list[np.ndarray]:
    """A textured background with a red box moving right: something for SAM 2's memory to follow."""
    background = np.random.default_rng(1).integers(40, 200, (height, width, 3), dtype=np.uint8)
    frames = []
    for index in range(count):
        frame = background.copy()
        x = 20 + (2 * index) % 200
        frame[60:140, x : x + 80] = (220, 40, 40)
        frames.append(frame)
    return frames


def test_video_tracking_on_cuda_keeps_gpu_memory_flat_and_offloading_changes_no_id(sam_dir):
    """Issue 15 on a GPU: bf16 autocast tracking yields every frame, peak GPU memory for 120 frames stays within 15 %
    of 20 frames' (the state SAM 2 will not read again is released), and the CPU-offloaded state tracks the same
    objects on the same frames."""
    from grounded_sam import VideoSegmenter

    segmenter = VideoSegmenter(sam=sam_dir, device="cuda")
    frames, boxes = _moving_frames(120), {0: {1: [20, 60, 100, 140], 2: [200, 150, 300, 230]}}

    def peak(count: int, offload: bool = False):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        results = list(segmenter.track(frames[:count], boxes=boxes, offload=offload))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(), results

    short, _ = peak(20)
    long, results = peak(120)
    assert [index for index, _ in results] == list(range(120))
    for _, detections in results:
        assert detections.mask.dtype == bool and detections.mask.shape[1:] == (240, 320)
        assert set(detections.tracker_id) <= {1, 2}
    assert long <= 1.15 * short, f"peak GPU memory {short} bytes for 20 frames, {long} for 120"
    _, offloaded = peak(120, offload=True)
    assert [list(d.tracker_id) for _, d in offloaded] == [list(d.tracker_id) for _, d in results]

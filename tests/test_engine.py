"""The throughput engine: same results as the plain pipeline, bounded look-ahead, out-of-memory halving, errors."""

import logging
import threading
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from helpers import CannedModel, canned_detections, make_good_images
from PIL import Image

from grounded_sam import label_folder
from grounded_sam.errors import GroundedSAMError
from grounded_sam.pipeline import engine as engine_module
from grounded_sam.pipeline.engine import Engine


def predict_paths(model, root, sources, batch_size, workers) -> dict:
    """{source: detections} through the engine."""
    results = {}
    Engine(model, batch_size, workers).run(
        root, list(sources), lambda s, image, found: results.__setitem__(s, found), []
    )
    return results


def _assert_same(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.confidence, b.confidence) and np.array_equal(a.class_id, b.class_id)
        assert list(a.data["class_name"]) == list(b.data["class_name"])
        assert np.array_equal(a.data["mask_score"], b.data["mask_score"])


@pytest.mark.slow
def test_engine_detections_equal_the_plain_pipeline(model, eight_photos_and_a_broken_file):
    sources = sorted(
        PurePosixPath(path.name) for path in eight_photos_and_a_broken_file.iterdir() if path.name != "broken.jpg"
    )
    plain = model.predict_batch([eight_photos_and_a_broken_file / source for source in sources], batch_size=3)
    engine = predict_paths(model, eight_photos_and_a_broken_file, sources, batch_size=3, workers=3)
    assert list(engine) == sources
    assert sum(len(found) for found in plain) > 0  # the comparison covers real masks
    _assert_same(list(engine.values()), plain)


def _files(folder: Path) -> dict:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in ("report.json", "lock")
    }


@pytest.mark.slow
def test_labeling_with_the_engine_writes_the_same_dataset_as_the_plain_loop(
    model, eight_photos_and_a_broken_file, tmp_path
):
    pipelined = label_folder(
        model,
        eight_photos_and_a_broken_file,
        output_folder=tmp_path / "a",
        workers=4,
        batch_size=3,
        progress=False,
        verbose=False,
    )
    plain = label_folder(
        model,
        eight_photos_and_a_broken_file,
        output_folder=tmp_path / "b",
        workers=0,
        batch_size=3,
        progress=False,
        verbose=False,
    )
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys() and len(files_a) > 20
    different = [name for name in files_a if files_a[name] != files_b[name] and not name.endswith("settings.json")]
    assert different == ["data.yaml"]  # it names its own folder
    assert pipelined.skipped == plain.skipped and pipelined.images_labeled == plain.images_labeled == 8


def test_loading_runs_ahead_by_at_most_prefetch_batches(tmp_path, monkeypatch):
    make_good_images(tmp_path, 20)
    started = []
    real_load = engine_module.load_batch
    monkeypatch.setattr(
        engine_module,
        "load_batch",
        lambda root, sources, skipped, budget: started.extend(sources) or real_load(root, sources, skipped, budget),
    )

    class Watching(CannedModel):
        def predict_arrays(self, images):
            done = sum(self.batches)
            assert len(started) <= done + (1 + 2) * 3, "loaded too far ahead"
            return super().predict_arrays(images)

    watching = Watching()
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())
    results = predict_paths(watching, tmp_path, sources, batch_size=3, workers=4)
    assert list(results) == sources and watching.batches == [3] * 6 + [2]


class RunsOutOfMemory(CannedModel):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def predict_arrays(self, images):
        if len(images) > self.limit:
            self.batches.append(-len(images))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict_arrays(images)


@pytest.mark.parametrize("workers", [0, 2])
def test_out_of_memory_halves_the_batch_retries_and_says_so(tmp_path, caplog, workers):
    make_good_images(tmp_path, 11)
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())
    model, skipped = RunsOutOfMemory(limit=2), []
    engine = Engine(model, batch_size=8, workers=workers)
    consumed = []
    with caplog.at_level(logging.WARNING, logger="grounded_sam.pipeline.engine"):
        engine.run(tmp_path, sources, lambda source, image, found: consumed.append((source, found)), skipped)
    assert [source for source, _ in consumed] == sources and skipped == []  # each image once, in order
    results = dict(consumed)
    assert engine.batch_size == 2
    assert model.batches[:3] == [-8, -4, 2]  # 8 fails, 4 fails, then halves of 2 go through
    assert "Out of GPU memory with 8 images per batch: retrying in batches of 4" in caplog.text
    for source in sources:
        expected = canned_detections(np.asarray(Image.open(tmp_path / source).convert("RGB")))
        assert np.array_equal(results[source].mask, expected.mask)


def test_a_failing_consumer_stops_the_run_with_its_error(tmp_path):
    make_good_images(tmp_path, 12)
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())
    seen, failed = [], []

    def consume(source, image, found):
        time.sleep(0.05)  # slower than the model: the next batches are queued behind the one that fails
        if len(seen) == 4 and not failed:  # fails once: anything consumed after the error would show in `seen`
            failed.append(source)
            raise OSError(28, "No space left on device")
        seen.append((source, threading.current_thread().name))

    model = CannedModel()
    with pytest.raises(OSError, match="No space left"):
        Engine(model, batch_size=2, workers=2, prefetch=2).run(tmp_path, sources, consume, [])
    assert [source for source, _ in seen] == sources[:4]  # in order, and nothing written after the failure
    assert sum(model.batches) <= 2 * (3 + 2)  # the model stopped within `prefetch` batches of the failing one
    assert all(name.startswith("consume") for _, name in seen)  # behind the model, on its own thread


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bug_in_the_consumer_keeps_its_type_and_names_the_image(tmp_path, workers):
    make_good_images(tmp_path, 3)
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())

    def consume(source, image, found):
        raise ValueError("No foreground-contained seam found for a mask hole.")

    with pytest.raises(ValueError, match="No foreground") as caught:
        Engine(CannedModel(), batch_size=2, workers=workers).run(tmp_path, sources, consume, [])
    assert not isinstance(caught.value, GroundedSAMError)  # a bug, not a user mistake: the CLI keeps its traceback
    assert caught.value.__notes__ == ["while handling the results of img_000.png"]


def test_prepare_runs_on_several_threads_and_consume_gets_its_result_in_order(tmp_path):
    """The pure part of consuming (mask conversion) runs concurrently: two calls must meet at a barrier, which a
    single thread could never pass; the writes still come in order on one thread, with prepare's results."""
    make_good_images(tmp_path, 8)
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())
    meet = threading.Barrier(2, timeout=10)
    calls, threads, consumed = [], set(), []

    def prepare(source, image, found):
        calls.append(None)
        threads.add(threading.current_thread().name)
        if len(calls) <= 2:  # the first two calls wait for each other
            meet.wait()
        return ("converted", len(found), image.shape)

    def consume(source, image, converted):
        consumed.append((source, converted, threading.current_thread().name))

    Engine(CannedModel(), batch_size=4, workers=2).run(tmp_path, sources, consume, [], prepare=prepare)
    assert [source for source, _, _ in consumed] == sources
    assert all(converted[0] == "converted" and converted[2] == (48, 64, 3) for _, converted, _ in consumed)
    assert len({name for _, _, name in consumed}) == 1 and all(name.startswith("convert") for name in threads)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_prepare_stops_the_run_naming_the_image(tmp_path, workers):
    make_good_images(tmp_path, 6)
    sources = sorted(PurePosixPath(path.name) for path in tmp_path.iterdir())
    consumed = []

    def prepare(source, image, found):
        if source.name == "img_002.png":
            raise ValueError("No foreground-contained seam found for a mask hole.")
        return found

    with pytest.raises(ValueError, match="No foreground") as caught:
        Engine(CannedModel(), batch_size=2, workers=workers).run(
            tmp_path, sources, lambda source, image, found: consumed.append(source), [], prepare=prepare
        )
    assert consumed == sources[:2] and caught.value.__notes__ == ["while handling the results of img_002.png"]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        Engine(CannedModel(), batch_size=0)


@pytest.mark.slow
def test_compiled_encoders_and_decoding_give_the_eager_results(
    model, florence_dir, sam_dir, ontology, eight_photos_and_a_broken_file
):
    import torch._dynamo

    from grounded_sam import GroundedSAM2

    torch._dynamo.reset()
    compiled = GroundedSAM2(
        ontology, florence=florence_dir, sam=sam_dir, device="cpu", dtype="float32", max_new_tokens=64, compile=True
    )
    assert type(compiled.segmenter.model.vision_encoder).__name__ == "OptimizedModule"
    assert compiled.detector.generate_options["cache_implementation"] == "static"
    assert compiled.detector.model.generation_config.cache_implementation is None  # the model's own config untouched
    images = [eight_photos_and_a_broken_file / "p0.jpg", eight_photos_and_a_broken_file / "p1.jpg"]
    # Compiled decoding must stay compiled: a decoder recompiled at every step (e.g. by a hook whose state the
    # compiler guards on) would hit dynamo's recompile limit and quietly run eager.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        eager, fast = model.predict_batch(images), compiled.predict_batch(images)
    for a, b in zip(eager, fast):  # fused kernels may round differently: equal boxes, masks within a few pixels
        assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
        assert (a.mask != b.mask).mean() < 1e-3
    cache = compiled.detector.static_cache.cache
    address = cache.self_attention_cache.layers[0].keys.data_ptr()
    with torch._dynamo.config.patch(error_on_recompile=True):  # the same batch again compiles nothing
        again = compiled.predict_batch(images)
    # and decodes into the same cache memory (CUDA graphs replay only on the addresses they were recorded with)
    assert compiled.detector.static_cache.cache is cache
    assert cache.self_attention_cache.layers[0].keys.data_ptr() == address
    assert all(np.array_equal(a.xyxy, b.xyxy) for a, b in zip(fast, again))


@pytest.mark.slow
def test_compiled_decoding_reuses_its_cache_without_leaking_one_batch_into_the_next(tmp_path, rng):
    """Random weights, so that what is decoded depends on the image: after a batch of other images, the reused
    static cache must give exactly what eager decoding gives for the new ones."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from grounded_sam import CaptionOntology, Florence2Detector
    from grounded_sam.testing import build_tiny_florence2

    folder = build_tiny_florence2(tmp_path / "florence")
    model = Florence2ForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    ontology = CaptionOntology({"a dog": "dog", "person": "person"})
    eager = Florence2Detector(model, processor, ontology, max_new_tokens=12)
    compiled = Florence2Detector(model, processor, ontology, max_new_tokens=12)
    compiled.compile()
    first, second = ([rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)] for _ in range(2))
    expected = []
    for images in (first, second):
        expected.append(eager.generate(images))
        sequences, log_probs = compiled.generate(images)
        assert torch.equal(sequences, expected[-1][0])
        np.testing.assert_allclose(log_probs, expected[-1][1], atol=1e-5)
    length = compiled.static_cache.shape[1]
    assert compiled.static_cache.shape == (2, length, 12)
    # a smaller batch (the last one, or an out-of-memory retry) gets its own cache, and the larger one is let go
    sequences, _ = compiled.generate(second[:1])
    assert torch.equal(sequences, eager.generate(second[:1])[0])
    assert compiled.static_cache.shape == (1, length, 12)
    assert not np.allclose(expected[0][1], expected[1][1])  # the two batches do decode differently

"""Throughput: keep the model busy while images are read ahead and results are written behind.

The model's math is not touched here: each batch goes through ``model.predict_arrays`` exactly as
``GroundedSAM2.predict_batch`` sends it, so the results are the same. What the engine adds is scheduling:

- image decoding (and EXIF, colour conversion) on worker threads, ``prefetch`` batches ahead of the model;
- whatever consumes a result behind the model, at most ``prefetch`` batches behind, so memory stays bounded: its pure
  part (polygon/RLE conversion in labeling) on ``workers`` threads, its writes in order on one background thread;
- on CUDA out-of-memory, the batch is split in halves and retried, and later batches use the smaller size.

Threads suffice: decoding (Pillow), mask conversion (OpenCV, pycocotools, numpy) and torch release the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded_sam.errors import UserInputError
from grounded_sam.pipeline.batching import IsolatingPredictor, load_batch

logger = logging.getLogger(__name__)

Loaded = list[tuple[PurePosixPath, np.ndarray]]


class Engine:
    """Runs a model over many image files with loading ahead and consuming behind.

    Args:
        model: anything with ``predict_arrays(list of (H, W, 3) uint8 RGB) -> list[sv.Detections]`` (``GroundedSAM2``).
        batch_size: images per model call (lowered for good after a CUDA out-of-memory).
        workers: threads that decode images, and as many that run ``prepare``; 0 does everything in the calling
            thread, in order (the plain loop).
        prefetch: batches loaded ahead of the model, and batches of results waiting to be consumed, at most.
        max_pixels: images with more pixels are skipped (from their header, before decoding); None: no limit.

    Memory is bounded by ``batch_size`` x ``max_pixels``: at most ``2 * prefetch + 1`` batches of images are held
    at once (loaded ahead, in the model, waiting behind), each image at most ``max_pixels`` pixels.
    """

    def __init__(self, model, batch_size: int = 8, workers: int = 4, prefetch: int = 2, max_pixels: int | None = None):
        if batch_size < 1 or workers < 0 or prefetch < 1:
            raise UserInputError(
                f"need batch_size >= 1, workers >= 0, prefetch >= 1; got {batch_size}, {workers}, {prefetch}"
            )
        self.model, self.batch_size, self.workers, self.prefetch = model, batch_size, workers, prefetch
        self.max_pixels = max_pixels

    def run(
        self,
        root: Path,
        sources: Sequence[PurePosixPath],
        consume: Callable[[PurePosixPath, np.ndarray, Any], None],
        skipped: list,
        on_batch: Callable[[int], None] = lambda count: None,
        prepare: Callable[[PurePosixPath, np.ndarray, sv.Detections], Any] | None = None,
    ) -> None:
        """Predicts ``root / source`` for every source and calls ``consume(source, image, detections)`` for each, in
        order, on a background thread (or inline with ``workers=0``). Unreadable images and images the model fails
        on alone go to ``skipped``; an exception from ``consume`` or ``prepare`` stops the run and is re-raised here.
        ``on_batch(n)`` is called from this thread after each batch of ``n`` sources was handed on.

        ``prepare(source, image, detections)``, when given, is the pure part of consuming (mask conversion):
        it runs on ``workers`` threads in any order, and ``consume`` gets its result in place of the detections, so
        that one in-order thread is left only the writing."""
        predictor = IsolatingPredictor(_HalvingOnOutOfMemory(self), skipped)
        if self.workers == 0:
            for batch in self._batches(sources):
                _consume_all(
                    consume, predictor(load_batch(root, batch, skipped, self.max_pixels)), threading.Event(), prepare
                )
                on_batch(len(batch))
            return
        loaders = ThreadPoolExecutor(self.workers, thread_name_prefix="load")
        converters = ThreadPoolExecutor(self.workers, thread_name_prefix="convert")
        consumer = ThreadPoolExecutor(1, thread_name_prefix="consume")
        stop = threading.Event()  # set on any failure: queued consumer work is dropped, not run after the error
        pending: deque[Future] = deque()
        try:
            for batch, loaded in self._loaded_ahead(loaders, root, sources, skipped):
                results = predictor(loaded)
                if prepare is not None:
                    results = [(item, converters.submit(prepare, *item, found)) for item, found in results]
                # Finished consumer work is checked every batch, so its error stops the model at once; at most
                # `prefetch` batches wait (a slow disk slows the model, and memory stays flat).
                while pending and (pending[0].done() or len(pending) >= self.prefetch):
                    pending.popleft().result()
                pending.append(consumer.submit(_consume_all, consume, results, stop))
                on_batch(len(batch))
            while pending:
                pending.popleft().result()
        except BaseException:
            stop.set()
            raise
        finally:
            loaders.shutdown(wait=True, cancel_futures=True)
            consumer.shutdown(wait=True, cancel_futures=stop.is_set())
            converters.shutdown(wait=True, cancel_futures=True)  # after the consumer: nothing it waits on is dropped

    def _batches(self, sources: Sequence) -> Iterator[Sequence]:
        """Consecutive batches of ``batch_size``, read anew for each batch (it drops after an out-of-memory)."""
        start = 0
        while start < len(sources):
            batch = sources[start : start + self.batch_size]
            yield batch
            start += len(batch)  # not batch_size: it may have dropped while this batch was out

    def _loaded_ahead(self, loaders, root, sources, skipped) -> Iterator[tuple[Sequence, Loaded]]:
        """Batches of loaded images, decoding up to ``prefetch`` batches ahead on the loader threads."""
        ahead: deque[tuple[Sequence, list[Future]]] = deque()
        batches = self._batches(sources)
        while True:
            while len(ahead) <= self.prefetch:
                batch = next(batches, None)
                if batch is None:
                    break
                ahead.append((batch, [loaders.submit(_load_one, root, source, self.max_pixels) for source in batch]))
            if not ahead:
                return
            batch, futures = ahead.popleft()
            loaded = []
            for source, future in zip(batch, futures):
                image, reason = future.result()
                if image is None:
                    skipped.append({"path": str(source), "reason": reason})
                else:
                    loaded.append((source, image))
            yield batch, loaded


def _load_one(root: Path, source: PurePosixPath, max_pixels: int | None) -> tuple[np.ndarray | None, str | None]:
    reasons: list = []
    loaded = load_batch(root, [source], reasons, max_pixels)
    return (loaded[0][1], None) if loaded else (None, reasons[0]["reason"])


def _consume_all(consume, results, stop: threading.Event, prepare=None) -> None:
    """``results``: ((source, image), detections) pairs, or ((source, image), Future of prepare's result) pairs."""
    for (source, image), found in results:
        if stop.is_set():
            return
        try:
            if isinstance(found, Future):
                found = found.result()
            elif prepare is not None:
                found = prepare(source, image, found)
            consume(source, image, found)
        except BaseException as error:
            # Set here, not only where the caller sees the error: the next queued batch starts on this thread at once.
            stop.set()
            if hasattr(error, "add_note"):  # Python 3.11+: the traceback says which image
                error.add_note(f"while handling the results of {source}")
            raise


class _HalvingOnOutOfMemory:
    """``predict_arrays`` that, on CUDA out-of-memory, frees the cache, splits the batch in halves and retries; the
    engine's batch size drops to the size that worked, so the next batches do not hit the wall again."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def predict_arrays(self, images: list[np.ndarray]) -> list[sv.Detections]:
        try:
            return self.engine.model.predict_arrays(images)
        except torch.OutOfMemoryError:
            if len(images) == 1:
                raise
        # Retried outside the except block: the error's traceback holds the failed pass's tensors until it ends.
        torch.cuda.empty_cache()
        half = (len(images) + 1) // 2
        if half < self.engine.batch_size:
            logger.warning(
                "Out of GPU memory with %d images per batch: retrying in batches of %d, and using %d from now on",
                len(images),
                half,
                half,
            )
            self.engine.batch_size = half
        return self.predict_arrays(images[:half]) + self.predict_arrays(images[half:])

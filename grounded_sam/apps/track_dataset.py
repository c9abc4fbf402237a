"""Every N-th frame of a tracked video as a YOLO-seg + COCO dataset, in the labeling layout and through its writer
(:class:`grounded_sam.labeling.writer.DatasetWriter`), so that a video can be auto-labeled for training.

Frames are not files: each chosen frame is written into the dataset as a JPEG (quality 95) named
``<video stem>_<frame>.jpg``, its labels those of the tracked objects on that frame. What crash safety and resuming
mean here: every frame's image, label file and record are written as soon as the frame is tracked, each whole or
not at all, exactly as labeling writes an image, so a killed run keeps every frame it finished. Tracking itself
cannot resume mid-video (SAM 2's memory is not saved), so a rerun of the same command tracks from the first frame
again and writes only the frames the dataset does not hold yet; with the same settings (compared as labeling
compares them: video, ontology, models, tracking and dataset options) it writes what an uninterrupted run would
have. Other settings on the same folder are refused unless ``overwrite``.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.labeling.folders import assign_split
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.writer import DatasetWriter

JPEG_QUALITY = 95


class VideoDataset:
    """A dataset of every ``every``-th frame (0, every, 2 * every...) of one video, checked and locked on creation
    (before any model loads). Use as a context manager; :meth:`finish` assembles COCO files and data.yaml.

    Args:
        folder: the dataset folder (created; refused when it holds something grounded-sam did not write).
        video: the video's path (its name names the frames; its absolute path is part of the settings).
        classes: the ontology's class names (``class_id`` indexes them).
        settings: what the labels depend on (models, tracking options), stored and compared on a rerun.
        every: write frame ``i`` when ``i % every == 0``.
        options: the labeling options of the dataset's files (split, formats...).
    """

    def __init__(self, folder, video, classes, settings: dict, every: int, options: LabelOptions | None = None):
        self.every, self.options = every, options or LabelOptions(progress=False, verbose=False)
        self.stem = Path(video).stem[:150] or "frame"
        stored = {"video": str(Path(video).resolve()), "dataset_every": every, **settings}
        stored["dataset"] = self.options.dataset_settings(classes)
        self.writer = DatasetWriter(folder, self.options, classes, stored)
        self.done_before, self.written = len(self.writer.done), 0

    def __enter__(self) -> VideoDataset:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def folder(self) -> Path:
        return self.writer.root

    def source(self, frame_index: int) -> PurePosixPath:
        """The frame's key in the dataset's records (what a rerun skips by)."""
        return PurePosixPath(f"{self.stem}_{frame_index:06d}.jpg")

    def wants(self, frame_index: int) -> bool:
        return frame_index % self.every == 0 and self.source(frame_index) not in self.writer.done

    def write(self, frame_index: int, frame: np.ndarray, detections: sv.Detections) -> None:
        """Writes one (H, W, 3) uint8 RGB frame and its tracked objects (class_id into the classes)."""
        source = self.source(frame_index)
        picture = io.BytesIO()
        Image.fromarray(frame).save(picture, format="JPEG", quality=JPEG_QUALITY)
        split = assign_split(source, self.options.split, self.options.seed)
        labels = self.writer.convert(detections, frame.shape)
        self.writer.write(source, picture.getvalue(), str(source), split, frame.shape, labels)
        self.writer.done[source] = str(source)
        self.written += 1

    def finish(self, report: dict) -> dict:
        """COCO files, data.yaml and report.json from the records; returns the counts over the whole dataset."""
        counts = self.writer.finish()
        self.writer.write_report(report)
        return counts

    def close(self) -> None:
        self.writer.close()

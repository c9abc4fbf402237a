"""Tracking a video by text into a folder of results (what ``grounded-sam track`` does).

``OUT/annotated.mp4`` (every frame, masks, boxes and "class #id" labels), ``OUT/tracks.json`` (YouTube-VIS),
``OUT/tracks.txt`` (MOT), ``OUT/report.json`` and, with ``dataset_every``, ``OUT/dataset/`` (a YOLO-seg + COCO dataset
of every N-th frame, :mod:`grounded_sam.apps.track_dataset`). The video files are written under
``OUT/.grounded-sam/in-progress/`` as tracking goes and moved into place at the end, so a killed run leaves the
previous run's files whole; the dataset keeps every frame it finished. Only files this module wrote are replaced:
their names are listed in ``OUT/.grounded-sam/track.json`` before anything is written, and an existing file by one
of those names that no earlier run listed is refused, as ``predict`` does.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grounded_sam.apps.track_outputs import MOT_FILE, TRACKS_FILE, VIDEO_FILE, AnnotatedVideoWriter, TracksWriter
from grounded_sam.detections import CLASS_NAME
from grounded_sam.errors import OutputFolderError
from grounded_sam.images import DEFAULT_MAX_PIXELS
from grounded_sam.labeling.files import atomic_write_text, check_output_names, real_directory, remove_owned_file
from grounded_sam.labeling.folders import check_folder_path, check_not_nested
from grounded_sam.labeling.records import STATE_DIR, listed_files
from grounded_sam.progress import progress_bar
from grounded_sam.video_frames import VideoInfo, open_video, probe_video

TRACK_MANIFEST = "track.json"
IN_PROGRESS = f"{STATE_DIR}/in-progress"
REPORT_FILE = "report.json"
OUTPUT_FILES = (VIDEO_FILE, TRACKS_FILE, MOT_FILE, REPORT_FILE)
DATASET_FOLDER = "dataset"
DEFAULT_FPS = 30.0  # for folders and lists of frames, which carry no frame rate


@dataclass
class TrackReport:
    """What a tracking run did: frames tracked and skipped, objects per class, speed, the files written."""

    video: str
    output: str
    frames: int = 0
    frames_with_objects: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    frames_per_second: float = 0.0
    codec: str = ""
    files: list[str] = field(default_factory=list)
    dataset: dict | None = None

    def summary(self) -> str:
        classes = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items())
        lines = [
            f"Tracked {self.frames} frames of {self.video} in {self.seconds:.1f} s ({self.frames_per_second:.2f} "
            f"frames/s): {sum(self.objects_per_class.values())} objects ({classes}); "
            f"{self.frames_with_objects} frames with objects",
            f"Skipped {len(self.skipped)} frames that could not be decoded"
            + "".join(f"\n  frame {item['frame']}: {item['reason']}" for item in self.skipped),
            f"Written to {self.output}: {', '.join(self.files)} (video codec {self.codec})",
        ]
        if self.dataset is not None:
            lines.append(
                f"Dataset {self.dataset['folder']}: {self.dataset['frames']} frames ({self.dataset['written_now']} "
                f"written now), {self.dataset['empty']} without objects"
            )
        return "\n".join(lines)


def plan_track_files(video, output, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Everything :func:`track_files` checks before a model is needed: the video opens and its first frame decodes
    within the pixel budget; the output folder takes the files without replacing one grounded-sam did not write, and
    without writing where the video is read from.

    Raises:
        FileNotFoundError: the video is missing.
        InvalidVideoError: it is empty, unreadable, not a video, or over the pixel budget.
        OutputFolderError: the output is a file or a broken link; the video is one of the output's files or lies in
            its dataset or state folder, or the folder of frames is (or lies inside) the output; a foreign file or a
            folder holds an output name; the dataset or state folder is a link.
    """
    output = Path(output)
    check_folder_path(output, "output folder", "--output")
    if isinstance(video, (str, os.PathLike)):
        check_folder_path(Path(video), "video", "VIDEO")
    info = probe_video(video, max_pixels)
    if output.is_file():
        raise OutputFolderError(f"The output folder {output} is a file; pass a folder path")
    if output.is_symlink() and not output.exists():
        raise OutputFolderError(f"The output folder {output} is a link to {os.readlink(output)}, which does not exist")
    if isinstance(video, (str, os.PathLike)):
        _check_input_outside(Path(video), output)
    if output.is_dir():
        for folder in (STATE_DIR, DATASET_FOLDER):
            real_directory(output, folder, create=False)
        check_output_names(output, OUTPUT_FILES, listed_files(output / STATE_DIR / TRACK_MANIFEST))
    return info


def _check_input_outside(video: Path, output: Path) -> None:
    """Refuses a video that the run would write over: a folder of frames that is or lies inside the output, or a
    file at one of the output's own paths."""
    if video.is_dir():
        check_not_nested(video, output, "--output")
        return
    source, root = Path(os.path.realpath(video)), Path(os.path.realpath(output))
    if root in source.parents and source.relative_to(root).parts[0] in (*OUTPUT_FILES, DATASET_FOLDER, STATE_DIR):
        raise OutputFolderError(
            f"The video {video} is where this run writes its results in {output}; move it or choose another --output"
        )


def track_files(
    model,
    video,
    output,
    detect_every: int = 10,
    iou_threshold: float = 0.5,
    patience: int = 30,
    offload: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    dataset=None,
    fps: float | None = None,
    progress: bool = True,
) -> TrackReport:
    """Tracks ``model``'s ontology (a ``GroundedSAM2``) through ``video`` and writes the results into ``output``.

    Args:
        dataset: a :class:`~grounded_sam.apps.track_dataset.VideoDataset` to write every N-th frame into, or None.
        fps: frame rate of the annotated video; default the video's own (30 for folders and lists of frames).
        the others: as for :meth:`grounded_sam.GroundedSAM2.track`.
    """
    started, output = time.perf_counter(), Path(output)
    plan_track_files(video, output, max_pixels)
    frames = open_video(video, max_pixels)
    folder = _in_progress(output)
    manifest = output / STATE_DIR / TRACK_MANIFEST
    atomic_write_text(manifest, json.dumps({"files": sorted(set(listed_files(manifest)) | set(OUTPUT_FILES))}))
    classes = list(model.ontology.classes())
    report = TrackReport(str(frames.info.name), str(output))
    tracks, writer, ids = TracksWriter(folder, classes), None, defaultdict(set)
    last = -1
    with progress_bar(frames.info.count, "Tracking", enabled=progress, unit="frame") as bar:
        for index, detections in model.track(frames, detect_every, iou_threshold, patience, offload, max_pixels):
            frame = frames.current
            if writer is None:
                height, width = frame.shape[:2]
                writer = AnnotatedVideoWriter(folder / VIDEO_FILE, width, height, fps or frames.info.fps or DEFAULT_FPS)
            writer.write(index, frame, detections)
            tracks.add(index, detections)
            for name, obj_id in zip(detections.data[CLASS_NAME], detections.tracker_id):
                ids[str(name)].add(int(obj_id))
            report.frames_with_objects += len(detections) > 0
            if dataset is not None and dataset.wants(index):
                dataset.write(index, frame, detections)
            last = index
            bar.update(index + 1 - bar.n)
    count = max([last + 1] + [item["frame"] + 1 for item in frames.skipped])
    writer.close(count)
    info = frames.info
    entry = {"name": info.name, "width": info.width, "height": info.height, "fps": fps or info.fps or DEFAULT_FPS}
    tracks.finish({**entry, **({"file_names": info.names} if info.names else {})}, count)
    report.frames, report.skipped, report.codec = count, list(frames.skipped), writer.codec
    report.objects_per_class = {name: len(ids.get(name, ())) for name in classes}
    report.seconds = round(time.perf_counter() - started, 3)
    report.frames_per_second = round(count / report.seconds, 3) if report.seconds else 0.0
    report.files = list(OUTPUT_FILES) + [DATASET_FOLDER] * (dataset is not None)
    for name in (VIDEO_FILE, TRACKS_FILE, MOT_FILE):
        os.replace(folder / name, output / name)
    if dataset is not None:
        counts = dataset.finish({"video": str(video), "frames": count, "dataset_every": dataset.every})
        report.dataset = {
            "folder": str(dataset.folder),
            "frames": counts["labeled"],
            "written_now": dataset.written,
            "empty": counts["empty"],
        }
    atomic_write_text(output / REPORT_FILE, json.dumps(asdict(report), indent=2, ensure_ascii=False))
    return report


def _in_progress(output: Path) -> Path:
    """The in-progress folder, emptied of what a killed run left there (only names this module writes)."""
    output.mkdir(parents=True, exist_ok=True)
    folder = real_directory(output, IN_PROGRESS)
    for name in (VIDEO_FILE, TRACKS_FILE, MOT_FILE):
        remove_owned_file(output, f"{IN_PROGRESS}/{name}")
    spool = real_directory(output, f"{IN_PROGRESS}/objects")
    for entry in os.scandir(spool):
        if entry.name.endswith(".jsonl") and entry.name[: -len(".jsonl")].isdigit():
            remove_owned_file(output, f"{IN_PROGRESS}/objects/{entry.name}")
    return folder

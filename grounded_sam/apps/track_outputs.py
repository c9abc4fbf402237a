"""What ``grounded-sam track`` writes, frame by frame as tracking goes, never holding the whole video: the annotated
video, the YouTube-VIS tracks file and the MOT box text. Each writer writes into a folder it is given (the run's
in-progress folder); moving the finished files into place is the caller's (``track_files``).

- Annotated video: H.264 (PyAV's libx264, ``yuv420p``: what common players open) when PyAV is installed, else
  MPEG-4 Part 2 (``mp4v``) through supervision's ``VideoSink`` (OpenCV's wheels carry no H.264 encoder). Every input
  frame is written; a frame that could not be decoded is replaced by the one before it, so timing is kept.
- Tracks file (``tracks.json``), YouTube-VIS form: ``videos`` (one), ``annotations`` (one per object:
  ``segmentations`` COCO compressed RLE, ``bboxes`` [x, y, w, h] and ``areas``, one entry per frame, null where the
  object is absent), ``categories``. Each object's rows go to its own file as they come and are assembled at the end,
  one object at a time.
- MOT text (``tracks.txt``): ``frame,id,x,y,w,h,confidence,-1,-1,-1`` per object and frame, frames from 1.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import supervision as sv

from grounded_sam.annotate import annotate
from grounded_sam.detections import CLASS_NAME, mask_to_rle, short_float
from grounded_sam.labeling.files import remove_empty_directory, remove_file
from grounded_sam.labeling.formats import coco_categories

VIDEO_FILE, TRACKS_FILE, MOT_FILE = "annotated.mp4", "tracks.json", "tracks.txt"


def video_codec() -> str:
    """``"h264"`` where PyAV (with its bundled libx264) is installed, else ``"mp4v"``."""
    try:
        import av

        return "h264" if "libx264" in av.codecs_available else "mp4v"
    except ImportError:
        return "mp4v"


def track_labels(detections: sv.Detections) -> list[str]:
    """ "class #id" per tracked object."""
    names = detections.data.get(CLASS_NAME)
    return [
        f"{names[row] if names is not None else 'object'} #{detections.tracker_id[row]}"
        for row in range(len(detections))
    ]


class AnnotatedVideoWriter:
    """Writes (H, W, 3) uint8 RGB frames, annotated with supervision's mask, box and label annotators (colour by
    object id), as an H.264 or mp4v video at ``fps``."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        self.codec, self.last, self.written = video_codec(), None, 0
        if self.codec == "h264":
            import av

            self._container = av.open(str(path), "w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            # yuv420p halves chroma in both directions: odd sizes get one edge pixel repeated
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20"}
        else:
            self._sink = sv.VideoSink(str(path), sv.VideoInfo(width=width, height=height, fps=fps), codec="mp4v")
            self._sink.__enter__()

    def write(self, frame_index: int, frame: np.ndarray, detections: sv.Detections) -> None:
        """Frame ``frame_index`` (numbered from 0): frames missing before it repeat the last one written."""
        picture = annotate(frame, detections, labels=track_labels(detections), color_lookup=sv.ColorLookup.TRACK)
        while self.written < frame_index:
            self._encode(self.last if self.last is not None else picture)
        self._encode(picture)
        self.last = picture

    def _encode(self, picture: np.ndarray) -> None:
        if self.codec == "h264":
            import av

            padded = np.pad(picture, ((0, picture.shape[0] % 2), (0, picture.shape[1] % 2), (0, 0)), mode="edge")
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                self._container.mux(packet)
        else:
            self._sink.write_frame(np.ascontiguousarray(picture[:, :, ::-1]))
        self.written += 1

    def close(self, frame_count: int) -> None:
        """Pads to ``frame_count`` frames (trailing frames that could not be decoded) and closes the file."""
        while self.last is not None and self.written < frame_count:
            self._encode(self.last)
        if self.codec == "h264":
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        else:
            self._sink.__exit__(None, None, None)


class TracksWriter:
    """The YouTube-VIS tracks file and the MOT text, written as frames come (see the module's docstring)."""

    def __init__(self, folder: Path, classes: list[str]):
        self.folder, self.classes = folder, classes
        self.spool = folder / "objects"
        self.spool.mkdir(exist_ok=True)
        self.objects: dict[int, int] = {}  # object id -> category id
        self._mot = open(folder / MOT_FILE, "w", encoding="utf-8")  # closed in finish()

    def add(self, frame_index: int, detections: sv.Detections) -> None:
        for row in range(len(detections)):
            obj_id = int(detections.tracker_id[row])
            x1, y1, x2, y2 = (short_float(value) for value in detections.xyxy[row])
            box = [x1, y1, short_float(x2 - x1), short_float(y2 - y1)]
            confidence = short_float(detections.confidence[row])
            self._mot.write(f"{frame_index + 1},{obj_id},{box[0]},{box[1]},{box[2]},{box[3]},{confidence},-1,-1,-1\n")
            if obj_id not in self.objects:
                class_id = int(detections.class_id[row]) if detections.class_id is not None else 0
                self.objects[obj_id] = class_id + 1
            mask = detections.mask[row]
            entry = [frame_index, mask_to_rle(mask), box, int(np.count_nonzero(mask))]
            with open(self.spool / f"{obj_id}.jsonl", "a", encoding="utf-8") as spool:
                spool.write(json.dumps(entry) + "\n")

    def finish(self, video: dict, frame_count: int) -> None:
        """Writes tracks.json (``video``: the ``videos`` entry without its id and length) and closes the MOT file."""
        self._mot.close()
        with open(self.folder / TRACKS_FILE, "w", encoding="utf-8") as out:
            head = {"videos": [{"id": 1, **video, "length": frame_count}], "categories": coco_categories(self.classes)}
            out.write(json.dumps(head)[:-1] + ', "annotations": [')
            for number, obj_id in enumerate(sorted(self.objects)):
                out.write(("," if number else "") + json.dumps(self._annotation(obj_id, frame_count)))
            out.write("]}\n")
        for obj_id in self.objects:  # the spool files this writer made, in the checked in-progress folder
            remove_file(self.spool / f"{obj_id}.jsonl")
        remove_empty_directory(self.folder, self.spool.name)

    def _annotation(self, obj_id: int, frame_count: int) -> dict:
        segmentations, boxes, areas = [None] * frame_count, [None] * frame_count, [None] * frame_count
        with open(self.spool / f"{obj_id}.jsonl", encoding="utf-8") as spool:
            for line in spool:
                frame_index, rle, box, area = json.loads(line)
                segmentations[frame_index], boxes[frame_index], areas[frame_index] = rle, box, area
        return {
            "id": obj_id,
            "video_id": 1,
            "category_id": self.objects[obj_id],
            "iscrowd": 0,
            "segmentations": segmentations,
            "bboxes": boxes,
            "areas": areas,
        }

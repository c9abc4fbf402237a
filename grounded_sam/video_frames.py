"""Video inputs as (H, W, 3) uint8 RGB frames, decoded one at a time: a video file (PyAV, or OpenCV when PyAV is not
installed), a folder of frames, or a list or iterator of arrays (or PIL images). Never the whole video in memory.

Frames are numbered from 0 in decoding order. A frame that cannot be decoded (a corrupt packet in a file, an
unreadable image in a folder) is skipped and listed in ``skipped``; it keeps its number, so later frames keep theirs.
Every frame of a video must have the same size, within the pixel budget (``max_pixels``, as for images).

Reading backwards (:meth:`VideoFrames.backward`, for tracking in reverse): folders and lists are read last to first
directly. A video file or an iterator cannot go backwards without holding what it decoded, so the frames needed are
decoded once, forward, into a temporary folder of PNG files (lossless: the frames come back bit for bit; on disk, not
in memory: about 2-3 MB a 1080p frame, under ``TMPDIR``), read back last to first, and removed at the end.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from grounded_sam.errors import InvalidImageError, InvalidVideoError, UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS, load_image
from grounded_sam.labeling.folders import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg")
_SPOOL_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fastest lossless level: 1080p in ~30 ms


@dataclass
class VideoInfo:
    """What is known of a video before it is decoded: ``count`` frames (a container's count can be missing or off:
    a hint), ``fps`` when the source has one, ``width`` x ``height`` (from the header or the first frame), ``names``
    of the frame files for a folder, and ``decoder`` ("pyav", "opencv", "images" or "arrays")."""

    name: str
    count: int | None
    fps: float | None
    width: int | None
    height: int | None
    decoder: str
    names: list[str] | None = field(default=None, repr=False)


def open_video(source, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoFrames:
    """Opens a video file, a folder of frames, or a list or iterator of frames (see the module's docstring).

    Raises:
        FileNotFoundError: the path does not exist.
        InvalidVideoError: an empty or unreadable file, a file without a video stream, a folder without frames, a
            frame size over ``max_pixels``, or an input of another type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _FolderFrames(path, max_pixels)
        if not path.exists():
            raise FileNotFoundError(f"Video not found: {path}")
        return _FileFrames(path, max_pixels)
    if isinstance(source, Sequence) or (isinstance(source, np.ndarray) and source.ndim == 4):
        return _SequenceFrames(source, max_pixels)
    if isinstance(source, Iterable):
        return _IteratorFrames(iter(source), max_pixels)
    raise InvalidVideoError(
        f"Unsupported video input of type {type(source).__name__}: pass a video file, a folder of frames, or a list "
        "or iterator of (H, W, 3) uint8 RGB arrays"
    )


def probe_video(source, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Opens ``source`` and decodes its first frame, so that a video that cannot be tracked is refused before any
    model loads; returns its :class:`VideoInfo` with the frame size filled in. Raises as :func:`open_video`, and
    InvalidVideoError when no frame decodes."""
    video = open_video(source, max_pixels)
    if isinstance(video, _IteratorFrames):  # reading would consume it
        return video.info
    for _ in video:
        return video.info
    reasons = "; ".join(item["reason"] for item in video.skipped[:3])
    raise InvalidVideoError(f"{video.info.name} holds no frame that can be decoded{f' ({reasons})' if reasons else ''}")


class VideoFrames:
    """An opened video: ``info``, ``skipped`` (``{"frame", "reason"}`` per frame that could not be decoded),
    iteration over ``(index, frame)`` forward, and :meth:`backward`. ``current`` is the frame last yielded, for
    whoever draws on the frames a tracker consumes (the tracker yields its result for that frame next)."""

    def __init__(self, info: VideoInfo, max_pixels: int | None):
        self.info, self.max_pixels, self.skipped, self.current = info, max_pixels, [], None
        if info.width and info.height:
            check_budget(info.width, info.height, max_pixels, info.name)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.skipped.clear()
        for index, frame in self._decode():
            self._check_size(index, frame)
            self.current = frame
            yield index, frame

    def backward(self, keep_until: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(index, frame)`` from the last frame to the first. Frames after ``keep_until`` come without their pixels
        (``None``): a reverse pass that starts from a later prompt does not need them. Skipped frames are left out."""
        with tempfile.TemporaryDirectory(prefix="grounded-sam-frames-") as spool:
            decoded = []
            for index, frame in self:  # decodes forward once: files and iterators cannot go backwards
                if keep_until is None or index <= keep_until:
                    cv2.imwrite(os.path.join(spool, f"{index:09d}.png"), frame[:, :, ::-1], _SPOOL_PNG)
                decoded.append(index)
            for index in reversed(decoded):
                if keep_until is not None and index > keep_until:
                    yield index, None
                else:
                    picture = cv2.imread(os.path.join(spool, f"{index:09d}.png"), cv2.IMREAD_COLOR)
                    yield index, np.ascontiguousarray(picture[:, :, ::-1])

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def _skip(self, index: int, reason: str) -> None:
        self.skipped.append({"frame": index, "reason": reason})
        logger.warning("%s: frame %d skipped: %s", self.info.name, index, reason)

    def _check_size(self, index: int, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if self.info.width is None:
            check_budget(width, height, self.max_pixels, self.info.name)
            self.info.width, self.info.height = width, height
        elif (width, height) != (self.info.width, self.info.height):
            raise InvalidVideoError(
                f"{self.info.name}: frame {index} is {width}x{height}, earlier frames {self.info.width}x"
                f"{self.info.height}; every frame of a video must have the same size (resize the frames first)"
            )


def check_budget(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise InvalidVideoError(
            f"{name} has {width}x{height} frames ({width * height / 1e6:.1f} megapixels), over the pixel budget of "
            f"{max_pixels / 1e6:.1f} megapixels; raise max_pixels=... or downscale the video"
        )


class _FileFrames(VideoFrames):
    """A video file, decoded with PyAV (corrupt packets skipped one by one) or, without PyAV, OpenCV."""

    def __init__(self, path: Path, max_pixels: int | None):
        self.path = path
        if not path.is_file():
            raise InvalidVideoError(f"Not a video file: {path} is a directory or special file")
        if path.stat().st_size == 0:
            raise InvalidVideoError(f"Cannot read video {path}: the file is empty (0 bytes)")
        try:
            import av  # noqa: F401 -- only whether PyAV is there
        except ImportError:
            super().__init__(self._opencv_info(), max_pixels)
        else:
            super().__init__(self._pyav_info(), max_pixels)

    def _pyav_info(self) -> VideoInfo:
        import av

        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InvalidVideoError(f"{self.path} holds no video stream (audio only, or not a video)")
                stream = container.streams.video[0]
                fps = float(stream.average_rate) if stream.average_rate else None
                context = stream.codec_context
                width, height = (context.width or None), (context.height or None)
                return VideoInfo(self.path.name, stream.frames or None, fps, width, height, "pyav")
        except av.error.FFmpegError as error:
            raise InvalidVideoError(f"Cannot read video {self.path}: {_reason(error)}") from None

    def _opencv_info(self) -> VideoInfo:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise InvalidVideoError(f"Cannot read video {self.path}: OpenCV cannot open it as a video")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            fps = capture.get(cv2.CAP_PROP_FPS) or None
            width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            return VideoInfo(self.path.name, count, fps, width or None, height or None, "opencv")
        finally:
            capture.release()

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        return self._pyav() if self.info.decoder == "pyav" else self._opencv()

    def _pyav(self) -> Iterator[tuple[int, np.ndarray]]:
        import av

        index = 0
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.FFmpegError as error:  # the container itself is broken here: nothing follows
                    self._skip(index, f"decoding stopped: {_reason(error)}")
                    return
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as error:
                    self._skip(index, _reason(error))
                    index += 1
                    continue
                for frame in frames:
                    yield index, frame.to_ndarray(format="rgb24")
                    index += 1

    def _opencv(self) -> Iterator[tuple[int, np.ndarray]]:
        capture = cv2.VideoCapture(str(self.path))
        index = 0
        try:
            while capture.grab():  # False at the end, or where OpenCV cannot go on
                ok, frame = capture.retrieve()
                if ok:
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                else:
                    self._skip(index, "OpenCV could not decode it")
                index += 1
        finally:
            capture.release()


def _reason(error: Exception) -> str:
    """FFmpeg's message without its error number ("Invalid data found when processing input")."""
    return " ".join((getattr(error, "strerror", None) or str(error)).split())[:200]


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", path.name)]


class _FolderFrames(VideoFrames):
    """A folder of frame images (jpg, png...), in natural order of their names (frame2 before frame10)."""

    def __init__(self, path: Path, max_pixels: int | None):
        self.files = sorted(
            (entry for entry in path.iterdir() if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file()),
            key=_natural_key,
        )
        if not self.files:
            raise InvalidVideoError(f"{path} holds no frames ({', '.join(IMAGE_EXTENSIONS)} files)")
        width, height = _header_size(self.files[0])
        if width is not None:  # the size itself comes from the first frame decoded (after its EXIF rotation)
            check_budget(width, height, max_pixels, path.name)
        names = [entry.name for entry in self.files]
        super().__init__(VideoInfo(path.name, len(self.files), None, None, None, "images", names), max_pixels)

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(len(self.files)):
            frame = self._load(index)
            if frame is not None:
                yield index, frame

    def _load(self, index: int) -> np.ndarray | None:
        try:
            return load_image(self.files[index], self.max_pixels)
        except (InvalidImageError, OSError) as error:
            self._skip(index, str(error))
            return None

    def backward(self, keep_until: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        self.skipped.clear()
        if keep_until is not None and keep_until < len(self.files) - 1 and self.info.width is None:
            next(iter(self), None)  # the frame size, for the frames yielded without pixels
            self.skipped.clear()
        for index in range(len(self.files) - 1, -1, -1):
            if keep_until is not None and index > keep_until:
                yield index, None
            elif (frame := self._load(index)) is not None:
                self._check_size(index, frame)
                yield index, frame


def _header_size(path: Path) -> tuple[int | None, int | None]:
    """An image file's size from its header (nothing decoded), or (None, None) when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None, None


class _SequenceFrames(VideoFrames):
    """A list (or other sequence) of frames, or one (N, H, W, 3) array: read in either direction by index."""

    def __init__(self, frames, max_pixels: int | None):
        self.frames = frames
        if len(frames) == 0:
            raise InvalidVideoError("The list of frames is empty")
        super().__init__(VideoInfo("frames", len(frames), None, None, None, "arrays"), max_pixels)

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(len(self.frames)):
            yield index, _array(self.frames[index], index, self.max_pixels)

    def backward(self, keep_until: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        self.skipped.clear()
        for index in range(len(self.frames) - 1, -1, -1):
            if keep_until is not None and index > keep_until:
                if self.info.width is None:  # the frame size, for the frames yielded without pixels
                    self._check_size(index, _array(self.frames[index], index, self.max_pixels))
                yield index, None
            else:
                frame = _array(self.frames[index], index, self.max_pixels)
                self._check_size(index, frame)
                yield index, frame


class _IteratorFrames(VideoFrames):
    """An iterator of frames (a generator, a camera): read once, its length unknown until it ends."""

    def __init__(self, frames: Iterator, max_pixels: int | None):
        self.frames, self.used = frames, False
        super().__init__(VideoInfo("frames", None, None, None, None, "arrays"), max_pixels)

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        if self.used:
            raise UserInputError("An iterator of frames can be read once; pass a list or a file to read it again")
        self.used = True
        for index, frame in enumerate(self.frames):
            yield index, _array(frame, index, self.max_pixels)


def _array(frame, index: int, max_pixels: int | None) -> np.ndarray:
    if not isinstance(frame, (np.ndarray, Image.Image)):
        raise InvalidVideoError(
            f"frame {index} is a {type(frame).__name__}; frames must be (H, W, 3) uint8 RGB arrays or PIL images"
        )
    try:
        return load_image(frame, max_pixels)
    except InvalidImageError as error:
        raise InvalidVideoError(f"frame {index}: {error}") from None

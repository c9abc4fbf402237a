"""Video inputs decoded one frame at a time: files (PyAV, OpenCV), folders, lists and iterators; bad input refused
with a clear error, a corrupt frame skipped and reported, reading backwards."""

import builtins
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import write_mp4
from PIL import Image

from grounded_sam.errors import InvalidVideoError
from grounded_sam.video_frames import open_video, probe_video

av = pytest.importorskip("av")


def moving_square(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 10 * index, np.uint8)
        frame[10:30, 5 + index : 25 + index] = (250, 30, 30)
        frames.append(frame)
    return frames


def write_mjpeg_with_a_corrupt_frame(path: Path, frames: list[np.ndarray], broken: int) -> Path:
    """An MJPEG AVI (every frame its own JPEG) whose frame ``broken`` has its JPEG bytes zeroed."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[broken] : starts[broken + 1] - 8] = bytes(starts[broken + 1] - 8 - starts[broken])
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def clip(tmp_path):
    return write_mp4(tmp_path / "clip.mp4", moving_square(12))


def test_a_file_decodes_frame_by_frame_with_its_rate_and_size(clip):
    video = open_video(clip)
    frames = list(video)
    assert [index for index, _ in frames] == list(range(12))
    assert all(frame.shape == (48, 64, 3) and frame.dtype == np.uint8 for _, frame in frames)
    assert (video.info.count, video.info.fps, video.info.width, video.info.height) == (12, 10.0, 64, 48)
    assert frames[3][1][20, 10, 0] > 200 and frames[3][1][20, 10, 1] < 80  # the red square, in RGB order


def test_without_pyav_opencv_decodes_the_same_frames(clip, monkeypatch):
    expected = [frame for _, frame in open_video(clip)]
    real_import = builtins.__import__

    def no_pyav(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no PyAV here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyav)
    video = open_video(clip)
    frames = [frame for _, frame in video]
    assert video.info.decoder == "opencv" and len(frames) == len(expected)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, expected)) < 2


def test_a_folder_is_read_in_natural_order_and_a_corrupt_frame_is_skipped(tmp_path):
    for index, frame in enumerate(moving_square(11)):
        Image.fromarray(frame).save(tmp_path / f"frame{index}.png")
    (tmp_path / "frame4.png").write_bytes(b"not a picture")
    (tmp_path / "notes.txt").write_text("ignored")
    video = open_video(tmp_path)
    indices = [index for index, _ in video]
    assert indices == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]  # frame10 after frame9; frame 4 keeps its number
    assert [item["frame"] for item in video.skipped] == [4] and "frame4.png" in video.skipped[0]["reason"]
    assert video.info.names[:3] == ["frame0.png", "frame1.png", "frame2.png"]


def test_a_corrupt_frame_in_a_video_file_is_skipped_and_reported(tmp_path):
    path = write_mjpeg_with_a_corrupt_frame(tmp_path / "broken.avi", moving_square(10), broken=4)
    video = open_video(path)
    assert [index for index, _ in video] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert video.skipped == [{"frame": 4, "reason": "Invalid data found when processing input"}]


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"just text, no video", "Cannot read video"), (None, "no video stream")],
    ids=["empty", "not a video", "audio only"],
)
def test_files_that_are_no_video_are_refused_naming_them(tmp_path, content, message):
    path = tmp_path / "input.mp4"
    if content is None:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in list(stream.encode(frame)) + list(stream.encode()):
                container.mux(packet)
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidVideoError, match=message) as caught:
        probe_video(path)
    assert "input.mp4" in str(caught.value)


def test_missing_paths_and_empty_inputs_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="Video not found"):
        open_video(tmp_path / "nope.mp4")
    with pytest.raises(InvalidVideoError, match="holds no frames"):
        open_video(tmp_path)
    with pytest.raises(InvalidVideoError, match="empty"):
        open_video([])
    with pytest.raises(InvalidVideoError, match="Unsupported video input"):
        open_video(42)


def test_frames_of_changing_size_are_a_clear_error():
    frames = moving_square(3) + [np.zeros((40, 64, 3), np.uint8)]
    with pytest.raises(InvalidVideoError, match="frame 3 is 64x40, earlier frames 64x48"):
        list(open_video(frames))


def test_frames_over_the_pixel_budget_are_refused_before_decoding(clip, tmp_path):
    with pytest.raises(InvalidVideoError, match="over the pixel budget.*max_pixels"):
        open_video(clip, max_pixels=1000)  # from the container's header
    Image.fromarray(moving_square(1)[0]).save(tmp_path / "0.png")
    with pytest.raises(InvalidVideoError, match="over the pixel budget"):
        open_video(tmp_path, max_pixels=1000)  # from the first file's header
    with pytest.raises(InvalidVideoError, match="over the pixel budget"):
        list(open_video(moving_square(2), max_pixels=1000))


def test_lists_accept_arrays_and_pil_images_and_refuse_other_things():
    frames = [moving_square(1)[0], Image.fromarray(moving_square(2)[1])]
    assert [frame.shape for _, frame in open_video(frames)] == [(48, 64, 3)] * 2
    with pytest.raises(InvalidVideoError, match="frame 1: Image arrays must be uint8"):
        list(open_video([moving_square(1)[0], np.zeros((48, 64, 3), np.float32)]))
    with pytest.raises(InvalidVideoError, match="frame 0 is a str"):
        list(open_video(["frame.png"]))


def test_an_iterator_is_read_once():
    video = open_video(iter(moving_square(3)))
    assert video.info.count is None and len(list(video)) == 3
    with pytest.raises(ValueError, match="read once"):
        list(video)


@pytest.mark.parametrize("kind", ["file", "folder", "list", "iterator"])
def test_backward_gives_the_forward_frames_last_to_first(kind, clip, tmp_path):
    forward = [(index, frame) for index, frame in open_video(clip)]
    sources = {
        "file": lambda: clip,
        "list": lambda: [frame for _, frame in forward],
        "iterator": lambda: (frame for _, frame in forward),
    }
    if kind == "folder":
        for index, frame in forward:
            Image.fromarray(frame).save(tmp_path / f"{index:03d}.png")
        sources["folder"] = lambda: tmp_path
    video = open_video(sources[kind]())
    backward = list(video.backward(keep_until=8))
    assert [index for index, _ in backward] == list(range(11, -1, -1))
    assert all(frame is None for _, frame in backward[:3])  # after keep_until: no pixels
    for (index, frame), (_, expected) in zip(backward[3:], reversed(forward[:9])):
        assert np.array_equal(frame, expected), index  # lossless, through the temporary PNGs for file / iterator
    assert (video.info.width, video.info.height) == (64, 48)

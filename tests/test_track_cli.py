"""``grounded-sam track`` through its installed entry point, on the tiny local models: every output written, as many
frames as the input, a tracks file pycocotools decodes, a dataset of every N-th frame that a rerun completes, bad
input refused before any model loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import write_mp4
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from grounded_sam.apps import cli
from grounded_sam.labeling.records import SETTINGS_FILE
from grounded_sam.testing import build_tiny_owlv2

av = pytest.importorskip("av")
pytestmark = pytest.mark.slow
SCRIPT = Path(sys.executable).parent / "grounded-sam"
FRAMES, HEIGHT, WIDTH = 16, 96, 128


def _run(*arguments):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(SCRIPT), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=600
    )


def _frames(count: int = FRAMES) -> list[np.ndarray]:
    frames = []
    for index in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 100 + index, np.uint8)
        frame[20:60, 10 + 3 * index : 50 + 3 * index] = (230, 40, 40)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4", _frames(), rate=12)


@pytest.fixture(scope="module")
def models(florence_dir, sam_dir):
    return ["--florence", florence_dir, "--sam", sam_dir, "--device", "cpu"]


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_track_writes_every_output_with_every_frame(clip, models, tmp_path):
    out = tmp_path / "out"
    result = _run("track", clip, "-p", "a dog", "-p", "a person", "-o", out, *models, "--detect-every", "5",
                  "--dataset-every", "4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("annotated.mp4", "tracks.json", "tracks.txt", "report.json", "dataset/data.yaml"):
        assert (out / name).is_file(), name
    assert _decoded_frames(out / "annotated.mp4") == FRAMES
    with av.open(str(out / "annotated.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["videos"][0]["length"] == FRAMES and tracks["videos"][0]["name"] == "clip.mp4"
    assert [category["name"] for category in tracks["categories"]] == ["a dog", "a person"]
    assert tracks["annotations"], "the tiny Florence-2 finds something on every detection frame"
    for annotation in tracks["annotations"]:
        assert len(annotation["segmentations"]) == len(annotation["bboxes"]) == FRAMES
        for rle, area in zip(annotation["segmentations"], annotation["areas"]):
            if rle is not None:
                decoded = mask_utils.decode(rle)
                assert decoded.shape == (HEIGHT, WIDTH) and int(decoded.sum()) == area == int(mask_utils.area(rle))
    rows = [line.split(",") for line in (out / "tracks.txt").read_text().splitlines()]
    assert rows and all(len(row) == 10 and row[7:] == ["-1", "-1", "-1"] for row in rows)
    assert {int(row[0]) for row in rows} <= set(range(1, FRAMES + 1))  # frames from 1
    present = sum(segmentation is not None for a in tracks["annotations"] for segmentation in a["segmentations"])
    assert len(rows) == present
    records = list((out / "dataset" / ".grounded-sam" / "records").glob("*.json"))
    assert sorted(path.name for path in records) == [f"clip_{index:06d}.jpg.json" for index in range(0, FRAMES, 4)]
    coco = json.loads((out / "dataset" / "annotations" / "instances_train.json").read_text())
    assert all(image["file_name"].startswith("clip_") for image in coco["images"])
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == FRAMES and report["codec"] == "h264" and report["dataset"]["frames"] == 4
    assert "frames/s" in result.stderr and "objects tracked" in result.stderr

    again = _run("track", clip, "-p", "a dog", "-p", "a person", "-o", out, *models, "--detect-every", "5",
                 "--dataset-every", "4")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "report.json").read_text())["dataset"]["written_now"] == 0  # every frame was there
    assert json.loads((out / "tracks.json").read_text()) == tracks  # the same tracking again, files replaced
    refused = _run("track", clip, "-p", "a cat", "-o", out, *models, "--dataset-every", "4")
    assert refused.returncode == 2 and "other settings" in refused.stderr and "--overwrite" in refused.stderr


def test_track_finds_objects_with_another_detector(clip, sam_dir, tmp_path):
    owlv2 = build_tiny_owlv2(tmp_path / "owlv2")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["track", str(clip), "-p", "a dog", "-o", str(out), "--sam", str(sam_dir),
        "--device", "cpu", "--detector", "owlv2", "--detector-model", str(owlv2), "--box-threshold", "0",
        "--detect-every", "8", "--dataset-every", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    detector = json.loads((out / "dataset" / SETTINGS_FILE).read_text())["model"]["detector"]
    assert detector["type"] == "owlv2" and detector["box_threshold"] == 0.0
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["annotations"], "every box scores above 0: the tiny OWLv2 starts objects"
    assert {annotation["category_id"] for annotation in tracks["annotations"]} == {1}


def test_what_the_chosen_detector_cannot_read_is_refused_before_anything_is_written(clip, tmp_path):
    from grounded_sam.testing import build_tiny_grounding_dino

    model = build_tiny_grounding_dino(tmp_path / "gdino")
    result = CliRunner().invoke(cli.app, ["track", str(clip), "-p", "a dog.", "-o", str(tmp_path / "out"),
        "--detector", "grounding-dino", "--detector-model", str(model), "--sam", str(tmp_path / "no_sam")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "contains '.'" in " ".join(result.output.split()) and not (tmp_path / "out").exists()


def test_a_corrupt_frame_is_skipped_reported_and_kept_in_the_frame_count(models, tmp_path):
    path = tmp_path / "broken.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for frame in _frames(10):
        writer.write(frame[:, :, ::-1])
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[6] : starts[7] - 8] = bytes(starts[7] - 8 - starts[6])  # frame 6's JPEG zeroed
    path.write_bytes(bytes(data))
    result = _run("track", path, "-p", "a dog", "-o", tmp_path / "out", *models)
    assert result.returncode == 0, result.stderr
    assert "skipped frame 6" in result.stderr
    assert _decoded_frames(tmp_path / "out" / "annotated.mp4") == 10  # frame 6 shows frame 5 again
    tracks = json.loads((tmp_path / "out" / "tracks.json").read_text())
    assert tracks["videos"][0]["length"] == 10
    assert all(annotation["segmentations"][6] is None for annotation in tracks["annotations"])


@pytest.mark.parametrize(
    "content, message",
    [(b"", "the file is empty"), (b"no video in here", "Cannot read video"), (None, "Video not found")],
    ids=["empty", "not a video", "missing"],
)
def test_bad_input_is_refused_before_any_model_loads(tmp_path, content, message):
    path = tmp_path / "input.mp4"
    if content is not None:
        path.write_bytes(content)
    # the models do not exist: a run that got to loading them would fail on them instead
    result = _run("track", path, "-p", "a dog", "-o", tmp_path / "out", "--sam", tmp_path / "no_sam", "--device", "cpu")
    assert result.returncode == 2 and result.stderr.startswith("Error:") and message in result.stderr
    assert "Traceback" not in result.stderr and "no_sam" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_file_grounded_sam_did_not_write_is_never_replaced(clip, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tracks.json").write_text("mine")
    result = _run("track", clip, "-p", "a dog", "-o", tmp_path / "out", "--sam", tmp_path / "no_sam")
    assert result.returncode == 2 and "tracks.json" in result.stderr and "did not write" in result.stderr
    assert (tmp_path / "out" / "tracks.json").read_text() == "mine"


def test_help_has_an_example_and_loads_no_torch():
    assert "Example: grounded-sam track" in CliRunner().invoke(cli.app, ["track", "--help"]).output
    code = (
        "import sys; from grounded_sam.apps.cli import app; app(['track', '--help'], standalone_mode=False); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False", result.stderr

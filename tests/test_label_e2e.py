"""GroundedSAM2.label end to end on tiny local models: round trips against predict(), and a run killed partway."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image
from skimage import data as skdata
from test_labeling import snapshot

from grounded_sam import LabeledDataset, load_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    pictures = {"astronaut.jpg": skdata.astronaut()[::4, ::4], "cat.png": skdata.chelsea()[::2, ::2],
                "coffee.webp": skdata.coffee()[::3, ::3], "rocket.png": skdata.rocket()[::3, ::3]}
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(folder / name, **({"lossless": True} if name.endswith("webp") else {}))
    for index in range(4):
        Image.fromarray(np.asarray(skdata.camera()[index * 40 : index * 40 + 96, :128])).save(folder / f"cam{index}.png")
    return folder


def test_label_writes_what_predict_gives(model, photos, tmp_path):
    dataset = model.label(photos, output_folder=tmp_path / "out", split=(0.5, 0.5), batch_size=3, verbose=False)
    assert isinstance(dataset, LabeledDataset) and isinstance(dataset, sv.DetectionDataset)
    assert len(dataset) == 8 and dataset.classes == ["dog", "person"]
    assert dataset.report.images_labeled == 8 and dataset.report.images_skipped == 0
    out = tmp_path / "out"
    for split in ("train", "valid"):
        images = out / split / "images"
        from_yolo = sv.DetectionDataset.from_yolo(str(images), str(out / split / "labels"), str(out / "data.yaml"))
        from_coco = sv.DetectionDataset.from_coco(str(images), str(out / "annotations" / f"instances_{split}.json"))
        for path in images.iterdir():
            expected = model.predict(load_image(photos / path.name))
            assert len(expected) > 0
            got = dataset.annotations[str(path)]
            assert np.array_equal(got.mask, expected.mask) and np.array_equal(got.class_id, expected.class_id)
            np.testing.assert_allclose(got.xyxy, expected.xyxy, rtol=1e-6)
            np.testing.assert_allclose(got.confidence, expected.confidence, rtol=1e-6)
            assert np.array_equal(from_coco.annotations[str(path.resolve())].mask, expected.mask)  # RLE: exact
            yolo = from_yolo.annotations[str(path)]
            for class_id in (0, 1):  # each part of a mask is a line of its own: compare per class
                want = expected.mask[expected.class_id == class_id].any(axis=0)
                got_mask = yolo.mask[yolo.class_id == class_id].any(axis=0)
                assert (got_mask & want).sum() >= 0.98 * (got_mask | want).sum()


def test_a_run_killed_partway_resumes_to_the_same_dataset(florence_dir, sam_dir, photos, model, tmp_path):
    worker = Path(__file__).with_name("label_worker.py")
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(worker), str(florence_dir), str(sam_dir), str(photos), str(output), "0.3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    records = output / ".grounded-sam" / "records"
    deadline = time.monotonic() + 120
    while len(list(records.glob("*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    done = len(list(records.glob("*.json")))
    assert 3 <= done < 8 and not (output / "report.json").exists()

    report = model.label(photos, output_folder=output, batch_size=1, progress=False, verbose=False).report
    assert report.already_done == done and report.labeled_this_run == 8 - done
    model.label(photos, output_folder=tmp_path / "uninterrupted", batch_size=1, progress=False, verbose=False)
    resumed, clean = snapshot(output), snapshot(tmp_path / "uninterrupted")
    resumed.pop("data.yaml"), clean.pop("data.yaml")  # they differ only in their absolute "path"
    assert resumed == clean

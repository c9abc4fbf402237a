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
from helpers import snapshot

from grounded_sam import LabeledDataset, load_image
from grounded_sam.labeling.records import record_files

pytestmark = pytest.mark.slow


def test_label_writes_what_predict_gives(model, eight_photos_in_four_formats, tmp_path):
    dataset = model.label(
        eight_photos_in_four_formats, output_folder=tmp_path / "out", split=(0.5, 0.5), batch_size=3, verbose=False
    )
    assert isinstance(dataset, LabeledDataset) and isinstance(dataset, sv.DetectionDataset)
    assert len(dataset) == 8 and dataset.classes == ["dog", "person"]
    assert dataset.report.images_labeled == 8 and dataset.report.images_skipped == 0
    out = tmp_path / "out"
    for split in ("train", "valid"):
        images = out / split / "images"
        from_yolo = sv.DetectionDataset.from_yolo(str(images), str(out / split / "labels"), str(out / "data.yaml"))
        from_coco = sv.DetectionDataset.from_coco(str(images), str(out / "annotations" / f"instances_{split}.json"))
        for path in images.iterdir():
            expected = model.predict(load_image(eight_photos_in_four_formats / path.name))
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


def test_a_run_killed_partway_resumes_to_the_same_dataset(
    florence_dir, sam_dir, eight_photos_in_four_formats, model, tmp_path
):
    worker = Path(__file__).with_name("label_worker.py")
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [
            sys.executable,
            str(worker),
            str(florence_dir),
            str(sam_dir),
            str(eight_photos_in_four_formats),
            str(output),
            "0.3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 120
    while len(record_files(output)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    done = len(record_files(output))
    assert 3 <= done < 8 and not (output / "report.json").exists()

    report = model.label(
        eight_photos_in_four_formats, output_folder=output, batch_size=1, progress=False, verbose=False
    ).report
    assert report.already_done == done and report.labeled_this_run == 8 - done
    model.label(
        eight_photos_in_four_formats,
        output_folder=tmp_path / "uninterrupted",
        batch_size=1,
        progress=False,
        verbose=False,
    )
    resumed, clean = snapshot(output), snapshot(tmp_path / "uninterrupted")
    resumed.pop("data.yaml"), clean.pop("data.yaml")  # they differ only in their absolute "path"
    assert resumed == clean

"""Correcting a labeled dataset by hand (what the app saves): one image's record and label files replaced with
labeling's crash safety, COCO rebuilt, each correction logged, and corrected images never relabeled silently."""

import json

import numpy as np
import pytest
import supervision as sv
from helpers import CannedModel, label_quietly, make_good_images
from pycocotools.coco import COCO

import grounded_sam.labeling.image_writer as image_writer
from grounded_sam import LabeledDataset
from grounded_sam.errors import OutputFolderError, UserInputError
from grounded_sam.labeling.corrections import correct_image, read_corrections, reopen_writer
from grounded_sam.labeling.records import RECORD_VERSION, is_corrected, read_header, record_path


@pytest.fixture
def labeled(tmp_path):
    """Four canned scenes labeled into a dataset (bright disk + dark ring each), and the photos folder."""
    make_good_images(tmp_path / "photos", 4)
    label_quietly(CannedModel(), tmp_path / "photos", tmp_path / "dataset")
    return tmp_path / "dataset", tmp_path / "photos"


def _image(dataset, name):
    header = read_header(record_path(dataset, name))
    return str(dataset / header["split"] / "images" / name), header


def _one_box(height, width, class_id, box=(2, 3, 12, 9)):
    mask = np.zeros((1, height, width), bool)
    x1, y1, x2, y2 = box
    mask[0, y1 : y2 + 1, x1 : x2 + 1] = True
    return sv.Detections(
        xyxy=np.array([box], np.float32), mask=mask, confidence=np.ones(1, np.float32), class_id=np.array([class_id])
    )


def _yolo_classes(dataset, header):
    lines = (dataset / header["split"] / "labels" / "img_001.txt").read_text().splitlines()
    return [int(line.split()[0]) for line in lines]


def test_a_correction_replaces_record_labels_and_coco_and_is_logged(labeled):
    dataset, _ = labeled
    path, header = _image(dataset, "img_001.png")
    new = correct_image(dataset, "img_001.png", _one_box(header["height"], header["width"], 1), [{"delete": 0}])
    assert new["corrected_at"] and new["version"] == RECORD_VERSION == 2 and new["count"] == 1
    assert LabeledDataset(dataset).annotations[path].data["class_name"].tolist() == ["dark"]
    assert _yolo_classes(dataset, header) == [1]
    coco = COCO(str(dataset / "annotations" / f"instances_{header['split']}.json"))
    image_id = next(i for i, image in coco.imgs.items() if image["file_name"] == "img_001.png")
    assert [coco.cats[a["category_id"]]["name"] for a in coco.imgToAnns[image_id]] == ["dark"]
    (entry,) = read_corrections(dataset)
    assert entry["image"] == "img_001.png" and entry["changes"] == [{"delete": 0}] and entry["count"] == 1
    assert entry["time"] == new["corrected_at"]


def test_more_detections_than_before_take_fresh_coco_ids(labeled):
    dataset, _ = labeled
    _, header = _image(dataset, "img_001.png")
    height, width = header["height"], header["width"]
    three = sv.Detections.merge([_one_box(height, width, c, (2 + c, 3, 12, 9)) for c in (0, 1, 0)])
    correct_image(dataset, "img_001.png", three)
    ids = [
        annotation["id"]
        for split in ("train", "valid")
        for annotation in json.loads((dataset / "annotations" / f"instances_{split}.json").read_text())["annotations"]
    ]
    assert len(ids) == 3 * 2 + 3 and len(set(ids)) == len(ids)  # unique over all splits


def test_labels_a_crash_left_older_than_the_record_are_written_again(labeled, monkeypatch):
    dataset, _ = labeled
    _, header = _image(dataset, "img_001.png")
    real_write = image_writer.atomic_write_text

    def power_cut_at_labels(path, text):
        if path.parent.name == "labels":
            raise KeyboardInterrupt  # the process dies after the record, before the label file
        real_write(path, text)

    monkeypatch.setattr(image_writer, "atomic_write_text", power_cut_at_labels)
    with pytest.raises(KeyboardInterrupt):
        correct_image(dataset, "img_001.png", _one_box(header["height"], header["width"], 1))
    monkeypatch.undo()
    assert _yolo_classes(dataset, header) == [0, 1]  # the old label file, the new record
    reopen_writer(dataset).close()  # the next open (a rerun, the app, a correction) repairs it from the record
    assert _yolo_classes(dataset, header) == [1]
    assert not list((dataset / ".grounded-sam" / "pending").iterdir())


def test_resuming_keeps_corrected_images(labeled):
    dataset, photos = labeled
    _, header = _image(dataset, "img_001.png")
    correct_image(dataset, "img_001.png", _one_box(header["height"], header["width"], 1))
    make_good_images(photos, 5)  # one more image: the rerun labels only that one
    report = label_quietly(CannedModel(), photos, dataset)
    assert report.labeled_this_run == 1 and report.already_done == 4
    assert is_corrected(read_header(record_path(dataset, "img_001.png")))
    assert _yolo_classes(dataset, header) == [1]


def test_overwrite_refuses_a_dataset_with_corrections_unless_told_to_discard_them(labeled):
    dataset, photos = labeled
    _, header = _image(dataset, "img_001.png")
    correct_image(dataset, "img_001.png", _one_box(header["height"], header["width"], 1))
    with pytest.raises(OutputFolderError, match=r"corrected by hand \(img_001.png.*discard_corrections=True"):
        label_quietly(CannedModel(), photos, dataset, seed=1, overwrite=True)
    assert is_corrected(read_header(record_path(dataset, "img_001.png")))  # nothing was changed
    label_quietly(CannedModel(), photos, dataset, seed=1, overwrite=True, discard_corrections=True)
    assert not is_corrected(read_header(record_path(dataset, "img_001.png")))
    assert read_corrections(dataset) == []


def test_version_1_records_read_as_not_corrected(labeled):
    dataset, photos = labeled
    record = record_path(dataset, "img_002.png")
    header_line, entries_line = record.read_text().splitlines()
    header = json.loads(header_line)
    header["version"] = 1
    record.write_text(json.dumps(header) + "\n" + entries_line + "\n")
    assert not is_corrected(read_header(record))
    assert len(LabeledDataset(dataset).annotations[_image(dataset, "img_002.png")[0]]) == 2
    label_quietly(CannedModel(), photos, dataset, seed=1, overwrite=True)  # no correction: not refused


@pytest.mark.parametrize("name", ["../settings.json", "missing.png", ".grounded-sam"])
def test_only_images_of_the_dataset_can_be_corrected(labeled, name):
    dataset, _ = labeled
    with pytest.raises(UserInputError, match="is not an image of the dataset"):
        correct_image(dataset, name, sv.Detections.empty())


def test_detections_must_fit_the_image(labeled):
    dataset, _ = labeled
    with pytest.raises(UserInputError, match="masks must be"):
        correct_image(dataset, "img_001.png", _one_box(5, 5, 0, (1, 1, 2, 2)))
    _, header = _image(dataset, "img_001.png")
    with pytest.raises(UserInputError, match="class_id must index"):
        correct_image(dataset, "img_001.png", _one_box(header["height"], header["width"], 7))

"""Labeling a folder, with a canned model whose outputs are known exactly (see canned.py)."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from helpers import (
    CannedModel,
    canned_detections,
    label_quietly,
    make_good_images,
    make_hostile_folder,
    snapshot,
    without_path,
)
from pycocotools.coco import COCO
from scipy.ndimage import binary_fill_holes

import grounded_sam.labeling.files as files
import grounded_sam.labeling.image_writer as image_writer
import grounded_sam.labeling.records as records
from grounded_sam import LabeledDataset, OutputFolderError, OutputWriteError, load_image
from grounded_sam.labeling.records import SETTINGS_FILE, record_files, record_path


def _union_by_class(detections: sv.Detections, class_id: int, shape) -> np.ndarray:
    if detections.mask is None or not (detections.class_id == class_id).any():  # an empty label file has no masks
        return np.zeros(shape, bool)
    return detections.mask[detections.class_id == class_id].any(axis=0)


def test_writes_yolo_and_coco_that_supervision_and_pycocotools_read_back(twelve_scenes_every_fourth_empty, tmp_path):
    output = tmp_path / "out"
    report = label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, output, split=(0.5, 0.5))
    assert report.images_found == report.images_labeled == report.labeled_this_run == 12
    assert report.images_empty == 3 and report.images_skipped == 0
    data = yaml.safe_load((output / "data.yaml").read_text())
    assert data["names"] == ["bright", "dark"] and data["nc"] == 2 and data["path"] == str(output.absolute())
    seen = 0
    for split in ("train", "valid"):
        images = output / split / "images"
        from_yolo = sv.DetectionDataset.from_yolo(
            str(images), str(output / split / "labels"), str(output / "data.yaml")
        )
        annotations = str(output / "annotations" / f"instances_{split}.json")
        from_coco = sv.DetectionDataset.from_coco(str(images), annotations)
        coco = COCO(annotations)
        assert from_yolo.classes == from_coco.classes == ["bright", "dark"]
        for path in sorted(images.iterdir()):
            seen += 1
            expected = canned_detections(load_image(twelve_scenes_every_fourth_empty / path.name))
            assert (
                path.read_bytes() == (twelve_scenes_every_fourth_empty / path.name).read_bytes()
            )  # copied as is, never re-encoded
            yolo, coco_detections = from_yolo.annotations[str(path)], from_coco.annotations[str(path.resolve())]
            for class_id in (0, 1):  # YOLO writes each part of a mask as its own line: compare per class
                want = _union_by_class(expected, class_id, expected.mask.shape[1:])
                got = _union_by_class(yolo, class_id, want.shape)
                assert (got & want).sum() >= 0.98 * (got | want).sum()
            assert list(coco_detections.class_id) == list(expected.class_id)
            if len(expected):  # supervision gives mask=None for an image without annotations
                assert np.array_equal(coco_detections.mask, expected.mask)  # RLE is exact
            image_id = next(i for i, image in coco.imgs.items() if image["file_name"] == path.name)
            decoded = [coco.annToMask(a).astype(bool) for a in coco.imgToAnns[image_id]]
            assert np.array_equal(np.array(decoded).reshape(expected.mask.shape), expected.mask)
            if not len(expected):
                assert (output / split / "labels" / f"{path.stem}.txt").read_text() == ""
    assert seen == 12
    assert report.detections_per_class == {"bright": 9, "dark": 9}


def test_returned_dataset_reads_masks_lazily_and_matches_the_model(twelve_scenes_every_fourth_empty, tmp_path):
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "out")
    dataset = LabeledDataset(tmp_path / "out")
    assert len(dataset) == 12 and dataset.classes == ["bright", "dark"]
    assert not isinstance(dataset.annotations, dict)  # decoded from disk on access
    for path, image, detections in dataset:
        expected = canned_detections(load_image(twelve_scenes_every_fourth_empty / Path(path).name))
        assert image.shape[:2] == detections.mask.shape[1:]
        assert np.array_equal(detections.mask, expected.mask)
        assert np.array_equal(detections.confidence, expected.confidence)
        assert dataset.splits[path] in ("train", "valid") and f"/{dataset.splits[path]}/images/" in path


def test_hostile_folder_labels_every_good_image_and_reports_every_bad_one(tmp_path):
    good, bad = make_hostile_folder(tmp_path / "mess")
    report = label_quietly(CannedModel(), tmp_path / "mess", tmp_path / "out", recursive=True)
    assert {item["path"] for item in report.skipped} == bad
    assert all(item["reason"] for item in report.skipped)
    sources = {
        records.read_header(path)["source"]: records.read_header(path) for path in record_files(tmp_path / "out")
    }
    assert set(sources) == good and report.images_labeled == len(good)
    assert (sources["rotated.jpg"]["width"], sources["rotated.jpg"]["height"]) == (48, 64)  # EXIF applied
    names = [header["name"] for header in sources.values()]
    assert len({Path(name).stem.casefold() for name in names}) == len(names)
    zero = next(item for item in report.skipped if item["path"] == "zero.jpg")
    assert "empty" in zero["reason"]
    for header in sources.values():  # every labeled image has the detections of its converted pixels
        expected = canned_detections(load_image(tmp_path / "mess" / header["source"]))
        record = records.read_record(record_path(tmp_path / "out", header["name"]))
        assert len(record[1]) == len(expected) > 0


def test_rerun_resumes_and_added_images_keep_earlier_names_and_splits(twelve_scenes_every_fourth_empty, tmp_path):
    output = tmp_path / "out"
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, output)
    before = snapshot(output)
    model = CannedModel()
    report = label_quietly(model, twelve_scenes_every_fourth_empty, output)
    assert model.batches == [] and report.already_done == 12 and report.labeled_this_run == 0
    assert snapshot(output) == before
    make_good_images(tmp_path / "more", 5)
    for path in (tmp_path / "more").iterdir():
        path.rename(twelve_scenes_every_fourth_empty / f"extra_{path.name}")
    report = label_quietly(model, twelve_scenes_every_fourth_empty, output)
    assert report.labeled_this_run == 5 and sum(model.batches) == 5
    after = snapshot(output)
    unchanged = [name for name in before if not name.startswith("annotations")]
    assert all(after[name] == before[name] for name in unchanged)  # earlier images, labels, records and ids stay
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "fresh")
    fresh = snapshot(tmp_path / "fresh")
    same_files = [name for name in fresh if not name.startswith((".grounded-sam/records", "annotations", "data.yaml"))]
    assert set(fresh) == set(after) and all(fresh[name] == after[name] for name in same_files)
    for split in ("train", "valid"):  # the same annotations; only the ids of the added images differ
        assert _coco_without_ids(output, split) == _coco_without_ids(tmp_path / "fresh", split)


def _coco_without_ids(folder: Path, split: str):
    coco = json.loads((folder / "annotations" / f"instances_{split}.json").read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    images = sorted((image["file_name"], image["width"], image["height"]) for image in coco["images"])
    annotations = sorted(
        (names[a["image_id"]], a["category_id"], a["bbox"], a["area"], a["segmentation"]["counts"])
        for a in coco["annotations"]
    )
    return images, annotations


def test_other_settings_are_refused_unless_overwrite(twelve_scenes_every_fourth_empty, tmp_path):
    output = tmp_path / "out"
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, output)
    with pytest.raises(OutputFolderError, match="differing: dataset"):
        label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, output, split=(0.5, 0.5))
    other = CannedModel()
    other.settings = lambda: {"model": "another"}
    with pytest.raises(OutputFolderError, match="overwrite=True"):
        label_quietly(other, twelve_scenes_every_fourth_empty, output)
    report = label_quietly(other, twelve_scenes_every_fourth_empty, output, overwrite=True)
    assert report.labeled_this_run == 12
    assert json.loads((output / SETTINGS_FILE).read_text())["model"] == {"model": "another"}


def test_foreign_folder_is_never_written_into(twelve_scenes_every_fourth_empty, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(OutputFolderError, match="not written by grounded-sam"):
            label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "mine", overwrite=overwrite)
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["thesis.docx"]


def test_no_images_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures")
    with pytest.raises(FileNotFoundError, match="No images found.*recursive=True"):
        label_quietly(CannedModel(), tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="Input folder not found"):
        label_quietly(CannedModel(), tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_default_output_folder_is_input_labeled_and_output_inside_input_is_not_relabeled(
    twelve_scenes_every_fourth_empty, tmp_path
):
    report = label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, None)
    assert report.output_folder == str(Path(f"{twelve_scenes_every_fourth_empty}_labeled").absolute())
    inside = twelve_scenes_every_fourth_empty / "labels_here"
    first = label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, inside, recursive=True)
    second = label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, inside, recursive=True)
    assert first.images_found == second.images_found == 12


def test_options_empty_images_confidences_boxes_and_formats(twelve_scenes_every_fourth_empty, tmp_path):
    output = tmp_path / "out"
    report = label_quietly(
        CannedModel(),
        twelve_scenes_every_fourth_empty,
        output,
        keep_empty=False,
        record_confidence=True,
        yolo_boxes_only=True,
        split=(1.0, 0.0),
    )
    assert report.images_empty == 3 and report.images_per_split["train"] == 9
    assert len(list((output / "train" / "images").iterdir())) == 9
    coco = json.loads((output / "annotations" / "instances_train.json").read_text())
    assert len(coco["images"]) == 9 and all("score" in annotation for annotation in coco["annotations"])
    for label in (output / "train" / "labels").iterdir():
        lines = label.read_text().splitlines()
        confidences = (output / "train" / "confidences" / label.name).read_text().splitlines()
        assert len(lines) == len(confidences) > 0 and all(len(line.split()) == 5 for line in lines)
        expected = canned_detections(load_image(twelve_scenes_every_fourth_empty / f"{label.stem}.png"))
        assert [float(value) for value in confidences] == pytest.approx(list(expected.confidence), abs=1e-4)
    readers = [  # the sidecar files and COCO "score" do not disturb the usual readers
        sv.DetectionDataset.from_yolo(
            str(output / "train" / "images"), str(output / "train" / "labels"), str(output / "data.yaml")
        ),
        sv.DetectionDataset.from_coco(
            str(output / "train" / "images"), str(output / "annotations" / "instances_train.json")
        ),
    ]
    assert [len(reader) for reader in readers] == [9, 9]
    assert COCO(str(output / "annotations" / "instances_train.json")).getAnnIds() != []
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "coco_only", formats=("coco",))
    assert (
        not (tmp_path / "coco_only" / "data.yaml").exists()
        and not (tmp_path / "coco_only" / "train" / "labels").exists()
    )
    label_quietly(
        CannedModel(),
        twelve_scenes_every_fourth_empty,
        tmp_path / "yolo_only",
        formats=["yolo"],
        coco_segmentation="polygon",
    )
    assert not (tmp_path / "yolo_only" / "annotations").exists()


def test_polygon_coco_option_reads_back(twelve_scenes_every_fourth_empty, tmp_path):
    label_quietly(
        CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "out", coco_segmentation="polygon", split=(1.0, 0.0)
    )
    dataset = sv.DetectionDataset.from_coco(
        str(tmp_path / "out" / "train" / "images"), str(tmp_path / "out" / "annotations" / "instances_train.json")
    )
    for path, _, detections in dataset:
        expected = canned_detections(load_image(twelve_scenes_every_fourth_empty / Path(path).name))
        assert len(detections) == len(expected)
        for got, want in zip(detections.mask if len(detections) else [], expected.mask):
            outline = binary_fill_holes(want)  # COCO polygons cannot hold holes: compare with the filled mask
            assert (got & outline).sum() >= 0.95 * (got | outline).sum()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"formats": ("voc",)}, "formats"),
        ({"coco_segmentation": "mask"}, "coco_segmentation"),
        ({"split": (0.9, 0.2)}, "split"),
        ({"polygon_approximation": 1.5}, "polygon_approximation"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_raise_before_any_work(twelve_scenes_every_fourth_empty, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_one_image_the_model_fails_on_is_skipped_and_the_batch_is_not_lost(twelve_scenes_every_fourth_empty, tmp_path):
    from PIL import Image

    Image.new("RGB", (37, 30), (250, 250, 250)).save(twelve_scenes_every_fourth_empty / "a_odd_size.png")
    model = CannedModel(fail_on_width=37)
    report = label_quietly(model, twelve_scenes_every_fourth_empty, tmp_path / "out", batch_size=4)
    assert [item["path"] for item in report.skipped] == ["a_odd_size.png"]
    assert "model failed: RuntimeError" in report.skipped[0]["reason"]
    assert report.images_labeled == 12
    assert model.batches == [4, 1, 1, 1, 1, 4, 4, 1]  # the failing batch, then its images alone, then on


def test_a_model_that_always_fails_stops_the_run(twelve_scenes_every_fourth_empty, tmp_path):
    model = CannedModel(fail_on_width=64)
    with pytest.raises(RuntimeError, match="in a row"):
        label_quietly(model, twelve_scenes_every_fourth_empty, tmp_path / "out")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_disk_failure_stops_with_a_clear_error_keeps_work_and_a_rerun_completes(
    twelve_scenes_every_fourth_empty, tmp_path, monkeypatch, code
):
    real_write = image_writer.atomic_write_text
    records = []

    def failing_write(path, text):
        if path.parent.name == "records":
            records.append(path)
            if len(records) > 5:  # the 6th image's record
                raise OSError(code, "simulated", str(path))
        real_write(path, text)

    monkeypatch.setattr(image_writer, "atomic_write_text", failing_write)
    with pytest.raises(OutputWriteError, match="rerun the same command"):
        label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "out", batch_size=4)
    monkeypatch.setattr(image_writer, "atomic_write_text", real_write)
    assert len(record_files(tmp_path / "out")) == 5
    model = CannedModel()
    report = label_quietly(model, twelve_scenes_every_fourth_empty, tmp_path / "out", batch_size=4)
    assert report.already_done == 5 and sum(model.batches) == 7
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "fresh")
    assert without_path(snapshot(tmp_path / "out")) == without_path(snapshot(tmp_path / "fresh"))


def test_disk_failure_while_assembling_coco_is_a_write_error_and_a_rerun_completes(
    twelve_scenes_every_fourth_empty, tmp_path, monkeypatch
):
    def full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.CocoAssembler, "write", full_disk)
    with pytest.raises(OutputWriteError, match="No space left"):
        label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "out")
    monkeypatch.undo()
    model = CannedModel()
    report = label_quietly(model, twelve_scenes_every_fourth_empty, tmp_path / "out")
    assert report.already_done == 12 and model.batches == []
    assert (tmp_path / "out" / "annotations" / "instances_train.json").is_file()
    assert not [path for path in (tmp_path / "out").rglob("*.tmp")]

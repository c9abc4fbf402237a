"""Labeling edge cases found in review: names, interrupted runs, locks, ids, links and thin masks."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from helpers import CannedModel, label_quietly, make_good_images, scene, snapshot, without_path
from PIL import Image
from pycocotools.coco import COCO

import grounded_sam.labeling.image_writer as image_writer
import grounded_sam.labeling.writer as dataset_writer
from grounded_sam import LabeledDataset, OutputFolderError, OutputWriteError
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import STATE_DIR, record_files
from grounded_sam.labeling.writer import DatasetWriter


def test_very_long_and_non_utf8_names(tmp_path):
    source = tmp_path / "photos"
    deep = source / ("ü" * 60) / ("長い" * 20)
    deep.mkdir(parents=True)
    Image.fromarray(scene()).save(source / ("x" * 245 + ".png"))
    Image.fromarray(scene(seed=1)).save(deep / ("名前" * 30 + ".png"))
    Image.fromarray(scene(seed=2)).save(source / "fine.png")
    with open(os.path.join(os.fsencode(source), b"caf\xe9.png"), "wb") as file:
        Image.fromarray(scene(seed=3)).save(file, format="PNG")
    report = label_quietly(CannedModel(), source, tmp_path / "out", recursive=True)
    assert report.images_labeled == 3 and report.images_found == 4
    assert [item["reason"] for item in report.skipped] == ["the file name is not valid UTF-8; rename the file"]
    assert all(len(path.name.encode()) <= 210 for path in (tmp_path / "out" / "train" / "images").iterdir())


def test_an_interrupted_overwrite_leaves_nothing_that_looks_done(six_scenes, tmp_path, monkeypatch):
    output = tmp_path / "out"
    label_quietly(CannedModel(), six_scenes, output)
    removed = []
    real_remove = dataset_writer.remove_owned_file

    def interrupted(root, relative):
        removed.append(relative)
        if len(removed) == 5:  # amid the removal of the images' files
            raise OSError(errno.EIO, "simulated failure", str(root / relative))
        return real_remove(root, relative)

    monkeypatch.setattr(dataset_writer, "remove_owned_file", interrupted)
    with pytest.raises(OutputWriteError):
        label_quietly(CannedModel(), six_scenes, output, split=(0.5, 0.5), overwrite=True)
    monkeypatch.undo()
    model = CannedModel()
    report = label_quietly(model, six_scenes, output)  # the original command: nothing may count as done any more
    assert report.already_done == 0 and sum(model.batches) == 6
    label_quietly(CannedModel(), six_scenes, tmp_path / "fresh")
    assert without_path(snapshot(output)) == without_path(snapshot(tmp_path / "fresh"))


def test_a_first_run_that_failed_early_can_be_rerun(six_scenes, tmp_path):
    state = tmp_path / "out" / STATE_DIR
    state.mkdir(parents=True)
    (state / ".settings.json.123.tmp").write_text("{")  # what a full disk leaves while writing the settings
    assert label_quietly(CannedModel(), six_scenes, tmp_path / "out").images_labeled == 6


def test_disk_errors_name_the_output_file_not_the_input(six_scenes, tmp_path, monkeypatch):
    def full(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device", destination.name)

    monkeypatch.setattr("shutil.copyfileobj", full)
    with pytest.raises(OutputWriteError) as caught:
        label_quietly(CannedModel(), six_scenes, tmp_path / "out", link=False)
    assert str(tmp_path / "out") in str(caught.value) and "No space left" in str(caught.value)


def test_files_of_an_image_whose_record_was_never_written_are_removed(six_scenes, tmp_path, monkeypatch):
    output = tmp_path / "out"
    real_write = image_writer.atomic_write_text

    def killed_before_third_record(path, text):
        if path.parent.name == "records" and path.name == "img_002.png.json":
            raise OSError(errno.EIO, "killed", str(path))
        real_write(path, text)

    monkeypatch.setattr(image_writer, "atomic_write_text", killed_before_third_record)
    with pytest.raises(OutputWriteError):
        label_quietly(CannedModel(), six_scenes, output, split=(1.0, 0.0))
    monkeypatch.undo()
    assert (output / "train" / "images" / "img_002.png").exists()
    Image.fromarray(scene(seed=9)).save(six_scenes / "img_002.jpg")  # a clash: img_002.png will get another name
    label_quietly(CannedModel(), six_scenes, output, split=(1.0, 0.0))
    images = sorted(path.name for path in (output / "train" / "images").iterdir())
    labels = sorted(path.stem for path in (output / "train" / "labels").iterdir())
    coco = json.loads((output / "annotations" / "instances_train.json").read_text())
    assert len(images) == len(labels) == len(coco["images"]) == len(record_files(output)) == 7
    assert "img_002.png" not in images and sorted(Path(name).stem for name in images) == labels


def test_a_cut_record_is_labeled_again(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out")
    record_files(tmp_path / "out")[0].write_bytes(b"")  # a power cut before the data reached the disk
    model = CannedModel()
    report = label_quietly(model, six_scenes, tmp_path / "out")
    assert report.already_done == 5 and sum(model.batches) == 1 and report.images_labeled == 6
    assert len(LabeledDataset(tmp_path / "out")) == 6


def test_a_record_cut_inside_its_detections_is_labeled_again(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out")
    record = next(path for path in record_files(tmp_path / "out") if b'"mask"' in path.read_bytes())
    whole = record.read_bytes()
    record.write_bytes(whole[: whole.index(b'"mask"') + 20])  # header whole, detections cut mid-entry
    model = CannedModel()
    report = label_quietly(model, six_scenes, tmp_path / "out")
    assert report.already_done == 5 and sum(model.batches) == 1
    relabeled, original = record.read_text().splitlines(), whole.decode().splitlines()
    assert relabeled[1] == original[1]  # the same detections, whole again (under new ids)


def test_a_write_that_fails_halfway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    # A file-size limit makes the write fail after its first bytes, whatever way the file is written.
    target = tmp_path / "labels" / "img.txt"
    target.parent.mkdir()
    target.write_text("the old labels\n")
    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from grounded_sam.labeling.files import atomic_write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            atomic_write_text(Path({str(target)!r}), "0 0.5 0.5 0.1 0.1\\n" * 10000)
        except OSError as error:
            print("failed:", error.errno)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("failed:"), (result.stdout, result.stderr)
    assert target.read_text() == "the old labels\n"
    assert sorted(path.name for path in target.parent.iterdir()) == ["img.txt"]


def test_another_input_folder_is_not_taken_for_a_resume(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out")
    make_good_images(tmp_path / "other", 6)
    with pytest.raises(OutputFolderError, match="input_folder"):
        label_quietly(CannedModel(), tmp_path / "other", tmp_path / "out")


def test_two_runs_cannot_write_one_folder_at_once(six_scenes, tmp_path):
    options = LabelOptions()
    first = DatasetWriter(tmp_path / "out", options, ["a"], {"x": 1})
    labels = first.convert(sv.Detections.empty(), (48, 64, 3))
    first.write(Path("a.png"), six_scenes / "img_000.png", "a.png", "train", (48, 64, 3), labels)
    for overwrite in (False, True):  # not even an overwrite may pull the folder from under the running job
        with pytest.raises(OutputFolderError, match="Another run"):
            DatasetWriter(tmp_path / "out", LabelOptions(overwrite=overwrite), ["a"], {"x": 2})
    assert (tmp_path / "out" / "train" / "images" / "a.png").exists() and len(record_files(tmp_path / "out")) == 1
    first.close()
    DatasetWriter(tmp_path / "out", options, ["a"], {"x": 1}).close()


def test_another_extension_or_recursion_is_other_settings(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out")
    for options in ({"extension": ".png"}, {"recursive": True}):
        with pytest.raises(OutputFolderError, match="extension|recursive"):
            label_quietly(CannedModel(), six_scenes, tmp_path / "out", **options)


def test_ids_of_labeled_images_never_change_when_images_are_added(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out", split=(1.0, 0.0))
    before = COCO(str(tmp_path / "out" / "annotations" / "instances_train.json"))
    Image.fromarray(scene(seed=20)).save(six_scenes / "aaa_first.png")  # sorts before every other image
    label_quietly(CannedModel(), six_scenes, tmp_path / "out", split=(1.0, 0.0))
    after = COCO(str(tmp_path / "out" / "annotations" / "instances_train.json"))
    for image_id, image in before.imgs.items():
        assert after.imgs[image_id]["file_name"] == image["file_name"]
        assert [a["id"] for a in after.imgToAnns[image_id]] == [a["id"] for a in before.imgToAnns[image_id]]
    assert len(after.imgs) == 7 and len({a["id"] for a in after.anns.values()}) == len(after.anns)


def test_images_are_hard_linked_or_copied(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "linked", split=(1.0, 0.0))
    label_quietly(CannedModel(), six_scenes, tmp_path / "copied", split=(1.0, 0.0), link=False)
    for source in six_scenes.iterdir():
        linked, copied = (tmp_path / name / "train" / "images" / source.name for name in ("linked", "copied"))
        assert os.path.samefile(source, linked) and not os.path.samefile(source, copied)
        assert copied.read_bytes() == source.read_bytes()


def test_the_returned_dataset_converts_with_supervision(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "out")
    dataset = LabeledDataset(tmp_path / "out")
    dataset.as_coco(
        images_directory_path=str(tmp_path / "again" / "images"), annotations_path=str(tmp_path / "again" / "coco.json")
    )
    again = sv.DetectionDataset.from_coco(str(tmp_path / "again" / "images"), str(tmp_path / "again" / "coco.json"))
    assert len(again) == 6 and again.classes == dataset.classes


def test_thin_masks_stay_readable_in_polygon_coco(tmp_path):
    folder = tmp_path / "dots"
    folder.mkdir()
    image = np.full((40, 50, 3), 128, np.uint8)
    image[10, 10] = 255  # a one-pixel 'bright' mask
    image[20, 5:45] = 0  # a one-pixel-high 'dark' line
    Image.fromarray(image).save(folder / "dot.png")
    label_quietly(CannedModel(), folder, tmp_path / "out", coco_segmentation="polygon", split=(1.0, 0.0))
    coco = COCO(str(tmp_path / "out" / "annotations" / "instances_train.json"))
    masks = [coco.annToMask(annotation).astype(bool) for annotation in coco.anns.values()]
    assert sorted(int(mask.sum()) for mask in masks) == [1, 40]


def test_formats_as_text_and_a_dot_input_folder(six_scenes, tmp_path, monkeypatch):
    monkeypatch.chdir(six_scenes)
    report = label_quietly(CannedModel(), ".", None, formats="yolo")
    assert report.output_folder == str(tmp_path / "photos_labeled")
    assert (tmp_path / "photos_labeled" / "data.yaml").exists()
    assert not (tmp_path / "photos_labeled" / "annotations").exists()

"""One dataset written by several processes (Ray workers), without Ray: ids given at the end in source-path order,
the gate that keeps a worker of a dead run from writing into the next run, records of schema 1, temporary names."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path, PurePosixPath

import pytest
from helpers import CannedModel, label_quietly, make_good_images, snapshot, without_path
from PIL import Image

import grounded_sam.labeling.records as records
from grounded_sam import OutputFolderError, load_image
from grounded_sam.labeling.files import remove_partial_files, temporary_path
from grounded_sam.labeling.folders import assign_split
from grounded_sam.labeling.image_writer import ImageWriter, convert_labels
from grounded_sam.labeling.job import LabelingJob
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import PENDING_DIR, record_files, record_path

TESTS = Path(__file__).parent


def test_ids_follow_source_order_whatever_order_images_were_written_in(six_scenes, tmp_path):
    label_quietly(CannedModel(), six_scenes, tmp_path / "in_order")
    options = LabelOptions(progress=False, verbose=False)
    model = CannedModel()
    with LabelingJob(six_scenes, tmp_path / "any_order", model.ontology, model.settings(), options) as job:
        names, images = job.names(), ImageWriter(job.output_folder, options, job.writer.token)
        for source in reversed(job.todo):  # as workers might finish them
            image = load_image(six_scenes / source)
            labels = convert_labels(options, model.predict_arrays([image])[0], image.shape)
            split = assign_split(source, options.split, options.seed)
            images.write(source, six_scenes / source, names[source], split, image.shape, labels)
        assert all("image_id" not in records.read_header(path) for path in record_files(job.output_folder))
        job.finish(job.new_report())
    assert without_path(snapshot(tmp_path / "in_order")) == without_path(snapshot(tmp_path / "any_order"))


def test_a_finish_stopped_while_giving_ids_resumes_to_the_same_ids(
    twelve_scenes_every_fourth_empty, tmp_path, monkeypatch
):
    label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "whole")
    given, real_write = [], records.atomic_write_text

    def stops_after_five(path, text):
        if len(given) == 5:
            raise KeyboardInterrupt  # Ctrl-C amid the id pass
        given.append(path)
        real_write(path, text)

    monkeypatch.setattr(records, "atomic_write_text", stops_after_five)
    with pytest.raises(KeyboardInterrupt):
        label_quietly(CannedModel(), twelve_scenes_every_fourth_empty, tmp_path / "stopped")
    monkeypatch.undo()
    numbered = [path for path in record_files(tmp_path / "stopped") if "image_id" in records.read_header(path)]
    assert len(given) == 5 and len(numbered) == 5
    model = CannedModel()
    report = label_quietly(model, twelve_scenes_every_fourth_empty, tmp_path / "stopped")
    assert report.already_done == 12 and model.batches == []
    assert without_path(snapshot(tmp_path / "whole")) == without_path(snapshot(tmp_path / "stopped"))


def test_records_of_schema_1_are_read_and_keep_their_ids(six_scenes, tmp_path):
    output = tmp_path / "out"
    label_quietly(CannedModel(), six_scenes, output, split=(1.0, 0.0))
    for path in record_files(output):  # what version 1 wrote: the same header, ids given as each image was written
        header, entries = path.read_text().splitlines()
        path.write_text(json.dumps({**json.loads(header), "version": 1}) + "\n" + entries + "\n")
    old = json.loads((output / "annotations" / "instances_train.json").read_text())
    make_good_images(tmp_path / "more", 2)
    for path in (tmp_path / "more").iterdir():
        path.rename(six_scenes / f"aaa_{path.name}")  # sort before every earlier image
    report = label_quietly(CannedModel(), six_scenes, output, split=(1.0, 0.0))
    assert report.already_done == 6 and report.labeled_this_run == 2
    new = json.loads((output / "annotations" / "instances_train.json").read_text())
    assert [image for image in new["images"] if image["id"] <= 6] == old["images"]
    assert sorted(image["id"] for image in new["images"]) == list(range(1, 9))
    assert all(annotation in new["annotations"] for annotation in old["annotations"])
    assert len({annotation["id"] for annotation in new["annotations"]}) == len(new["annotations"])
    versions = sorted(records.read_header(path)["version"] for path in record_files(output))
    assert versions == [1] * 6 + [records.RECORD_VERSION] * 2


_DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from helpers import CannedModel
from grounded_sam.labeling.job import LabelingJob
from grounded_sam.labeling.options import LabelOptions
model = CannedModel()
job = LabelingJob(sys.argv[2], sys.argv[3], model.ontology, model.settings(), LabelOptions(link=False))
print(job.writer.token, flush=True)
time.sleep(600)
"""


def test_a_worker_that_outlived_its_run_never_writes_into_the_next_one(six_scenes, tmp_path, monkeypatch):
    """The race of a driver killed with SIGKILL and rerun at once, while its Ray workers still write for a moment:
    the next run waits until the image being written is whole, then the old worker writes nothing more."""
    output, options = tmp_path / "out", LabelOptions(link=False)
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(TESTS), str(six_scenes), str(output)], stdout=subprocess.PIPE, text=True
    )
    token = driver.stdout.readline().strip()
    worker = ImageWriter(output.absolute(), options, token)  # a worker of that run
    copying, go_on, real_copy = threading.Event(), threading.Event(), __import__("shutil").copyfileobj

    def slow_copy(source, destination, *args):
        copying.set()
        assert go_on.wait(30)
        real_copy(source, destination, *args)

    monkeypatch.setattr("shutil.copyfileobj", slow_copy)
    image = load_image(six_scenes / "img_000.png")
    labels = convert_labels(options, CannedModel().predict_arrays([image])[0], image.shape)
    arguments = (PurePosixPath("img_000.png"), six_scenes / "img_000.png", "img_000.png", "train", image.shape, labels)
    writing = threading.Thread(target=worker.write, args=arguments)
    writing.start()
    assert copying.wait(30)  # mid-image: its pending entry is written, its copy is under way
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    opened = []
    model = CannedModel()
    rerun = threading.Thread(
        target=lambda: opened.append(LabelingJob(six_scenes, output, model.ontology, model.settings(), options))
    )
    rerun.start()
    time.sleep(1.0)
    assert not opened  # the next run waits for the image being written
    go_on.set()
    writing.join(30)
    rerun.join(30)
    job = opened[0]
    assert len(job.todo) == 5 and PurePosixPath("img_000.png") not in job.todo  # the old worker's image is done
    assert (output / "train" / "images" / "img_000.png").is_file() and not list((output / PENDING_DIR).iterdir())
    with pytest.raises(OutputFolderError, match="Another run took over"):
        worker.write(
            PurePosixPath("img_001.png"), six_scenes / "img_001.png", "img_001.png", "train", (48, 64, 3), labels
        )
    assert (
        not record_path(output, "img_001.png").exists() and not (output / "train" / "images" / "img_001.png").exists()
    )
    job.close()


def test_temporary_names_differ_between_writers_and_every_kind_is_cleaned_up(tmp_path):
    target = tmp_path / "labels.txt"
    first, second = temporary_path(target), temporary_path(target)
    assert first != second and f".labels.txt.{os.getpid()}-" in first.name
    older = tmp_path / ".labels.txt.123.tmp"  # how earlier versions named them: the process id only
    for path in (first, second, older):
        path.write_text("cut")
    (tmp_path / "notes.tmp").write_text("not ours")
    remove_partial_files([tmp_path])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.tmp"]


def test_a_run_killed_then_extended_numbers_what_it_finished_with_the_new_images(six_scenes, tmp_path):
    """Ids of images finished by a killed run are given together with those of images added before the rerun,
    in path order: the same ids as labeling the grown folder in one go."""
    output, model, options = tmp_path / "out", CannedModel(), LabelOptions(split=(1.0, 0.0))
    with LabelingJob(six_scenes, output, model.ontology, model.settings(), options) as job:
        names, images = job.names(), ImageWriter(job.output_folder, options, job.writer.token)
        for source in job.todo[:3]:  # then the run is killed: no finish
            image = load_image(six_scenes / source)
            labels = convert_labels(options, model.predict_arrays([image])[0], image.shape)
            images.write(source, six_scenes / source, names[source], "train", image.shape, labels)
    Image.open(six_scenes / "img_005.png").save(six_scenes / "aaa.png")
    label_quietly(CannedModel(), six_scenes, output, split=(1.0, 0.0))
    label_quietly(CannedModel(), six_scenes, tmp_path / "fresh", split=(1.0, 0.0))
    assert without_path(snapshot(output)) == without_path(snapshot(tmp_path / "fresh"))

"""Never touching what is not ours, for the commands that came after labeling: ``track``, ``compare``, ``eval``,
``review`` and corrections (what the app saves). Each case is one a careless or hostile user can set up: a link
inside the output, an input at an output's path, a file of theirs named as a report, a record edited to point
outside the dataset. Every refusal must leave the user's files byte for byte as they were."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import CannedModel, canned_detections, label_quietly, make_good_images, write_mp4
from PIL import Image
from typer.testing import CliRunner

from grounded_sam.apps import cli
from grounded_sam.apps.review import write_review
from grounded_sam.errors import OutputFolderError, UserInputError
from grounded_sam.labeling.corrections import correct_image
from grounded_sam.labeling.files import real_directory, remove_owned_file
from grounded_sam.labeling.records import CORRECTIONS_LOG, read_header, record_path

pytest.importorskip("av")


def _sums(folder: Path) -> dict:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _invoke(*arguments) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, [str(argument) for argument in arguments])
    return result.exit_code, " ".join(result.output.split())


def _mine(folder: Path) -> Path:
    """A folder of the user's own files."""
    folder.mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "photo.png")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = [np.full((48, 64, 3), 60 + 20 * index, np.uint8) for index in range(4)]
    return write_mp4(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


@pytest.fixture
def labeled(tmp_path):
    make_good_images(tmp_path / "photos", 4)
    label_quietly(CannedModel(), tmp_path / "photos", tmp_path / "dataset")
    return tmp_path / "dataset"


# track: everything below is refused before a model is needed (the models named do not exist).
NO_MODELS = ("--sam", "/nonexistent/sam", "--florence", "/nonexistent/florence")


def test_track_never_writes_its_dataset_through_a_link(clip, tmp_path):
    mine = _mine(tmp_path / "mine")
    before = _sums(mine)
    (tmp_path / "out").mkdir()
    os.symlink(mine, tmp_path / "out" / "dataset")
    code, output = _invoke("track", clip, "-p", "a dog", "-o", tmp_path / "out", "--dataset-every", "2", "--overwrite",
                           *NO_MODELS)  # fmt: skip
    assert code == 2 and "symbolic link" in output
    assert _sums(mine) == before


def test_track_refuses_a_video_where_it_writes_its_results(clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    video = out / "annotated.mp4"
    video.write_bytes(clip.read_bytes())
    code, output = _invoke("track", video, "-p", "a dog", "-o", out, *NO_MODELS)
    assert code == 2 and "where this run writes its results" in output
    assert video.read_bytes() == clip.read_bytes()
    frames = out / "dataset" / "train" / "images"
    frames.mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (64, 48), (index, 0, 0)).save(frames / f"{index:03d}.png")
    before = _sums(frames)
    code, output = _invoke("track", frames, "-p", "a dog", "-o", out, "--dataset-every", "1", "--overwrite", *NO_MODELS)
    assert code == 2 and "lies inside the output folder" in output
    assert _sums(frames) == before


def test_track_says_what_is_wrong_with_a_broken_link_or_a_folder_at_an_output_name(clip, tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    code, output = _invoke("track", clip, "-p", "a dog", "-o", tmp_path / "dangling", *NO_MODELS)
    assert code == 2 and "does not exist" in output and "Traceback" not in output
    (tmp_path / "out" / ".grounded-sam").mkdir(parents=True)  # an earlier run wrote tracks.txt, now a folder
    (tmp_path / "out" / ".grounded-sam" / "track.json").write_text(json.dumps({"files": ["tracks.txt"]}))
    (tmp_path / "out" / "tracks.txt").mkdir()
    code, output = _invoke("track", clip, "-p", "a dog", "-o", tmp_path / "out", *NO_MODELS)
    assert code == 2 and "tracks.txt" in output and "is a folder where grounded-sam writes a file" in output


# compare
def _compare(images, truth, ontology, out, florence_dir, sam_dir):
    return _invoke("compare", images, "--ground-truth", truth, "--ontology", ontology, "-o", out,
                   "--florence", florence_dir, "--sam", sam_dir, "--device", "cpu")  # fmt: skip


@pytest.fixture
def gold(tmp_path, model):
    images = tmp_path / "gold"
    make_good_images(images, 2)
    model.label(images, output_folder=tmp_path / "gold_labeled", progress=False, verbose=False)
    truth = tmp_path / "truth.json"
    truth.write_text((tmp_path / "gold_labeled" / "annotations" / "instances_train.json").read_text())
    ontology = tmp_path / "dogs.yaml"
    ontology.write_text("a dog: dog\n")
    return images, truth, ontology


def test_compare_never_relabels_a_folder_it_did_not_write(gold, labeled, florence_dir, sam_dir, tmp_path):
    images, truth, ontology = gold
    out = tmp_path / "runs"
    out.mkdir()
    os.replace(labeled, out / "dogs")  # a dataset of the user's, where compare would put its "dogs" configuration
    before = _sums(out / "dogs")
    code, output = _compare(images, truth, ontology, out, florence_dir, sam_dir)
    assert code == 2 and "compare did not write" in output
    assert _sums(out / "dogs") == before
    os.replace(out / "dogs", tmp_path / "moved")
    os.symlink(tmp_path / "moved", out / "dogs")
    code, output = _compare(images, truth, ontology, out, florence_dir, sam_dir)
    assert code == 2 and "symbolic link" in output
    assert _sums(tmp_path / "moved") == before


def test_compare_reruns_into_its_own_folders(gold, florence_dir, sam_dir, tmp_path):
    images, truth, ontology = gold
    assert _compare(images, truth, ontology, tmp_path / "runs", florence_dir, sam_dir)[0] == 0
    ontology.write_text("a dog: dog\na person: person\n")  # another configuration: its folder is relabeled
    code, output = _compare(images, truth, ontology, tmp_path / "runs", florence_dir, sam_dir)
    assert code == 0, output
    settings = json.loads((tmp_path / "runs" / "dogs" / ".grounded-sam" / "settings.json").read_text())
    assert settings["ontology"] == {"a dog": "dog", "a person": "person"}


# eval --json / --plot
def test_eval_reports_replace_only_reports_of_ours(gold, tmp_path):
    images, truth, _ = gold
    dataset = tmp_path / "gold_labeled"
    protected = [truth, images / "img_000.png", dataset / ".grounded-sam" / "settings.json"]
    before = {path: path.read_bytes() for path in protected}
    for flag, path in [("--json", truth), ("--plot", images / "img_000.png"), ("--json", protected[2])]:
        code, output = _invoke("eval", dataset, "--ground-truth", truth, flag, path)
        assert code == 2 and "grounded-sam did not write it" in output, output
    assert {path: path.read_bytes() for path in protected} == before
    code, output = _invoke("eval", dataset, "--ground-truth", truth, "--json", tmp_path / "missing" / "e.json")
    assert code == 2 and "does not exist" in output and ".tmp" not in output
    code, output = _invoke("eval", dataset, "--ground-truth", truth, "--json", images)
    assert code == 2 and "is a folder" in output
    for _ in range(2):  # the second run replaces what the first wrote
        code, output = _invoke("eval", dataset, "--ground-truth", truth, "--json", tmp_path / "e.json",
                               "--plot", tmp_path / "e.png")  # fmt: skip
        assert code == 0, output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["written_by"] == "grounded-sam" and report["bbox"]["AP"] == pytest.approx(1.0)
    assert Image.open(tmp_path / "e.png").info["Software"] == "grounded-sam"


# review and corrections
def test_review_never_replaces_a_page_of_the_users(labeled):
    (labeled / "review").mkdir()
    (labeled / "review" / "index.html").write_text("my notes")
    with pytest.raises(OutputFolderError, match="not a file grounded-sam wrote"):
        write_review(labeled, progress=False)
    assert (labeled / "review" / "index.html").read_text() == "my notes"
    (labeled / "review" / "index.html").unlink()
    write_review(labeled, progress=False)
    write_review(labeled, progress=False)  # its own page: replaced


def _forge_split(dataset: Path, name: str, split: str) -> None:
    path = record_path(dataset, name)
    header, entries = path.read_text().splitlines()
    path.write_text(json.dumps({**json.loads(header), "split": split}) + "\n" + entries + "\n")


def test_a_record_edited_to_point_outside_the_dataset_is_never_written_or_served_through(labeled, tmp_path):
    from grounded_sam.apps.web.dataset import DatasetIndex

    victim = _mine(tmp_path / "victim")
    (victim / "images").mkdir()
    (victim / "labels").mkdir()
    name = read_header(next((labeled / ".grounded-sam" / "records").iterdir()))["name"]
    Image.new("RGB", (64, 48)).save(victim / "images" / name)
    (victim / "labels" / f"{Path(name).stem}.txt").write_text("my labels\n")
    before = _sums(victim)
    _forge_split(labeled, name, "../victim")
    assert name not in DatasetIndex(labeled).entries  # never listed, never served
    with pytest.raises(UserInputError, match="is not an image of the dataset"):
        correct_image(labeled, name, canned_detections(np.zeros((48, 64, 3), np.uint8)), [])
    label_quietly(CannedModel(), labeled.parent / "photos", labeled, overwrite=True)
    assert _sums(victim) == before
    assert not remove_owned_file(labeled, "../victim/thesis.txt") and (victim / "thesis.txt").exists()
    with pytest.raises(OutputFolderError, match="not a folder inside"):
        real_directory(labeled, "../victim/images")


def test_a_correction_is_refused_before_anything_changes_when_its_log_is_a_link(labeled, tmp_path):
    mine = tmp_path / "my.log"
    mine.write_text("mine\n")
    os.symlink(mine, labeled / CORRECTIONS_LOG)
    name = read_header(next((labeled / ".grounded-sam" / "records").iterdir()))["name"]
    record = record_path(labeled, name).read_bytes()
    with pytest.raises(OutputFolderError, match="symbolic link"):
        correct_image(labeled, name, canned_detections(np.zeros((48, 64, 3), np.uint8)), [])
    assert record_path(labeled, name).read_bytes() == record and mine.read_text() == "mine\n"


# models tiny, predict, logs shared by hard links, the review page, odd record names
def test_tiny_models_are_never_written_over_a_folder_of_the_users(tmp_path):
    mine = tmp_path / "models" / "florence"
    mine.mkdir(parents=True)
    (mine / "model-00001-of-00002.safetensors").write_bytes(b"my weights")
    before = _sums(tmp_path / "models")
    code, output = _invoke("models", "tiny", tmp_path / "models")
    assert code == 2 and "is not empty" in output
    assert _sums(tmp_path / "models") == before
    (tmp_path / "afile").write_text("x")
    code, output = _invoke("models", "tiny", tmp_path / "afile")
    assert code == 2 and "is a file" in output


@pytest.mark.parametrize("command", ["predict", "track"])
def test_an_output_below_a_file_is_one_line_before_any_model_loads(command, clip, tmp_path):
    make_good_images(tmp_path / "photos", 1)
    (tmp_path / "afile").write_text("x")
    source = tmp_path / "photos" if command == "predict" else clip
    code, output = _invoke(command, source, "-p", "a dog", "-o", tmp_path / "afile" / "sub", *NO_MODELS)
    assert code == 2 and "lies below" in output and "a file" in output


def test_a_video_whose_name_is_not_utf8_is_refused_before_any_model_loads(clip, tmp_path):
    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"clip\xff.mp4")))
    odd.write_bytes(clip.read_bytes())
    code, output = _invoke("track", odd, "-p", "a dog", "-o", tmp_path / "out", "--dataset-every", "2", *NO_MODELS)
    assert code == 2 and "is not valid UTF-8" in output and not (tmp_path / "out").exists()


def test_predict_refuses_a_folder_where_an_earlier_run_wrote_a_file(tmp_path):
    make_good_images(tmp_path / "photos", 1)
    out = tmp_path / "out"
    (out / ".grounded-sam").mkdir(parents=True)
    (out / ".grounded-sam" / "predict.json").write_text(json.dumps({"files": ["img_000.jpg", "img_000.json"]}))
    (out / "img_000.jpg").mkdir()
    (out / "img_000.jpg" / "mine.txt").write_text("mine")
    code, output = _invoke("predict", tmp_path / "photos", "-p", "a dog", "-o", out, *NO_MODELS)
    assert code == 2 and "is a folder where grounded-sam writes a file" in output
    assert (out / "img_000.jpg" / "mine.txt").read_text() == "mine"


def test_a_log_shared_with_a_hard_linked_backup_is_appended_to_without_changing_the_backup(labeled, tmp_path):
    names = [read_header(path)["name"] for path in sorted((labeled / ".grounded-sam" / "records").iterdir())]
    image = np.zeros((48, 64, 3), np.uint8)
    correct_image(labeled, names[0], canned_detections(image), [{"first": 1}])
    backup = tmp_path / "backup.jsonl"
    os.link(labeled / CORRECTIONS_LOG, backup)  # what `cp -al dataset backup` does to every file
    held = backup.read_bytes()
    correct_image(labeled, names[1], canned_detections(image), [{"second": 2}])
    assert backup.read_bytes() == held
    lines = (labeled / CORRECTIONS_LOG).read_text().splitlines()
    assert [json.loads(line)["changes"] for line in lines] == [[{"first": 1}], [{"second": 2}]]


def test_review_with_an_image_gone_writes_the_page_and_lists_it(labeled):
    write_review(labeled, progress=False)
    gone = next(labeled.glob("*/images/*.png"))
    gone.unlink()
    page = write_review(labeled, progress=False)
    text = page.read_text()
    assert gone.name in text and "Image file not found" in text
    thumbs = sorted(path.name for path in (labeled / "review" / "thumbs").iterdir())
    assert len(thumbs) == 3  # the three images still there; the fourth's old thumbnail removed


def test_a_record_name_with_a_nul_byte_is_left_out_of_the_app(labeled):
    from grounded_sam.apps.web.dataset import DatasetIndex

    path = next((labeled / ".grounded-sam" / "records").iterdir())
    header, entries = path.read_text().splitlines()
    path.write_text(json.dumps({**json.loads(header), "name": "img\x00.png"}) + "\n" + entries + "\n")
    assert "img\x00.png" not in DatasetIndex(labeled).entries


def test_compare_refuses_a_report_inside_a_folder_it_labels_into(gold, tmp_path):
    images, truth, ontology = gold
    (tmp_path / "runs" / "dogs").mkdir(parents=True)  # where the "dogs" configuration's dataset will go
    code, output = _invoke("compare", images, "--ground-truth", truth, "--ontology", ontology, "-o", tmp_path / "runs",
                           "--json", tmp_path / "runs" / "dogs" / "report.json", *NO_MODELS)  # fmt: skip
    assert code == 2 and "which compare labels into" in output
    assert list((tmp_path / "runs").iterdir()) == [tmp_path / "runs" / "dogs"]  # nothing written


# corrections that cannot be written whole are refused before anything changes; the app's JSON edge cases
@pytest.mark.parametrize(
    "problem, message",
    [
        ("changes", "changes must be JSON-ready"),
        ("nan box", "boxes must lie within"),
        ("box outside", "boxes must lie within"),
        ("nan confidence", "confidence must be in"),
        ("float class", "class_id must be integers"),
    ],
)
def test_a_correction_that_cannot_be_written_whole_changes_nothing(labeled, problem, message):
    import datetime

    import supervision as sv

    name = read_header(next((labeled / ".grounded-sam" / "records").iterdir()))["name"]
    before = _sums(labeled)
    detections = sv.Detections(xyxy=np.array([[2.0, 3.0, 12.0, 9.0]]), class_id=np.array([0]), confidence=np.ones(1))
    changes = [{"at": datetime.datetime.now()}] if problem == "changes" else []
    if problem == "nan box":
        detections.xyxy[0, 0] = np.nan
    if problem == "box outside":
        detections.xyxy[0] = [-100, -100, 1e9, 5]
    if problem == "nan confidence":
        detections.confidence[0] = np.nan
    if problem == "float class":
        detections.class_id = np.array([0.5])
    with pytest.raises(UserInputError, match=message):
        correct_image(labeled, name, detections, changes)
    assert _sums(labeled) == before


def test_the_app_answers_odd_json_with_4xx_not_a_crash():
    import asyncio

    from starlette.requests import Request

    from grounded_sam.apps.web.guards import read_json
    from grounded_sam.apps.web.state import AppError, Workspace

    workspace = Workspace(image=np.zeros((4, 4, 3), np.uint8), name="x")
    with pytest.raises(AppError) as refused:
        workspace.get(float("inf"))
    assert refused.value.status == 404
    body = b"[" * 100_000 + b"]" * 100_000

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(AppError, match="not JSON"):
        asyncio.run(read_json(request))


def test_a_report_is_never_written_over_a_dangling_link(tmp_path):
    from grounded_sam.evaluation.report_files import check_report_file

    os.symlink(tmp_path / "gone.json", tmp_path / "report.json")
    with pytest.raises(OutputFolderError, match="link to nothing"):
        check_report_file(tmp_path / "report.json", "--json")

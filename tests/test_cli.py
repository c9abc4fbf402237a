"""The grounded-sam command, through its installed entry point, on tiny local models."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image
from typer.testing import CliRunner

from grounded_sam.apps import cli
from grounded_sam.apps.cli.common import cli_words, ontology_from
from grounded_sam.detections import rle_to_mask
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import STATE_DIR
from grounded_sam.pipeline import PipelineSpec

pytestmark = pytest.mark.slow
SCRIPT = Path(sys.executable).parent / "grounded-sam"


def _run(*arguments, env=None):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [str(SCRIPT), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=600
    )


@pytest.fixture
def photos(two_photos_and_a_broken_file):
    return two_photos_and_a_broken_file


def test_help_lists_the_commands_with_examples():
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0 and all(name in result.output for name in ("predict", "label", "review", "models"))
    for command in (["predict", "--help"], ["label", "--help"], ["review", "--help"], ["models", "download", "--help"]):
        assert "Example: grounded-sam" in CliRunner().invoke(cli.app, command).output


def test_predict_writes_pictures_and_json_and_reports_bad_images(photos, florence_dir, sam_dir, tmp_path, model):
    result = _run(
        "predict",
        photos,
        "-p",
        "a dog",
        "-p",
        "a person",
        "-o",
        tmp_path / "out",
        "--florence",
        florence_dir,
        "--sam",
        sam_dir,
        "--device",
        "cpu",
        "--batch-size",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        ".grounded-sam",
        "astronaut.jpg",
        "astronaut.json",
        "cat.jpg",
        "cat.json",
    ]
    assert json.loads((tmp_path / "out" / STATE_DIR / "predict.json").read_text())["files"] == [
        "astronaut.jpg",
        "astronaut.json",
        "cat.jpg",
        "cat.json",
    ]  # what a rerun may replace
    assert "skipped broken.jpg" in result.stderr and "2 of 3 images" in result.stderr
    content = json.loads((tmp_path / "out" / "cat.json").read_text())
    assert content["width"] == 226 and content["height"] == 150 and content["detections"]
    expected = model.predict(photos / "cat.png")  # the fixture's ontology has the same two prompts
    assert [row["class_name"] for row in content["detections"]] == [
        "a dog" if name == "dog" else "a person" for name in expected.data["class_name"]
    ]
    for row, mask in zip(content["detections"], expected.mask):
        assert np.array_equal(rle_to_mask(row["mask"]), mask)
    picture = np.asarray(Image.open(tmp_path / "out" / "cat.jpg"))
    assert picture.shape == (150, 226, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["predict", "{missing}", "-p", "dog", "-o", "{out}"], "Not found"),
        (["predict", "{photos}", "-o", "{out}"], "Say what to look for"),
        (["predict", "{photos}", "--ontology", "{bad_ontology}", "-o", "{out}"], "is not valid YAML"),
        (["predict", "{photos}", "-p", "dog", "-o", "{out}", "--preset", "huge"], "Unknown preset"),
        (
            ["predict", "{photos}", "-p", "dog", "-o", "{out}", "--florence", "no-such/model"],
            "hf download no-such/model",
        ),
        (["models", "download", "fast"], "HF_HUB_OFFLINE is set"),
        (["label", "{missing}", "-p", "dog"], "Not a folder"),
        (["label", "{photos}", "-p", "dog", "--split", "0.8;0.2"], "--split takes comma-separated"),
        (
            [
                "label",
                "{photos}",
                "-p",
                "dog",
                "--split",
                "0.5,0.2",
                "--device",
                "cpu",
                "--florence",
                "{florence}",
                "--sam",
                "{sam}",
            ],
            "split",
        ),
        (
            [
                "label",
                "{photos}",
                "-p",
                "dog",
                "-o",
                "{photos}",
                "--device",
                "cpu",
                "--florence",
                "{florence}",
                "--sam",
                "{sam}",
            ],
            "lies inside the output folder",
        ),
        (["review", "{photos}"], "is not a dataset written by grounded-sam"),
        (["label", "{photos}", "-p", "dog", "--format", "xml"], "--format must be one or both of yolo, coco"),
        (["label", "{photos}", "-p", "dog", "--coco-segmentation", "mesh"], "--coco-segmentation must be one of"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_non_zero(photos, tmp_path, arguments, message, florence_dir, sam_dir):
    (tmp_path / "bad.yaml").write_text("{prompt: [unclosed")
    values = {
        "missing": tmp_path / "missing",
        "photos": photos,
        "out": tmp_path / "out",
        "bad_ontology": tmp_path / "bad.yaml",
        "florence": florence_dir,
        "sam": sam_dir,
    }
    result = _run(*[argument.format(**values) for argument in arguments])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and message in result.stderr
    assert [line.startswith("Error:") for line in result.stderr.strip().splitlines()] == [True]  # one line


def test_label_writes_a_dataset_resumes_and_reviews(photos, florence_dir, sam_dir, tmp_path):
    ontology = tmp_path / "ontology.yaml"
    ontology.write_text("a dog: dog\na person: person\n")
    arguments = [
        "label",
        photos,
        "--ontology",
        ontology,
        "-o",
        tmp_path / "dataset",
        "--split",
        "0.5,0.5",
        "--florence",
        florence_dir,
        "--sam",
        sam_dir,
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]
    first = _run(*arguments)
    assert first.returncode == 0, first.stderr
    assert "2 images (2 labeled now, 0 before)" in first.stderr, first.stderr
    assert (
        f"dataset: {tmp_path / 'dataset'}" in first.stderr and "skipped broken.jpg: Cannot read image" in first.stderr
    )
    dataset = sv.DetectionDataset.from_yolo(
        images_directory_path=str(tmp_path / "dataset" / "train" / "images"),
        annotations_directory_path=str(tmp_path / "dataset" / "train" / "labels"),
        data_yaml_path=str(tmp_path / "dataset" / "data.yaml"),
        force_masks=True,
    )
    assert dataset.classes == ["dog", "person"]
    report = json.loads((tmp_path / "dataset" / "report.json").read_text())
    assert report["images_labeled"] == 2 and sum(report["images_per_split"].values()) == 2

    second = _run(*arguments, "--review")
    assert second.returncode == 0, second.stderr
    assert "0 labeled now, 2 before" in second.stderr and "nothing left to label" in second.stderr
    assert "images/s" not in second.stderr
    assert f"Review page: {tmp_path / 'dataset' / 'review' / 'index.html'}" in second.stdout
    assert len(list((tmp_path / "dataset" / "review" / "thumbs").glob("*.jpg"))) == 2

    review = _run("review", tmp_path / "dataset", "--max-images", "1")
    assert review.returncode == 0, review.stderr
    assert "1 of 2 images drawn" in (tmp_path / "dataset" / "review" / "index.html").read_text()


def test_internal_errors_keep_their_traceback(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(PipelineSpec, "build", lambda self: (_ for _ in ()).throw(RuntimeError("bug")))
    result = CliRunner().invoke(cli.app, ["predict", str(photos), "-p", "dog", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_models_lists_presets_and_what_is_cached(sam_dir, tmp_path):
    cache = tmp_path / "hub" / "models--facebook--sam2.1-hiera-tiny"
    shutil.copytree(sam_dir, cache / "snapshots" / "abc")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc")
    result = _run("models", env={"HF_HUB_CACHE": str(tmp_path / "hub"), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 4}
    assert set(rows) == {"fast", "default", "accurate"}
    assert [cell.strip() for cell in rows["fast"].split("│")[2:6]] == [
        "florence-community/Florence-2-base",
        "no",
        "facebook/sam2.1-hiera-tiny",
        "yes",
    ]
    assert "grounded-sam models download" in result.stdout


@pytest.mark.parametrize("command", [[], ["predict"], ["label"], ["review"], ["models"]])
def test_help_loads_no_torch(command):
    code = (
        f"import sys; from grounded_sam.apps.cli import app; app({command + ['--help']!r}, standalone_mode=False); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False", result.stderr


def test_every_labeling_option_has_its_flag_with_the_same_default():
    from dataclasses import fields

    import click
    import typer.main

    command = typer.main.get_command(cli.app).commands["label"]
    flags = {name: param for param in command.params if isinstance(param, click.Option) for name in param.opts}
    defaults = LabelOptions()
    for option in fields(LabelOptions):
        if option.metadata.get("cli") is False:
            continue
        flag = option.metadata.get("flag", "--" + option.name.replace("_", "-"))
        assert flag in flags, f"LabelOptions.{option.name} has no {flag} on `grounded-sam label`"
        assert flags[flag].help == option.metadata["help"]
        given = flags[flag].default
        value = getattr(defaults, option.name)
        if isinstance(value, tuple):  # given as text on the command line
            given = tuple(type(value[0])(part) for part in given.split(","))
        assert given == value, f"{flag} defaults to {given!r}, LabelOptions.{option.name} to {value!r}"


def test_help_keeps_text_in_square_brackets():
    result = CliRunner().invoke(cli.app, ["label", "--help"])
    assert "[default: all common ones]" in result.output and "(default: FOLDER_labeled)" in result.output


@pytest.mark.parametrize(
    "python, command_line",
    [
        ("formats must be one or both of yolo, coco", "--format must be one or both of yolo, coco"),
        ("top level only: recursive=True walks sub-folders", "top level only: --recursive walks sub-folders"),
        ("raise max_pixels=... or downscale the image", "raise --max-pixels ... or downscale the image"),
        (
            "lies inside the output folder (input_folder, output_folder)",
            "lies inside the output folder (FOLDER, --output)",
        ),
        ("or overwrite=True to replace that dataset", "or --overwrite to replace that dataset"),
        (
            "Florence-2 'x' (florence=...); SAM 2 'y' (sam=...)",
            "Florence-2 'x' (--florence ...); SAM 2 'y' (--sam ...)",
        ),
        ("the train split is empty; a dog must be", "the train split is empty; a dog must be"),  # plain words stay
    ],
)
def test_messages_use_the_command_lines_words(python, command_line):
    assert cli_words(python) == command_line


def test_a_prompt_can_name_its_class():
    ontology = ontology_from(["a dog=dog", "puppy=dog", "a cat"], None)
    assert ontology.to_dict() == {"a dog": "dog", "puppy": "dog", "a cat": "a cat"} and ontology.classes() == [
        "dog",
        "a cat",
    ]


def test_a_mistyped_local_model_folder_is_not_taken_for_a_hub_id(photos, tmp_path, monkeypatch, florence_dir):
    (tmp_path / "models").mkdir()
    shutil.copytree(florence_dir, tmp_path / "models" / "florence")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli.app, ["predict", str(photos), "-p", "dog", "-o", "out", "--florence", "models/florenc"]
    )
    assert result.exit_code == 2
    assert (
        "Florence-2 directory not found: models/florenc (models/ exists here, so this is not a hub id). Did you "
        "mean models/florence?" in result.output
    )


def test_ctrl_c_says_how_to_resume(photos, tmp_path, monkeypatch):
    class Interrupted:
        def settings(self):
            return spec.settings()

        ontology = ontology_from(["dog"], None)

        def predict_arrays(self, images):
            raise KeyboardInterrupt

    spec = PipelineSpec({"dog": "dog"}, florence="f", sam="s", device="cpu")
    monkeypatch.setattr(PipelineSpec, "build", lambda self: Interrupted())
    monkeypatch.setattr(PipelineSpec, "settings", lambda self: {"model": "interrupted"})
    result = CliRunner().invoke(cli.app, ["label", str(photos), "-p", "dog", "-o", str(tmp_path / "out")])
    assert result.exit_code == 130
    assert "Interrupted. Every image finished so far is kept in" in result.output
    assert "run the same command again to continue" in result.output

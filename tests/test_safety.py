"""Attacks a hostile (or unlucky) user would try: grounded-sam must never touch what is not its own, and bad input
must fail fast, in one line that names the file or option. Each test is the command or call such a user runs."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CannedModel, make_good_images
from PIL import Image
from typer.testing import CliRunner

import grounded_sam.pipeline.grounded_sam2 as pipeline
from grounded_sam import CaptionOntology, OutputFolderError, OutputWriteError, label_folder
from grounded_sam.apps import cli
from grounded_sam.labeling.records import SETTINGS_FILE, STATE_DIR, record_files

SCRIPT = Path(sys.executable).parent / "grounded-sam"
TESTS = Path(__file__).parent


# The peak resident memory of this process since it started (ru_maxrss would also count the parent's memory that a
# fork copied, before exec).
PEAK_RSS_MB = """
import re
print(int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024)
"""


def _cli(*arguments):
    return subprocess.run(
        [str(SCRIPT), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), stderr
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (following nothing) and its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def _label(source, output, **options):
    return label_folder(CannedModel(), source, output_folder=output, verbose=False, progress=False, **options)


@pytest.fixture
def own_files(tmp_path):
    """A folder of the user's own files that no run may touch."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("three years of work")
    make_good_images(folder / "photos", 2)
    return folder


@pytest.fixture
def dataset(tmp_path):
    make_good_images(tmp_path / "photos", 8)
    _label(tmp_path / "photos", tmp_path / "ds", split=(0.5, 0.5))
    return tmp_path / "ds"


def _no_model_may_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the mistake was reported")

    monkeypatch.setattr(pipeline, "load_florence2", refuse)
    monkeypatch.setattr(pipeline, "load_sam2", refuse)


def _cli_in_process(monkeypatch, *arguments):
    _no_model_may_load(monkeypatch)
    result = CliRunner().invoke(cli.app, [str(argument) for argument in arguments])
    assert result.exit_code == 2, (result.output, result.exception)
    return _one_error_line(result.output)


# 1. The input folder inside the output folder, with --overwrite: it must be refused and every image kept.
def test_overwrite_of_a_dataset_holding_the_input_folder_is_refused_and_deletes_nothing(dataset, monkeypatch):
    before = _tree(dataset)
    message = _cli_in_process(
        monkeypatch, "label", dataset / "train" / "images", "-p", "a dog", "-o", dataset, "--overwrite"
    )
    assert "lies inside the output folder" in message and "train/images" in message
    with pytest.raises(OutputFolderError, match="lies inside the output folder"):
        _label(dataset / "train" / "images", dataset, overwrite=True)
    assert _tree(dataset) == before


# 2. A folder of the dataset replaced by a link to the user's files: reruns refuse it and follow nothing.
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_symlink_inside_the_output_is_never_followed(dataset, own_files, tmp_path, overwrite):
    shutil.rmtree(dataset / "valid" / "images")
    (dataset / "valid" / "images").symlink_to(own_files, target_is_directory=True)
    before = _tree(own_files)
    options = {"overwrite": True, "split": (0.7, 0.3)} if overwrite else {"split": (0.5, 0.5)}
    with pytest.raises(OutputFolderError, match="symbolic link .* never writes through links"):
        _label(tmp_path / "photos", dataset, **options)
    assert _tree(own_files) == before and (dataset / "valid" / "images").is_symlink()


def test_a_linked_label_file_is_replaced_as_a_link_and_its_target_kept(dataset, own_files, tmp_path):
    label = next((dataset / "train" / "labels").iterdir())
    label.unlink()
    label.symlink_to(own_files / "thesis.tex")
    (dataset / "train" / "images" / "my_own.jpg").write_bytes(b"a file grounded-sam did not write")
    before = _tree(own_files)
    report = _label(tmp_path / "photos", dataset, overwrite=True, split=(0.7, 0.3))
    assert report.images_labeled == 8 and _tree(own_files) == before
    assert (dataset / "train" / "images" / "my_own.jpg").read_bytes() == b"a file grounded-sam did not write"
    assert not any(path.is_symlink() for path in dataset.rglob("*"))


def test_a_linked_state_folder_is_refused(dataset, own_files, tmp_path):
    shutil.move(dataset / STATE_DIR, own_files / "state")
    (dataset / STATE_DIR).symlink_to(own_files / "state", target_is_directory=True)
    before = _tree(own_files)
    with pytest.raises(OutputFolderError, match="symbolic link"):
        _label(tmp_path / "photos", dataset, split=(0.5, 0.5))
    assert _tree(own_files) == before


def test_overwrite_removes_only_what_the_records_name(dataset, tmp_path):
    (dataset / "notes.md").write_text("mine")
    (dataset / "review").mkdir()
    (dataset / "review" / "mine.html").write_text("mine")
    (dataset / "train" / "labels" / "extra.txt").write_text("0 0.1 0.1 0.2 0.2\n")
    _label(tmp_path / "photos", dataset, overwrite=True, split=(0.7, 0.3))
    assert (dataset / "notes.md").read_text() == "mine" and (dataset / "review" / "mine.html").read_text() == "mine"
    assert (dataset / "train" / "labels" / "extra.txt").is_file()


# 3. A YAML alias bomb: refused at once, within a small memory bound, with a short message naming the file.
def test_a_yaml_alias_bomb_is_refused_quickly_and_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
        f"*a{i - 1}]"
        for i in range(1, 9)
    ]
    bomb.write_text("\n".join(lines) + "\n")
    code = (
        textwrap.dedent(f"""
        from grounded_sam import CaptionOntology
        try:
            CaptionOntology.from_file({str(bomb)!r})
        except ValueError as error:
            print(str(error))
    """)
        + PEAK_RSS_MB
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    message, peak_mb = result.stdout.strip().splitlines()
    assert "anchors and aliases" in message and str(bomb) in message and len(message) < 300
    assert int(peak_mb) < 1024, f"peak RSS {peak_mb} MB"


def test_a_huge_value_is_named_by_its_type_not_printed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a dog: [" + ", ".join(["x"] * 20000) + "]\n")
    with pytest.raises(ValueError) as caught:
        CaptionOntology.from_file(path)
    assert "must be a string, got a list" in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("twice.yaml", "a dog: dog\na dog: cat\n", "gives the key 'a dog' twice"),
        ("twice.json", '{"a dog": "dog", "a dog": "cat"}', "gives the key 'a dog' twice"),
        ("latin1.yaml", "caf\xe9: cafe\n", "is not UTF-8 text"),
    ],
)
def test_ontology_files_that_would_lose_or_garble_entries_are_refused(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=message) as caught:
        CaptionOntology.from_file(path)
    assert str(path) in str(caught.value)


def test_an_oversized_ontology_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(ValueError, match="over the 1048576 byte limit"):
        CaptionOntology.from_file(path)


# 4. A file name that is not valid UTF-8: skipped with its reason by label and by predict.
def test_undecodable_file_names_are_skipped_by_label_and_predict(tmp_path, florence_dir, sam_dir):
    photos = tmp_path / "photos"
    make_good_images(photos, 2)
    os.rename(photos / "img_001.png", os.path.join(os.fsencode(photos), b"bad\xff.png"))
    report = _label(photos, tmp_path / "ds")
    assert (
        report.images_labeled == 1
        and report.skipped[0]["reason"] == "the file name is not valid UTF-8; rename the file"
    )
    result = _cli(
        "predict",
        photos,
        "-p",
        "a dog",
        "-o",
        tmp_path / "out",
        "--florence",
        florence_dir,
        "--sam",
        sam_dir,
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    assert "skipped bad\\xff.png: the file name is not valid UTF-8" in result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        ".grounded-sam",
        "img_000.jpg",
        "img_000.json",
    ]


# 5. A folder path that is not valid UTF-8: refused at the start, before any model loads.
@pytest.mark.parametrize("which", ["input", "output"])
def test_undecodable_folder_paths_are_refused_before_any_model_loads(tmp_path, monkeypatch, which):
    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9")))
    photos = odd if which == "input" else tmp_path / "photos"
    make_good_images(photos, 2)
    output = tmp_path / "out" if which == "input" else odd / "out"
    message = _cli_in_process(monkeypatch, "label", photos, "-p", "a dog", "-o", output)
    assert "is not valid UTF-8" in message and "caf\\xe9" in message
    message = _cli_in_process(monkeypatch, "predict", photos, "-p", "a dog", "-o", output)
    assert "is not valid UTF-8" in message


# 6. A split of NaNs.
def test_a_nan_split_is_refused(tmp_path, monkeypatch):
    make_good_images(tmp_path / "photos", 2)
    message = _cli_in_process(monkeypatch, "label", tmp_path / "photos", "-p", "a dog", "--split", "nan,nan")
    assert "split must be 2 or 3 non-negative fractions" in message
    assert not (tmp_path / "photos_labeled").exists()


# 7. Resuming with another precision would label the new images differently: refused, naming the setting.
def test_resuming_with_another_dtype_is_refused_naming_it(tmp_path, florence_dir, sam_dir, monkeypatch):
    make_good_images(tmp_path / "photos", 2)
    arguments = [
        "label",
        tmp_path / "photos",
        "-p",
        "a dog",
        "-o",
        tmp_path / "ds",
        "--florence",
        florence_dir,
        "--sam",
        sam_dir,
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli.app, [str(argument) for argument in arguments + ["--dtype", "float32"]])
    assert result.exit_code == 0, result.output
    message = _cli_in_process(monkeypatch, *arguments, "--dtype", "bfloat16")
    assert "model.detector.precision (stored 'float32', now 'bfloat16')" in message


# 8. An existing dataset that cannot be written: the documented OutputWriteError, in one line on the command line.
def test_a_read_only_dataset_gives_the_documented_write_error(dataset, tmp_path, monkeypatch):
    lock = dataset / STATE_DIR / "lock"
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # what a read-only mount answers (root ignores permission bits)
        if Path(path) == lock:
            raise PermissionError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputWriteError, match="Cannot write the dataset at .*lock: Read-only file system"):
        _label(tmp_path / "photos", dataset, split=(0.5, 0.5))
    message = _cli_in_process(monkeypatch, "label", tmp_path / "photos", "-p", "a dog", "-o", dataset)
    assert "Read-only file system" in message


# 9. Decompression bombs under Pillow's limit: skipped from their header, memory bounded.
def test_huge_images_are_skipped_within_a_memory_bound(tmp_path):
    photos, warm_up = tmp_path / "photos", tmp_path / "warm_up"
    make_good_images(photos, 2)
    make_good_images(warm_up, 2)
    Image.new("L", (10_000, 10_000)).save(photos / "bomb_0.png")  # 100 megapixels in a few hundred KB
    for index in range(1, 4):
        shutil.copy(photos / "bomb_0.png", photos / f"bomb_{index}.png")
    # The peak is compared with the peak of a run on good images only, in the same process: what importing torch
    # costs differs between machines, decoding one bomb costs at least 100 MB everywhere.
    code = (
        textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS)!r})
        from helpers import CannedModel
        from grounded_sam import label_folder
        label_folder(CannedModel(), {str(warm_up)!r}, output_folder={str(tmp_path / "warm_ds")!r},
                     verbose=False, progress=False)
    """)
        + PEAK_RSS_MB
        + textwrap.dedent(f"""
        report = label_folder(CannedModel(), {str(photos)!r}, output_folder={str(tmp_path / "ds")!r},
                              verbose=False, progress=False)
        print(json.dumps(report.to_dict()))
    """)
        + PEAK_RSS_MB
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warm_mb, report, peak_mb = result.stdout.splitlines()[:3]
    report = json.loads(report)
    assert report["images_labeled"] == 2 and len(report["skipped"]) == 4
    assert all("over the pixel budget of 50.0 megapixels" in item["reason"] for item in report["skipped"])
    growth_mb = int(peak_mb) - int(warm_mb)
    assert growth_mb < 50, f"peak RSS grew by {growth_mb} MB over a run without bombs: a bomb was decoded"


def test_the_pixel_budget_is_an_option(tmp_path):
    make_good_images(tmp_path / "photos", 3)  # 64 x 48 = 3072 pixels each
    assert _label(tmp_path / "photos", tmp_path / "small", max_pixels=3000).images_labeled == 0
    assert _label(tmp_path / "photos", tmp_path / "fits", max_pixels=3072).images_labeled == 3
    assert _label(tmp_path / "photos", tmp_path / "any", max_pixels=None).images_labeled == 3


# 10. Images 1, 3 or 4 pixels tall: never misread as channels-first.
@pytest.mark.parametrize("height", [1, 3, 4])
def test_images_a_few_pixels_tall_are_read_channels_last(model, height):
    image = np.random.default_rng(height).integers(0, 255, (height, 200, 3), dtype=np.uint8)
    found = model.predict(image)
    assert found.mask.shape[1:] == (height, 200)
    if height > 1:  # a 1-pixel-tall image has no box a pixel high
        assert len(found) > 0 and (found.xyxy[:, 3] <= height).all()


# 11. Messages: one line, naming the file or option.
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path):
    make_good_images(tmp_path / "photos", 1)
    line = _one_error_line(
        _cli("predict", tmp_path / "photos", "-p", "a dog", "-o", tmp_path / "out", "--device", "cuda").stderr
    )
    assert "torch sees no CUDA GPU" in line


def _malicious_pickle(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, path)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "is empty (0 bytes)"),
        ("truncated", "is not a complete PyTorch file"),
        ("malicious", "holds objects other than tensors"),
        ("not_sam", "not a SAM 2 checkpoint"),
    ],
)
def test_bad_checkpoint_files_are_one_line_naming_the_file(tmp_path, florence_dir, kind, message):
    make_good_images(tmp_path / "photos", 1)
    checkpoint, marker = tmp_path / f"{kind}.pt", tmp_path / "pwned"
    if kind == "empty":
        checkpoint.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"model": {"weight": torch.zeros(1000)}}, checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    elif kind == "malicious":
        _malicious_pickle(checkpoint, marker)
    else:
        torch.save({"model": {"weight": torch.zeros(3)}}, checkpoint)
    line = _one_error_line(
        _cli(
            "predict",
            tmp_path / "photos",
            "-p",
            "a dog",
            "-o",
            tmp_path / "out",
            "--florence",
            florence_dir,
            "--sam",
            checkpoint,
            "--device",
            "cpu",
        ).stderr
    )
    assert message in line and str(checkpoint) in line
    assert not marker.exists()


def test_a_sam_folder_given_as_florence_is_refused_at_load(tmp_path, sam_dir):
    make_good_images(tmp_path / "photos", 1)
    line = _one_error_line(
        _cli(
            "label", tmp_path / "photos", "-p", "a dog", "--florence", sam_dir, "--sam", sam_dir, "--device", "cpu"
        ).stderr
    )
    # the tiny SAM 2 is saved as the hub's sam2.1 repos are: from Sam2VideoModel
    assert f"{sam_dir} is a sam2_video model, not Florence-2 (--florence ... expects a florence2 model)" in line


def test_a_2000_word_prompt_fails_once_before_labeling(tmp_path, florence_dir, sam_dir):
    make_good_images(tmp_path / "photos", 3)
    prompt = " ".join(["dog"] * 2000)
    result = _cli(
        "label", tmp_path / "photos", "-p", prompt, "--florence", florence_dir, "--sam", sam_dir, "--device", "cpu"
    )
    line = _one_error_line(result.stderr)
    assert "tokens long; Florence-2 has room for" in line and len(line) < 300
    assert not record_files(tmp_path / "photos_labeled")


# 12. What can be checked is checked before any model loads.
def test_an_empty_folder_is_reported_before_any_model_loads(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert "No images found" in _cli_in_process(monkeypatch, "label", tmp_path / "empty", "-p", "a dog")
    assert "No images found" in _cli_in_process(
        monkeypatch, "predict", tmp_path / "empty", "-p", "a dog", "-o", tmp_path / "out"
    )


def test_a_rerun_with_changed_settings_is_refused_before_any_model_loads(dataset, tmp_path, monkeypatch):
    (dataset / SETTINGS_FILE).write_text(json.dumps({"model": "something else"}))
    message = _cli_in_process(monkeypatch, "label", tmp_path / "photos", "-p", "a dog", "-o", dataset)
    assert "holds a dataset labeled with other settings" in message


def test_predict_never_replaces_a_file_it_did_not_write(tmp_path, monkeypatch):
    make_good_images(tmp_path / "photos", 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "img_001.jpg").write_bytes(b"my holiday photo")
    message = _cli_in_process(monkeypatch, "predict", tmp_path / "photos", "-p", "a dog", "-o", tmp_path / "out")
    assert "holds img_001.jpg, which grounded-sam did not write" in message
    assert (tmp_path / "out" / "img_001.jpg").read_bytes() == b"my holiday photo"

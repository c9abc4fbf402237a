"""`grounded-sam eval` and `grounded-sam compare` end to end on the tiny models: the scripted tiny Florence-2 finds
the same "a dog" and "Persons" boxes in every image, so a ground truth made of a labeled dataset's own labels is
known to score AP 1.0, and a shifted one less."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import coco_of_every_split
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from skimage import data as skdata
from typer.testing import CliRunner

from grounded_sam import LabeledDataset
from grounded_sam.apps import cli
from grounded_sam.evaluation import Configuration, compare
from grounded_sam.labeling.records import SETTINGS_FILE
from grounded_sam.testing import build_tiny_owlv2

SCRIPT = Path(sys.executable).parent / "grounded-sam"
CLEANUP_FLAGS = ["--max-hole-area", "300", "--max-sprinkle-area", "300", "--keep-largest-part"]


def _run(*arguments):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(SCRIPT), *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=600
    )


@pytest.fixture(scope="module")
def gold(tmp_path_factory, model):
    """Three photos labeled by the tiny pipeline (classes dog, person) and that dataset's labels as ground truth."""
    root = tmp_path_factory.mktemp("gold")
    (root / "images").mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(skdata, name)()[::3, ::3]).convert("RGB").save(root / "images" / f"{name}.jpg")
    model.label(root / "images", output_folder=root / "labeled", progress=False, verbose=False)
    truth = coco_of_every_split(root / "labeled")
    (root / "truth.json").write_text(json.dumps(truth))
    return root


def _shifted(truth: dict, pixels: int) -> dict:
    """Every ground-truth box and mask moved right by ``pixels``."""
    moved = json.loads(json.dumps(truth))
    for annotation in moved["annotations"]:
        annotation["bbox"][0] += pixels
        height, width = annotation["segmentation"]["size"]
        mask = np.roll(mask_utils.decode(annotation["segmentation"]), pixels, axis=1)
        rle = mask_utils.encode(np.asfortranarray(mask))
        annotation["segmentation"] = {"size": [height, width], "counts": rle["counts"].decode()}
    return moved


def _cocoeval_of_the_dataset(dataset: Path, truth: dict) -> float:
    """Box AP from pycocotools alone: the dataset's detections (LabeledDataset) against ``truth``."""
    ground_truth = COCO()
    ground_truth.dataset = truth
    ground_truth.createIndex()
    image_ids = {image["file_name"]: image["id"] for image in truth["images"]}
    categories = {category["name"]: category["id"] for category in truth["categories"]}
    labeled = LabeledDataset(dataset)
    results = []
    for path, detections in labeled.annotations.items():
        for k in range(len(detections)):
            x1, y1, x2, y2 = detections.xyxy[k].tolist()
            results.append(
                {
                    "image_id": image_ids[Path(path).name],
                    "category_id": categories[labeled.classes[detections.class_id[k]]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(detections.confidence[k]),
                }
            )
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.mark.slow
def test_eval_scores_a_dataset_1_against_its_own_labels_and_less_against_shifted_ones(gold, tmp_path):
    result = _run(
        "eval", gold / "labeled", "--ground-truth", gold / "truth.json", "--json", tmp_path / "e.json",
        "--plot", tmp_path / "e.png", "--sweep",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    for kind in ("bbox", "segm"):
        assert (report[kind]["AP"], report[kind]["AP50"], report[kind]["AP75"]) == (1.0, 1.0, 1.0)
        assert report[kind]["per_class"] == {"dog": 1.0, "person": 1.0}
        assert report[kind]["sweep"][0]["AP"] == 1.0 and report[kind]["sweep"][-1]["AP"] == 0.0  # none above 0.95
    assert report["images"]["evaluated"] == 3 and report["classes"]["objects"] == {"dog": 6, "person": 3}
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 images evaluated" in result.stderr and "min_confidence" in result.stderr

    shifted = _shifted(json.loads((gold / "truth.json").read_text()), 6)
    (tmp_path / "shifted.json").write_text(json.dumps(shifted))
    result = _run("eval", gold / "labeled", "--ground-truth", tmp_path / "shifted.json", "--json", tmp_path / "s.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["bbox"]["AP"] < 1.0 and report["segm"]["AP"] < 1.0
    assert report["bbox"]["AP"] == pytest.approx(_cocoeval_of_the_dataset(gold / "labeled", shifted), abs=1e-12)


@pytest.mark.slow
def test_clean_up_at_eval_scores_what_labeling_with_the_same_flags_writes(gold, tmp_path, florence_dir, sam_dir):
    labeled = _run(
        "label", gold / "images", "-p", "a dog=dog", "-p", "puppy=dog", "-p", "a person=person", "-o",
        tmp_path / "cleaned", "--florence", florence_dir, "--sam", sam_dir, "--device", "cpu", *CLEANUP_FLAGS,
    )  # fmt: skip
    assert labeled.returncode == 0, labeled.stderr
    stored = json.loads((tmp_path / "cleaned" / SETTINGS_FILE).read_text())["model"]["segmenter"]
    assert stored["mask_cleanup"] == {"max_hole_area": 300, "max_sprinkle_area": 300, "keep_largest_part": True}
    truth = gold / "truth.json"
    as_if = _run("eval", gold / "labeled", "--ground-truth", truth, "--json", tmp_path / "a.json", *CLEANUP_FLAGS)
    assert as_if.returncode == 0 and "cleaned mask AP" in as_if.stderr
    assert _run("eval", tmp_path / "cleaned", "--ground-truth", truth, "--json", tmp_path / "b.json").returncode == 0
    as_if, actually = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert as_if["segm_cleaned"] == actually["segm"] and as_if["segm_cleaned"]["AP"] < 1.0 == as_if["segm"]["AP"]
    assert actually["bbox"] == as_if["bbox"]  # clean-up leaves the detected boxes as they are


@pytest.mark.slow
def test_compare_sets_two_ontologies_side_by_side_and_names_the_best_per_class(gold, tmp_path, florence_dir, sam_dir):
    (tmp_path / "dogs.yaml").write_text("a dog: dog\n")  # the scripted model writes "a dog": found
    (tmp_path / "puppies.yaml").write_text("puppy: dog\na person: person\n")  # "puppy" never matches
    result = _run(
        "compare", gold / "images", "--ground-truth", gold / "truth.json", "--ontology", tmp_path / "dogs.yaml",
        "--ontology", tmp_path / "puppies.yaml", "-o", tmp_path / "runs", "--json", tmp_path / "c.json",
        "--plot", tmp_path / "c.png", "--florence", florence_dir, "--sam", sam_dir, "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["iou_type"] == "segm"
    assert report["per_class"] == {"dog": {"dogs": 1.0, "puppies": 0.0}, "person": {"dogs": None, "puppies": 1.0}}
    assert report["overall"] == {"dogs": 0.5, "puppies": 0.5}  # each finds one of the two classes
    assert report["best"]["dog"] == {"configuration": "dogs", "AP": 1.0, "prompts": ["a dog"], "tied": []}
    assert report["best"]["person"]["configuration"] == "puppies"
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == [".grounded-sam", "dogs", "puppies"]
    listed = json.loads((tmp_path / "runs" / ".grounded-sam" / "compare.json").read_text())
    assert listed == {"files": ["dogs", "puppies"]}
    assert "best for dog: dogs (AP 1.000; prompts 'a dog')" in result.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_configuration_is_an_ontology_with_pipeline_options():
    configuration = Configuration("strict", {"a dog": "dog"}, {"min_confidence": 0.4})
    spec = configuration.spec({"device": "cpu", "min_confidence": 0.1})
    assert (spec.ontology, spec.min_confidence, spec.device) == ({"a dog": "dog"}, 0.4, "cpu")
    with pytest.raises(ValueError, match="Unknown pipeline option 'min_confidense' in configuration 'x'"):
        Configuration("x", {"a dog": "dog"}, {"min_confidense": 0.4}).spec()


def test_compare_sets_a_detector_against_florence_2_and_each_dataset_records_its_own(
    gold, tmp_path, florence_dir, sam_dir
):
    owl = build_tiny_owlv2(tmp_path / "owlv2")
    ontology = {"a dog": "dog", "a person": "person"}
    configurations = [
        Configuration("florence", ontology, {"florence": str(florence_dir)}),
        Configuration("owl", ontology, {"detector": "owlv2", "detector_model": str(owl), "box_threshold": 0.0}),
    ]
    report = compare(
        gold / "images", gold / "truth.json", configurations, tmp_path / "runs", {"sam": str(sam_dir), "device": "cpu"},
        progress=False,
    )  # fmt: skip
    assert report["per_class"]["dog"]["florence"] == 1.0  # the scripted Florence-2 finds the labels it made
    assert 0.0 <= report["per_class"]["dog"]["owl"] < 1.0  # a random OWLv2 does not
    assert report["best"]["dog"]["configuration"] == "florence"
    settings = json.loads((tmp_path / "runs" / "owl" / SETTINGS_FILE).read_text())
    assert (settings["model"]["detector"]["type"], settings["model"]["detector"]["box_threshold"]) == ("owlv2", 0.0)


def test_the_command_line_takes_detectors_into_the_configurations(tmp_path):
    (tmp_path / "a.yaml").write_text("a dog: dog\n")
    arguments = ["compare", str(tmp_path), "--ground-truth", str(tmp_path / "missing.json")]
    result = CliRunner().invoke(cli.app, [*arguments, "--ontology", str(tmp_path / "a.yaml"), "--detector", "owlv2"])
    assert result.exit_code == 2
    assert "Ground truth not found" in result.output  # the detector was taken; the ground truth is missing


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_help_loads_no_torch_nor_pycocotools(command):
    code = (
        f"import sys; from grounded_sam.apps.cli import app; app([{command!r}, '--help'], standalone_mode=False); "
        "print(*(name in sys.modules for name in ('torch', 'transformers', 'pycocotools', 'matplotlib')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False False False", result.stderr
    assert "Example: grounded-sam" in result.stdout

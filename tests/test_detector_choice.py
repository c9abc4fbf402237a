"""Choosing the detector (Florence-2, Grounding DINO, OWLv2) or the SAM 3 backend: options, loading, labeling a folder
with each, the command line, and what a gated or missing SAM 3 says."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import make_good_images
from typer.testing import CliRunner

from grounded_sam import CaptionOntology, GroundedSAM2, LabeledDataset, UserInputError
from grounded_sam.apps import cli
from grounded_sam.errors import InvalidCheckpointError
from grounded_sam.labeling.records import SETTINGS_FILE
from grounded_sam.pipeline import PipelineSpec
from grounded_sam.testing import build_tiny_grounding_dino, build_tiny_owlv2, build_tiny_sam3

ONTOLOGY = {"a dog": "dog", "puppy": "dog", "a person": "person"}


@pytest.fixture(scope="module")
def tiny_detectors(tmp_path_factory):
    """Folders of a tiny Grounding DINO, OWLv2 and SAM 3, by detector name."""
    root = tmp_path_factory.mktemp("detectors")
    return {
        "grounding-dino": build_tiny_grounding_dino(root / "grounding-dino"),
        "owlv2": build_tiny_owlv2(root / "owlv2"),
        "sam3": build_tiny_sam3(root / "sam3"),
    }


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("choice") / "photos"
    make_good_images(folder, 4)
    return folder


@pytest.mark.parametrize(
    "options, message",
    [
        ({"detector": "yolo"}, "Unknown detector 'yolo'"),
        ({"backend": "sam4"}, "Unknown backend 'sam4'"),
        ({"box_threshold": 0.3}, "box_threshold is not an option of florence2"),
        ({"detector": "owlv2", "text_threshold": 0.3}, "text_threshold is not an option of owlv2"),
        ({"detector": "grounding-dino", "box_threshold": 1.5}, r"box_threshold must be in \[0, 1\]"),
        ({"detector": "owlv2", "florence": "f"}, "with detector='owlv2' give detector_model=... alone"),
        ({"florence": "f", "detector_model": "g"}, "florence=... names the Florence-2 model"),
        ({"backend": "sam3", "detector": "owlv2"}, r"backend='sam3' does not use detector=\.\.\."),
        ({"backend": "sam3", "multimask_output": True}, "does not use multimask_output"),
    ],
)
def test_detector_options_that_do_not_fit_are_refused_before_anything_loads(options, message):
    with pytest.raises(UserInputError, match=message):
        PipelineSpec(ONTOLOGY, **options)


@pytest.mark.parametrize(
    "options, source, thresholds",
    [
        ({}, "florence-community/Florence-2-large", (None, None)),
        ({"preset": "fast", "detector_model": "x/florence"}, "x/florence", (None, None)),
        ({"detector": "grounding-dino"}, "IDEA-Research/grounding-dino-tiny", (0.35, 0.25)),
        ({"detector": "grounding-dino", "text_threshold": 0.3}, "IDEA-Research/grounding-dino-tiny", (0.35, 0.3)),
        ({"detector": "owlv2", "detector_model": "m/owl"}, "m/owl", (0.1, None)),
        ({"backend": "sam3"}, "facebook/sam3", (0.5, None)),
        ({"backend": "sam3", "sam": "models/sam3", "box_threshold": 0.4}, "models/sam3", (0.4, None)),
    ],
)
def test_each_detector_has_its_default_model_and_thresholds(options, source, thresholds):
    spec = PipelineSpec(ONTOLOGY, **options)
    assert spec.detector_source == source and (spec.box_threshold, spec.text_threshold) == thresholds
    assert PipelineSpec(ONTOLOGY, **spec.options()) == spec  # what crosses to other processes rebuilds the same


def test_a_model_of_another_kind_is_refused_before_its_weights_load(tiny_detectors, sam_dir, monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(transformers.Owlv2ForObjectDetection, "from_pretrained", refuse)
    with pytest.raises(InvalidCheckpointError, match="is a grounding-dino model, not OWLv2 .detector_model=..."):
        GroundedSAM2(
            CaptionOntology(ONTOLOGY), detector="owlv2", detector_model=tiny_detectors["grounding-dino"], sam=sam_dir
        )


def _pipeline(kind, folders, sam_dir, **options):
    ontology = CaptionOntology(ONTOLOGY)
    if kind == "sam3":
        return GroundedSAM2(ontology, backend="sam3", sam=folders["sam3"], device="cpu", box_threshold=0.2, **options)
    detector_options = {"box_threshold": 0.0} | ({"text_threshold": 0.0} if kind == "grounding-dino" else {})
    return GroundedSAM2(
        ontology, detector=kind, detector_model=folders[kind], sam=sam_dir, device="cpu", **detector_options, **options
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["grounding-dino", "owlv2", "sam3"])
def test_labeling_a_folder_works_with_each(kind, tiny_detectors, sam_dir, four_photos, tmp_path):
    model = _pipeline(kind, tiny_detectors, sam_dir)
    dataset = model.label(four_photos, output_folder=tmp_path / "out", batch_size=3, progress=False, verbose=False)
    report = dataset.report
    assert report.images_labeled == 4 and report.images_skipped == 0
    assert sum(report.detections_per_class.values()) > 0 and set(report.detections_per_class) == {"dog", "person"}
    stored = json.loads((tmp_path / "out" / SETTINGS_FILE).read_text())["model"]
    assert stored == json.loads(json.dumps(model.settings())) and stored["detector"]["type"] == kind
    assert (stored["segmenter"] is None) == (kind == "sam3")
    reread = LabeledDataset(tmp_path / "out")
    masks = [annotations.mask for annotations in reread.annotations.values() if len(annotations)]
    assert masks and all(mask.any(axis=(1, 2)).all() for mask in masks)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["grounding-dino", "owlv2", "sam3"])
def test_predict_gives_the_pipelines_detections_with_masks(kind, tiny_detectors, sam_dir, rng):
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    found = _pipeline(kind, tiny_detectors, sam_dir, nms_threshold=None).predict(image)
    assert len(found) > 0 and found.mask.shape == (len(found), 90, 130)
    assert ((found.confidence >= 0) & (found.confidence <= 1)).all() and "mask_score" in found.data
    assert set(found.data["class_name"]) <= {"dog", "person"}


def test_refine_needs_sam2(tiny_detectors, rng):
    model = GroundedSAM2(CaptionOntology(ONTOLOGY), backend="sam3", sam=tiny_detectors["sam3"], device="cpu")
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    with pytest.raises(UserInputError, match="refine needs SAM 2"):
        model.refine(image, model.predict(image), points={}, labels={})


@pytest.mark.slow
def test_the_command_line_labels_with_a_chosen_detector_or_sam3(tiny_detectors, sam_dir, four_photos, tmp_path):
    def label(output, *flags):
        result = CliRunner().invoke(
            cli.app, ["label", str(four_photos), "-p", "a dog", "-o", str(tmp_path / output), "--device", "cpu", *flags]
        )
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / output / SETTINGS_FILE).read_text())["model"]["detector"]

    owlv2 = label("owl", "--detector", "owlv2", "--detector-model", str(tiny_detectors["owlv2"]), "--sam", str(sam_dir))
    assert owlv2["type"] == "owlv2" and owlv2["box_threshold"] == 0.1
    sam3 = label("sam3", "--backend", "sam3", "--sam", str(tiny_detectors["sam3"]), "--box-threshold", "0.2")
    assert sam3["type"] == "sam3" and sam3["box_threshold"] == 0.2


@pytest.mark.parametrize(
    "flags, prompt, message",
    [
        (["--detector", "grounding-dino"], "a dog.", "Error: Prompt 'a dog.' contains '.' or '?'"),
        (["--detector", "owlv2"], "a small brown dog sitting on a red chair under a big tree", "OWLv2 reads at most"),
        (["--backend", "sam3", "--text-threshold", "0.2"], "a dog", "Error: --text-threshold is not an option"),
    ],
)
def test_the_command_line_refuses_what_a_detector_cannot_read_before_writing_anything(
    tiny_detectors, four_photos, tmp_path, flags, prompt, message
):
    model = tiny_detectors["owlv2" if "owlv2" in flags else "grounding-dino"]
    model_flag = [] if "sam3" in flags else ["--detector-model", str(model)]
    result = CliRunner().invoke(
        cli.app, ["label", str(four_photos), "-p", prompt, "-o", str(tmp_path / "out"), *flags, *model_flag]
    )
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


GATED = textwrap.dedent(
    """
    import socket
    import transformers.utils.hub as hub
    from huggingface_hub.errors import GatedRepoError
    import httpx2

    def refuse(self, address):
        raise RuntimeError(f"network access attempted: {address}")

    class Answer:
        def close(self):
            pass

    socket.socket.connect = refuse  # nothing leaves the machine
    socket.create_connection = lambda *args, **kwargs: Answer()  # but the hub "answers"
    url = "https://huggingface.co/facebook/sam3/resolve/main/config.json"
    response = httpx2.Response(401, request=httpx2.Request("GET", url), headers={"X-Error-Code": "GatedRepo"})

    def gated(*args, **kwargs):
        raise GatedRepoError("401 Client Error. Cannot access gated repo for url " + url, response=response)

    hub.hf_hub_download = hub.snapshot_download = gated
    from grounded_sam import CaptionOntology, GroundedSAM2

    try:
        GroundedSAM2(CaptionOntology({"a dog": "dog"}), backend="sam3", device="cpu")
    except OSError as error:
        print(type(error).__name__, error)
    """
)
OFFLINE = textwrap.dedent(
    """
    from grounded_sam import CaptionOntology, GroundedSAM2

    try:
        GroundedSAM2(CaptionOntology({"a dog": "dog"}), backend="sam3")
    except OSError as error:
        print(error)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("case, code", [("gated", GATED), ("offline", OFFLINE)])
def test_sam3_says_how_to_get_access_to_its_gated_weights(case, code, tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE" or case == "offline"}
    environment.update(HF_HUB_CACHE=str(tmp_path / "empty"), HF_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)
    message = " ".join(result.stdout.split())
    assert "facebook/sam3 is gated: accept its license on https://huggingface.co/facebook/sam3" in message, (
        result.stdout + result.stderr[-2000:]
    )
    assert "`hf auth login`" in message and "`hf download facebook/sam3`" in message
    if case == "gated":
        assert message.startswith(
            "ModelNotAvailableError SAM 3 'facebook/sam3' could not be loaded: access was refused"
        )

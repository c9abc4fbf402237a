"""The pipeline is built from parts: any detector drives it, settings come from the parts, a spec says what a built
pipeline will be without building it."""

import json

import numpy as np
import pytest
import supervision as sv
from helpers import make_good_images

import grounded_sam.pipeline.grounded_sam2 as grounded_sam2_module
from grounded_sam import CaptionOntology, Detector, GroundedSAM2, LabeledDataset, Segmenter
from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.labeling.records import SETTINGS_FILE
from grounded_sam.pipeline import PipelineSpec


class CentreBoxes:
    """A detector grounded-sam has never seen: a box around the middle of every image, one per prompt."""

    def __init__(self, ontology):
        self.ontology, self.calls = ontology, 0

    def detect(self, images):
        self.calls += 1
        results = []
        for image in images:
            height, width = image.shape[:2]
            prompts = self.ontology.prompts()
            results.append(
                sv.Detections(
                    xyxy=np.array([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]] * len(prompts), np.float32),
                    confidence=np.linspace(0.9, 0.5, len(prompts)).astype(np.float32),
                    class_id=np.array([self.ontology.class_id(self.ontology.promptToClass(p)) for p in prompts]),
                    data={
                        CLASS_NAME: np.array([self.ontology.promptToClass(p) for p in prompts]),
                        PROMPT: np.array(prompts),
                    },
                )
            )
        return results


@pytest.fixture
def no_florence(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Florence-2 was loaded although a detector was given")

    monkeypatch.setattr(grounded_sam2_module, "load_florence2", refuse)


def test_any_detector_drives_predict_and_label_with_no_florence_loaded(no_florence, sam_dir, tmp_path):
    ontology = CaptionOntology({"a dog": "dog", "a cat": "cat"})
    detector = CentreBoxes(ontology)
    assert isinstance(detector, Detector)
    model = GroundedSAM2(ontology, detector=detector, sam=sam_dir, device="cpu", nms_threshold=None)
    found = model.predict(np.zeros((40, 60, 3), np.uint8))
    assert len(found) == 2 and found.mask.shape == (2, 40, 60) and list(found.data[CLASS_NAME]) == ["dog", "cat"]
    make_good_images(tmp_path / "photos", 3)
    dataset = model.label(
        tmp_path / "photos", output_folder=tmp_path / "out", batch_size=3, progress=False, verbose=False
    )
    assert len(dataset) == 3 and detector.calls == 2  # one call for predict, one batch of three for label
    stored = json.loads((tmp_path / "out" / SETTINGS_FILE).read_text())["model"]
    assert stored["detector"] == {"type": "test_seams.CentreBoxes"}  # a part without settings() says its class
    assert stored["segmenter"]["type"] == "sam2" and stored["segmenter"]["model"] == str(sam_dir)
    assert all(len(annotations) == 2 for annotations in LabeledDataset(tmp_path / "out").annotations.values())


def test_built_segmenter_and_detector_are_used_as_given(no_florence, sam_dir):
    ontology = CaptionOntology({"a dog": "dog"})
    segmenter = Segmenter(sam=sam_dir, device="cpu", dtype="float32")
    model = GroundedSAM2(ontology, detector=CentreBoxes(ontology), segmenter=segmenter)
    assert model.segmenter is segmenter and model.spec is None and model.device.type == "cpu"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"florence": "x"}, "either detector=... .* or florence=..."),
        ({"segmenter": object(), "sam": "y"}, "either segmenter=... .* or sam=..."),
    ],
)
def test_a_part_and_its_model_source_together_are_refused(options, message):
    ontology = CaptionOntology({"a dog": "dog"})
    with pytest.raises(ValueError, match=message):
        GroundedSAM2(ontology, detector=CentreBoxes(ontology), **options)


@pytest.mark.slow
def test_a_spec_says_what_the_built_pipeline_will_be(florence_dir, sam_dir, ontology):
    spec = PipelineSpec(
        ontology.to_dict(),
        florence=str(florence_dir),
        sam=str(sam_dir),
        device="cpu",
        max_new_tokens=64,
        multimask_output=True,
        min_confidence=0.2,
    )
    built = spec.build()
    assert built.spec == spec and built.settings() == spec.settings()
    assert spec.settings()["detector"] == {
        "type": "florence2",
        "model": str(florence_dir),
        "task": "phrase_grounding",
        "max_new_tokens": 64,
        "num_beams": 1,
        "precision": "float32",
    }
    assert GroundedSAM2.from_spec(spec).settings() == spec.settings()


def test_a_spec_checks_its_options_before_anything_loads():
    with pytest.raises(ValueError, match="min_confidence must be in"):
        PipelineSpec({"a dog": "dog"}, min_confidence=2.0)
    with pytest.raises(ValueError, match="Unknown preset"):
        PipelineSpec({"a dog": "dog"}, preset="huge")


@pytest.fixture(scope="module")
def other_detector_dirs(tmp_path_factory):
    """Tiny Grounding DINO, OWLv2 and SAM 3 folders, by detector name."""
    from grounded_sam.testing import build_tiny_grounding_dino, build_tiny_owlv2, build_tiny_sam3

    root = tmp_path_factory.mktemp("other_detectors")
    return {
        "grounding-dino": build_tiny_grounding_dino(root / "grounding-dino"),
        "owlv2": build_tiny_owlv2(root / "owlv2"),
        "sam3": build_tiny_sam3(root / "sam3"),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, options, detector_settings",
    [
        ("grounding-dino", {"text_threshold": 0.3}, {"box_threshold": 0.35, "text_threshold": 0.3}),
        ("owlv2", {"box_threshold": 0.2}, {"box_threshold": 0.2, "nms_threshold": 0.3}),
        ("sam3", {}, {"box_threshold": 0.5, "mask_threshold": 0.5}),
    ],
)
def test_a_spec_says_what_the_built_pipeline_will_be_with_each_detector(
    kind, options, detector_settings, other_detector_dirs, sam_dir, ontology
):
    folder = str(other_detector_dirs[kind])
    if kind == "sam3":
        sources = {"backend": "sam3", "sam": folder}
    else:
        sources = {"detector": kind, "detector_model": folder, "sam": str(sam_dir)}
    spec = PipelineSpec(ontology.to_dict(), device="cpu", **sources, **options)
    built = spec.build()
    assert built.spec == spec and built.settings() == spec.settings()
    assert spec.settings()["detector"] == {"type": kind, "model": folder, **detector_settings, "precision": "float32"}
    assert (spec.settings()["segmenter"] is None) == (kind == "sam3")

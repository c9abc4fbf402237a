"""Florence-2's "find everything" task (``<OD>``, no prompt) on the tiny scripted model: the names it writes become
the classes, and an ontology, when given, keeps only what matches it."""

from unittest import mock

import numpy as np
import pytest

from grounded_sam import CaptionOntology, Florence2Detector
from grounded_sam.detection import OBJECT_DETECTION
from grounded_sam.errors import UserInputError


@pytest.fixture(scope="module")
def florence(florence_dir):
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(florence_dir).eval()
    return model, AutoProcessor.from_pretrained(florence_dir)


@pytest.fixture
def picture(rng):
    return rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)


def test_without_an_ontology_every_name_is_a_class(florence, picture):
    model, processor = florence
    detector = Florence2Detector(model, processor, None, task=OBJECT_DETECTION, max_new_tokens=64)
    found = detector.detect([picture])[0]
    # the script writes "a dog" twice, "the image" and "Persons" (whose 1-bin-wide second box is under a pixel here)
    assert found.data["class_name"].tolist() == ["a dog", "a dog", "the image", "Persons"]
    assert found.data["prompt"].tolist() == found.data["class_name"].tolist()
    assert detector.found_classes == ["a dog", "the image", "Persons"]
    assert found.class_id.tolist() == [0, 0, 1, 2]
    np.testing.assert_allclose(found.xyxy[0], [64.32, 57.84, 288.32, 288.24], atol=1e-3)
    assert ((found.confidence > 0) & (found.confidence < 1)).all()
    assert detector.settings()["task"] == "object_detection"


def test_class_ids_stay_stable_across_calls(florence, picture):
    model, processor = florence
    detector = Florence2Detector(model, processor, None, task=OBJECT_DETECTION, max_new_tokens=64)
    first, second = detector.detect([picture]), detector.detect([picture[:240], picture])
    assert [found.class_id.tolist() for found in first + second] == [[0, 0, 1, 2]] * 3


def test_the_task_alone_is_sent(florence, picture):
    """The processor refuses text beside <OD>; the encoder sees its own instruction for the task."""
    model, processor = florence
    detector = Florence2Detector(model, processor, None, task=OBJECT_DETECTION, max_new_tokens=64)
    expected = processor(text=["<OD>"], images=[picture], return_tensors="pt")["input_ids"]
    with mock.patch.object(model, "generate", wraps=model.generate) as generate:
        detector.detect([picture])
    assert generate.call_args.kwargs["input_ids"].tolist() == expected.tolist()


def test_with_an_ontology_only_matching_names_are_kept(florence, picture):
    model, processor = florence
    ontology = CaptionOntology({"a dog": "dog", "a person": "person"})
    detector = Florence2Detector(model, processor, ontology, task=OBJECT_DETECTION, max_new_tokens=64)
    found = detector.detect([picture])[0]
    assert found.data["class_name"].tolist() == ["dog", "dog", "person"]
    assert found.class_id.tolist() == [0, 0, 1]


def test_other_tasks_need_an_ontology(florence):
    model, processor = florence
    with pytest.raises(UserInputError, match="needs an ontology"):
        Florence2Detector(model, processor, None)

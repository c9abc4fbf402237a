"""OWLv2 behind the Detector seam, on a tiny random model built from a config."""

import numpy as np
import pytest
import torch
from supervision import box_iou_batch

import grounded_sam.detection.owlv2 as owlv2_module
from grounded_sam import CaptionOntology, Detector, Owlv2Detector, UserInputError
from grounded_sam.models import load_owlv2
from grounded_sam.testing import build_tiny_owlv2

PROMPTS = {"a dog": "dog", "cat": "cat", "red car": "car", "puppy": "dog"}
BOXES = 36  # the tiny model's 6 x 6 patches


@pytest.fixture(scope="module")
def owl(tmp_path_factory):
    """(model, processor) of a tiny OWLv2."""
    return load_owlv2(build_tiny_owlv2(tmp_path_factory.mktemp("owlv2")), torch.device("cpu"))


@pytest.fixture(scope="module")
def owl_ontology():
    return CaptionOntology(PROMPTS)


def _images(*shapes):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def test_text_once_then_heads_equal_the_models_own_forward(owl, owl_ontology, monkeypatch):
    monkeypatch.setattr(owlv2_module, "images_per_pass", lambda device, batch: batch)
    model, processor = owl
    images = _images((120, 160), (200, 90), (64, 64))
    logits, boxes = Owlv2Detector(model, processor, owl_ontology).logits_and_boxes(images)
    with torch.inference_mode():
        reference = model(**processor(images=images, text=[owl_ontology.prompts()] * 3, return_tensors="pt"))
    np.testing.assert_allclose(logits, reference.logits, atol=1e-4)
    np.testing.assert_allclose(boxes, reference.pred_boxes, atol=1e-6)


def test_batched_equals_one_by_one(owl, owl_ontology, monkeypatch):
    monkeypatch.setattr(owlv2_module, "images_per_pass", lambda device, batch: batch)
    detector = Owlv2Detector(*owl, owl_ontology, box_threshold=0.0)
    assert isinstance(detector, Detector)
    images = _images((120, 160), (200, 90), (64, 64), (120, 160))
    batched, alone = detector.detect(images), [detector.detect([image])[0] for image in images]
    for together, single in zip(batched, alone):
        assert len(together) > 0 and together.data["prompt"].tolist() == single.data["prompt"].tolist()
        np.testing.assert_allclose(together.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_allclose(together.confidence, single.confidence, atol=1e-5)


def test_detections_are_in_pixels_of_the_original_image_with_confidences_in_0_1(owl, owl_ontology):
    images = _images((120, 160), (200, 90), (64, 64))
    for image, found in zip(images, Owlv2Detector(*owl, owl_ontology, box_threshold=0.0).detect(images)):
        height, width = image.shape[:2]
        assert len(found) > 0 and found.xyxy.dtype == np.float32 and found.confidence.dtype == np.float32
        assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= width).all()
        assert (found.xyxy[:, [1, 3]] <= height).all()
        assert ((found.confidence >= 0) & (found.confidence <= 1)).all()
        assert [owl_ontology.promptToClass(p) for p in found.data["prompt"]] == found.data["class_name"].tolist()


def _canned(hot, boxes):
    """(36, 4 prompts) logits at -10 but for (box, prompt, logit) entries, and (36, 4) boxes, the rest tiny."""
    logits = torch.full((BOXES, len(PROMPTS)), -10.0)
    for box, prompt, value in hot:
        logits[box, prompt] = value
    all_boxes = torch.tensor([[0.5, 0.5, 0.01, 0.01]] * BOXES)
    all_boxes[: len(boxes)] = torch.tensor(boxes)
    return logits, all_boxes


def test_each_box_takes_its_best_prompt_scaled_to_the_padded_square_and_clipped(owl, owl_ontology):
    """On a 160 x 120 image OWLv2 saw a 160 x 160 square: boxes scale by 160, then clip to the image; a box wholly in
    the padding (below row 120) is dropped."""
    detector = Owlv2Detector(*owl, owl_ontology, box_threshold=0.1, nms_threshold=0.3)
    logits, boxes = _canned(
        [(0, 1, 2.0), (0, 0, 1.0), (1, 3, 1.0), (2, 2, 0.5), (3, 0, 3.0)],
        [[0.2, 0.2, 0.1, 0.1], [0.6, 0.6, 0.1, 0.1], [0.95, 0.7, 0.2, 0.1], [0.5, 0.9, 0.2, 0.1]],
    )
    found = detector.to_detections(logits, boxes, height=120, width=160)
    assert found.data["prompt"].tolist() == ["cat", "puppy", "red car"]  # by decreasing confidence
    assert found.data["class_name"].tolist() == ["cat", "dog", "car"] and found.class_id.tolist() == [1, 0, 2]
    np.testing.assert_allclose(found.confidence, torch.sigmoid(torch.tensor([2.0, 1.0, 0.5])).numpy(), rtol=1e-6)
    np.testing.assert_allclose(found.xyxy, [[24, 24, 40, 40], [88, 88, 104, 104], [136, 104, 160, 120]], atol=1e-4)


def test_nms_suppresses_boxes_of_one_class_across_its_prompts_not_across_classes(owl, owl_ontology):
    detector = Owlv2Detector(*owl, owl_ontology, box_threshold=0.1, nms_threshold=0.3)
    same_place = [[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.3, 0.31, 0.2, 0.2]]
    # "a dog" and "puppy" (both dog) on one object; "cat" on the same place
    logits, boxes = _canned([(0, 0, 2.0), (1, 3, 1.5), (2, 1, 1.0)], same_place)
    found = detector.to_detections(logits, boxes, height=120, width=160)
    assert found.data["prompt"].tolist() == ["a dog", "cat"]
    for class_id in set(found.class_id.tolist()):
        same_class = found.xyxy[found.class_id == class_id]
        iou = box_iou_batch(same_class, same_class)
        np.fill_diagonal(iou, 0)
        assert iou.max(initial=0) <= 0.3
    unsuppressed = Owlv2Detector(*owl, owl_ontology, box_threshold=0.1, nms_threshold=1.0)
    assert unsuppressed.to_detections(logits, boxes, 120, 160).data["prompt"].tolist() == ["a dog", "puppy", "cat"]


def test_a_prompt_longer_than_the_text_tower_is_refused_when_the_detector_is_built(owl):
    with pytest.raises(UserInputError, match="OWLv2 reads at most 16"):
        Owlv2Detector(*owl, CaptionOntology({"a small brown dog sitting on a red chair under a big tree": "dog"}))


def test_settings_say_model_thresholds_and_precision(owl, owl_ontology):
    model, processor = owl
    assert Owlv2Detector(model, processor, owl_ontology, box_threshold=0.2).settings() == {
        "type": "owlv2",
        "model": model.config.name_or_path,
        "box_threshold": 0.2,
        "nms_threshold": 0.3,
        "precision": "float32",
    }

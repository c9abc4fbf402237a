"""Grounding DINO (and MM Grounding DINO) behind the Detector seam, on tiny random models built from configs."""

import numpy as np
import pytest
import torch

import grounded_sam.detection.grounding_dino as grounding_dino_module
from grounded_sam import CaptionOntology, Detector, GroundingDinoDetector, UserInputError
from grounded_sam.detection.grounding_dino import assign, build_captions
from grounded_sam.models import load_grounding_dino
from grounded_sam.testing import build_tiny_grounding_dino

PROMPTS = {"a dog": "dog", "Cat": "cat", "red car": "car", "puppy": "dog"}


@pytest.fixture(scope="module", params=[False, True], ids=["grounding-dino", "mm-grounding-dino"])
def gdino(request, tmp_path_factory):
    """(model, processor) of a tiny Grounding DINO, then of a tiny MM Grounding DINO."""
    folder = build_tiny_grounding_dino(tmp_path_factory.mktemp("gdino"), mm=request.param)
    return load_grounding_dino(folder, torch.device("cpu"))


@pytest.fixture(scope="module")
def gdino_ontology():
    return CaptionOntology(PROMPTS)


@pytest.fixture
def whole_batches(monkeypatch):
    """Every image of a batch in one forward pass, as on a GPU (on the CPU the detector takes one at a time)."""
    monkeypatch.setattr(grounding_dino_module, "images_per_pass", lambda device, batch: max(1, batch))


def _images(*shapes):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def test_captions_hold_the_ids_the_processor_gives_and_each_prompts_span(gdino, gdino_ontology):
    _, processor = gdino
    (caption,) = build_captions(processor.tokenizer, gdino_ontology.prompts())
    assert list(caption.input_ids) == processor(text="a dog. cat. red car. puppy.")["input_ids"]
    tokens = processor.tokenizer.convert_ids_to_tokens(list(caption.input_ids))
    assert [tokens[start:end] for start, end in caption.spans] == [["a", "dog"], ["cat"], ["red", "car"], ["puppy"]]


def test_a_long_ontology_is_packed_into_captions_that_fit(gdino, gdino_ontology):
    _, processor = gdino
    captions = build_captions(processor.tokenizer, gdino_ontology.prompts(), max_tokens=8)
    assert [caption.prompts for caption in captions] == [("a dog", "Cat"), ("red car", "puppy")]
    assert all(len(caption.input_ids) <= 8 for caption in captions)


@pytest.mark.parametrize(
    "prompt, message",
    [("a dog.", "contains '.' or '?'"), ("is it a dog?", "contains '.' or '?'"), ("dog " * 300, "tokens long")],
)
def test_prompts_grounding_dino_cannot_read_are_refused_when_it_is_built(gdino, prompt, message):
    with pytest.raises(UserInputError, match=message):
        GroundingDinoDetector(*gdino, CaptionOntology({prompt: "dog"}))


def test_batched_equals_one_by_one_with_images_of_several_sizes(gdino, gdino_ontology, whole_batches):
    detector = GroundingDinoDetector(*gdino, gdino_ontology, box_threshold=0.0, text_threshold=0.0)
    assert isinstance(detector, Detector)
    images = _images((120, 160), (200, 90), (120, 160), (64, 64), (120, 160))
    batched, alone = detector.detect(images), [detector.detect([image])[0] for image in images]
    for together, single in zip(batched, alone):
        assert together.data["prompt"].tolist() == single.data["prompt"].tolist()
        np.testing.assert_allclose(together.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_allclose(together.confidence, single.confidence, atol=1e-5)
    assert sum(len(found) for found in batched) > 0


def test_detections_are_in_pixels_of_the_original_image_with_confidences_in_0_1(gdino, gdino_ontology):
    images = _images((120, 160), (200, 90), (64, 64))
    for image, found in zip(images, GroundingDinoDetector(*gdino, gdino_ontology, 0.0, 0.0).detect(images)):
        height, width = image.shape[:2]
        assert len(found) > 0 and found.xyxy.dtype == np.float32 and found.confidence.dtype == np.float32
        assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= width).all()
        assert (found.xyxy[:, [1, 3]] <= height).all()
        assert ((found.confidence >= 0) & (found.confidence <= 1)).all()
        classes = gdino_ontology.classes()
        assert [classes[i] for i in found.class_id] == found.data["class_name"].tolist()
        assert [gdino_ontology.promptToClass(p) for p in found.data["prompt"]] == found.data["class_name"].tolist()


def test_canned_token_logits_map_to_their_prompts_classes(gdino, gdino_ontology):
    """Queries aimed at "Cat", at "red car" through its second token only, and at "puppy" come back as cat, car and
    dog, with sigmoid(logit) as confidence; a query whose only high token is [CLS] is dropped (transformers keeps it
    with an empty label)."""
    model, processor = gdino
    detector = GroundingDinoDetector(model, processor, gdino_ontology)
    spans, length = detector.captions[0].spans, len(detector.captions[0].input_ids)

    def canned(module, inputs, output):
        fake = torch.full_like(output, -10.0)
        fake[:, 0, spans[1][0]] = 3.0
        fake[:, 1, spans[2][0] + 1] = 2.0
        fake[:, 2, spans[3][0]] = 1.0
        fake[:, 3, 0] = 5.0
        fake[:, :, length:] = float("-inf")
        return fake

    handle = model.class_embed[-1].register_forward_hook(canned)
    try:
        found = detector.detect(_images((120, 160)))[0]
    finally:
        handle.remove()
    assert found.data["prompt"].tolist() == ["Cat", "red car", "puppy"]
    assert found.data["class_name"].tolist() == ["cat", "car", "dog"]
    assert found.class_id.tolist() == [1, 2, 0]
    np.testing.assert_allclose(found.confidence, torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])).numpy(), rtol=1e-5)


def _logits(tokens, hot):
    logits = torch.full((len(hot), tokens), -10.0)
    for query, (token, value) in enumerate(hot):
        logits[query, token] = value
    return logits


@pytest.mark.parametrize(
    "hot, box_threshold, text_threshold, kept",
    [
        ([(1, 2.0)], 0.35, 0.25, [0]),  # the first prompt's first token
        ([(5, 2.0)], 0.35, 0.25, [1]),  # the second prompt's second token
        ([(3, 5.0)], 0.35, 0.25, []),  # the "." between the prompts: no prompt's token
        ([(1, -0.2)], 0.35, 0.25, [0]),  # sigmoid(-0.2) = 0.45
        ([(1, -0.2)], 0.50, 0.25, []),  # under box_threshold
        ([(1, -0.2)], 0.30, 0.50, []),  # under a text_threshold set above box_threshold
        ([(1, 2.0), (4, 1.0), (6, 3.0)], 0.35, 0.25, [0, 1]),  # one detection per query, [SEP] dropped
    ],
)
def test_assign_scores_each_query_over_each_prompts_own_tokens(hot, box_threshold, text_threshold, kept):
    spans = [(1, 3), (4, 6)]  # [CLS] a dog . red car . [SEP]
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5]] * len(hot))
    xyxy, confidence, prompt_index = assign(_logits(8, hot), boxes, spans, box_threshold, text_threshold, 160, 120)
    assert prompt_index.tolist() == kept
    np.testing.assert_allclose(confidence, torch.sigmoid(torch.tensor([v for t, v in hot]))[: len(kept)], rtol=1e-6)
    expected = np.array([[40, 30, 120, 90]] * len(kept)).reshape(-1, 4)  # cx, cy, w, h relative to 160 x 120
    np.testing.assert_allclose(xyxy, expected)


def test_boxes_are_clipped_and_boxes_under_a_pixel_dropped():
    spans = [(1, 2)]
    boxes = torch.tensor([[0.95, 0.1, 0.3, 0.4], [0.5, 0.5, 0.001, 0.5]])
    xyxy, _, prompt_index = assign(_logits(4, [(1, 3.0), (1, 3.0)]), boxes, spans, 0.35, 0.25, 100, 50)
    np.testing.assert_allclose(xyxy, [[80, 0, 100, 15]], atol=1e-4)
    assert prompt_index.tolist() == [0]


def test_settings_say_model_thresholds_and_precision(gdino, gdino_ontology):
    model, processor = gdino
    settings = GroundingDinoDetector(model, processor, gdino_ontology, 0.3, 0.2).settings()
    assert settings == {
        "type": "grounding-dino",
        "model": model.config.name_or_path,
        "box_threshold": 0.3,
        "text_threshold": 0.2,
        "precision": "float32",
    }

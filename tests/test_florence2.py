"""Florence-2 detector on the tiny scripted model: batching, both grounding modes, real confidences."""

import math
from unittest import mock

import numpy as np
import pytest
import torch

from grounded_sam import CaptionOntology, Florence2Detector
from grounded_sam.detection.florence2_parsing import parse_grounded_boxes, split_markup
from grounded_sam.device import images_per_pass


@pytest.fixture(scope="module")
def florence(florence_dir):
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    return Florence2ForConditionalGeneration.from_pretrained(florence_dir).eval(), AutoProcessor.from_pretrained(
        florence_dir
    )


@pytest.fixture
def images(rng):
    return [rng.integers(0, 256, size=size, dtype=np.uint8) for size in [(100, 150, 3), (1200, 1100, 3), (60, 80, 3)]]


def _detector(florence, ontology, **options):
    model, processor = florence
    return Florence2Detector(model, processor, ontology, max_new_tokens=64, **options)


def test_phrase_grounding_maps_phrases_to_prompts(florence, ontology, images):
    results = _detector(florence, ontology).detect(images)
    assert [len(found) for found in results] == [3, 4, 3]  # the 1-bin box survives only on the 1100-px-wide image
    found = results[0]
    assert found.data["prompt"].tolist() == ["a dog", "a dog", "a person"]
    assert found.data["class_name"].tolist() == ["dog", "dog", "person"]
    assert found.class_id.tolist() == [0, 0, 1]
    np.testing.assert_allclose(found.xyxy[0], [15.075, 12.05, 67.575, 60.05], atol=1e-4)
    assert found.mask is None and found.xyxy.dtype == np.float32


def test_one_generate_call_per_batch(florence, ontology, images):
    detector = _detector(florence, ontology)
    with mock.patch.object(detector.model, "generate", wraps=detector.model.generate) as generate:
        detector.detect(images)
    assert generate.call_count == 1
    assert generate.call_args.kwargs["input_ids"].shape[0] == len(images)


def test_confidence_equals_teacher_forced_log_probs(florence, ontology, images):
    """Confidence is exp(mean log-prob) of each box's four loc tokens, checked against a forward pass on the forced
    (scripted) sequence, not a constant."""
    model, processor = florence
    detector = _detector(florence, ontology)
    found = detector.detect(images[:1])[0]
    inputs = processor(
        images=images[:1],
        text=["<CAPTION_TO_PHRASE_GROUNDING>" + detector.caption(ontology.prompts())],
        return_tensors="pt",
    )
    sequence = model.generate(**inputs, max_new_tokens=64, do_sample=False, num_beams=1)
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=sequence[:, :-1]).logits
    log_probs = logits.log_softmax(-1).gather(-1, sequence[:, 1:, None])[0, :, 0].tolist()
    pieces = detector.token_pieces(sequence[0])
    boxes = parse_grounded_boxes(pieces, [0.0] + log_probs)
    kept = [box for box in boxes if box.phrase != "the image" and box.bins != (10, 10, 11, 300)]
    expected = [math.exp(np.mean([log_probs[p - 1] for p in box.token_positions])) for box in kept]
    np.testing.assert_allclose(found.confidence, expected, atol=1e-5)
    assert len(set(np.round(found.confidence, 4))) == len(found)  # different boxes, different confidences
    assert ((found.confidence > 0) & (found.confidence < 1)).all()


def test_beam_search_gives_same_boxes_and_valid_confidences(florence, ontology, images):
    greedy = _detector(florence, ontology).detect(images)
    beams = _detector(florence, ontology, num_beams=2).detect(images)
    for a, b in zip(greedy, beams):
        np.testing.assert_allclose(a.xyxy, b.xyxy)
        assert ((b.confidence > 0) & (b.confidence <= 1)).all()


def images_per_pass_count(device, count):
    return -(-count // images_per_pass(device, count))


def test_open_vocabulary_encodes_each_image_once(florence, ontology, images):
    detector = _detector(florence, ontology, task="open_vocabulary")
    model = detector.model
    with (
        mock.patch.object(model, "generate", wraps=model.generate) as generate,
        mock.patch.object(model.model.vision_tower, "forward", wraps=model.model.vision_tower.forward) as vision,
    ):
        results = detector.detect(images)
    assert generate.call_count == 1
    assert generate.call_args.kwargs["input_ids"].shape[0] == len(images) * len(ontology.prompts())
    # each image once, whatever the grouping (one pass per batch on GPUs, per image on CPUs)
    assert sum(call.args[0].shape[0] for call in vision.call_args_list) == len(images)
    assert vision.call_count == images_per_pass_count(detector.device, len(images))
    # Every box found for a prompt is labelled with that prompt (the scripted model answers every query alike).
    found = results[0]
    per_prompt = len(found) // len(ontology.prompts())
    assert found.data["prompt"].tolist() == [p for p in ontology.prompts() for _ in range(per_prompt)]
    assert found.class_id.tolist() == [ontology.class_id(ontology.promptToClass(p)) for p in found.data["prompt"]]


def test_open_vocabulary_matches_pairs_run_through_the_processor(florence, ontology, images):
    """Cached vision features shared by every prompt give what the processor + generate give for each pair alone."""
    model, processor = florence
    detector = _detector(florence, ontology, task="open_vocabulary")
    sequences, _ = detector.generate(images[:1])
    for row, prompt in enumerate(ontology.prompts()):
        inputs = processor(images=images[:1], text=[f"<OPEN_VOCABULARY_DETECTION>{prompt}"], return_tensors="pt")
        reference = model.generate(**inputs, max_new_tokens=64, do_sample=False, num_beams=1)
        assert sequences[row, : reference.shape[1]].tolist() == reference[0].tolist()
    batched = detector.detect(images[:1])[0]
    single = Florence2Detector(model, processor, CaptionOntology({"puppy": "dog"}), "open_vocabulary", 64)
    alone = single.detect(images[:1])[0]
    np.testing.assert_allclose(batched[batched.data["prompt"] == "puppy"].confidence, alone.confidence, atol=1e-5)


def test_to_detections_drops_unmatched_and_degenerate(florence, ontology):
    detector = _detector(florence, ontology)
    boxes = parse_grounded_boxes(
        split_markup(
            "bicycle<loc_1><loc_2><loc_300><loc_400>dog<loc_5><loc_5><loc_5><loc_90>puppy<loc_1><loc_2><loc_3><loc_4>"
        ),
        None,
    )
    found = detector.to_detections(boxes, [ontology.prompts()] * 3, width=1000, height=1000)
    assert found.data["prompt"].tolist() == ["puppy"]
    empty = detector.to_detections([], [], width=10, height=10)
    assert empty.xyxy.shape == (0, 4) and len(empty.data["class_name"]) == 0


@pytest.mark.parametrize("options, message", [({"task": "caption"}, "Unknown task"), ({"num_beams": 0}, ">= 1")])
def test_bad_options_raise(florence, ontology, options, message):
    with pytest.raises(ValueError, match=message):
        _detector(florence, ontology, **options)


def test_phrase_grounding_generates_what_the_processor_and_generate_give(florence, ontology, images):
    model, processor = florence
    detector = _detector(florence, ontology)
    sequences, _ = detector.generate(images)
    for index, image in enumerate(images):
        text = "<CAPTION_TO_PHRASE_GROUNDING>" + detector.caption(ontology.prompts())
        reference = model.generate(
            **processor(images=[image], text=[text], return_tensors="pt"),
            max_new_tokens=64,
            do_sample=False,
            num_beams=1,
        )
        assert sequences[index, : reference.shape[1]].tolist() == reference[0].tolist()


def test_long_ontology_is_split_into_captions_that_fit(florence, images):
    ontology = CaptionOntology({f"a dog number {i}": "dog" for i in range(60)} | {"a dog": "dog"})
    detector = _detector(florence, ontology)
    captions = detector.captions()
    assert len(captions) > 1 and sum(captions, []) == ontology.prompts()
    limit = detector.model.config.text_config.max_position_embeddings
    for prompts in captions:
        text = "<CAPTION_TO_PHRASE_GROUNDING>" + detector.caption(prompts)
        assert detector.processor(images=images[:1], text=[text], return_tensors="pt")["input_ids"].shape[1] <= limit
    with mock.patch.object(detector.model, "generate", wraps=detector.model.generate) as generate:
        results = detector.detect(images[:2])
    assert generate.call_count == 1
    assert generate.call_args.kwargs["input_ids"].shape[0] == 2 * len(captions)
    assert "a dog" in results[0].data["prompt"].tolist()


def test_a_prompt_longer_than_the_encoder_is_refused_when_the_detector_is_built(florence):
    with pytest.raises(ValueError, match="tokens long; Florence-2 has room for"):
        _detector(florence, CaptionOntology({"dog " * 300: "dog"}))


def test_a_detector_leaves_no_hook_on_the_model_when_it_goes(florence, ontology, images):
    """The confidence hook stays on ``lm_head`` while its detector lives (compiled decoding needs it fixed), and no
    longer: detectors made over and over on one model must not pile hooks up."""
    model, _ = florence
    before = len(model.lm_head._forward_hooks)  # torch has no public count of a module's hooks
    for _ in range(3):
        detector = _detector(florence, ontology)
        detector.detect(images[:1])
        assert len(model.lm_head._forward_hooks) == before + 1
        del detector
    assert len(model.lm_head._forward_hooks) == before

"""SAM 3 as a one-model text -> masks backend, on a tiny random model built from a config."""

import json
import shutil

import numpy as np
import pytest
import torch

import grounded_sam.segmentation.sam3 as sam3_module
from grounded_sam import CaptionOntology, Detector, GroundedSAM2, PipelineSpec, Sam3Backend, UserInputError
from grounded_sam.models import load_sam3
from grounded_sam.segmentation.cleanup import MaskCleanup
from grounded_sam.segmentation.sam3 import Instances
from grounded_sam.testing import build_tiny_sam3

PROMPTS = {"a dog": "dog", "cat": "cat", "red car": "car", "puppy": "dog"}


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory):
    return build_tiny_sam3(tmp_path_factory.mktemp("sam3"))


@pytest.fixture(scope="module")
def sam3(sam3_dir):
    """(model, processor) of a tiny SAM 3."""
    return load_sam3(sam3_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def sam3_ontology():
    return CaptionOntology(PROMPTS)


@pytest.fixture
def whole_batches(monkeypatch):
    monkeypatch.setattr(sam3_module, "images_per_pass", lambda device, batch: batch)


def _images(*shapes):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def test_features_once_per_image_give_what_one_forward_per_prompt_gives(sam3, sam3_ontology, whole_batches):
    """Text once, vision once per image, rows against them == ``model(**processor(image, prompt))`` post-processed
    by transformers, for every image and prompt."""
    model, processor = sam3
    images = _images((120, 160), (200, 90))
    backend = Sam3Backend(model, processor, sam3_ontology, box_threshold=0.2, rows_per_pass=3)
    found = backend.detect(images)
    for image, ours in zip(images, found):
        for prompt in sam3_ontology.prompts():
            inputs = processor(images=[image], text=prompt, return_tensors="pt")
            sizes = inputs.pop("original_sizes").tolist()
            with torch.inference_mode():
                reference = processor.post_process_instance_segmentation(
                    model(**inputs), threshold=0.2, mask_threshold=0.5, target_sizes=sizes
                )[0]
            order = np.argsort(-reference["scores"].numpy(), kind="stable")
            mine = ours[ours.data["prompt"] == prompt]
            np.testing.assert_allclose(mine.confidence, reference["scores"].numpy()[order], atol=1e-5)
            np.testing.assert_allclose(mine.xyxy, reference["boxes"].numpy()[order], atol=1e-2)
            assert (mine.mask == reference["masks"].numpy()[order].astype(bool)).mean() > 0.999


def test_batched_equals_one_by_one(sam3, sam3_ontology, whole_batches):
    backend = Sam3Backend(*sam3, sam3_ontology, box_threshold=0.2, rows_per_pass=3)
    assert isinstance(backend, Detector)
    images = _images((120, 160), (200, 90), (64, 64))
    for together, single in zip(backend.detect(images), [backend.detect([image])[0] for image in images]):
        assert len(together) > 0 and together.data["prompt"].tolist() == single.data["prompt"].tolist()
        np.testing.assert_allclose(together.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_allclose(together.confidence, single.confidence, atol=1e-5)
        assert (together.mask == single.mask).mean() > 0.999


def test_detections_carry_masks_at_the_original_size_and_boxes_in_its_pixels(sam3, sam3_ontology):
    images = _images((120, 160), (200, 90))
    for image, found in zip(images, Sam3Backend(*sam3, sam3_ontology, box_threshold=0.2).detect(images)):
        height, width = image.shape[:2]
        assert len(found) > 0 and found.mask.shape == (len(found), height, width) and found.mask.dtype == bool
        assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= width).all()
        assert (found.xyxy[:, [1, 3]] <= height).all()
        assert ((found.confidence >= 0) & (found.confidence <= 1)).all()
        assert (np.diff(found.confidence) <= 0).all()
        np.testing.assert_array_equal(found.data["mask_score"], found.confidence)


def test_instances_map_to_their_prompts_classes_in_pixels(sam3, sam3_ontology):
    backend = Sam3Backend(*sam3, sam3_ontology)
    logits = torch.full((3, 8, 8), -10.0)
    logits[0, :4, :4] = 10.0  # top-left quarter
    logits[2, 4:, 4:] = 10.0  # bottom-right quarter
    found = backend.to_detections(
        Instances(
            prompt_index=torch.tensor([3, 1, 2]),
            scores=torch.tensor([0.6, 0.9, 0.7]),
            boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 1.2], [0.5, 0.5, 1.0, 1.0]]),
            mask_logits=logits,
        ),
        height=40,
        width=80,
    )
    assert found.data["prompt"].tolist() == ["cat", "red car", "puppy"]
    assert found.data["class_name"].tolist() == ["cat", "car", "dog"] and found.class_id.tolist() == [1, 2, 0]
    np.testing.assert_allclose(found.confidence, [0.9, 0.7, 0.6])
    np.testing.assert_allclose(found.xyxy, [[20, 10, 60, 40], [40, 20, 80, 40], [0, 0, 40, 20]])
    assert not found.mask[0].any()  # upsampled bilinearly from 8 x 8: the quarters, up to their edges
    assert found.mask[1, 22:, 42:].all() and not found.mask[1, :18].any() and not found.mask[1, :, :38].any()
    assert found.mask[2, :18, :38].all() and not found.mask[2, 22:].any() and not found.mask[2, :, 42:].any()


def test_a_prompt_longer_than_the_text_tower_is_refused_when_the_backend_is_built(sam3):
    prompt = "a small brown dog sitting on a red chair under a big tree with a cat and a bird on a table"
    with pytest.raises(UserInputError, match="SAM 3 reads at most 32"):
        Sam3Backend(*sam3, CaptionOntology({prompt: "dog"}))


def test_the_hubs_video_layout_of_facebook_sam3_loads_its_detector(sam3_dir, tmp_path):
    """facebook/sam3 is saved from Sam3VideoModel (model_type sam3_video, the detector's config inside)."""
    from transformers import Sam3VideoConfig

    folder = tmp_path / "sam3_video"
    shutil.copytree(sam3_dir, folder)
    detector_config = json.loads((sam3_dir / "config.json").read_text())
    Sam3VideoConfig(detector_config=detector_config).save_pretrained(folder)
    model, _ = load_sam3(folder, torch.device("cpu"))
    assert type(model).__name__ == "Sam3Model" and model.config.name_or_path == str(folder)
    original, _ = load_sam3(sam3_dir, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))


def test_mask_clean_up_cleans_sam3s_masks_keeps_its_boxes_and_is_in_the_settings(sam3, sam3_dir, sam3_ontology):
    images = _images((120, 160))
    plain = Sam3Backend(*sam3, sam3_ontology, box_threshold=0.2).detect(images)[0]
    cleanup = MaskCleanup(max_hole_area=400, max_sprinkle_area=400, keep_largest_part=True)
    cleaned = Sam3Backend(*sam3, sam3_ontology, box_threshold=0.2, cleanup=cleanup).detect(images)[0]
    np.testing.assert_array_equal(cleaned.mask, cleanup.apply(plain.mask))
    np.testing.assert_array_equal(cleaned.xyxy, plain.xyxy)
    assert not np.array_equal(cleaned.mask, plain.mask)  # the random masks have specks and holes to clean
    options = {"backend": "sam3", "sam": str(sam3_dir), "device": "cpu", "max_sprinkle_area": 400}
    pipeline = GroundedSAM2(sam3_ontology, **options)
    assert pipeline.settings() == PipelineSpec(sam3_ontology.to_dict(), **options).settings()
    assert pipeline.settings()["detector"]["mask_cleanup"]["max_sprinkle_area"] == 400

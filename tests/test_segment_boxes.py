"""SAM 2 segmenter on the tiny model: one encoder pass and one decoder call per batch, ragged box counts."""

from unittest import mock

import numpy as np
import pytest
import supervision as sv
import torch

from grounded_sam import Sam2Segmenter
from grounded_sam.device import images_per_pass
from grounded_sam.segmentation.core import sam_pixels


@pytest.fixture(scope="module")
def sam(sam_dir):
    from transformers import Sam2Model, Sam2Processor

    return Sam2Model.from_pretrained(sam_dir).eval(), Sam2Processor.from_pretrained(sam_dir)


def _boxes(xyxy):
    xyxy = np.array(xyxy, dtype=np.float32).reshape(-1, 4)
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.full(len(xyxy), 0.5, np.float32),
        class_id=np.zeros(len(xyxy), int),
        data={"class_name": np.array(["dog"] * len(xyxy))},
    )


@pytest.fixture
def batch(rng):
    images = [rng.integers(0, 256, size=size, dtype=np.uint8) for size in [(90, 120, 3), (64, 64, 3), (50, 70, 3)]]
    boxes = [_boxes([[10, 10, 60, 50], [30, 20, 110, 85], [0, 0, 120, 90]]), _boxes([]), _boxes([[5, 5, 40, 60]])]
    return images, boxes


def test_masks_have_image_size_and_types(sam, batch):
    images, boxes = batch
    results = Sam2Segmenter(*sam).segment(images, boxes)
    for image, found, given in zip(images, results, boxes):
        assert found.mask.shape == (len(given), *image.shape[:2]) and found.mask.dtype == bool
        assert found.data["mask_score"].dtype == np.float32 and found.data["mask_score"].shape == (len(given),)
        np.testing.assert_array_equal(found.xyxy, given.xyxy)
        assert found.data["class_name"].tolist() == given.data["class_name"].tolist()
    assert results[1].mask.shape == (0, 64, 64)
    assert boxes[0].mask is None  # inputs are not modified


def test_uneven_box_counts_batched_equal_one_by_one(sam, batch):
    images, boxes = batch
    segmenter = Sam2Segmenter(*sam)
    batched = segmenter.segment(images, boxes)
    for image, given, together in zip(images, boxes, batched):
        (alone,) = segmenter.segment([image], [given])
        np.testing.assert_array_equal(together.mask, alone.mask)
        np.testing.assert_allclose(together.data["mask_score"], alone.data["mask_score"], atol=1e-5)


@pytest.mark.parametrize("device_type, passes", [("cuda", 1), ("cpu", 2)])
def test_one_encoder_pass_and_one_decoder_call_per_batch_on_gpus_per_image_on_cpus(sam, batch, device_type, passes):
    images, boxes = batch
    segmenter = Sam2Segmenter(*sam)
    model = segmenter.model
    as_if = lambda device, size: images_per_pass(torch.device(device_type), size)  # noqa: E731
    with (
        mock.patch.object(model, "get_image_embeddings", wraps=model.get_image_embeddings) as encode,
        mock.patch.object(model.mask_decoder, "forward", wraps=model.mask_decoder.forward) as decode,
        mock.patch("grounded_sam.segmentation.segmenter.images_per_pass", as_if),
        mock.patch("grounded_sam.segmentation.core.images_per_pass", as_if),
    ):
        together = segmenter.segment(images, boxes)
    assert encode.call_count == passes and decode.call_count == passes
    assert sum(call.args[0].shape[0] for call in encode.call_args_list) == 2  # the box-less image is not encoded
    alone = [segmenter.segment([image], [found])[0] for image, found in zip(images, boxes)]
    for a, b in zip(together, alone):  # grouping changes rounding at most
        assert a.mask.shape == b.mask.shape and (a.mask != b.mask).sum() <= 1e-3 * a.mask.size


def test_images_without_boxes_cost_no_model_call(sam, batch):
    images, _ = batch
    segmenter = Sam2Segmenter(*sam)
    with mock.patch.object(segmenter.model, "get_image_embeddings") as encode:
        results = segmenter.segment(images, [_boxes([])] * len(images))
    encode.assert_not_called()
    assert [found.mask.shape for found in results] == [(0, *image.shape[:2]) for image in images]


def test_multimask_keeps_the_best_of_three(sam, batch):
    images, boxes = batch
    model, processor = sam
    found = Sam2Segmenter(model, processor, multimask_output=True).segment(images[:1], boxes[:1])[0]
    inputs = processor(
        images=sam_pixels(images[:1]), input_boxes=[boxes[0].xyxy.tolist()], do_rescale=False, return_tensors="pt"
    )
    output = model(**inputs, multimask_output=True)
    np.testing.assert_allclose(found.data["mask_score"], output.iou_scores[0].max(-1).values.detach(), atol=1e-5)
    assert found.mask.shape == (3, 90, 120)
    best = output.iou_scores[0].argmax(-1)
    chosen = output.pred_masks[0][torch.arange(3), best][:, None].detach()
    expected = processor.post_process_masks([chosen], inputs["original_sizes"])[0][:, 0].numpy()
    np.testing.assert_array_equal(found.mask, expected)


def test_mismatched_lengths_raise(sam, batch):
    images, boxes = batch
    with pytest.raises(ValueError, match="one per image"):
        Sam2Segmenter(*sam).segment(images, boxes[:2])

"""Prompted SAM 2 and segment-everything on the tiny local SAM 2."""

import numpy as np
import pytest
import supervision as sv
import torch
from skimage import data as skdata

from grounded_sam import ImageState, Segmenter
from grounded_sam.segmentation.everything import remove_small_regions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def segmenter(sam_dir):
    return Segmenter(sam=sam_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(skdata.astronaut()[::3, ::2])  # 171 x 256: not square


@pytest.fixture(scope="module")
def state(segmenter, image):
    return segmenter.set_image(image)


def _check_detections(detections, count, image):
    height, width = image.shape[:2]
    assert isinstance(detections, sv.Detections) and len(detections) == count
    assert detections.mask.shape == (count, height, width) and detections.mask.dtype == bool
    assert detections.xyxy.shape == (count, 4) and detections.xyxy.dtype == np.float32
    assert detections.confidence.dtype == np.float32
    assert np.array_equal(detections.data["mask_score"], detections.confidence)
    assert detections.data["low_res_logits"].shape == (count, 32, 32)
    for mask, box in zip(detections.mask, detections.xyxy):  # boxes are the masks' boxes
        assert np.array_equal(box, sv.mask_to_xyxy(mask[None])[0]) or not mask.any()


@pytest.mark.parametrize(
    "prompt, count",
    [
        ({"points": [[100, 80]], "labels": [1]}, 1),
        ({"points": [[100, 80], [20, 20]], "labels": [1, 0]}, 1),
        ({"boxes": [10, 10, 120, 150]}, 1),
        ({"boxes": [[10, 10, 120, 150]], "points": [[50, 50]], "labels": [0]}, 1),
        ({"boxes": [[10, 10, 120, 150], [100, 20, 250, 160]]}, 2),
        ({"points": [[[30, 30]], [[200, 100], [210, 110]]], "labels": [[1], [1, 0]]}, 2),
    ],
)
def test_every_prompt_kind_gives_well_formed_detections(segmenter, state, image, prompt, count):
    detections = segmenter.predict(state, **prompt)
    _check_detections(detections, count, image)
    assert detections.data["object_index"].tolist() == list(range(count))


def test_multimask_gives_three_candidates_per_object_best_first(segmenter, state, image):
    detections = segmenter.predict(state, points=[[[100, 80]], [[20, 30]]], labels=[[1], [1]], multimask=True)
    _check_detections(detections, 6, image)
    assert detections.data["object_index"].tolist() == [0, 0, 0, 1, 1, 1]
    for start in (0, 3):
        scores = detections.confidence[start : start + 3]
        assert list(scores) == sorted(scores, reverse=True)


def test_image_is_encoded_once_for_many_prompts(segmenter, image, monkeypatch):
    calls = []
    encoder = segmenter.model.vision_encoder
    monkeypatch.setattr(encoder, "forward", lambda *a, _f=encoder.forward, **k: calls.append(1) or _f(*a, **k))
    state = segmenter.set_image(image)
    for x in (20, 60, 120, 200):
        segmenter.predict(state, points=[[x, 50]], labels=[1])
    segmenter.predict(state, boxes=[[0, 0, 100, 100], [50, 50, 150, 150]])
    assert len(calls) == 1


def test_several_objects_take_one_decoder_call_and_equal_one_by_one(segmenter, state):
    calls = []
    decoder = segmenter.model.mask_decoder
    boxes = [[10, 10, 120, 150], [100, 20, 250, 160], [0, 0, 256, 171]]
    points, labels = [[[50, 50]], [[150, 90]], [[5, 5]]], [[0], [1], [1]]
    original = decoder.forward
    decoder.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        together = segmenter.predict(state, boxes=boxes, points=points, labels=labels)
    finally:
        del decoder.forward
    assert len(calls) == 1
    for index in range(3):
        alone = segmenter.predict(state, boxes=boxes[index], points=points[index], labels=labels[index])
        np.testing.assert_allclose(together.data["low_res_logits"][index], alone.data["low_res_logits"][0], atol=1e-5)
        np.testing.assert_allclose(together.confidence[index], alone.confidence[0], atol=1e-6)


def test_refinement_takes_the_previous_logits(segmenter, state):
    first = segmenter.predict(state, boxes=[[10, 10, 120, 150], [100, 20, 250, 160]])
    refined = segmenter.predict(
        state, boxes=[[10, 10, 120, 150], [100, 20, 250, 160]], mask_input=first.data["low_res_logits"]
    )
    assert len(refined) == 2
    assert not np.allclose(refined.data["low_res_logits"], first.data["low_res_logits"])  # the mask prompt counts
    single = segmenter.predict(state, boxes=[100, 20, 250, 160], mask_input=first.data["low_res_logits"][1])
    np.testing.assert_allclose(single.data["low_res_logits"][0], refined.data["low_res_logits"][1], atol=1e-5)
    mask_only = segmenter.predict(state, mask_input=first.data["low_res_logits"][0])
    assert len(mask_only) == 1


def test_bad_prompts_raise(segmenter, state):
    with pytest.raises(ValueError, match="outside"):
        segmenter.predict(state, points=[[300, 10]], labels=[1])
    with pytest.raises(ValueError, match="set_image"):
        segmenter.predict(np.zeros((10, 10, 3), np.uint8), points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="at least one prompt"):
        segmenter.predict(state)


def test_set_images_encodes_a_batch_in_one_pass(segmenter, image):
    states = segmenter.set_images([image, image[:100, :150]])
    assert [s.original_size for s in states] == [(171, 256), (100, 150)] and isinstance(states[0], ImageState)
    small = segmenter.predict(states[1], points=[[10, 10]], labels=[1])
    assert small.mask.shape == (1, 100, 150)


def _shapes_image():
    image = np.full((120, 160, 3), 30, np.uint8)
    image[20:60, 20:70] = (250, 40, 40)
    image[70:110, 90:150] = (40, 250, 40)
    return image


def test_segment_everything_is_well_formed_deduplicated_and_filtered(segmenter):
    image = _shapes_image()
    everything = segmenter.segment_everything(
        image, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.3
    )
    assert len(everything) >= 1 and everything.mask.shape[1:] == (120, 160)
    assert list(everything.confidence) == sorted(everything.confidence, reverse=True)
    assert np.array_equal(everything.xyxy, sv.mask_to_xyxy(everything.mask).astype(np.float32))
    iou = sv.box_iou_batch(everything.xyxy, everything.xyxy)
    assert (iou[~np.eye(len(iou), dtype=bool)] <= 0.3 + 1e-6).all()
    allowed = segmenter.segment_everything(
        image, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    assert len(allowed) > len(everything)  # NMS is what removed the others
    threshold = float(np.median(allowed.confidence))
    strict = segmenter.segment_everything(
        image, points_per_side=6, pred_iou_thresh=threshold, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    assert len(strict) < len(allowed) and (strict.confidence > threshold).all()
    assert len(segmenter.segment_everything(image, points_per_side=6, pred_iou_thresh=1.0)) == 0


def test_segment_everything_drops_unstable_masks(segmenter):
    # The tiny model's logits are ~1e-4, so an offset of that order is what tells stable masks from unstable ones.
    options = dict(points_per_side=6, pred_iou_thresh=0.0, box_nms_thresh=1.0, stability_score_offset=1e-4)
    every = segmenter.segment_everything(_shapes_image(), stability_score_thresh=0.0, **options)
    stable = segmenter.segment_everything(_shapes_image(), stability_score_thresh=0.9, **options)
    assert 0 < len(stable) < len(every)
    assert len(segmenter.segment_everything(_shapes_image(), points_per_side=6)) == 0  # defaults: none is stable


def test_segment_everything_removes_small_holes_and_specks_and_chunks_points(segmenter, monkeypatch):
    image = _shapes_image()
    calls = []
    decoder = segmenter.model.mask_decoder
    monkeypatch.setattr(decoder, "forward", lambda *a, _f=decoder.forward, **k: calls.append(1) or _f(*a, **k))
    cleaned = segmenter.segment_everything(
        image,
        points_per_side=6,
        points_per_batch=5,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        min_mask_region_area=40,
    )
    assert len(calls) == 8  # 36 grid points, 5 per decoder call
    raw = segmenter.segment_everything(
        image, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    assert any(remove_small_regions(mask, 40, "islands")[1] for mask in raw.mask)  # there was something to clean
    assert len(cleaned) > 0
    for mask in cleaned.mask:
        assert not remove_small_regions(mask, 40, "holes")[1] and not remove_small_regions(mask, 40, "islands")[1]


def test_remove_small_regions_fills_holes_and_drops_specks():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[10:12, 10:12] = False  # a 4-pixel hole
    mask[35, 35] = True  # a 1-pixel speck
    filled, changed = remove_small_regions(mask, 10, "holes")
    assert changed and filled[10:12, 10:12].all() and filled[35, 35]
    cleaned, changed = remove_small_regions(filled, 10, "islands")
    assert changed and not cleaned[35, 35] and cleaned[5:30, 5:30].all()
    assert remove_small_regions(cleaned, 10, "islands") == (cleaned, False)


def test_grounded_sam_refines_chosen_detections_with_clicks(model, image):
    detections = model.predict(image)
    assert len(detections) >= 2
    refined = model.refine(image, detections, points={1: [[150, 60], [160, 70]]}, labels={1: [1, 0]})
    assert np.array_equal(refined.mask[0], detections.mask[0]) and np.array_equal(refined.xyxy, detections.xyxy)
    segmenter = Segmenter.from_model(model.segmenter.model, model.segmenter.processor)
    expected = segmenter.predict(
        segmenter.set_image(image), boxes=detections.xyxy[1], points=[[150, 60], [160, 70]], labels=[1, 0]
    )
    assert np.array_equal(refined.mask[1], expected.mask[0])
    assert refined.data["mask_score"][1] == pytest.approx(expected.confidence[0])
    with pytest.raises(ValueError, match="same detections"):
        model.refine(image, detections, points={0: [[1, 1]]}, labels={})
    with pytest.raises(ValueError, match="indices"):
        model.refine(image, detections, points={9: [[1, 1]]}, labels={9: [1]})


def test_segment_everything_rejects_bad_options(segmenter):
    assert segmenter.device == torch.device("cpu")
    with pytest.raises(ValueError, match="points_per_side"):
        segmenter.segment_everything(_shapes_image(), points_per_side=0)
    with pytest.raises(ValueError, match="box_nms_thresh"):
        segmenter.segment_everything(_shapes_image(), box_nms_thresh=0.0)


@pytest.mark.parametrize("height, width", [(100, 400), (400, 100)])
def test_segment_everything_clicks_cover_the_whole_of_non_square_images(segmenter, monkeypatch, height, width):
    clicks = []
    forward = segmenter.model.forward
    monkeypatch.setattr(
        segmenter.model, "forward", lambda *a, **k: clicks.append(k["input_points"][0, :, 0].cpu()) or forward(*a, **k)
    )
    segmenter.segment_everything(np.zeros((height, width, 3), np.uint8), points_per_side=4, pred_iou_thresh=1.0)
    points = torch.cat(clicks)
    size = segmenter.processor.image_processor.size
    # the model sees the image stretched to a square: clicks must span it in both directions, as a 4 x 4 grid
    assert len(points) == 16
    assert sorted(set(points[:, 0].tolist())) == pytest.approx(
        [size["width"] * f for f in (1 / 8, 3 / 8, 5 / 8, 7 / 8)]
    )
    assert sorted(set(points[:, 1].tolist())) == pytest.approx(
        [size["height"] * f for f in (1 / 8, 3 / 8, 5 / 8, 7 / 8)]
    )


def test_segment_everything_on_crops_with_fewer_points_per_layer(segmenter, monkeypatch):
    calls = []
    forward = segmenter.model.forward
    monkeypatch.setattr(
        segmenter.model, "forward", lambda *a, **k: calls.append(k["input_points"].shape[1]) or forward(*a, **k)
    )
    found = segmenter.segment_everything(
        _shapes_image(),
        points_per_side=4,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    assert calls == [16] + [4] * 4  # the whole image, then four crops with a 2 x 2 grid each
    assert found.mask.shape[1:] == (120, 160) and len(found) > 0


def test_large_images_are_upsampled_a_few_masks_at_a_time(segmenter, monkeypatch):
    from grounded_sam.segmentation.core import masks_per_chunk

    assert masks_per_chunk(100, 100) == 16 and masks_per_chunk(3000, 4000) == 5 and masks_per_chunk(10**5, 10**5) == 1
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[500:2500, 1000:3000] = 200
    processor = segmenter.processor.image_processor
    sizes = []
    monkeypatch.setattr(
        processor,
        "post_process_masks",
        lambda masks, *a, _f=processor.post_process_masks, **k: sizes.append(masks[0].shape[1]) or _f(masks, *a, **k),
    )
    found = segmenter.segment_everything(image, points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert len(sizes) >= 2 and max(sizes) <= 5 and found.mask.shape[1:] == (3000, 4000)


def test_clicks_box_and_refinement_and_everything_on_a_photo(sam_dir):
    image = np.ascontiguousarray(skdata.chelsea())  # 300 x 451
    x1, y1, x2, y2, px, py = 100, 50, 300, 250, 200, 150
    seg = Segmenter(sam=sam_dir, device="auto")
    state = seg.set_image(image)
    dets = seg.predict(state, points=[[200, 150]], labels=[1], multimask=True)
    assert len(dets) == 3
    previous = seg.predict(state, boxes=[[x1, y1, x2, y2]], points=[[px, py]], labels=[0])
    dets = seg.predict(state, boxes=[[x1, y1, x2, y2]], mask_input=previous.data["low_res_logits"][0])
    assert len(dets) == 1 and dets.mask.shape == (1, 300, 451)
    everything = seg.segment_everything(image, points_per_side=32)
    assert isinstance(everything, sv.Detections) and everything.mask.shape[1:] == (300, 451)


def test_refine_takes_box_only_detections_and_boxes_past_the_edge(model, image):
    height, width = image.shape[:2]
    boxes_only = sv.Detections(
        xyxy=np.array([[10, 10, 120, 150], [100, 20, width + 0.001, height]], np.float32),
        class_id=np.array([0, 1]),
        confidence=np.array([0.9, 0.8], np.float32),
    )
    refined = model.refine(image, boxes_only, points={1: [[150, 60]]}, labels={1: [1]})
    assert refined.mask.shape == (2, height, width) and not refined.mask[0].any()
    assert refined.data["mask_score"][0] == 0 and refined.data["mask_score"][1] > 0

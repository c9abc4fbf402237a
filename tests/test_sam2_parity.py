"""Our SAM 2, loaded from an official-style Meta checkpoint, against Meta's own SAM2ImagePredictor.

Meta's ``sam2`` package builds its image model from its own config with random weights (no download); the state
dict is saved as Meta's download script's files are ({"model": state_dict}) and loaded through our loader. Needs the
``parity`` extra (README "Run the tests"); CI sets GROUNDED_SAM_REQUIRE_PARITY=1 so a missing package fails there.
"""

import os

import numpy as np
import pytest
import torch

from grounded_sam import Sam2Segmenter, Segmenter
from grounded_sam.models.checkpoints import convert_state_dict, infer_size, load_sam2_checkpoint
from grounded_sam.models.hub import load_sam2

if os.environ.get("GROUNDED_SAM_REQUIRE_PARITY") == "1":
    import sam2
sam2 = pytest.importorskip("sam2", reason="Meta's sam2 package (the parity extra) is not installed")
from sam2.build_sam import build_sam2  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

pytestmark = pytest.mark.slow
CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
}
NEAR_ZERO = 1e-4  # a pixel whose logit is this close to 0 may land on either side: float noise, not a difference


@pytest.fixture(scope="module", params=list(CONFIGS))
def meta_checkpoint(request, tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam2(CONFIGS[request.param], ckpt_path=None, device="cpu")
    with torch.no_grad():  # random everywhere, also where Meta initialises zeros (positional embeddings...)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    path = tmp_path_factory.mktemp("checkpoints") / f"{request.param}.pt"
    torch.save({"model": model.state_dict()}, path)
    return model.eval(), path


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, size=(31, 41, 3))
    smooth = np.kron(coarse, np.ones((16, 16, 1)))[:480, :640] + rng.normal(0, 20, size=(480, 640, 3))
    return np.clip(smooth, 0, 255).astype(np.uint8)  # not square and not 1024: the resize path is exercised


BOXES = np.array([[64, 48, 320, 288], [192, 96, 576, 432], [32, 240, 288, 456], [384, 24, 608, 192]], np.float32)


def _same_masks(ours: np.ndarray, meta_logits: np.ndarray) -> None:
    differing = ours != (meta_logits > 0)
    assert not (differing & (np.abs(meta_logits) > NEAR_ZERO)).any()
    assert differing.sum() <= 5


@pytest.mark.parametrize("multimask", [False, True])
def test_box_prompts_match_meta(meta_checkpoint, image, multimask):
    meta_model, path = meta_checkpoint
    predictor = SAM2ImagePredictor(meta_model)
    predictor.set_image(image)
    meta_masks, meta_scores, meta_low_res = predictor.predict(box=BOXES, multimask_output=multimask, return_logits=True)
    segmenter = Segmenter(sam=path, device="cpu", dtype="float32")
    ours = segmenter.predict(segmenter.set_image(image), boxes=BOXES, multimask=multimask)
    candidates = meta_scores.shape[1]
    order = np.argsort(-meta_scores, axis=1, kind="stable")  # ours lists each object's candidates best first
    meta_scores = np.take_along_axis(meta_scores, order, 1).reshape(-1)
    meta_low_res = np.take_along_axis(meta_low_res, order[..., None, None], 1).reshape(-1, 256, 256)
    meta_masks = np.take_along_axis(meta_masks, order[..., None, None], 1).reshape(-1, *image.shape[:2])
    assert len(ours) == len(BOXES) * candidates
    np.testing.assert_allclose(ours.confidence, meta_scores, atol=1e-4)
    np.testing.assert_allclose(ours.data["low_res_logits"], meta_low_res, atol=1e-4)
    _same_masks(ours.mask, meta_masks)


def test_the_grounding_pipeline_segmenter_matches_meta(meta_checkpoint, image):
    import supervision as sv

    meta_model, path = meta_checkpoint
    predictor = SAM2ImagePredictor(meta_model)
    predictor.set_image(image)
    meta_masks, meta_scores, _ = predictor.predict(box=BOXES, multimask_output=False, return_logits=True)
    model, processor = load_sam2(path, torch.device("cpu"))
    found = Sam2Segmenter(model, processor).segment([image], [sv.Detections(xyxy=BOXES)])[0]
    np.testing.assert_allclose(found.data["mask_score"], meta_scores[:, 0], atol=1e-4)
    _same_masks(found.mask, meta_masks[:, 0])


def test_checkpoint_keys_are_all_accounted_for(meta_checkpoint, tmp_path):
    meta_model, path = meta_checkpoint
    state_dict = torch.load(path, weights_only=True)["model"]
    expected = (path.stem.split("hiera_")[1], "2.1" if path.stem.startswith("sam2.1") else "2.0")
    assert infer_size(state_dict) == expected
    loaded = load_sam2_checkpoint(path)
    assert loaded.config.name_or_path == str(path.resolve())
    with pytest.raises(ValueError, match=f"Hiera-{expected[0]}, not large"):
        load_sam2_checkpoint(path, size="large")
    for broken, message in (
        (_without_one_key(state_dict), "missing"),
        ({**state_dict, "extra.weight": torch.ones(1)}, "left over"),
    ):
        torch.save({"model": broken}, tmp_path / "broken.pt")
        with pytest.raises(ValueError, match=message):
            load_sam2_checkpoint(tmp_path / "broken.pt")
    converted, video_only = convert_state_dict(state_dict)
    assert len(video_only) == (160 if expected[1] == "2.1" else 157)  # the memory bank and object pointers
    assert len(converted) + len(video_only) == len(state_dict) - 2  # 4 point embeddings -> 1, 1 matrix -> 2 copies


def _without_one_key(state_dict):
    return {key: value for key, value in state_dict.items() if key != "sam_mask_decoder.iou_token.weight"}


def test_clicks_and_mask_refinement_match_meta(meta_checkpoint, image):
    meta_model, path = meta_checkpoint
    predictor = SAM2ImagePredictor(meta_model)
    predictor.set_image(image)
    points = np.stack([(BOXES[:, :2] + BOXES[:, 2:]) / 2, BOXES[:, :2] + 3], axis=1)  # (4, 2, 2): inside, corner
    labels = np.tile(np.array([[1, 0]]), (len(BOXES), 1))
    segmenter = Segmenter(sam=path, device="cpu", dtype="float32")
    state = segmenter.set_image(image)
    meta_masks, meta_scores, meta_low_res = predictor.predict(
        point_coords=points, point_labels=labels, multimask_output=False, return_logits=True
    )
    ours = segmenter.predict(state, points=points, labels=labels)
    np.testing.assert_allclose(ours.confidence, meta_scores[:, 0], atol=1e-4)
    np.testing.assert_allclose(ours.data["low_res_logits"], meta_low_res[:, 0], atol=1e-4)
    _same_masks(ours.mask, meta_masks[:, 0])
    meta_masks, meta_scores, _ = predictor.predict(
        box=BOXES, mask_input=meta_low_res, multimask_output=False, return_logits=True
    )
    refined = segmenter.predict(state, boxes=BOXES, mask_input=ours.data["low_res_logits"])
    np.testing.assert_allclose(refined.confidence, meta_scores[:, 0], atol=1e-4)
    _same_masks(refined.mask, meta_masks[:, 0])

import numpy as np
import pytest

from grounded_sam.segmentation.prompts import POINT_PAD_LABEL, build_prompts

SIZE, MASK = (100, 200), (32, 32)  # image (H, W) and mask-input size


def test_one_object_with_clicks():
    batch = build_prompts([[10, 20], [30, 40]], [1, 0], None, None, SIZE, MASK)
    assert len(batch) == 1 and batch.points.shape == (1, 2, 2) and batch.labels.tolist() == [[1, 0]]
    assert batch.boxes is None and batch.masks is None


@pytest.mark.parametrize("box", [[50, 40, 10, 60], [10, 60, 50, 40]])
def test_inverted_boxes_are_refused_in_either_direction(box):
    with pytest.raises(ValueError, match="x1 <= x2 and y1 <= y2"):
        build_prompts(None, None, box, None, SIZE, MASK)


def test_ragged_clicks_are_padded_per_object():
    batch = build_prompts([[[10, 20]], [[30, 40], [50, 60]]], [[1], [1, 0]], None, None, SIZE, MASK)
    assert batch.points.shape == (2, 2, 2)
    assert batch.labels.tolist() == [[1, POINT_PAD_LABEL], [1, 0]]
    assert batch.points[0, 1].tolist() == [POINT_PAD_LABEL, POINT_PAD_LABEL]


def test_box_with_clicks_and_mask_input():
    batch = build_prompts(
        [[[5, 5]], [[6, 6]]], [[0], [1]], [[0, 0, 50, 50], [10, 10, 200, 100]], np.zeros((2, *MASK)), SIZE, MASK
    )
    assert len(batch) == 2 and batch.boxes.shape == (2, 4) and batch.masks.shape == (2, *MASK)
    assert build_prompts(None, None, [1, 2, 3, 4], None, SIZE, MASK).boxes.shape == (1, 4)
    assert build_prompts(None, None, None, np.zeros(MASK), SIZE, MASK).masks.shape == (1, *MASK)


@pytest.mark.parametrize(
    "points, labels, boxes, masks, message",
    [
        (None, None, None, None, "at least one prompt"),
        ([[10, 20]], None, None, None, "need labels"),
        (None, [1], None, None, "without points"),
        ([[10, 20]], [1, 0], None, None, "do not match"),
        ([[[10, 20]], [[1, 2]]], [[1]], None, None, "do not match"),
        ([[10, 20]], [2], None, None, "1 .foreground. or 0"),
        ([[10, 20]], [-1], None, None, "1 .foreground. or 0"),
        ([[10, 20]], [0.7], None, None, "1 .foreground. or 0"),
        ([[10, 20]], ["1"], None, None, "1 .foreground. or 0"),
        (None, None, None, np.zeros((0, *MASK)), "mask_input must be"),
        ([[250, 20]], [1], None, None, "outside the 200x100 image"),
        ([[10, -1]], [1], None, None, "outside"),
        ([[np.nan, 1]], [1], None, None, "finite"),
        ([10, 20], [1], None, None, "points must be"),
        ([[10, 20, 30]], [1], None, None, "points must be"),
        ([], [], None, None, "points must be"),
        (None, None, [[0, 0, 300, 50]], None, "outside"),
        (None, None, [[50, 50, 10, 60]], None, "x1 <= x2"),
        (None, None, [[1, 2, 3]], None, "boxes must be"),
        (None, None, [[0, 0, 10, 10], [0, 0, 20, 20]], np.zeros((3, *MASK)), "disagree on the number of objects"),
        ([[[1, 1]], [[2, 2]]], [[1], [1]], [[0, 0, 10, 10]], None, "disagree"),
        (None, None, None, np.zeros((64, 64)), "mask_input must be"),
    ],
)
def test_bad_prompts_raise_clear_errors(points, labels, boxes, masks, message):
    with pytest.raises(ValueError, match=message):
        build_prompts(points, labels, boxes, masks, SIZE, MASK)

import math

import numpy as np
import pytest

from grounded_sam.detection.florence2_parsing import bins_to_xyxy, parse_grounded_boxes, split_markup
from grounded_sam.detection.phrases import match_phrase, non_degenerate, normalize_phrase


def _parse(text):
    return [(box.phrase, box.bins) for box in parse_grounded_boxes(split_markup(text))]


@pytest.mark.parametrize(
    "task, text, expected",
    [
        (
            "phrase grounding, several boxes for one phrase",
            "</s><s>red car<loc_53><loc_334><loc_933><loc_775><loc_711><loc_203><loc_906><loc_546>sky<loc_0><loc_0>"
            "<loc_999><loc_300></s>",
            [("red car", (53, 334, 933, 775)), ("red car", (711, 203, 906, 546)), ("sky", (0, 0, 999, 300))],
        ),
        (
            "open-vocabulary detection, padded batch row",
            "</s><s>wheels<loc_144><loc_570><loc_870><loc_778>wheels<loc_711><loc_573><loc_866><loc_774></s><pad><pad>",
            [("wheels", (144, 570, 870, 778)), ("wheels", (711, 573, 866, 774))],
        ),
        (
            "object detection",
            "</s><s>car<loc_53><loc_334><loc_933><loc_775>door handle<loc_425><loc_504><loc_474><loc_516></s>",
            [("car", (53, 334, 933, 775)), ("door handle", (425, 504, 474, 516))],
        ),
        (
            "region proposal, no phrase",
            "</s><s><loc_0><loc_0><loc_998><loc_711><loc_0><loc_64><loc_364><loc_672></s>",
            [("", (0, 0, 998, 711)), ("", (0, 64, 364, 672))],
        ),
        (
            "open-vocabulary polygon gives its bounding box",
            "</s><s>a cat<poly><loc_10><loc_20><loc_30><loc_5><loc_50><loc_40></poly></s>",
            [("a cat", (10, 5, 50, 40))],
        ),
        (
            "incomplete location group is dropped",
            "</s><s>dog<loc_1><loc_2><loc_3>cat<loc_4><loc_5><loc_6><loc_7></s>",
            [("cat", (4, 5, 6, 7))],
        ),
        (
            "whitespace between boxes keeps the phrase",
            "</s><s>a dog<loc_1><loc_2><loc_3><loc_4> <loc_5><loc_6><loc_7><loc_8></s>",
            [("a dog", (1, 2, 3, 4)), ("a dog", (5, 6, 7, 8))],
        ),
        ("no boxes", "</s><s>a photo of nothing</s>", []),
        (
            "grounding markup",
            "</s><s><ground>a person<obj><loc_1><loc_2><loc_3><loc_4></s>",
            [("a person", (1, 2, 3, 4))],
        ),
    ],
)
def test_parse_canned_outputs(task, text, expected):
    assert _parse(text) == expected, task


def test_confidence_is_mean_log_prob_of_each_box_own_tokens():
    pieces = ["</s>", "<s>", "the image", "<loc_0>", "<loc_0>", "<loc_9>", "<loc_9>", "dog"] + [
        f"<loc_{i}>" for i in (1, 2, 3, 4)
    ]
    log_probs = [0.0, 0.0, -0.1, -5, -5, -5, -5, -0.2, -0.1, -0.2, -0.3, -0.4]
    boxes = parse_grounded_boxes(pieces, log_probs)
    assert [box.token_positions for box in boxes] == [(3, 4, 5, 6), (8, 9, 10, 11)]
    assert boxes[1].confidence == pytest.approx(math.exp(-0.25))
    assert boxes[0].confidence == pytest.approx(math.exp(-5))


def test_without_scores_confidence_is_nan():
    (box,) = parse_grounded_boxes(split_markup("dog<loc_1><loc_2><loc_3><loc_4>"))
    assert math.isnan(box.confidence)


def test_mismatched_scores_raise():
    with pytest.raises(ValueError, match="same length"):
        parse_grounded_boxes(["a"], [0.0, 0.0])


def test_bins_to_xyxy_uses_bin_centres_and_clips():
    xyxy = bins_to_xyxy(np.array([[0, 0, 999, 499], [10, 20, 30, 40]]), width=1000, height=500)
    assert xyxy.dtype == np.float32
    np.testing.assert_allclose(xyxy, [[0.5, 0.25, 999.5, 249.75], [10.5, 10.25, 30.5, 20.25]])


def test_bins_past_the_image_are_clipped_to_it():
    xyxy = bins_to_xyxy(np.array([[-40, 0, 1200, 1500]]), width=100, height=50)
    np.testing.assert_allclose(xyxy, [[0.0, 0.025, 100.0, 50.0]])


def test_non_degenerate():
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 5.5, 9], [5, 5, 9, 5], [9, 9, 1, 1]], dtype=np.float32)
    assert non_degenerate(xyxy).tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A Dog", ("dog",)),
        ("the   dogs.", ("dogs",)),
        ("an apple", ("apple",)),
        ("traffic-lights", ("traffic", "lights")),
        ("Les Cafés", ("les", "cafes")),
        ("犬", ("犬",)),
        ("the", ()),
    ],
)
def test_normalize_phrase(text, expected):
    assert normalize_phrase(text) == expected


PROMPTS = ["a dog", "puppy", "a person", "traffic light", "cat", "bus", "glass", "house", "box", "café", "犬"]


@pytest.mark.parametrize(
    "phrase, expected",
    [
        ("a dog", "a dog"),
        ("Dogs", "a dog"),
        ("  the DOG ", "a dog"),
        ("puppies", "puppy"),
        ("persons", "a person"),
        ("traffic lights", "traffic light"),
        ("a brown dog", "a dog"),
        ("light", "traffic light"),
        ("a cat on a mat", "cat"),
        ("buses", "bus"),
        ("glasses", "glass"),
        ("houses", "house"),
        ("boxes", "box"),
        ("Cafe", "café"),
        ("犬", "犬"),
        ("bicycle", None),
        ("the image", None),
        ("", None),
    ],
)
def test_match_phrase(phrase, expected):
    assert match_phrase(phrase, PROMPTS) == expected


def test_match_prefers_exact_then_longest_then_first():
    assert match_phrase("dog house", ["dog", "dog house"]) == "dog house"
    assert match_phrase("big dog", ["dog", "big"]) == "dog"

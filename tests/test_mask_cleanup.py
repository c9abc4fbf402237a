"""Mask clean-up: holes filled and specks removed by Meta's SAM 2 rules (areas up to and including the limit, in
image pixels), the largest part kept; applied by the Segmenter and stored in its settings."""

import numpy as np
import pytest
import supervision as sv
from scipy import ndimage
from skimage import data as skdata

from grounded_sam import CaptionOntology, GroundedSAM2, Segmenter
from grounded_sam.pipeline import PipelineSpec
from grounded_sam.segmentation.cleanup import MaskCleanup, fill_holes, keep_largest_part, remove_specks
from grounded_sam.segmentation.everything import remove_small_regions


@pytest.fixture
def disk_with_a_hole_a_speck_and_a_blob():
    """64 x 64: a disk (r 15) with a 3 x 3 hole (9 px), a 2 x 2 speck (4 px) and a 6 x 6 blob (36 px)."""
    yy, xx = np.mgrid[:64, :64]
    disk = (xx - 24) ** 2 + (yy - 24) ** 2 <= 15**2
    mask = disk.copy()
    mask[23:26, 23:26] = False
    mask[55:57, 55:57] = True
    mask[50:56, 5:11] = True
    return mask, disk


def test_holes_up_to_the_area_are_filled(disk_with_a_hole_a_speck_and_a_blob):
    mask, _ = disk_with_a_hole_a_speck_and_a_blob
    assert fill_holes(mask, 9)[23:26, 23:26].all()  # 9 px <= 9
    assert not fill_holes(mask, 8)[23:26, 23:26].any()
    assert np.array_equal(fill_holes(mask, 9) & ~mask, np.pad(np.ones((3, 3), bool), ((23, 38), (23, 38))))


def test_specks_up_to_the_area_are_removed_and_larger_parts_kept(disk_with_a_hole_a_speck_and_a_blob):
    mask, _ = disk_with_a_hole_a_speck_and_a_blob
    cleaned = remove_specks(mask, 4)
    assert not cleaned[55:57, 55:57].any() and cleaned[50:56, 5:11].all()
    assert np.array_equal(cleaned | ~mask, ~np.pad(np.ones((2, 2), bool), ((55, 7), (55, 7))))
    assert remove_specks(mask, 3)[55:57, 55:57].all()


def test_only_the_largest_part_is_kept(disk_with_a_hole_a_speck_and_a_blob):
    mask, disk = disk_with_a_hole_a_speck_and_a_blob
    assert np.array_equal(keep_largest_part(mask), mask & disk)
    assert not keep_largest_part(np.zeros((5, 5), bool)).any()


def test_the_full_clean_up_gives_the_disk_back(disk_with_a_hole_a_speck_and_a_blob):
    mask, disk = disk_with_a_hole_a_speck_and_a_blob
    assert np.array_equal(MaskCleanup(max_hole_area=9, max_sprinkle_area=4, keep_largest_part=True).clean(mask), disk)
    blob = np.zeros_like(mask)
    blob[50:56, 5:11] = True
    assert np.array_equal(MaskCleanup(9, 4).clean(mask), disk | blob)


def test_background_touching_the_border_counts_as_a_hole_as_in_meta():
    mask = np.ones((20, 20), bool)
    mask[:2, :2] = False  # 4 background pixels in a corner
    assert fill_holes(mask, 4).all() and not fill_holes(mask, 3)[:2, :2].any()


def test_holes_are_filled_before_specks_are_judged():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    mask[3, 3] = False  # an 8-pixel ring: 9 pixels once its 1-pixel hole is filled
    assert MaskCleanup(max_hole_area=1, max_sprinkle_area=8).clean(mask).sum() == 9
    assert MaskCleanup(max_sprinkle_area=8).clean(mask).sum() == 0  # without the hole filled it is a speck


def test_a_mask_of_specks_comes_out_empty_unlike_the_automatic_generators_rule():
    mask = np.zeros((20, 20), bool)
    mask[2:4, 2:4] = True
    mask[10:12, 10:13] = True  # parts of 4 and 6 pixels
    assert not remove_specks(mask, 6).any()  # Meta's predictor: every part <= 6 goes
    kept, changed = remove_small_regions(mask, 7, "islands")  # Meta's generator: strictly under 7, keep the largest
    assert changed and kept.sum() == 6 and kept[10:12, 10:13].all()
    assert remove_small_regions(mask, 4, "islands") == (mask, False)  # 4 is not under 4


def test_clean_up_equals_an_8_connected_scipy_reference_on_random_masks(rng):
    eight = np.ones((3, 3), int)

    def reference(mask, hole, speck):
        labels, _ = ndimage.label(~mask, structure=eight)
        sizes = np.bincount(labels.ravel())
        mask = mask | ((labels > 0) & (sizes[labels] <= hole))
        labels, _ = ndimage.label(mask, structure=eight)
        sizes = np.bincount(labels.ravel())
        return mask & ~((labels > 0) & (sizes[labels] <= speck))

    for index in range(60):
        mask = ndimage.binary_opening(rng.random((96, 128)) > 0.45)
        if index % 2:  # inside the image: only the box around the mask is labeled
            top, left = rng.integers(1, 40), rng.integers(1, 60)
            mask[:top], mask[:, :left], mask[top + rng.integers(5, 50) :], mask[:, left + rng.integers(5, 60) :] = (
                0,
            ) * 4
        assert np.array_equal(MaskCleanup(20, 15).clean(mask), reference(mask, 20, 15))
    ring = np.ones((30, 40), bool)
    ring[[0, -1]], ring[:, [0, -1]] = False, False  # the background is a 1-pixel frame: 136 pixels outside the box
    assert fill_holes(ring, 136).all() and np.array_equal(fill_holes(ring, 135), ring)
    assert np.array_equal(fill_holes(ring, 135), reference(ring, 135, 0)) and reference(ring, 136, 0).all()


def test_nothing_to_clean_returns_the_masks_as_they_are():
    masks = np.ones((2, 8, 8), bool)
    assert MaskCleanup().apply(masks) is masks and not MaskCleanup().active
    assert MaskCleanup(keep_largest_part=True).apply(np.zeros((0, 8, 8), bool)).shape == (0, 8, 8)


@pytest.mark.parametrize("options", [{"max_hole_area": -1}, {"max_sprinkle_area": 2.5}, {"max_hole_area": True}])
def test_bad_areas_are_refused_with_the_option_named(options):
    with pytest.raises(ValueError, match=f"{next(iter(options))} must be a whole number of pixels"):
        MaskCleanup(**options)
    with pytest.raises(ValueError, match=next(iter(options))):
        PipelineSpec({"a dog": "dog"}, **options)


@pytest.fixture(scope="module")
def raw_segmenter(sam_dir):
    return Segmenter(sam=sam_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skdata.astronaut()[::2, ::2])


CLEANUP = {"max_hole_area": 400, "max_sprinkle_area": 400, "keep_largest_part": True}


@pytest.mark.slow
def test_the_segmenter_cleans_every_mask_it_returns(raw_segmenter, photo):
    cleaning = Segmenter.from_model(raw_segmenter.model, raw_segmenter.processor, **CLEANUP)
    boxes = np.array([[10, 10, 200, 240], [100, 20, 250, 160], [0, 0, 256, 256]], np.float32)
    detections = [_boxes(boxes)]
    raw = raw_segmenter.segment([photo], detections)[0].mask
    cleaned = cleaning.segment([photo], detections)[0].mask
    assert not np.array_equal(raw, cleaned)  # the tiny model's random masks had something to clean
    assert np.array_equal(cleaned, MaskCleanup(**CLEANUP).apply(raw))
    state = raw_segmenter.set_image(photo)
    clicked = cleaning.predict(state, points=[[60, 60]], labels=[1])
    unclean = raw_segmenter.predict(state, points=[[60, 60]], labels=[1]).mask
    assert np.array_equal(clicked.mask, MaskCleanup(**CLEANUP).apply(unclean))
    assert np.array_equal(clicked.xyxy[0], _mask_box(clicked.mask[0]))  # a clicked mask's box is the cleaned mask's


def _boxes(xyxy):
    return sv.Detections(xyxy=xyxy, confidence=np.ones(len(xyxy), np.float32), class_id=np.zeros(len(xyxy), int))


def _mask_box(mask):
    return sv.mask_to_xyxy(mask[None]).astype(np.float32)[0]


@pytest.mark.slow
def test_settings_name_the_clean_up_only_when_it_is_on(raw_segmenter):
    assert "mask_cleanup" not in raw_segmenter.settings()  # datasets labeled before clean-up existed still resume
    cleaning = Segmenter.from_model(raw_segmenter.model, raw_segmenter.processor, max_sprinkle_area=50)
    assert cleaning.settings()["mask_cleanup"] == {
        "max_hole_area": 0,
        "max_sprinkle_area": 50,
        "keep_largest_part": False,
    }


@pytest.mark.slow
def test_a_spec_with_clean_up_says_what_the_built_pipeline_will_be(florence_dir, sam_dir, ontology):
    spec = PipelineSpec(
        ontology.to_dict(), florence=str(florence_dir), sam=str(sam_dir), device="cpu", max_new_tokens=64, **CLEANUP
    )
    built = spec.build()
    assert built.settings() == spec.settings() and built.settings()["segmenter"]["mask_cleanup"] == CLEANUP
    assert built.segmenter.cleanup == MaskCleanup(**CLEANUP)


def test_clean_up_options_with_a_built_segmenter_are_refused():
    class Boxes:
        def detect(self, images):
            return []

    with pytest.raises(ValueError, match="give them to it: Segmenter"):
        GroundedSAM2(CaptionOntology({"a dog": "dog"}), detector=Boxes(), segmenter=object(), max_hole_area=10)

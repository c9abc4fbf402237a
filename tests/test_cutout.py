"""Cut-outs (an object on a transparent background), from Python and from `grounded-sam predict --cutout`, and
images decoded from bytes (the app's uploads)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from grounded_sam.annotate import cutout
from grounded_sam.apps.predict_files import predict_files
from grounded_sam.detections import rle_to_mask
from grounded_sam.errors import InvalidImageError, UserInputError
from grounded_sam.images import load_image, load_image_bytes


def test_cutout_is_the_object_on_transparent_pixels_cropped_to_its_mask(rng):
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:35] = True
    mask[15, 40] = True  # a speck: the crop spans it too
    piece = cutout(image, mask)
    assert piece.shape == (10, 11, 4) and piece.dtype == np.uint8
    np.testing.assert_array_equal(piece[..., :3], image[10:20, 30:41])
    np.testing.assert_array_equal(piece[..., 3] == 255, mask[10:20, 30:41])
    assert set(np.unique(piece[..., 3])) == {0, 255}


@pytest.mark.parametrize(
    ("mask", "message"), [(np.zeros((40, 60), bool), "empty"), (np.ones((20, 60), bool), "like the image")]
)
def test_cutout_refuses_an_empty_or_misshaped_mask(mask, message):
    with pytest.raises(UserInputError, match=message):
        cutout(np.zeros((40, 60, 3), np.uint8), mask)


@pytest.mark.slow
def test_predict_writes_one_cutout_per_detection(model, two_photos_and_a_broken_file, tmp_path):
    source = two_photos_and_a_broken_file / "cat.png"
    summary = predict_files(model, source, tmp_path / "out", progress=False, workers=0, cutouts=True)
    assert summary["written"] == 1
    result = json.loads((tmp_path / "out" / "cat.json").read_text())
    image = load_image(source)
    expected = [i for i, row in enumerate(result["detections"]) if row["area"] > 0]
    assert expected  # the scripted model finds dogs and persons everywhere
    written = sorted((tmp_path / "out" / "cutouts").glob("*.png"))
    assert [path.name for path in written] == sorted(f"cat_{i}.png" for i in expected)
    for index in expected:
        piece = np.asarray(Image.open(tmp_path / "out" / "cutouts" / f"cat_{index}.png"))
        np.testing.assert_array_equal(piece, cutout(image, rle_to_mask(result["detections"][index]["mask"])))
    manifest = json.loads((tmp_path / "out" / ".grounded-sam" / "predict.json").read_text())["files"]
    assert {f"cutouts/cat_{i}.png" for i in expected} <= set(manifest) and "cutouts" in manifest


def test_predict_refuses_a_cutouts_folder_it_did_not_make(two_photos_and_a_broken_file, tmp_path):
    (tmp_path / "out" / "cutouts").mkdir(parents=True)
    with pytest.raises(UserInputError, match="cutouts"):
        predict_files(None, two_photos_and_a_broken_file / "cat.png", tmp_path / "out", cutouts=True)


def test_image_bytes_decode_like_files_with_their_checks(tmp_path):
    picture = Image.fromarray(np.arange(12 * 20 * 3, dtype=np.uint8).reshape(12, 20, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    (tmp_path / "rotated.jpg").write_bytes(buffer.getvalue())
    decoded = load_image_bytes(buffer.getvalue(), "rotated.jpg")
    np.testing.assert_array_equal(decoded, load_image(tmp_path / "rotated.jpg"))
    assert decoded.shape == (20, 12, 3)
    with pytest.raises(InvalidImageError, match="rotated.jpg.*over the pixel budget"):
        load_image_bytes(buffer.getvalue(), "rotated.jpg", max_pixels=100)
    with pytest.raises(InvalidImageError, match="Cannot read image notes.txt"):
        load_image_bytes(b"just text", "notes.txt")

import numpy as np
import pytest
from PIL import Image

from grounded_sam import InvalidImageError, load_image


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def test_path_str_pathlike_pil_and_array_agree(tmp_path, rgb):
    path = _save(Image.fromarray(rgb), tmp_path / "image.png")
    for source in (path, str(path), Image.fromarray(rgb), rgb):
        image = load_image(source)
        assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
        np.testing.assert_array_equal(image, rgb)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "LA", "RGBA", "I;16", "I", "F"])
def test_pil_modes_become_rgb(mode, tmp_path, rgb):
    image = Image.fromarray(rgb).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        image = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    elif mode in ("I", "F"):
        image = Image.fromarray(np.arange(600, dtype=np.float32).reshape(20, 30)).convert(mode)
    loaded = load_image(image)
    assert loaded.shape == (20, 30, 3) and loaded.dtype == np.uint8
    assert loaded.max() > 0


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 600).astype(np.uint16).reshape(20, 30)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    loaded = load_image(path)
    assert loaded[0, 0, 0] == 0 and loaded[-1, -1, 0] == 255
    assert 100 < loaded[10, 15, 0] < 160  # mid-range stays mid-grey instead of saturating


def test_transparent_pixels_are_put_on_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2, :, :] = [255, 0, 0, 255]  # opaque red top half, transparent black bottom half
    loaded = load_image(rgba)
    assert (loaded[0, 0] == [255, 0, 0]).all() and (loaded[3, 3] == [255, 255, 255]).all()


def test_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(Image.fromarray(rgb), tmp_path / "rotated.jpg", exif=exif)
    assert load_image(path).shape == (30, 20, 3)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_gray_arrays_become_rgb(shape):
    loaded = load_image(np.full(shape, 7, dtype=np.uint8))
    assert loaded.shape == (20, 30, 3) and (loaded == 7).all()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((20, 30, 3), dtype=np.float32), "uint8"),
        (np.zeros((3, 20, 30), dtype=np.uint8), "channels first"),
        (np.zeros((2, 20, 30, 3), dtype=np.uint8), "shape"),
        (np.zeros((20,), dtype=np.uint8), "shape"),
        (np.zeros((0, 30, 3), dtype=np.uint8), "no pixels"),
    ],
)
def test_bad_arrays_raise(array, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(array)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize(
    "name, content",
    [("notes.jpg", b"this is not an image"), ("empty.png", b""), ("truncated.png", None)],
)
def test_unreadable_files_raise_invalid_image(tmp_path, rgb, name, content):
    path = tmp_path / name
    if content is None:
        _save(Image.fromarray(rgb), path)
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidImageError, match=name):
        load_image(path)


def test_directory_and_unsupported_types_raise(tmp_path):
    with pytest.raises(InvalidImageError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(InvalidImageError, match="Unsupported image input"):
        load_image(12)


def test_sixteen_bit_maps_the_top_of_the_range_by_257():
    # 65535 -> 255 needs a division by 257 (= 65535 / 255); dividing by 256 gives 51400 -> 201 and 65535 -> 256
    loaded = load_image(Image.fromarray(np.array([[0, 257, 51400, 65535]], dtype=np.uint16)))
    assert loaded[0, :, 0].tolist() == [0, 1, 200, 255]


def test_sixteen_bit_frames_share_one_scale():
    dim = Image.fromarray(np.array([[0, 4095]], dtype=np.uint16))
    bright = Image.fromarray(np.array([[0, 4095, 65535]], dtype=np.uint16))
    assert load_image(dim)[0, 1, 0] == load_image(bright)[0, 1, 0] == 16


def test_float_image_with_infinities_keeps_its_range():
    values = np.array([[0.0, 0.5, 1.0, np.inf, np.nan]], dtype=np.float32)
    assert load_image(Image.fromarray(values))[0, :3, 0].tolist() == [0, 128, 255]


def test_premultiplied_and_colour_key_transparency():
    la = Image.new("La", (2, 2))
    assert load_image(la).shape == (2, 2, 3)
    rgb = Image.new("RGB", (2, 1), (10, 20, 30))
    rgb.putpixel((1, 0), (0, 0, 0))
    rgb.info["transparency"] = (0, 0, 0)
    assert load_image(rgb).tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_exif_rotation_moves_pixels(tmp_path):
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:5, :5] = 255  # white top-left corner
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees to display
    path = _save(Image.fromarray(pixels), tmp_path / "upside_down.png", exif=exif)
    loaded = load_image(path)
    assert loaded[-1, -1].min() == 255 and loaded[0, 0].max() == 0

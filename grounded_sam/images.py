"""Turning the image inputs users have (paths, PIL images, arrays) into RGB uint8 arrays."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grounded_sam.errors import InvalidImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

# Labeling and predict skip images larger than this many pixels (README "Auto-label a folder", max_pixels), so that
# memory stays bounded by batch size x budget whatever a folder holds: a 388 KB PNG can decode to 100 megapixels.
DEFAULT_MAX_PIXELS = 50_000_000


def load_image(source: ImageInput, max_pixels: int | None = None) -> np.ndarray:
    """Loads one image as an (H, W, 3) uint8 RGB array.

    Args:
        source: a file path (EXIF orientation applied), a PIL image, or a numpy array that is (H, W, 3) uint8 RGB,
            (H, W) or (H, W, 1) uint8 grayscale, or (H, W, 4) uint8 RGBA. PIL modes other than RGB (grayscale, RGBA,
            palette, CMYK, 16-bit and 32-bit integer or float) are converted; transparent pixels are put on white.
        max_pixels: refuse images with more pixels than this (a file is refused from its header, before it is
            decoded); None accepts any size Pillow accepts.

    Raises:
        FileNotFoundError: the path does not exist.
        InvalidImageError: the input is not a readable image, is over ``max_pixels``, or the array has the wrong
            shape or dtype.
    """
    if isinstance(source, (str, os.PathLike)):
        image = _load_path(Path(source), max_pixels)
    elif isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, "image")
        image = pil_to_rgb_array(source)
    elif isinstance(source, np.ndarray):
        image = _check_array(source)
        _check_size(image.shape[1::-1], max_pixels, "image array")
    else:
        raise InvalidImageError(
            f"Unsupported image input of type {type(source).__name__}: pass a file path, a PIL.Image or an "
            "(H, W, 3) uint8 RGB numpy array"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"Image has no pixels: size {image.shape[1]}x{image.shape[0]}")
    return image


def _check_size(size: tuple[int, int], max_pixels: int | None, what) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise InvalidImageError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the pixel budget of "
            f"{max_pixels / 1e6:.1f} megapixels; raise max_pixels=... or downscale the image"
        )


def _load_path(path: Path, max_pixels: int | None = None) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"Image file not found: {path}")
    if not path.is_file():
        raise InvalidImageError(f"Not an image file: {path} is a directory or special file")
    if path.stat().st_size == 0:
        raise InvalidImageError(f"Cannot read image {path}: the file is empty (0 bytes)")
    return _decode(path, str(path), max_pixels)


def load_image_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Decodes an encoded image held in memory (an upload) as :func:`load_image` decodes a file: EXIF orientation
    applied, ``max_pixels`` checked from the header before decoding. ``name`` names it in error messages.

    Raises:
        InvalidImageError: the bytes are not a readable image, or it is over ``max_pixels``.
    """
    if not data:
        raise InvalidImageError(f"Cannot read image {name}: it is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, name: str, max_pixels: int | None) -> np.ndarray:
    try:
        with Image.open(source) as image:
            _check_size(image.size, max_pixels, f"Image {name}")  # from the header: nothing decoded yet
            image.load()
            image = ImageOps.exif_transpose(image)
            return pil_to_rgb_array(image)
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # Pillow raises OSError for truncated files and SyntaxError/ValueError for some corrupt headers.
        raise InvalidImageError(f"Cannot read image {name}: {error}") from None
    except Image.DecompressionBombError as error:
        raise InvalidImageError(
            f"Cannot read image {name}: {error} Raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
        ) from None


def pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Converts a PIL image of any common mode to an (H, W, 3) uint8 RGB array."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _high_depth_to_rgb(np.asarray(image), image.mode)
    if image.mode == "La":
        image = image.convert("LA")
    if "transparency" in image.info and image.mode in ("P", "L", "RGB"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as error:
            raise InvalidImageError(f"Cannot convert image mode {image.mode!r} to RGB: {error}") from None
    return np.asarray(image, dtype=np.uint8).copy()


def _high_depth_to_rgb(values: np.ndarray, mode: str) -> np.ndarray:
    # Pillow's own convert("RGB") clips 16-bit values at 255 (a white image), so scale instead: 16-bit data by its
    # full range (so frames of one camera keep one brightness scale), other data by its own finite min and max.
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    sixteen_bit = mode.startswith("I;16") or (
        mode == "I" and finite.size and 0 <= finite.min() <= finite.max() <= 65535
    )
    if sixteen_bit:
        scaled = values / 257.0
    elif finite.size and finite.max() > finite.min():
        scaled = (values - finite.min()) / (finite.max() - finite.min()) * 255.0
    else:
        scaled = np.zeros_like(values)
    gray = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255).round().astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _check_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InvalidImageError(
            f"Image arrays must be uint8 with values 0-255, got dtype {array.dtype}; "
            "for floats in [0, 1] pass (array * 255).round().astype(np.uint8)"
        )
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        return pil_to_rgb_array(Image.fromarray(array))
    hint = " (channels first? use array.transpose(1, 2, 0))" if array.ndim == 3 and array.shape[0] in (1, 3, 4) else ""
    raise InvalidImageError(
        f"Image arrays must have shape (H, W, 3) RGB, (H, W) or (H, W, 1) gray, or (H, W, 4) RGBA; "
        f"got {array.shape}{hint}"
    )

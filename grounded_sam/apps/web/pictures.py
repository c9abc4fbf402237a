"""Pictures the app sends: each mask as a small 1-bit PNG for the page's overlay, and the downloads (annotated image,
mask, cut-out). Pure apart from encoding bytes in memory."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.annotate import annotate, cutout
from grounded_sam.apps.predict_files import png_bytes
from grounded_sam.errors import InvalidImageError
from grounded_sam.images import load_image_bytes

from .state import AppError

PREVIEW_SIDE = 2048  # masks are sent at most this long a side: the page stretches them over the image


def class_color(index: int) -> tuple[int, int, int]:
    """The colour supervision's annotators give class ``index`` (ColorLookup.CLASS), so overlay and download agree."""
    color = sv.ColorPalette.DEFAULT.by_idx(index)
    return color.r, color.g, color.b


def color_hex(index: int) -> str:
    red, green, blue = class_color(index)
    return f"#{red:02x}{green:02x}{blue:02x}"


def mask_data_url(mask: np.ndarray, color: tuple[int, int, int]) -> str:
    """(H, W) bool -> a 2-colour palette PNG (transparent, colour) as a data URL, at the image size or shrunk to
    ``PREVIEW_SIDE`` a side (the page maps clicks with the image's own size, so a shrunk overlay is fine).

    1 bit per pixel: one object's mask is a few KB, where re-encoding the whole overlaid photo on each event (what
    Gradio's image output does) is megabytes; measured in the research notes behind this app (0.08 s against 0.12 s
    per click at 1024x768, 0.4 s against 1.0 s at 12 MP, model time included).
    """
    pixels = mask.astype(np.uint8)
    scale = PREVIEW_SIDE / max(mask.shape)
    if scale < 1:
        size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_NEAREST)
    picture = Image.fromarray(pixels, mode="L")
    picture.putpalette([0, 0, 0, *color])  # an L image with a palette becomes a P image: 0 -> index 0, 1 -> index 1
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", bits=1, transparency=0)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def annotated_png(image: np.ndarray, detections: sv.Detections) -> bytes:
    """The image with masks, boxes and "class 0.87" labels, as ``grounded-sam predict`` draws them."""
    return png_bytes(annotate(image, detections))


def mask_png(mask: np.ndarray) -> bytes:
    """(H, W) bool -> 8-bit gray PNG, 255 inside the object (what image editors take as a mask)."""
    return png_bytes(mask.astype(np.uint8) * 255)


def cutout_png(image: np.ndarray, mask: np.ndarray) -> bytes:
    """The object on a transparent background, cropped to its mask (RGBA PNG), as ``predict --cutout`` writes it."""
    if not mask.any():
        raise AppError("This detection's mask is empty: there is nothing to cut out")
    return png_bytes(cutout(image, mask))


def decode_upload(data: bytes, name: str, max_pixels: int | None) -> np.ndarray:
    """Upload bytes -> (H, W, 3) uint8 RGB (EXIF orientation applied); an image over ``max_pixels`` is refused from
    its header, before its pixels are decoded (413), anything unreadable with 400."""
    try:
        return load_image_bytes(data, name, max_pixels)
    except InvalidImageError as error:
        raise AppError(str(error), 413 if "pixel budget" in str(error) else 400) from None

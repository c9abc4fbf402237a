"""Pure functions that turn Florence-2's generated tokens into boxes with phrases and confidences.

transformers' ``Florence2Processor.post_process_generation`` parses the decoded *text*: it drops phrases it bans or
cannot parse, so its list of boxes cannot be lined up with the generated tokens, and it truncates coordinates to
integers. Confidence needs each box's own ``<loc_*>`` tokens, so these functions walk the token sequence instead and
keep every box tied to the positions of the tokens that produced it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LOCATION_BINS = 1000
_LOC = re.compile(r"<loc_(\d+)>")
_MARKUP = re.compile(r"(<[^<>\s]+>)")


@dataclass(frozen=True)
class GroundedBox:
    """One box as Florence-2 wrote it.

    Attributes:
        phrase: the text in front of the box's location tokens (may be empty).
        bins: (x1, y1, x2, y2) in Florence-2's 0-999 location bins.
        confidence: exp(mean log-probability) of the box's four location tokens; NaN when no scores were given.
        token_positions: indices of the four location tokens in the parsed sequence.
    """

    phrase: str
    bins: tuple[int, int, int, int]
    confidence: float
    token_positions: tuple[int, ...]


def split_markup(text: str) -> list[str]:
    """Splits decoded text into markup tokens (``<s>``, ``<loc_12>``...) and the text between them.

    Used for canned strings; the detector passes the model's own tokens to :func:`parse_grounded_boxes`.
    """
    return [piece for piece in _MARKUP.split(text) if piece]


def parse_grounded_boxes(pieces: Sequence[str], log_probs: Sequence[float] | None = None) -> list[GroundedBox]:
    """Finds every ``phrase<loc_x1><loc_y1><loc_x2><loc_y2>...`` group in a generated token sequence.

    A phrase may be followed by several boxes. ``<poly>...</poly>`` spans give the box around their points.
    Incomplete location groups (fewer than four tokens) are dropped.

    Args:
        pieces: the generated tokens as strings: markup tokens whole (``<loc_12>``, ``</s>``), text tokens decoded.
        log_probs: the log-probability of each piece as generated (same length), or None.
    """
    if log_probs is not None and len(log_probs) != len(pieces):
        raise ValueError(f"pieces and log_probs must have the same length, got {len(pieces)} and {len(log_probs)}")
    boxes: list[GroundedBox] = []
    phrase_parts: list[str] = []
    locations: list[tuple[int, int]] = []  # (bin, position)
    in_polygon = after_box = False
    for position, piece in enumerate(pieces):
        loc = _LOC.fullmatch(piece)
        if loc:
            locations.append((int(loc.group(1)), position))
            if not in_polygon and len(locations) == 4:
                boxes.append(_box(phrase_parts, locations, log_probs))
                locations, after_box = [], True
        elif piece == "<poly>":
            in_polygon, locations = True, []
        elif piece == "</poly>":
            if len(locations) >= 4:
                boxes.append(_box(phrase_parts, locations, log_probs, polygon=True))
                after_box = True
            in_polygon, locations = False, []
        elif not _MARKUP.fullmatch(piece) and not (after_box and not piece.strip()):
            if after_box or locations:  # text after a box, or after a broken location group, starts a new phrase
                phrase_parts, locations, after_box = [], [], False
            phrase_parts.append(piece)
    return boxes


def _box(phrase_parts, locations, log_probs, polygon=False) -> GroundedBox:
    values = [value for value, _ in locations]
    positions = tuple(position for _, position in locations)
    if polygon:
        xs, ys = values[0::2], values[1::2]
        bins = (min(xs), min(ys), max(xs), max(ys))
    else:
        bins = tuple(values)
    confidence = math.nan if log_probs is None else math.exp(sum(log_probs[p] for p in positions) / len(positions))
    return GroundedBox("".join(phrase_parts).strip(), bins, confidence, positions)


def bins_to_xyxy(bins: np.ndarray, width: int, height: int) -> np.ndarray:
    """Converts (n, 4) location bins to float pixel xyxy at the centre of each bin, clipped to the image."""
    scale = np.array([width, height, width, height], dtype=np.float64) / LOCATION_BINS
    xyxy = (np.asarray(bins, dtype=np.float64).reshape(-1, 4) + 0.5) * scale
    return np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)

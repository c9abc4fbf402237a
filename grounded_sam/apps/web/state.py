"""Per-tab state: each browser tab gets a session (an unguessable id it keeps in memory, never in a cookie), holding
the image it works on, that image's SAM 2 embedding and its detections. No I/O here.

Masks are kept as COCO RLE (a few KB each) rather than (H, W) bool arrays: twenty objects of a 12-megapixel photo
would hold 240 MB per tab otherwise.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from grounded_sam.detections import CLASS_NAME, MASK_SCORE, PROMPT, empty_detections, mask_to_rle, rle_to_mask


class AppError(ValueError):
    """A request the app refuses; ``status`` is the HTTP status, the message says what to do."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Detection:
    """One object of the image being edited.

    box: the prompt box, x1 y1 x2 y2 pixels (the detector's, a drawn one, or the record's box for dataset entries);
    None for an object added by a click or found by segment-everything. rle: its mask, COCO RLE at the image size.
    points, labels: the clicks so far (x, y pixels; 1 part of the object, 0 not). source: what found it (the prompt,
    "box", "click", "everything" or "dataset").
    """

    id: int
    class_name: str
    confidence: float | None
    box: list[float] | None
    rle: dict
    source: str
    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    mask_score: float | None = None
    edited: bool = False

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool."""
        return rle_to_mask(self.rle)

    def set_mask(self, mask: np.ndarray, score: float | None) -> None:
        self.rle = mask_to_rle(mask)
        self.mask_score = None if score is None else round(float(score), 4)

    def mask_box(self, mask: np.ndarray | None = None) -> list[float] | None:
        """The box of the mask (``mask``, when already decoded), x1 y1 x2 y2 inclusive pixels; None when empty."""
        mask = self.mask if mask is None else mask
        if not mask.any():
            return None
        return [float(value) for value in sv.mask_to_xyxy(mask[None])[0]]


@dataclass
class Workspace:
    """The image a tab works on (an upload, or a dataset image) and its detections, with stable ids."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    name: str
    detections: dict[int, Detection] = field(default_factory=dict)
    dataset_key: str | None = None  # the image's name in the dataset, for dataset images
    known_classes: list[str] = field(default_factory=list)  # the dataset's classes, offered first
    embedding: object | None = None  # grounded_sam.ImageState, computed once, then reused by every click
    embedded_by: object | None = None  # the AppModels whose SAM 2 computed it
    next_id: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) pixels."""
        return self.image.shape[0], self.image.shape[1]

    def add(self, **fields) -> Detection:
        detection = Detection(id=self.next_id, **fields)
        self.detections[detection.id] = detection
        self.next_id += 1
        return detection

    def get(self, detection_id) -> Detection:
        try:
            return self.detections[int(detection_id)]
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
            raise AppError(f"No detection {detection_id!r} in this image; reload the detection list", 404) from None

    def chosen(self, ids=None) -> list[Detection]:
        """The detections with these ids (all by default), in id order."""
        if ids is None:
            return [self.detections[key] for key in sorted(self.detections)]
        if not isinstance(ids, list):
            raise AppError("ids must be a list of detection ids")
        found = {self.get(key).id for key in ids}
        return [self.detections[key] for key in sorted(found)]

    def class_names(self) -> list[str]:
        """The dataset's classes first, then any other class of a detection, first-seen order."""
        return list(dict.fromkeys([*self.known_classes, *(d.class_name for d in self.chosen())]))

    def to_detections(self, ids=None) -> sv.Detections:
        """The chosen detections as ``sv.Detections``: xyxy from :func:`detection_box`; mask (n, H, W) bool;
        confidence (1.0 for objects a person added); class_id into :meth:`class_names`; data class_name, prompt (what
        found it) and, when every one has it, mask_score."""
        chosen = self.chosen(ids)
        if not chosen:
            return empty_detections(*self.size)
        names = self.class_names()
        masks = np.stack([detection.mask for detection in chosen])
        boxes = [detection_box(detection, mask) for detection, mask in zip(chosen, masks)]
        data = {
            CLASS_NAME: np.array([d.class_name for d in chosen], dtype=str),
            PROMPT: np.array([d.source for d in chosen], dtype=str),
        }
        if all(d.mask_score is not None for d in chosen):  # records of other segmenters may have none
            data[MASK_SCORE] = np.array([d.mask_score for d in chosen], dtype=np.float32)
        return sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            mask=masks,
            confidence=np.array([1.0 if d.confidence is None else d.confidence for d in chosen], np.float32),
            class_id=np.array([names.index(d.class_name) for d in chosen], dtype=int),
            data=data,
        )


def detection_box(detection: Detection, mask: np.ndarray) -> list[float]:
    """The box a detection is saved with: its prompt box while its mask is SAM's answer to that box; the mask's box
    once clicks have redrawn the mask (or when there is no prompt box)."""
    if detection.box is not None and not detection.points:
        return detection.box
    if not mask.any():
        return [0.0, 0.0, 0.0, 0.0]
    return [float(value) for value in sv.mask_to_xyxy(mask[None])[0]]


class Session:
    def __init__(self, model_name: str):
        self.lock = threading.Lock()  # one request of a tab at a time: clicks are applied in order
        self.workspace: Workspace | None = None
        self.model_name = model_name
        self.touched = time.monotonic()

    def require(self) -> Workspace:
        if self.workspace is None:
            raise AppError("No image yet: upload an image or open one from the dataset first", 409)
        return self.workspace


class SessionStore:
    """Sessions by id; the least recently used one is dropped beyond ``max_sessions``, and any after ``ttl_s`` idle
    seconds (each holds an image, its SAM 2 embedding, ~17 MB at SAM's 1024 px input, and its masks as RLE)."""

    def __init__(self, max_sessions: int = 16, ttl_s: float = 3600.0):
        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, model_name: str) -> str:
        session_id = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._sessions[session_id] = Session(model_name)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id

    def get(self, session_id: str | None) -> Session:
        with self._lock:
            self._expire()
            session = self._sessions.get(session_id or "")
            if session is None:
                raise AppError("Unknown or expired session: reload the page", 401)
            self._sessions.move_to_end(session_id)
            session.touched = time.monotonic()
            return session

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [key for key, session in self._sessions.items() if now - session.touched > self.ttl_s]:
            del self._sessions[key]

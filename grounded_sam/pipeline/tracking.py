"""Text tracking: a detector finds the ontology's prompts every few frames, SAM 2's video model tracks what it found
through every frame with its memory, and each object keeps one id for as long as it is tracked.

On a detection frame every detection enters SAM 2's session as a candidate, prompted by its box, in the same model
call that tracks the objects already there (prompted and tracked objects' memories are encoded apart, as Meta does,
so the candidates change nothing for the others). A candidate whose mask overlaps no tracked object's mask on that
frame (IoU below ``iou_threshold``), nor a candidate accepted before it (most confident first), becomes a new
object; the others leave the session again. An object absent (SAM 2's object score <= 0, or an empty mask) for
``patience`` frames in a row ends and leaves the session. Ids count up from 1 and are never reused.

Objects are never prompted again once they are tracked: each prompt is a conditioning frame SAM 2 keeps and attends
to on every later frame, so re-prompting would make memory and time grow with the video.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import supervision as sv

from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.errors import UserInputError
from grounded_sam.segmentation.video import OBJECT_SCORE, confidence_of, empty_tracked, present_objects
from grounded_sam.segmentation.video_session import ObjectPrompt, TrackedFrame
from grounded_sam.video_frames import VideoFrames, open_video

logger = logging.getLogger(__name__)


@dataclass
class Track:
    """One tracked object: its public ``id``, what found it (``class_id``, ``class_name``, ``prompt``), the frame it
    started on, and how many frames in a row it has been absent."""

    id: int
    class_id: int
    class_name: str
    prompt: str
    first_frame: int
    absent: int = 0


@dataclass(frozen=True)
class TrackingOptions:
    """How text tracking runs (see :meth:`grounded_sam.GroundedSAM2.track`)."""

    detect_every: int = 10
    iou_threshold: float = 0.5
    patience: int = 30
    offload: bool = False

    def __post_init__(self):
        if not isinstance(self.detect_every, int) or self.detect_every < 1:
            raise UserInputError(f"detect_every must be an integer >= 1 (frames), got {self.detect_every!r}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise UserInputError(f"iou_threshold must be in (0, 1], got {self.iou_threshold!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise UserInputError(f"patience must be an integer >= 1 (frames), got {self.patience!r}")


def track_by_text(
    detect: Callable[[Sequence[np.ndarray]], list[sv.Detections]],
    video_segmenter,
    video,
    options: TrackingOptions,
    max_pixels: int | None = None,
) -> Iterator[tuple[int, sv.Detections]]:
    """Yields ``(frame_index, sv.Detections)`` for every decodable frame of ``video``, in order.

    Args:
        detect: images -> one box Detections per image (class_id, data["class_name"], data["prompt"]), filtered.
        video_segmenter: a :class:`~grounded_sam.segmentation.video.VideoSegmenter` (or anything whose
            ``tracker(total_frames, offload)`` gives ``add_prompts`` / ``step`` / ``remove_objects``).
        video: as for :meth:`VideoSegmenter.track`.
    """
    frames = video if isinstance(video, VideoFrames) else open_video(video, max_pixels)
    tracker = video_segmenter.tracker(frames.info.count, options.offload)
    tracks: dict[int, Track] = {}  # by session id (candidates get one too, so session ids are not public ids)
    counters = {"session": 0, "public": 0}
    next_detection = 0
    for index, frame in frames:
        candidates = {}
        if index >= next_detection:
            next_detection = index + options.detect_every
            candidates = _enter_candidates(tracker, detect([frame])[0], index, frame.shape[:2], counters)
        result = tracker.step(index, frame)
        present = _present(result)
        if candidates:
            _settle(tracker, result, present, candidates, tracks, counters, options.iou_threshold, index)
        _age(tracker, tracks, present, options.patience)
        yield index, _detections(result, present, tracks, frame.shape[:2])


def _enter_candidates(tracker, found: sv.Detections, frame_index: int, size, counters) -> dict[int, tuple]:
    """Prompts every detection as a candidate object; returns {session id: (confidence, class_id, name, prompt)}."""
    if len(found) == 0:
        return {}
    confidence = found.confidence if found.confidence is not None else np.ones(len(found), np.float32)
    height, width = size
    candidates, prompts = {}, {}
    for row in range(len(found)):
        box = np.clip(found.xyxy[row], 0, [width, height, width, height]).astype(np.float32)
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        counters["session"] += 1
        session_id = counters["session"]
        prompts[session_id] = ObjectPrompt(box=box)
        class_id = int(found.class_id[row]) if found.class_id is not None else 0
        candidates[session_id] = (
            float(confidence[row]),
            class_id,
            _text(found, CLASS_NAME, row, str(class_id)),
            _text(found, PROMPT, row, ""),
        )
    if prompts:
        tracker.add_prompts(frame_index, prompts, size)
    return candidates


def _text(found: sv.Detections, key: str, row: int, default: str) -> str:
    values = found.data.get(key)
    return str(values[row]) if values is not None else default


def _present(result: TrackedFrame) -> dict[int, int]:
    """{session id: row of ``result``} for the objects present on the frame (score > 0 and a non-empty mask)."""
    return {obj_id: row for row, (obj_id, shown) in enumerate(zip(result.object_ids, present_objects(result))) if shown}


def _settle(tracker, result, present, candidates, tracks, counters, threshold: float, frame_index: int) -> None:
    """Keeps the candidates that overlap nothing tracked (as new tracks), removes the others from the session."""
    kept = [obj_id for obj_id in tracks if obj_id in present]
    rejected = []
    for session_id in sorted(candidates, key=lambda obj_id: -candidates[obj_id][0]):
        row = present.get(session_id)
        if row is None or _overlaps(result, row, [present[obj_id] for obj_id in kept], threshold):
            rejected.append(session_id)
            continue
        counters["public"] += 1
        _, class_id, class_name, prompt = candidates[session_id]
        tracks[session_id] = Track(counters["public"], class_id, class_name, prompt, frame_index)
        kept.append(session_id)
        logger.debug("frame %d: new object %d (%s)", frame_index, counters["public"], class_name)
    if rejected:
        tracker.remove_objects(rejected)
        for session_id in rejected:
            present.pop(session_id, None)


def _overlaps(result: TrackedFrame, row: int, others: list[int], threshold: float) -> bool:
    """Whether the mask of ``row`` has mask IoU >= ``threshold`` with any of ``others`` (supervision's IoU)."""
    if not others:
        return False
    masks = result.mask_logits > 0
    return bool((sv.mask_iou_batch(masks[[row]], masks[others]) >= threshold).any())


def _age(tracker, tracks: dict[int, Track], present: dict[int, int], patience: int) -> None:
    """Counts absent frames; ends the tracks absent for ``patience`` frames in a row."""
    ended = []
    for session_id, track in tracks.items():
        track.absent = 0 if session_id in present else track.absent + 1
        if track.absent >= patience:
            ended.append(session_id)
    if ended:
        tracker.remove_objects(ended)
        for session_id in ended:
            logger.debug("object %d ended after %d absent frames", tracks.pop(session_id).id, patience)


def _detections(result: TrackedFrame, present: dict[int, int], tracks: dict[int, Track], size) -> sv.Detections:
    """The tracked objects present on the frame: mask, box of the mask, SAM 2's score as confidence, the id as
    tracker_id, and the class, class name and prompt of the detection that started the object."""
    rows = [(present[obj_id], tracks[obj_id]) for obj_id in tracks if obj_id in present]
    if not rows:
        empty = empty_tracked(*size)
        empty.data[PROMPT] = np.array([], dtype=str)
        return empty
    indices = [row for row, _ in rows]
    masks = result.mask_logits[indices] > 0
    scores = result.object_score_logits[indices].astype(np.float32)
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32),
        mask=masks,
        confidence=confidence_of(scores),
        class_id=np.array([track.class_id for _, track in rows], dtype=int),
        tracker_id=np.array([track.id for _, track in rows], dtype=int),
        data={
            CLASS_NAME: np.array([track.class_name for _, track in rows]),
            PROMPT: np.array([track.prompt for _, track in rows]),
            OBJECT_SCORE: scores,
        },
    )

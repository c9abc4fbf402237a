"""VideoSegmenter: SAM 2 on videos, the video twin of :class:`~grounded_sam.Segmenter`. Prompts (boxes, clicks,
masks) on any frames give masks tracked through the whole video with SAM 2's memory, one frame at a time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping

import numpy as np
import supervision as sv
import torch

from grounded_sam.detections import empty_detections
from grounded_sam.device import precision_name, resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS
from grounded_sam.models.hub import load_sam2_video, source_identity
from grounded_sam.models.presets import resolve_preset
from grounded_sam.segmentation.prompts import build_prompts
from grounded_sam.segmentation.video_session import ObjectPrompt, SplitMemoryVideoModel, StreamTracker, TrackedFrame
from grounded_sam.video_frames import VideoFrames, open_video

logger = logging.getLogger(__name__)
OBJECT_SCORE = "object_score"  # (n,) float32: SAM 2's object score logit (> 0: present); confidence is its sigmoid


def video_settings(source, autocast_dtype: torch.dtype | None) -> dict:
    """A video segmenter's settings, from a built one or from what it would be built from."""
    return {"type": "sam2_video", "model": source_identity(source), "precision": precision_name(autocast_dtype)}


class VideoSegmenter:
    """SAM 2's video model: prompts on some frames -> every frame's masks, with stable object ids.

    Args:
        sam: SAM 2 hub id, local folder saved from ``Sam2VideoModel`` (as the hub's sam2.1 repos are) or Meta
            checkpoint file (``.pt``, its memory bank included); None takes the preset's.
        preset: preset whose SAM 2 to use when ``sam`` is None (see ``grounded_sam.PRESETS``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"`` (bf16 autocast on CUDA), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        sam_size: size of a Meta checkpoint file; inferred from the file when None.

    ``VideoSegmenter.from_model(model)`` wraps a model from ``grounded_sam.models.load_sam2_video``.
    """

    def __init__(
        self, sam: str | os.PathLike | None = None, preset="default", device="auto", dtype="auto", sam_size=None
    ):
        resolved = resolve_device(device)
        source = sam or resolve_preset(preset).sam
        model = load_sam2_video(source, resolved, size=sam_size, model_class=SplitMemoryVideoModel)
        self._setup(model, resolve_autocast_dtype(dtype, resolved))

    @classmethod
    def from_model(cls, model, autocast_dtype: torch.dtype | None = None) -> VideoSegmenter:
        """Wraps a built ``Sam2VideoModel``. One of transformers' own is turned into a
        :class:`~grounded_sam.segmentation.video_session.SplitMemoryVideoModel` (same weights, Meta's memory
        encoding when objects enter mid-video)."""
        from transformers import Sam2VideoModel

        if not isinstance(model, Sam2VideoModel):
            raise UserInputError(f"VideoSegmenter.from_model takes a Sam2VideoModel, got {type(model).__name__}")
        if not isinstance(model, SplitMemoryVideoModel):
            model.__class__ = SplitMemoryVideoModel  # a subclass adding no state: only a method differs
        segmenter = cls.__new__(cls)
        segmenter._setup(model, autocast_dtype)
        return segmenter

    def _setup(self, model, autocast_dtype) -> None:
        self.model, self.autocast_dtype = model.eval(), autocast_dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def settings(self) -> dict:
        """What its masks depend on: the model and the precision (a dataset stores this)."""
        return video_settings(self.model.config.name_or_path, self.autocast_dtype)

    def image_segmenter(self, multimask_output: bool = False):
        """A :class:`~grounded_sam.Segmenter` for single images on this model's weights (shared, not copied): the
        image part of SAM 2 is the same network, so one model in memory serves images and video."""
        from transformers import Sam2Config, Sam2Model

        from grounded_sam.models.checkpoints import default_sam2_processor
        from grounded_sam.segmentation.segmenter import Segmenter

        video = self.model.config
        config = Sam2Config(
            vision_config=video.vision_config.to_dict(),
            prompt_encoder_config=video.prompt_encoder_config.to_dict(),
            mask_decoder_config=video.mask_decoder_config.to_dict(),
        )
        with torch.device("meta"):  # no weights allocated: they are the video model's, assigned below
            image = Sam2Model(config)
        names = set(image.state_dict())
        shared = {name: tensor for name, tensor in self.model.state_dict(keep_vars=True).items() if name in names}
        image.load_state_dict(shared, strict=True, assign=True)
        image.config.name_or_path = self.model.config.name_or_path
        processor = default_sam2_processor(video.image_size)
        return Segmenter.from_model(image.eval(), processor, self.autocast_dtype, multimask_output)

    def track(
        self,
        video,
        boxes: Mapping[int, Mapping[int, object]] | None = None,
        points: Mapping[int, Mapping[int, object]] | None = None,
        labels: Mapping[int, Mapping[int, object]] | None = None,
        masks: Mapping[int, Mapping[int, object]] | None = None,
        reverse: bool = False,
        offload: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> Iterator[tuple[int, sv.Detections]]:
        """Tracks the prompted objects through ``video``, yielding ``(frame_index, sv.Detections)`` for every frame.

        Args:
            video: a video file (mp4, avi, mov, webm...), a folder of frames, a list or iterator of (H, W, 3) uint8
                RGB arrays, or a :func:`grounded_sam.video_frames.open_video` result. Decoded one frame at a time.
            boxes: {frame index: {object id: [x1, y1, x2, y2]}} in pixels of the frame.
            points: {frame index: {object id: [[x, y], ...]}} clicks, with ``labels`` {frame: {id: [1, 0, ...]}}
                (1 "this is the object", 0 "this is not"); an object may have a box and clicks on one frame.
            masks: {frame index: {object id: (H, W) bool mask}}, alone for that object on that frame.
            reverse: track backwards in time: frames come last to first and objects join at their prompts, the
                mirror of forward tracking (frames after the last prompt are empty). A video file is read backwards
                through a temporary folder of PNG frames (:mod:`grounded_sam.video_frames`).
            offload: keep SAM 2's state (memories, cached features, the frame in work) on the CPU, for long videos on
                a small GPU; the model still runs on its device.
            max_pixels: refuse frames with more pixels than this (None: no limit).

        Returns:
            an iterator of ``(frame_index, detections)`` in tracking order; frames that cannot be decoded are
            skipped (see ``video_frames.open_video(...).skipped``). Each Detections has a row per object present on
            that frame (SAM 2's object score > 0 and a non-empty mask): mask (n, H, W) bool, xyxy (n, 4) float32
            the mask's box, tracker_id (n,) the object id, confidence (n,) float32 sigmoid of the object score and
            data["object_score"] the score itself. A frame without objects gives an empty, well-formed Detections.
        """
        for frame in self.propagate(video, boxes, points, labels, masks, reverse, offload, max_pixels):
            yield frame.frame_index, tracked_detections(frame)

    def propagate(
        self, video, boxes=None, points=None, labels=None, masks=None, reverse=False, offload=False, max_pixels=None
    ) -> Iterator[TrackedFrame]:
        """:meth:`track` with SAM 2's raw outputs: one
        :class:`~grounded_sam.segmentation.video_session.TrackedFrame` per frame, every object of the session
        included (mask logits at the frame's size and object score logits, absent objects too)."""
        frames = video if isinstance(video, VideoFrames) else open_video(video, max_pixels)
        prompts = collect_prompts(boxes, points, labels, masks)
        tracker = self.tracker(frames.info.count, offload)
        if reverse:
            source = frames.backward(keep_until=max(prompts, default=-1))
        else:
            source = iter(frames)
        used = set()
        for index, frame in source:
            if frame is None:  # after the last prompt in a reverse pass: nothing tracked yet
                height, width = frames.info.height, frames.info.width
                yield TrackedFrame(index, [], np.zeros((0, height, width), np.float32), np.zeros(0, np.float32))
                continue
            if index in prompts:
                tracker.add_prompts(index, checked_prompts(prompts[index], frame.shape[:2], index), frame.shape[:2])
                used.add(index)
            yield tracker.step(index, frame, reverse)
        if unused := sorted(set(prompts) - used):
            raise UserInputError(
                f"Prompts on frames {unused} were never used: the video has no such frame (or it could not be "
                "decoded); frame indices start at 0"
            )

    def tracker(self, total_frames: int | None = None, offload: bool = False) -> StreamTracker:
        """A fresh :class:`~grounded_sam.segmentation.video_session.StreamTracker` on this model, for driving the
        frames yourself (``add_prompts``, ``step``, ``remove_objects``), as text tracking does."""
        return StreamTracker(self.model, total_frames, "cpu" if offload else None, self.autocast_dtype)


def tracked_detections(frame: TrackedFrame) -> sv.Detections:
    """The present objects of a :class:`TrackedFrame` as ``sv.Detections`` (see :meth:`VideoSegmenter.track`)."""
    present = present_objects(frame)
    if not present.any():
        return empty_tracked(*frame.mask_logits.shape[1:])
    scores = frame.object_score_logits[present].astype(np.float32)
    masks = frame.mask_logits[present] > 0
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32),
        mask=masks,
        confidence=confidence_of(scores),
        tracker_id=np.asarray(frame.object_ids, dtype=int)[present],
        data={OBJECT_SCORE: scores},
    )


def present_objects(frame: TrackedFrame) -> np.ndarray:
    """(n,) bool: which objects of the frame are present, SAM 2's object score > 0 and a non-empty mask (an absent
    object's mask logits are -1024 everywhere)."""
    return (frame.object_score_logits > 0) & (frame.mask_logits > 0).any(axis=(1, 2))


def confidence_of(object_score_logits: np.ndarray) -> np.ndarray:
    """SAM 2's object score logits as probabilities (sigmoid, float32): 0.5 at the present / absent boundary."""
    return (1.0 / (1.0 + np.exp(-np.asarray(object_score_logits, np.float64)))).astype(np.float32)


def empty_tracked(height: int, width: int) -> sv.Detections:
    """No tracked object on a frame: :func:`grounded_sam.detections.empty_detections` with an empty tracker_id and
    data["object_score"]."""
    empty = empty_detections(height, width)
    empty.tracker_id = np.zeros(0, dtype=int)
    empty.data[OBJECT_SCORE] = np.zeros(0, dtype=np.float32)
    return empty


def collect_prompts(boxes, points, labels, masks) -> dict[int, dict[int, dict]]:
    """{frame: {object id: {"box", "points", "labels", "mask"}}} from :meth:`VideoSegmenter.track`'s arguments,
    checked for what can be checked without the frame (frame numbers, ids, pairing)."""
    if (points is None) != (labels is None):
        raise UserInputError("points and labels go together: labels={frame: {object id: [1, 0, ...]}}")
    collected: dict[int, dict[int, dict]] = {}
    for kind, table in (("box", boxes), ("points", points), ("labels", labels), ("mask", masks)):
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise UserInputError(f"{kind} prompts must be {{frame index: {{object id: ...}}}}, got {type(table)}")
        for frame, objects in table.items():
            if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool) or frame < 0:
                raise UserInputError(f"frame indices must be integers >= 0, got {frame!r} in the {kind} prompts")
            if not isinstance(objects, Mapping):
                raise UserInputError(f"{kind} prompts of frame {frame} must be {{object id: ...}}, got {objects!r}")
            for obj_id, value in objects.items():
                if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool):
                    raise UserInputError(f"object ids must be integers, got {obj_id!r} on frame {frame}")
                collected.setdefault(int(frame), {}).setdefault(int(obj_id), {})[kind] = value
    for frame, objects in collected.items():
        for obj_id, prompt in objects.items():
            if ("points" in prompt) != ("labels" in prompt):
                raise UserInputError(f"object {obj_id} on frame {frame} has points without labels or the reverse")
            if "mask" in prompt and len(prompt) > 1:
                raise UserInputError(f"object {obj_id} on frame {frame}: a mask prompt goes alone (no box, no clicks)")
    return collected


def checked_prompts(objects: dict[int, dict], frame_size: tuple[int, int], frame: int) -> dict[int, ObjectPrompt]:
    """One frame's prompts, checked against its size, as :class:`ObjectPrompt` per object id."""
    checked = {}
    for obj_id, prompt in objects.items():
        try:
            if "mask" in prompt:
                checked[obj_id] = ObjectPrompt(mask=_mask(prompt["mask"], frame_size))
                continue
            batch = build_prompts(
                prompt.get("points"), prompt.get("labels"), prompt.get("box"), None, frame_size, (1, 1)
            )
        except UserInputError as error:
            raise UserInputError(f"object {obj_id} on frame {frame}: {error}") from None
        points = None if batch.points is None else batch.points[0]
        labels = None if batch.labels is None else batch.labels[0]
        box = None if batch.boxes is None else batch.boxes[0]
        checked[obj_id] = ObjectPrompt(box=box, points=points, labels=labels)
    return checked


def _mask(mask, frame_size: tuple[int, int]) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != tuple(frame_size):
        raise UserInputError(f"a mask prompt must be (H, W) = {tuple(frame_size)}, the frame's size; got {array.shape}")
    return array.astype(bool)

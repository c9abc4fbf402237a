"""SAM 2 video tracking on transformers' ``Sam2VideoModel``, one frame at a time, with memory that stays flat.

A frame is preprocessed as Meta's video predictor does (:func:`video_pixels`), added to the session, tracked for
every object at once, and dropped. After every frame the session releases what SAM 2 will not read again
(:meth:`StreamingSession.release`). What it does read again (transformers 5.24 ``modeling_sam2_video.py``): every
prompted ("conditioning") frame's memory and object pointer (``_gather_memory_frame_outputs``,
``_get_object_pointers``), the memories of the last ``num_maskmem - 1`` tracked frames and the object pointers of the
last ``max_object_pointers_in_encoder - 1``. So what is held grows with the objects and their prompts, never with the
video's length.

Three places where transformers' video model, used as is, does not track as Meta's ``SAM2VideoPredictor`` does, each
fixed here and pinned by tests/test_video_parity.py:

- preprocessing: Meta resizes the uint8 frame with PIL's bicubic filter, then scales (:func:`video_pixels`);
- the video's length: object-pointer distances are normalised by ``min(num_frames, 16) - 1``, and transformers reads
  ``num_frames`` from the frames its session holds, which shrinks as frames are released (:class:`StreamingSession`);
- memories of a frame where some objects are prompted and others tracked (:class:`SplitMemoryVideoModel`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from grounded_sam.device import autocast

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNKNOWN_LENGTH = 1 << 62  # a stream of unknown length: min(num_frames, 16) is then 16, as for transformers' streams
BOX_LABELS = (2, 3)  # a box is two points labelled top-left and bottom-right, before any click (as Meta does)


def video_pixels(frame: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32, exactly as Meta's SAM2VideoPredictor loads a frame.

    Meta's video loader (sam2/utils/misc.py) resizes the *uint8* image with PIL's default filter (bicubic for RGB),
    divides by 255 in float64, stores float32, then subtracts the ImageNet mean and divides by the std. Its image
    predictor resizes float [0, 1] images instead (``segmentation.core.sam_pixels``): the two paths differ, and
    transformers' video processor (bilinear) differs from both by up to 0.3 in normalised units.
    """
    resized = np.asarray(Image.fromarray(frame).resize((size, size)))
    pixels = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return (pixels - mean) / std


class SplitMemoryVideoModel(Sam2VideoModel):
    """``Sam2VideoModel`` that encodes a frame's memories the way Meta does when some objects are prompted on it
    and others are tracked through it (an object entering a video mid-way).

    transformers encodes every object of a frame in one memory-encoder batch and binarizes *every* mask of the batch
    when any object of it was prompted (``is_mask_from_pts=any(...)``); Meta binarizes only the prompted objects'
    masks and passes the tracked ones through a sigmoid. Measured on random weights: the tracked objects drift from
    the next frame on (14 004 pixels flipped over 8 frames, one object's presence flipped); with the two kinds
    encoded apart they match Meta to 1e-6. This overrides a private method of transformers 5.x, so the parity test
    (the "enter" case) pins it.
    """

    def _batch_encode_memories(
        self,
        inference_session,
        frame_idx,
        objects_needing_memory_encoding,
        high_res_masks_for_memory,
        object_score_logits_for_memory,
        is_mask_from_pts_per_obj,
    ):
        for from_prompt in (True, False):
            chosen = [i for i, kind in enumerate(is_mask_from_pts_per_obj) if kind == from_prompt]
            if chosen:
                super()._batch_encode_memories(
                    inference_session,
                    frame_idx,
                    [objects_needing_memory_encoding[i] for i in chosen],
                    [high_res_masks_for_memory[i] for i in chosen],
                    [object_score_logits_for_memory[i] for i in chosen],
                    [from_prompt] * len(chosen),
                )


class StreamingSession(Sam2VideoInferenceSession):
    """A ``Sam2VideoInferenceSession`` fed one frame at a time that knows the video's length and forgets what SAM 2
    will not read again.

    Args:
        total_frames: the video's frame count when known (files, folders, lists); None for a stream of unknown
            length. SAM 2 normalises object-pointer distances by ``min(num_frames, 16) - 1`` (Meta's
            ``sam2_base.py``); transformers counts the frames its session holds instead, which differs from Meta on
            videos under 16 frames and shrinks as frames are released.
        options: ``Sam2VideoInferenceSession``'s own (devices, dtype).
    """

    def __init__(self, total_frames: int | None = None, **options):
        super().__init__(**options)
        self.total_frames = total_frames

    @property
    def num_frames(self) -> int:
        return self.total_frames if self.total_frames is not None else UNKNOWN_LENGTH

    def release(self, frame_index: int, reverse: bool, keep_memory: int, keep_pointer: int) -> None:
        """Drops what SAM 2 will not read again once ``frame_index`` is tracked, in one direction of time.

        Kept: every prompted frame's memory, object pointer and score; the memories of the ``keep_memory`` tracked
        frames closest behind and the object pointers of the ``keep_pointer`` closest. Dropped: the frame's pixels
        (its features stay in the one-frame cache until the next frame), its prompts, every (1024 x 1024) mask, and
        older memories and pointers.
        """
        self.processed_frames.pop(frame_index, None)
        sign = -1 if reverse else 1
        for obj_idx, outputs in self.output_dict_per_obj.items():
            self.mask_inputs_per_obj[obj_idx].pop(frame_index, None)
            self.point_inputs_per_obj[obj_idx].pop(frame_index, None)
            for output in outputs["cond_frame_outputs"].values():
                output.pop("high_res_masks", None)
                output.pop("pred_masks", None)  # read again only when a prompted frame is visited twice
            tracked = outputs["non_cond_frame_outputs"]
            for frame in list(tracked):
                behind = (frame_index - frame) * sign
                if behind >= keep_pointer or behind < 0:  # behind < 0: ahead, left by a pass the other way
                    del tracked[frame]
                    self.frames_tracked_per_obj[obj_idx].pop(frame, None)
                elif behind >= keep_memory:
                    tracked[frame] = {"object_pointer": tracked[frame]["object_pointer"]}
                else:
                    tracked[frame].pop("high_res_masks", None)
                    tracked[frame].pop("pred_masks", None)

    def remove_objects(self, object_ids: Iterable[int]) -> None:
        """Ends tracks: their state is deleted and the other objects are re-indexed, as Meta's ``remove_object``
        does (transformers' session has none). The other objects' results stay exactly what they would have been."""
        gone = set(object_ids)
        kept = [obj_id for obj_id in self.obj_ids if obj_id not in gone]
        old = {obj_id: self._obj_id_to_idx[obj_id] for obj_id in kept}
        for name in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj"):
            table = getattr(self, name)
            setattr(self, name, {new: table[old[obj_id]] for new, obj_id in enumerate(kept)})
        self._obj_id_to_idx.clear()
        self._obj_idx_to_id.clear()
        for new, obj_id in enumerate(kept):
            self._obj_id_to_idx[obj_id] = new
            self._obj_idx_to_id[new] = obj_id
        self.obj_ids = kept
        self.obj_with_new_inputs = [obj_id for obj_id in self.obj_with_new_inputs if obj_id not in gone]


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt on one frame, in pixels of the frame: ``box`` (4,) x1, y1, x2, y2 and/or ``points``
    (P, 2) x, y with ``labels`` (P,) 1 foreground / 0 background; or ``mask`` (H, W) bool alone."""

    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class TrackedFrame:
    """One tracked frame: ``object_ids`` (n,), ``mask_logits`` (n, H, W) float32 at the frame's size (> 0 is the
    mask; an absent object's logits are all -1024), ``object_score_logits`` (n,) float32 (> 0: present)."""

    frame_index: int
    object_ids: list[int]
    mask_logits: np.ndarray
    object_score_logits: np.ndarray


class StreamTracker:
    """Tracks objects through frames fed one at a time, keeping only what SAM 2 reads again.

    Args:
        model: a :class:`SplitMemoryVideoModel` in eval mode, on its device.
        total_frames: the video's frame count when known; None for a stream of unknown length.
        state_device: where memories, cached features and the frame being tracked are kept; ``"cpu"`` offloads them
            from the GPU (transformers' ``inference_state_device`` and ``video_storage_device``).
        autocast_dtype: reduced precision for the model calls (``grounded_sam.device.autocast``), or None.
    """

    def __init__(self, model, total_frames: int | None = None, state_device=None, autocast_dtype=None):
        self.model, self.autocast_dtype = model, autocast_dtype
        self.image_size = model.config.image_size
        device = model.device
        self.session = StreamingSession(
            total_frames,
            inference_device=device,
            inference_state_device=state_device or device,
            video_storage_device=state_device or device,
            dtype=torch.float32,
        )
        self.keep_memory = model.config.num_maskmem - 1
        self.keep_pointer = max(self.keep_memory, model.config.max_object_pointers_in_encoder - 1)

    @property
    def object_ids(self) -> list[int]:
        return list(self.session.obj_ids)

    def add_prompts(self, frame_index: int, prompts: Mapping[int, ObjectPrompt], frame_size: tuple[int, int]) -> None:
        """Prompts several objects on one frame, before that frame is tracked. All of a frame's objects must come in
        one call: the session keeps one list of objects with new inputs per frame, and an object left off it is
        tracked as if it had no prompt there."""
        session = self.session
        for obj_id, prompt in prompts.items():
            obj_idx = session.obj_id_to_idx(obj_id)
            if prompt.mask is not None:
                session.add_mask_inputs(obj_idx, frame_index, self._mask_input(prompt.mask))
                session.remove_point_inputs(obj_idx, frame_index)
            else:
                session.add_point_inputs(obj_idx, frame_index, self._point_inputs(prompt, frame_size))
                session.remove_mask_inputs(obj_idx, frame_index)
        session.obj_with_new_inputs = list(prompts)  # forward() removes ids from this list: never the caller's

    def _point_inputs(self, prompt: ObjectPrompt, frame_size: tuple[int, int]) -> dict:
        # Meta scales x, y as value / (W, H) * image_size; transformers' processor as value * (image_size / W),
        # which is one float32 ulp away: Meta's way here.
        coordinates, labels = [], []
        if prompt.box is not None:
            coordinates += np.asarray(prompt.box, np.float32).reshape(2, 2).tolist()
            labels += list(BOX_LABELS)
        if prompt.points is not None:
            coordinates += np.asarray(prompt.points, np.float32).reshape(-1, 2).tolist()
            labels += np.asarray(prompt.labels).astype(int).tolist()
        height, width = frame_size
        scale = torch.tensor([width, height], dtype=torch.float32)
        pixels = torch.tensor(coordinates, dtype=torch.float32) / scale * self.image_size
        return {
            "point_coords": pixels[None, None],  # (1, 1, P, 2)
            "point_labels": torch.tensor(labels, dtype=torch.int32)[None, None],  # (1, 1, P)
        }

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        """(H, W) bool -> (1, 1, S, S) float32 {0, 1} at the model's input side, as Meta's ``add_new_mask``."""
        tensor = torch.from_numpy(np.asarray(mask, dtype=bool)).float()[None, None]
        if tensor.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            tensor = functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
            tensor = (tensor >= 0.5).float()
        return tensor

    @torch.inference_mode()
    def step(self, frame_index: int, frame: np.ndarray, reverse: bool = False) -> TrackedFrame:
        """Tracks every object on one (H, W, 3) uint8 RGB frame (its prompts added first), then releases state.
        Before the first prompt there is nothing to track: the result holds no object and the model is not run."""
        height, width = frame.shape[:2]
        if self.session.get_obj_num() == 0:
            return TrackedFrame(frame_index, [], np.zeros((0, height, width), np.float32), np.zeros(0, np.float32))
        self.session.add_new_frame(video_pixels(frame, self.image_size), frame_index)
        with autocast(self.model.device, self.autocast_dtype):
            output = self.model(inference_session=self.session, frame_idx=frame_index, reverse=reverse)
        result = TrackedFrame(
            frame_index,
            list(output.object_ids),
            frame_logits(output.pred_masks, (height, width)),
            output.object_score_logits.float().reshape(-1).cpu().numpy(),
        )
        self.session.release(frame_index, reverse, self.keep_memory, self.keep_pointer)
        return result

    def remove_objects(self, object_ids: Iterable[int]) -> None:
        self.session.remove_objects(object_ids)


_UPSAMPLE_BUDGET = 64_000_000  # float32 values upsampled at once (256 MB), as segmentation.core


def frame_logits(pred_masks: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(n, 1, h, w) low-resolution logits -> (n, H, W) float32 at the frame's size, a few objects at a time.

    Resized in one bilinear step, as Meta's predictor does (``_get_orig_video_res_output``) and as
    ``Sam2VideoProcessor.post_process_masks`` does; ``Sam2VideoVideoProcessor``'s resizes to 1024 first, which moves
    logits near 0.
    """
    height, width = size
    step = max(1, _UPSAMPLE_BUDGET // max(1, height * width))
    pieces = [
        functional.interpolate(
            pred_masks[start : start + step].float(), size=size, mode="bilinear", align_corners=False
        )[:, 0]
        .cpu()
        .numpy()
        for start in range(0, len(pred_masks), step)
    ]
    return np.concatenate(pieces) if pieces else np.zeros((0, height, width), np.float32)

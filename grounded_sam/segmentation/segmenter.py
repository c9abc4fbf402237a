"""SAM 2 as one segmenter: encode an image once, then segment it from boxes (the grounding pipeline's stage), clicks,
box + clicks or earlier mask logits; refine detections; segment everything."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import supervision as sv
import torch

from grounded_sam.detections import LOW_RES_LOGITS, MASK_SCORE, OBJECT_INDEX, masks_to_detections
from grounded_sam.device import chunks, images_per_pass, precision_name, resolve_autocast_dtype, resolve_device
from grounded_sam.errors import UserInputError
from grounded_sam.images import ImageInput, load_image
from grounded_sam.models.hub import load_sam2, source_identity
from grounded_sam.models.presets import resolve_preset
from grounded_sam.segmentation.cleanup import MaskCleanup
from grounded_sam.segmentation.core import decode, encode_images, upsample_masks
from grounded_sam.segmentation.prompts import PromptBatch, build_prompts


@dataclass
class ImageState:
    """One encoded image, from :meth:`Segmenter.set_image`; reuse it for any number of prompts.

    Attributes:
        embeddings: SAM 2's image features, one tensor per feature level, batch size 1.
        original_size: (H, W) of the image in pixels.
    """

    embeddings: list[torch.Tensor]
    original_size: tuple[int, int]


def sam2_settings(source, multimask_output: bool, autocast_dtype, cleanup: MaskCleanup | None = None) -> dict:
    """A SAM 2 segmenter's settings, from a built one or from what it would be built from. The mask clean-up is
    named only when it is on, so datasets labeled before it existed keep their settings (and resume)."""
    settings = {
        "type": "sam2",
        "model": source_identity(source),
        "multimask_output": multimask_output,
        "precision": precision_name(autocast_dtype),
    }
    if cleanup is not None and cleanup.active:
        settings["mask_cleanup"] = cleanup.settings()
    return settings


class Segmenter:
    """SAM 2 with every prompt kind, returning ``supervision.Detections``.

    Args:
        sam: SAM 2 hub id, local directory or Meta checkpoint file (``.pt``); None takes the preset's.
        preset: preset whose SAM 2 to use when ``sam`` is None (see ``grounded_sam.PRESETS``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"`` (bf16 autocast on CUDA), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        sam_size: size of a Meta checkpoint file; inferred from the file when None.
        multimask_output: in :meth:`segment`, let SAM propose three masks per box and keep the best-scoring one.
        max_hole_area, max_sprinkle_area, keep_largest_part: mask clean-up (:class:`MaskCleanup`, areas in pixels of
            the original image): fill holes and remove specks of at most that many pixels, keep only the largest
            part. It applies to every mask :meth:`segment`, :meth:`predict` and :meth:`refine` return (boxes of
            :meth:`predict` are the cleaned masks'), not to :meth:`segment_everything`, which has its own
            ``min_mask_region_area``.

    ``Segmenter.from_model(model, processor)`` wraps an already built ``Sam2Model`` (for example the one a
    ``GroundedSAM2`` holds) without loading anything.
    """

    def __init__(
        self,
        sam: str | os.PathLike | None = None,
        preset: str = "default",
        device="auto",
        dtype="auto",
        sam_size: str | None = None,
        multimask_output: bool = False,
        max_hole_area: int = 0,
        max_sprinkle_area: int = 0,
        keep_largest_part: bool = False,
    ):
        cleanup = MaskCleanup(max_hole_area, max_sprinkle_area, keep_largest_part)  # checked before loading
        resolved = resolve_device(device)
        autocast_dtype = resolve_autocast_dtype(dtype, resolved)
        model, processor = load_sam2(sam or resolve_preset(preset).sam, resolved, size=sam_size)
        self._setup(model, processor, autocast_dtype, multimask_output, cleanup)

    @classmethod
    def from_model(
        cls,
        model,
        processor,
        autocast_dtype: torch.dtype | None = None,
        multimask_output: bool = False,
        max_hole_area: int = 0,
        max_sprinkle_area: int = 0,
        keep_largest_part: bool = False,
    ) -> Segmenter:
        segmenter = cls.__new__(cls)
        cleanup = MaskCleanup(max_hole_area, max_sprinkle_area, keep_largest_part)
        segmenter._setup(model, processor, autocast_dtype, multimask_output, cleanup)
        return segmenter

    def _setup(self, model, processor, autocast_dtype, multimask_output, cleanup: MaskCleanup) -> None:
        self.model, self.processor, self.autocast_dtype = model, processor, autocast_dtype
        self.multimask_output, self.cleanup = multimask_output, cleanup
        self.mask_size = tuple(model.prompt_encoder.mask_input_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def settings(self) -> dict:
        """What its masks depend on: the model and the options (a dataset stores this)."""
        return sam2_settings(self.model.config.name_or_path, self.multimask_output, self.autocast_dtype, self.cleanup)

    def compile(self) -> None:
        """``torch.compile`` the image encoder (the first batch of each size pays the compilation)."""
        self.model.vision_encoder = torch.compile(self.model.vision_encoder)

    @torch.inference_mode()
    def set_images(self, images: list[ImageInput]) -> list[ImageState]:
        """Encodes several images with one image-encoder pass; one :class:`ImageState` per image."""
        arrays = [load_image(image) for image in images]
        embeddings = encode_images(self.model, self.processor, arrays, self.autocast_dtype)
        return [
            ImageState([level[index : index + 1] for level in embeddings], tuple(array.shape[:2]))
            for index, array in enumerate(arrays)
        ]

    def set_image(self, image: ImageInput) -> ImageState:
        """Encodes one image (a path, PIL image or (H, W, 3) uint8 RGB array) for :meth:`predict`."""
        return self.set_images([image])[0]

    @torch.inference_mode()
    def predict(self, state: ImageState, points=None, labels=None, boxes=None, mask_input=None, multimask=False):
        """Segments N objects of an encoded image in one mask-decoder pass.

        Args:
            state: from :meth:`set_image`.
            points: clicks as x, y pixels: (P, 2) for one object, (N, P, 2) or a list of (P_i, 2) for N objects.
            labels: one per click, 1 foreground or 0 background, shaped like ``points``.
            boxes: (4,) or (N, 4) x1, y1, x2, y2 pixels, one per object.
            mask_input: (256, 256) or (N, 256, 256) logits from an earlier result's ``data["low_res_logits"]``, to
                refine it.
            multimask: return SAM's three candidate masks per object instead of one.

        Returns:
            ``sv.Detections`` with one row per object (three per object with ``multimask``, best first): mask
            (n, H, W) bool, xyxy (n, 4) float32 box of the mask, confidence = data["mask_score"] (SAM's predicted
            IoU), data["object_index"] (which object of the prompt), data["low_res_logits"] (n, 256, 256) float32.

        Raises:
            UserInputError: a bad prompt (see :func:`grounded_sam.segmentation.prompts.build_prompts`).
        """
        if not isinstance(state, ImageState):
            raise UserInputError("state must come from Segmenter.set_image(image)")
        prompts = build_prompts(points, labels, boxes, mask_input, state.original_size, self.mask_size)
        low_res, scores = self._decode(state, prompts, multimask)
        order = torch.argsort(scores, dim=1, descending=True)  # (N, K): best candidate first
        low_res = torch.take_along_dim(low_res, order[..., None, None], dim=1).flatten(0, 1)
        scores = torch.take_along_dim(scores, order, dim=1).flatten()
        object_index = np.repeat(np.arange(len(prompts)), order.shape[1])
        return self._to_detections(low_res, scores, state.original_size, {OBJECT_INDEX: object_index})

    def _decode(self, state: ImageState, prompts: PromptBatch, multimask: bool):
        """(N, K, h, w) low-res logits and (N, K) scores. Objects go along the prompt axis of one image; with mask
        inputs they go along the batch axis instead, as transformers adds the mask prompt per batch entry."""
        inputs = self.processor(
            original_sizes=[list(state.original_size)],
            input_points=None if prompts.points is None else [prompts.points.tolist()],
            input_labels=None if prompts.labels is None else [prompts.labels.tolist()],
            input_boxes=None if prompts.boxes is None else [prompts.boxes.tolist()],
            return_tensors="pt",
        )
        prompt_tensors = {
            key: inputs[key].to(self.device) for key in ("input_points", "input_labels", "input_boxes") if key in inputs
        }
        embeddings = state.embeddings
        if prompts.masks is not None:
            count = len(prompts)
            embeddings = [level.expand(count, *level.shape[1:]) for level in embeddings]
            prompt_tensors = {key: value.transpose(0, 1) for key, value in prompt_tensors.items()}
            prompt_tensors["input_masks"] = torch.from_numpy(prompts.masks)[:, None].to(self.device)
        low_res, scores = decode(self.model, embeddings, self.autocast_dtype, multimask, **prompt_tensors)
        if prompts.masks is not None:
            low_res, scores = low_res.transpose(0, 1), scores.transpose(0, 1)
        return low_res[0], scores[0]

    def _to_detections(self, low_res: torch.Tensor, scores: torch.Tensor, size, data: dict) -> sv.Detections:
        masks = self.cleanup.apply(upsample_masks(self.processor, low_res, size))
        # logits clamped as Meta's predictor returns them, so they feed back as mask_input the same way
        logits = low_res.clamp(-32.0, 32.0).cpu().numpy().astype(np.float32)
        return masks_to_detections(masks, scores.cpu().numpy().astype(np.float32), {**data, LOW_RES_LOGITS: logits})

    def segment_everything(self, image: ImageInput, **options) -> sv.Detections:
        """Finds every object without a prompt; see :func:`grounded_sam.segmentation.everything.segment_everything`."""
        from grounded_sam.segmentation.everything import segment_everything

        return segment_everything(self, load_image(image), **options)

    @torch.inference_mode()
    def segment(self, images: Sequence[np.ndarray], detections: Sequence[sv.Detections]) -> list[sv.Detections]:
        """Adds a mask to every box: the grounding pipeline's stage.

        One image-encoder pass per batch and all boxes of the batch decoded in one mask-decoder call (on a GPU; a
        CPU takes one image per pass, see :func:`grounded_sam.device.images_per_pass`). transformers' processor
        refuses images with different box counts, so each image's boxes are padded to the longest list by repeating
        its first box and the padding is sliced off (SAM 2 decodes each box prompt independently).

        Args:
            images: (H, W, 3) uint8 RGB arrays.
            detections: one ``sv.Detections`` per image with xyxy in that image's pixels.

        Returns:
            Copies of ``detections`` with ``mask`` (n, H, W) bool at each image's size and data["mask_score"]
            (SAM's predicted IoU, float32). Images without boxes get a (0, H, W) mask and cost no model call.
        """
        if len(images) != len(detections):
            raise UserInputError(f"Got {len(images)} images but {len(detections)} detections; pass one per image")
        with_boxes = [i for i, found in enumerate(detections) if len(found) > 0]
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, np.ndarray] = {}
        for chunk in chunks(with_boxes, images_per_pass(self.device, len(with_boxes))):
            decoded = self._decode_boxes([images[i] for i in chunk], [detections[i].xyxy for i in chunk])
            for i, (image_masks, image_scores) in zip(chunk, decoded):
                masks[i], scores[i] = image_masks, image_scores
        results = []
        for i, (image, found) in enumerate(zip(images, detections)):
            height, width = image.shape[:2]
            segmented = copy.deepcopy(found)
            segmented.mask = masks.get(i, np.zeros((0, height, width), dtype=bool))
            segmented.data[MASK_SCORE] = scores.get(i, np.zeros(0, dtype=np.float32))
            results.append(segmented)
        return results

    def _decode_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        counts = [len(image_boxes) for image_boxes in boxes]
        longest = max(counts)
        padded = [
            np.concatenate([image_boxes, np.repeat(image_boxes[:1], longest - len(image_boxes), axis=0)]).tolist()
            for image_boxes in boxes
        ]
        embeddings = encode_images(self.model, self.processor, images, self.autocast_dtype)
        sizes = [list(image.shape[:2]) for image in images]
        inputs = self.processor(original_sizes=sizes, input_boxes=padded, return_tensors="pt")
        low_res, iou = decode(
            self.model,
            embeddings,
            self.autocast_dtype,
            self.multimask_output,
            input_boxes=inputs["input_boxes"].to(self.device),
        )  # (B, N, K, h, w), (B, N, K)
        best = iou.argmax(dim=-1)  # K == 1 without multimask
        low_res = torch.take_along_dim(low_res, best[..., None, None, None], dim=2)[:, :, 0]
        iou = torch.take_along_dim(iou, best[..., None], dim=2)[..., 0]
        return [
            (
                self.cleanup.apply(upsample_masks(self.processor, low_res[i, :count], images[i].shape[:2])),
                iou[i, :count].cpu().numpy().astype(np.float32),
            )
            for i, count in enumerate(counts)
        ]

    def refine(
        self,
        image: ImageInput,
        detections: sv.Detections,
        points: Mapping[int, Sequence],
        labels: Mapping[int, Sequence],
    ) -> sv.Detections:
        """Fixes wrong masks with clicks: each chosen detection's box plus its clicks goes through SAM 2 again.

        Args:
            image: the image the detections belong to.
            detections: detections of that image (with or without masks).
            points: detection index -> its clicks, x, y pixels (e.g. ``{2: [[120, 80]]}``).
            labels: detection index -> one label per click, 1 "part of the object", 0 "not part of it".

        Returns:
            a copy of ``detections`` where the chosen rows have the new mask and data["mask_score"]; boxes, classes
            and confidences are kept. All chosen rows are decoded in one mask-decoder call.
        """
        if set(points) != set(labels):
            raise UserInputError(
                f"points and labels must name the same detections, got {sorted(points)} and {sorted(labels)}"
            )
        chosen = sorted(points)
        if any(not 0 <= index < len(detections) for index in chosen):
            raise UserInputError(f"detection indices must be in [0, {len(detections)}), got {chosen}")
        refined = copy.deepcopy(detections)
        if not chosen:
            return refined
        image = load_image(image)
        height, width = image.shape[:2]
        if refined.mask is None:  # box-only detections: the refined rows get masks, the others empty ones
            refined.mask = np.zeros((len(refined), height, width), dtype=bool)
        if MASK_SCORE not in refined.data:
            refined.data[MASK_SCORE] = np.zeros(len(refined), dtype=np.float32)
        boxes = np.clip(detections.xyxy[chosen], 0, [width, height, width, height])
        result = self.predict(
            self.set_image(image),
            boxes=boxes,
            points=[points[index] for index in chosen],
            labels=[labels[index] for index in chosen],
        )
        refined.mask[chosen] = result.mask
        refined.data[MASK_SCORE][chosen] = result.data[MASK_SCORE]
        return refined

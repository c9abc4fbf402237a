"""Prompted SAM 2: encode an image once, then segment it from clicks, boxes, box + clicks or earlier mask logits."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import supervision as sv
import torch

from .device import autocast, resolve_autocast_dtype, resolve_device
from .images import ImageInput, load_image
from .models import load_sam2, resolve_preset
from .prompts import PromptBatch, build_prompts
from .segmenter import encode_images, mask_detections, upsample_masks


@dataclass
class ImageState:
    """One encoded image, from :meth:`Segmenter.set_image`; reuse it for any number of prompts.

    Attributes:
        embeddings: SAM 2's image features, one tensor per feature level, batch size 1.
        original_size: (H, W) of the image in pixels.
    """

    embeddings: list[torch.Tensor]
    original_size: tuple[int, int]


class Segmenter:
    """SAM 2 with every prompt kind, returning ``supervision.Detections``.

    Args:
        sam: SAM 2 hub id, local directory or Meta checkpoint file (``.pt``); None takes the preset's.
        preset: preset whose SAM 2 to use when ``sam`` is None (see ``grounded_sam.PRESETS``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"`` (bf16 autocast on CUDA), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        sam_size: size of a Meta checkpoint file; inferred from the file when None.

    ``Segmenter.from_model(model, processor)`` wraps an already built ``Sam2Model`` (for example the one a
    ``GroundedSAM2`` holds) without loading anything.
    """

    def __init__(self, sam: str | os.PathLike | None = None, preset: str = "default", device="auto", dtype="auto",
                 sam_size: str | None = None):
        resolved = resolve_device(device)
        model, processor = load_sam2(sam or resolve_preset(preset).sam, resolved, size=sam_size)
        self._setup(model, processor, resolve_autocast_dtype(dtype, resolved))

    @classmethod
    def from_model(cls, model, processor, autocast_dtype: torch.dtype | None = None) -> Segmenter:
        segmenter = cls.__new__(cls)
        segmenter._setup(model, processor, autocast_dtype)
        return segmenter

    def _setup(self, model, processor, autocast_dtype) -> None:
        self.model, self.processor, self.autocast_dtype = model, processor, autocast_dtype
        self.mask_size = tuple(model.prompt_encoder.mask_input_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

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
            ValueError: a bad prompt (see ``grounded_sam.prompts.build_prompts``).
        """
        if not isinstance(state, ImageState):
            raise ValueError("state must come from Segmenter.set_image(image)")
        prompts = build_prompts(points, labels, boxes, mask_input, state.original_size, self.mask_size)
        low_res, scores = self._decode(state, prompts, multimask)
        order = torch.argsort(scores, dim=1, descending=True)  # (N, K): best candidate first
        low_res = torch.take_along_dim(low_res, order[..., None, None], dim=1).flatten(0, 1)
        scores = torch.take_along_dim(scores, order, dim=1).flatten()
        object_index = np.repeat(np.arange(len(prompts)), order.shape[1])
        return self._to_detections(low_res, scores, state.original_size, {"object_index": object_index})

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
        prompt_tensors = {key: inputs[key].to(self.device) for key in ("input_points", "input_labels", "input_boxes")
                          if key in inputs}
        embeddings = state.embeddings
        if prompts.masks is not None:
            count = len(prompts)
            embeddings = [level.expand(count, *level.shape[1:]) for level in embeddings]
            prompt_tensors = {key: value.transpose(0, 1) for key, value in prompt_tensors.items()}
            prompt_tensors["input_masks"] = torch.from_numpy(prompts.masks)[:, None].to(self.device)
        with autocast(self.device, self.autocast_dtype):
            output = self.model(image_embeddings=embeddings, multimask_output=multimask, **prompt_tensors)
        low_res, scores = output.pred_masks.float(), output.iou_scores.float()
        if prompts.masks is not None:
            low_res, scores = low_res.transpose(0, 1), scores.transpose(0, 1)
        return low_res[0], scores[0]

    def _to_detections(self, low_res: torch.Tensor, scores: torch.Tensor, size, data: dict) -> sv.Detections:
        masks = upsample_masks(self.processor, low_res, size)
        # logits clamped as Meta's predictor returns them, so they feed back as mask_input the same way
        logits = low_res.clamp(-32.0, 32.0).cpu().numpy().astype(np.float32)
        return mask_detections(masks, scores.cpu().numpy().astype(np.float32), {**data, "low_res_logits": logits})

    def segment_everything(self, image: ImageInput, **options) -> sv.Detections:
        """Finds every object without a prompt; see :func:`grounded_sam.everything.segment_everything`."""
        from .everything import segment_everything

        return segment_everything(self, load_image(image), **options)

"""SAM 2 as a batched box-prompted segmenter: images + box Detections -> the same Detections with masks."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import supervision as sv
import torch

from .batching import chunks
from .device import autocast, images_per_pass

_UPSAMPLE_BUDGET = 64_000_000  # float32 values of masks upsampled at once (256 MB)


def masks_per_chunk(height: int, width: int) -> int:
    """How many masks to upsample to (height, width) at once: 16, fewer on large images so the float32 copies stay
    near 256 MB (a 12-megapixel photo takes 5 at a time)."""
    return max(1, min(16, _UPSAMPLE_BUDGET // max(1, height * width)))


def upsample_masks(processor, low_res: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) low-resolution mask logits -> (n, H, W) bool masks at the image size, via the processor's
    post-processing, :func:`masks_per_chunk` masks at a time."""
    height, width = int(size[0]), int(size[1])
    step = masks_per_chunk(height, width)
    chunks = [
        processor.post_process_masks([low_res[start : start + step, None]], [[height, width]])[0][:, 0].cpu().numpy()
        for start in range(0, len(low_res), step)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, height, width), dtype=bool)


def encode_images(model, processor, images: Sequence[np.ndarray], autocast_dtype) -> list[torch.Tensor]:
    """One image-encoder pass over (H, W, 3) uint8 RGB images: SAM 2's feature levels, batch first."""
    # Resized and normalized where the model runs (transformers' torchvision backend), in one batch.
    inputs = processor(images=sam_pixels(images, model.device), do_rescale=False, return_tensors="pt",
                       device=model.device, input_data_format="channels_first")  # never guessed: see sam_pixels
    pixel_values = inputs["pixel_values"].to(model.device, model.dtype)
    step = images_per_pass(model.device, len(pixel_values))
    with autocast(model.device, autocast_dtype):
        passes = [model.get_image_embeddings(chunk) for chunk in chunks(pixel_values, step)]
    return [torch.cat(levels) for levels in zip(*passes)]


def mask_detections(masks: np.ndarray, scores: np.ndarray, data: dict | None = None) -> sv.Detections:
    """Detections from (n, H, W) bool masks: xyxy the masks' boxes, confidence = data["mask_score"] = scores."""
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32) if len(masks) else np.zeros((0, 4), np.float32),
        mask=masks,
        confidence=scores,
        data={**(data or {}), "mask_score": scores},
    )


def sam_pixels(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1], for the SAM 2 processor with ``do_rescale=False``.

    Given uint8, transformers resizes to 1024 in uint8 and rescales after; Meta's predictor converts to float first.
    The rounding in between moves mask logits by ~5e-3 and flips mask pixels, so images go in as floats.
    The uint8 pixels travel to ``device`` before the conversion (a quarter of the float32 bytes).
    """
    return [torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)
            for image in images]


class Sam2Segmenter:
    """Adds a mask to every box with a built SAM 2 model.

    One image-encoder pass per batch and all boxes of the batch decoded in one mask-decoder call (on a GPU; a CPU
    takes one image per pass, see :func:`grounded_sam.device.images_per_pass`). transformers' processor
    refuses images with different box counts, so each image's boxes are padded to the longest list by repeating its
    first box and the padding is sliced off (SAM 2 decodes each box prompt independently).

    Args:
        model: a ``Sam2Model`` in eval mode, on its device.
        processor: the matching ``Sam2Processor``.
        multimask_output: ask SAM for three masks per box and keep the one with the best predicted IoU.
        autocast_dtype: run under ``torch.autocast`` with this dtype, or None.
    """

    def __init__(self, model, processor, multimask_output: bool = False, autocast_dtype: torch.dtype | None = None):
        self.model, self.processor = model, processor
        self.multimask_output = multimask_output
        self.autocast_dtype = autocast_dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def segment(self, images: Sequence[np.ndarray], detections: Sequence[sv.Detections]) -> list[sv.Detections]:
        """Segments each image's boxes.

        Args:
            images: (H, W, 3) uint8 RGB arrays.
            detections: one ``sv.Detections`` per image with xyxy in that image's pixels.

        Returns:
            Copies of ``detections`` with ``mask`` (n, H, W) bool at each image's size and data["mask_score"]
            (SAM's predicted IoU, float32). Images without boxes get a (0, H, W) mask and cost no model call.
        """
        if len(images) != len(detections):
            raise ValueError(f"Got {len(images)} images but {len(detections)} detections; pass one per image")
        with_boxes = [i for i, found in enumerate(detections) if len(found) > 0]
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, np.ndarray] = {}
        for chunk in chunks(with_boxes, images_per_pass(self.device, len(with_boxes))):
            decoded = self._decode([images[i] for i in chunk], [detections[i].xyxy for i in chunk])
            for i, (image_masks, image_scores) in zip(chunk, decoded):
                masks[i], scores[i] = image_masks, image_scores
        results = []
        for i, (image, found) in enumerate(zip(images, detections)):
            height, width = image.shape[:2]
            segmented = copy.deepcopy(found)
            segmented.mask = masks.get(i, np.zeros((0, height, width), dtype=bool))
            segmented.data["mask_score"] = scores.get(i, np.zeros(0, dtype=np.float32))
            results.append(segmented)
        return results

    def _decode(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        counts = [len(image_boxes) for image_boxes in boxes]
        longest = max(counts)
        padded = [
            np.concatenate([image_boxes, np.repeat(image_boxes[:1], longest - len(image_boxes), axis=0)]).tolist()
            for image_boxes in boxes
        ]
        embeddings = encode_images(self.model, self.processor, images, self.autocast_dtype)
        sizes = [list(image.shape[:2]) for image in images]
        inputs = self.processor(original_sizes=sizes, input_boxes=padded, return_tensors="pt")
        with autocast(self.device, self.autocast_dtype):
            output = self.model(
                image_embeddings=embeddings,
                input_boxes=inputs["input_boxes"].to(self.device),
                multimask_output=self.multimask_output,
            )
        low_res, iou = output.pred_masks.float(), output.iou_scores.float()  # (B, N, K, h, w), (B, N, K)
        best = iou.argmax(dim=-1)  # K == 1 without multimask
        low_res = torch.take_along_dim(low_res, best[..., None, None, None], dim=2)[:, :, 0]
        iou = torch.take_along_dim(iou, best[..., None], dim=2)[..., 0]
        return [
            (upsample_masks(self.processor, low_res[i, :count], images[i].shape[:2]),
             iou[i, :count].cpu().numpy().astype(np.float32))
            for i, count in enumerate(counts)
        ]



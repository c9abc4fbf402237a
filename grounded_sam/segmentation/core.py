"""The SAM 2 image core every segmentation path goes through: encode images once, decode prompt tensors, upsample.

Boxes (the grounding pipeline), clicks and mask inputs (:class:`~grounded_sam.Segmenter`), the click grid of
segment-everything and refinement all call these three functions, so there is one way SAM 2 is called.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from grounded_sam.device import autocast, chunks, images_per_pass

_UPSAMPLE_BUDGET = 64_000_000  # float32 values of masks upsampled at once (256 MB)


def sam_pixels(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1], for the SAM 2 processor with ``do_rescale=False``.

    Given uint8, transformers resizes to 1024 in uint8 and rescales after; Meta's predictor converts to float first.
    The rounding in between moves mask logits by ~5e-3 and flips mask pixels, so images go in as floats.
    The uint8 pixels travel to ``device`` before the conversion (a quarter of the float32 bytes).
    """
    return [
        torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)
        for image in images
    ]


def encode_images(model, processor, images: Sequence[np.ndarray], autocast_dtype) -> list[torch.Tensor]:
    """Image-encoder passes over (H, W, 3) uint8 RGB images (the whole batch on a GPU, one image per pass on a CPU:
    :func:`~grounded_sam.device.images_per_pass`): SAM 2's feature levels, batch first."""
    # Resized and normalized where the model runs (transformers' torchvision backend), in one batch.
    inputs = processor(
        images=sam_pixels(images, model.device),
        do_rescale=False,
        return_tensors="pt",
        device=model.device,
        input_data_format="channels_first",
    )  # never guessed: see sam_pixels
    pixel_values = inputs["pixel_values"].to(model.device, model.dtype)
    step = images_per_pass(model.device, len(pixel_values))
    with autocast(model.device, autocast_dtype):
        passes = [model.get_image_embeddings(chunk) for chunk in chunks(pixel_values, step)]
    return [torch.cat(levels) for levels in zip(*passes)]


def decode(model, embeddings: list[torch.Tensor], autocast_dtype, multimask: bool, **prompts) -> tuple:
    """One mask-decoder call: (B, N, K, h, w) low-resolution logits and (B, N, K) predicted IoUs, float32.

    ``prompts`` are the model's tensors (``input_points``, ``input_labels``, ``input_boxes``, ``input_masks``), on its
    device; B is the batch of ``embeddings``, N the objects per image, K 3 with ``multimask`` and 1 without.
    """
    with autocast(model.device, autocast_dtype):
        output = model(image_embeddings=embeddings, multimask_output=multimask, **prompts)
    return output.pred_masks.float(), output.iou_scores.float()


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

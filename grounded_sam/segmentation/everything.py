"""Segment everything: a grid of single-click prompts over the image (and optional crops), filtered and de-duplicated.

Built on transformers' mask-generation support in the SAM 2 image processor (crop boxes and point grid, quality and
stability filters, box NMS). What it lacks is written here: batching the grid through our encoded images, dropping
low-scoring candidates before upsampling (so a large image does not hold every candidate at full size), and the
small-hole and speck removal of Meta's automatic mask generator (transformers' post-processing has it as a TODO).
"""

from __future__ import annotations

import numpy as np
import supervision as sv
import torch
from torchvision.ops import nms

from grounded_sam.detections import masks_to_detections
from grounded_sam.errors import UserInputError
from grounded_sam.segmentation.cleanup import fill_holes, keep_largest_part, remove_specks
from grounded_sam.segmentation.core import decode, masks_per_chunk


@torch.inference_mode()
def segment_everything(
    segmenter,
    image: np.ndarray,
    points_per_side: int = 32,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    mask_threshold: float = 0.0,
    box_nms_thresh: float = 0.7,
    crop_n_layers: int = 0,
    crop_overlap_ratio: float = 512 / 1500,
    crop_n_points_downscale_factor: int = 1,
    min_mask_region_area: int = 0,
) -> sv.Detections:
    """Every object SAM 2 finds in ``image`` from a ``points_per_side`` x ``points_per_side`` grid of clicks.

    Args:
        segmenter: a ``grounded_sam.Segmenter``.
        image: (H, W, 3) uint8 RGB.
        points_per_batch: clicks per mask-decoder call; bounds memory on large images.
        pred_iou_thresh, stability_score_thresh: keep masks whose predicted IoU, and whose stability (IoU of the mask
            thresholded at ``mask_threshold`` +- ``stability_score_offset``), exceed these.
        box_nms_thresh: box IoU above which the lower-scoring of two masks is dropped.
        crop_n_layers: also run on 2x2, 4x4... crops (0: the whole image only); each crop is encoded on its own.
        crop_n_points_downscale_factor: layer n of crops gets ``points_per_side / factor**n`` clicks per side.
        min_mask_region_area: remove holes and specks smaller than this many pixels from each mask (0: keep).

    Returns:
        ``sv.Detections``: mask (n, H, W) bool, xyxy (n, 4) float32 box of each mask, confidence = data["mask_score"]
        (predicted IoU), sorted best first; no two boxes overlap more than ``box_nms_thresh``.
    """
    _check_options(points_per_side, points_per_batch, box_nms_thresh, min_mask_region_area)
    height, width = image.shape[:2]
    image_processor = segmenter.processor.image_processor
    crop_boxes, _, crops, _ = image_processor.generate_crop_boxes(  # crops only: the grid is built below
        torch.from_numpy(image).permute(2, 0, 1), image_processor.size["height"], crop_n_layers, crop_overlap_ratio, 1
    )
    layers = [0] + [layer for layer in range(1, crop_n_layers + 1) for _ in range(4**layer)]
    all_rles, all_scores, all_boxes = [], [], []
    for crop, crop_box, layer in zip(crops, crop_boxes, layers):
        state = segmenter.set_image(crop.permute(1, 2, 0).numpy())  # one crop at a time: bounded encoder memory
        grid = _model_input_grid(int(points_per_side / crop_n_points_downscale_factor**layer), image_processor)
        for start in range(0, len(grid), points_per_batch):
            points = grid[start : start + points_per_batch]
            low_res, scores = decode(
                segmenter.model,
                state.embeddings,
                segmenter.autocast_dtype,
                True,
                input_points=points[None, :, None].to(segmenter.device),
                input_labels=torch.ones(1, len(points), 1, dtype=torch.int64, device=segmenter.device),
            )
            low_res, scores = low_res[0].flatten(0, 1), scores[0].flatten()
            keep = scores > pred_iou_thresh  # cheap: before any mask is upsampled
            low_res, scores = low_res[keep], scores[keep]
            step = masks_per_chunk(*state.original_size)
            for chunk in range(0, len(low_res), step):
                # float masks (not upsample_masks' bool ones): the stability filter thresholds them twice
                upsampled = image_processor.post_process_masks(
                    [low_res[chunk : chunk + step][None]], [list(state.original_size)], binarize=False
                )[0]
                rles, kept_scores, boxes = image_processor.filter_masks(
                    upsampled,
                    scores[chunk : chunk + step][None],
                    (height, width),
                    crop_box,
                    0.0,
                    stability_score_thresh,
                    mask_threshold,
                    stability_score_offset,
                )
                all_rles += rles
                all_scores.append(kept_scores.cpu())
                all_boxes.append(boxes.cpu())
    if not all_rles:
        return masks_to_detections(np.zeros((0, height, width), bool), np.zeros(0, np.float32))
    masks, scores, _, _ = image_processor.post_process_for_mask_generation(
        all_rles, torch.cat(all_scores), torch.cat(all_boxes), box_nms_thresh
    )
    masks, scores = np.stack([mask.numpy() for mask in masks]), scores.numpy().astype(np.float32)
    if min_mask_region_area > 0:
        masks, scores = _clean_small_regions(masks, scores, min_mask_region_area, box_nms_thresh)
    order = np.argsort(-scores, kind="stable")
    return masks_to_detections(masks[order], scores[order])


def _model_input_grid(points_per_side: int, image_processor) -> torch.Tensor:
    """(n * n, 2) clicks evenly spread over an image, in the model's input coordinates.

    transformers' ``generate_crop_boxes`` scales its grid as if the image kept its aspect ratio when resized, but SAM 2
    stretches every image to a square: on a 100 x 400 image its clicks all land in the top quarter. A fraction of the
    image maps to the same fraction of the square input, whatever the shape.
    """
    side = max(1, points_per_side)
    fractions = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    y, x = torch.meshgrid(fractions, fractions, indexing="ij")
    size = image_processor.size
    return torch.stack([x.reshape(-1) * size["width"], y.reshape(-1) * size["height"]], dim=1)


def _check_options(points_per_side, points_per_batch, box_nms_thresh, min_mask_region_area) -> None:
    if points_per_side < 1 or points_per_batch < 1:
        raise UserInputError(
            f"points_per_side and points_per_batch must be >= 1, got {points_per_side}, {points_per_batch}"
        )
    if not 0.0 < box_nms_thresh <= 1.0:
        raise UserInputError(f"box_nms_thresh must be in (0, 1], got {box_nms_thresh}")
    if min_mask_region_area < 0:
        raise UserInputError(f"min_mask_region_area must be >= 0, got {min_mask_region_area}")


def remove_small_regions(mask: np.ndarray, area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fills holes (``mode="holes"``) or drops specks (``mode="islands"``) under ``area`` pixels, as Meta's
    automatic mask generator does: strictly under (the predictor's clean-up, :mod:`.cleanup`, takes areas up to and
    including its limit), and islands keep the largest part when every part is small. Returns the mask and whether
    it changed."""
    if mode == "holes":
        cleaned = fill_holes(mask, area - 1)
    else:
        cleaned = remove_specks(mask, area - 1)
        if not cleaned.any() and mask.any():
            cleaned = keep_largest_part(mask)
    return (mask, False) if np.array_equal(cleaned, mask) else (cleaned, True)


def _clean_small_regions(masks, scores, area, box_nms_thresh):
    # As in Meta's generator: clean each mask, then NMS again preferring masks the cleaning left unchanged.
    cleaned, unchanged = [], []
    for mask in masks:
        mask, holes_changed = remove_small_regions(mask, area, "holes")
        mask, specks_changed = remove_small_regions(mask, area, "islands")
        cleaned.append(mask)
        unchanged.append(not (holes_changed or specks_changed))
    masks = np.stack(cleaned)
    boxes = torch.from_numpy(sv.mask_to_xyxy(masks).astype(np.float32))
    keep = nms(boxes, torch.tensor(unchanged, dtype=torch.float32), box_nms_thresh).numpy()
    keep = keep[masks[keep].any(axis=(1, 2))]
    return masks[keep], scores[keep]

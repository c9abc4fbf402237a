"""SAM 3 as a one-model text -> instance masks backend: images + ontology -> sv.Detections with masks.

Each prompt's text features are computed once per backend (``get_text_features``) and each image's vision features
once per image (``get_vision_features``); then every (image, prompt) row runs SAM 3's DETR encoder, decoder and mask
decoder against them, ``rows_per_pass`` rows at a time. This equals the plain per-prompt forward
``model(**processor(images=image, text=prompt))`` (to 3e-9 on the tiny model) without encoding an image once per
prompt. Every image is resized (stretched) to the model's square input, so a batch needs no padding and equals one by
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import supervision as sv
import torch

from grounded_sam.detection.base import check_prompt_lengths
from grounded_sam.detections import CLASS_NAME, MASK_SCORE, PROMPT
from grounded_sam.device import autocast, chunks, images_per_pass, precision_name
from grounded_sam.errors import UserInputError
from grounded_sam.models.hub import source_identity
from grounded_sam.ontology import CaptionOntology
from grounded_sam.segmentation.cleanup import MaskCleanup

DEFAULT_BOX_THRESHOLD = 0.5  # Meta's demo (transformers' post-processing defaults to 0.3)
MASK_THRESHOLD = 0.5  # probability above which a mask pixel is set (transformers' default: logit > 0)


class Instances(NamedTuple):
    """One image's SAM 3 instances over the threshold: prompt_index (n,) int, scores (n,) float32 in [0, 1], boxes
    (n, 4) float32 normalized x1, y1, x2, y2, mask_logits (n, h, w) at the mask decoder's size (on the model's
    device)."""

    prompt_index: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    mask_logits: torch.Tensor


def sam3_settings(source, box_threshold: float, autocast_dtype, cleanup: MaskCleanup | None = None) -> dict:
    """A SAM 3 backend's settings, from a built one or from what it would be built from (the mask clean-up named
    only when it is on, as for SAM 2)."""
    settings = {
        "type": "sam3",
        "model": source_identity(source),
        "box_threshold": box_threshold,
        "mask_threshold": MASK_THRESHOLD,
        "precision": precision_name(autocast_dtype),
    }
    if cleanup is not None and cleanup.active:
        settings["mask_cleanup"] = cleanup.settings()
    return settings


def text_limit(config) -> int:
    """How many tokens (start and end included) SAM 3's text tower reads (32), from a ``Sam3Config`` or the
    ``Sam3VideoConfig`` facebook/sam3 is saved with."""
    return (getattr(config, "detector_config", None) or config).text_config.max_position_embeddings


def check_prompts(tokenizer, config, prompts: Sequence[str]) -> None:
    """Refuses (``UserInputError``) prompts longer than the text tower reads; the processor would cut them
    silently."""
    check_prompt_lengths(tokenizer, prompts, text_limit(config), "SAM 3")


class Sam3Backend:
    """Finds and segments the ontology's prompts with a built SAM 3: a :class:`~grounded_sam.Detector` whose
    detections carry masks, so ``GroundedSAM2(backend="sam3")`` needs no SAM 2.

    Args:
        model: ``Sam3Model`` in eval mode.
        processor: the matching ``Sam3Processor``.
        ontology: prompts to look for and the class each labels.
        box_threshold: keep instances whose score (sigmoid(logit) x sigmoid(presence logit)) exceeds this.
        rows_per_pass: (image, prompt) rows per DETR and mask-decoder pass; bounds memory (each row holds a copy of
            its image's features: about 110 MB in float32 at SAM 3's 1008 px).
        autocast_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA), or None.
        cleanup: holes, specks and stray parts to clean from every mask (:class:`MaskCleanup`); None: none. Boxes
            stay SAM 3's.

    A prompt longer than the text tower reads (see :func:`check_prompts`) is refused here, once.
    """

    def __init__(
        self,
        model,
        processor,
        ontology: CaptionOntology,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        rows_per_pass: int = 8,
        autocast_dtype: torch.dtype | None = None,
        cleanup: MaskCleanup | None = None,
    ):
        if rows_per_pass < 1:
            raise UserInputError(f"rows_per_pass must be >= 1, got {rows_per_pass}")
        self.model, self.processor, self.ontology = model, processor, ontology
        self.box_threshold, self.rows_per_pass, self.autocast_dtype = box_threshold, rows_per_pass, autocast_dtype
        self.cleanup = cleanup or MaskCleanup()
        self.max_text_tokens = text_limit(model.config)
        check_prompts(processor.tokenizer, model.config, ontology.prompts())
        self._text = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def settings(self) -> dict:
        """What its detections depend on: the model, the thresholds and the precision (a dataset stores this)."""
        return sam3_settings(self.model.config.name_or_path, self.box_threshold, self.autocast_dtype, self.cleanup)

    def text_features(self):
        """The prompts' text features (``pooler_output`` (prompts, tokens, hidden): every token, not a pooled vector)
        and their (prompts, tokens) attention mask, computed once (call under inference mode and autocast)."""
        if self._text is None:
            tokens = self.processor.tokenizer(
                self.ontology.prompts(), padding="max_length", max_length=self.max_text_tokens, return_tensors="pt"
            ).to(self.device)
            self._text = self.model.get_text_features(**tokens).pooler_output, tokens["attention_mask"]
        return self._text

    @torch.inference_mode()
    def instances(self, images: Sequence[np.ndarray]) -> list[Instances]:
        """Each image's instances over ``box_threshold``, of every prompt (only those: all 200 queries' mask logits
        of every prompt would take 66 MB per prompt and image)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        prompts = len(self.ontology.prompts())
        found: list[list[Instances]] = [[] for _ in images]
        with autocast(self.device, self.autocast_dtype):
            text, text_mask = self.text_features()
            per_pass = images_per_pass(self.device, len(images))
            for start in range(0, len(images), per_pass):
                batch = images[start : start + per_pass]
                vision = self._vision_features(batch)
                for rows in chunks(torch.arange(len(batch) * prompts, device=self.device), self.rows_per_pass):
                    image_index, prompt_index = rows // prompts, rows % prompts
                    out = self.model(
                        vision_embeds=_pick(vision, image_index),
                        text_embeds=BaseModelOutputWithPooling(pooler_output=text[prompt_index]),
                        attention_mask=text_mask[prompt_index],  # without it the text padding is attended, silently
                    )
                    scores = out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid()
                    row, query = (scores > self.box_threshold).nonzero(as_tuple=True)
                    for index in range(len(rows)):
                        chosen = query[row == index]
                        found[start + int(image_index[index])].append(
                            Instances(
                                torch.full_like(chosen, int(prompt_index[index])).cpu(),
                                scores[index, chosen].cpu(),
                                out.pred_boxes[index, chosen].float().cpu(),
                                out.pred_masks[index, chosen].float(),
                            )
                        )
        return [Instances(*(torch.cat(parts) for parts in zip(*image_parts))) for image_parts in found]

    def _vision_features(self, images: Sequence[np.ndarray]):
        pixel_values = self.processor.image_processor(
            list(images), return_tensors="pt", device=self.device, input_data_format="channels_last"
        )["pixel_values"]
        return self.model.get_vision_features(pixel_values=pixel_values.to(self.device, self.model.dtype))

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Finds and segments the ontology's prompts in a batch of images.

        Args:
            images: (H, W, 3) uint8 RGB arrays.

        Returns:
            One ``sv.Detections`` per image, rows by decreasing confidence: xyxy float32 pixels clipped to the image
            (SAM 3's box head), mask (n, H, W) bool, confidence in [0, 1] (SAM 3's instance score: the query's
            probability times the image-level presence probability of the prompt), class_id into
            ``ontology.classes()``, data["class_name"], data["prompt"] and data["mask_score"] (SAM 3 has no separate
            mask-quality head: the instance score again).
        """
        if not images:
            return []
        return [self.to_detections(found, *image.shape[:2]) for found, image in zip(self.instances(images), images)]

    def to_detections(self, found: Instances, height: int, width: int) -> sv.Detections:
        """One image's instances -> Detections, sorted by decreasing score. Pure.

        Same scores, boxes and masks as transformers' ``post_process_instance_segmentation`` (which upsamples the
        sigmoid probabilities bilinearly and thresholds them), but each mask is upsampled on its own into bool:
        transformers returns every kept mask at once as int64, 8 bytes a pixel (3.3 GB for 200 masks at 1080p).
        """
        order = torch.argsort(found.scores, descending=True, stable=True)
        size = torch.tensor([width, height, width, height], dtype=torch.float32)
        xyxy = (found.boxes[order] * size).clamp(min=0).minimum(size)
        masks = np.zeros((len(order), height, width), dtype=bool)
        for row, index in enumerate(order.tolist()):
            probability = found.mask_logits[index][None, None].float().sigmoid()
            upsampled = torch.nn.functional.interpolate(
                probability, size=(height, width), mode="bilinear", align_corners=False
            )
            masks[row] = (upsampled[0, 0] > MASK_THRESHOLD).cpu().numpy()
        masks = self.cleanup.apply(masks)
        prompts = [self.ontology.prompts()[index] for index in found.prompt_index[order].tolist()]
        class_names = [self.ontology.promptToClass(prompt) for prompt in prompts]
        confidence = found.scores[order].numpy().astype(np.float32)
        return sv.Detections(
            xyxy=xyxy.numpy().astype(np.float32).reshape(-1, 4),
            mask=masks,
            confidence=confidence,
            class_id=np.array([self.ontology.class_id(name) for name in class_names], dtype=int),
            data={
                CLASS_NAME: np.array(class_names, dtype=str),
                PROMPT: np.array(prompts, dtype=str),
                MASK_SCORE: confidence.copy(),
            },
        )


def _pick(vision, index: torch.Tensor):
    """``Sam3VisionEncoderOutput`` holding the features of images ``index`` (one row each, repeats allowed)."""
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    return Sam3VisionEncoderOutput(
        fpn_hidden_states=tuple(level[index] for level in vision.fpn_hidden_states),
        fpn_position_encoding=tuple(level[index] for level in vision.fpn_position_encoding),
    )

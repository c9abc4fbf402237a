"""Grounding DINO (and MM Grounding DINO) as a batched zero-shot box detector: images + ontology -> sv.Detections.

Each box's class comes from the model's own token scores, not from the text it decodes. The caption is built here from
the ontology's prompts (``[CLS] a dog . puppy . [SEP]``), so each prompt's token span is known, and every query is
scored against every prompt over that prompt's own tokens. transformers' post-processing instead decodes every token
over ``text_threshold`` into a label, which mixes prompts ("cat dog", "red block orange block") and keeps boxes whose
best token is "." or [SEP] with an empty label (IDEA-Research/GroundingDINO #56, Grounded-Segment-Anything #279).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import supervision as sv
import torch

from grounded_sam.detection.base import shown_prompt
from grounded_sam.detection.phrases import non_degenerate
from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.device import autocast, chunks, images_per_pass, precision_name
from grounded_sam.errors import UserInputError
from grounded_sam.models.hub import source_identity
from grounded_sam.ontology import CaptionOntology

DEFAULT_BOX_THRESHOLD = 0.35  # IDEA's demo; Grounded-SAM and LangSAM use 0.3, transformers' post-processing 0.25
DEFAULT_TEXT_THRESHOLD = 0.25  # IDEA's demo, Grounded-SAM, LangSAM and transformers alike
MAX_TEXT_TOKENS = 256  # config.max_text_len of the released checkpoints; the model silently cuts longer input
_DELIMITERS = (".", "?")  # Grounding DINO splits phrases at these tokens (modeling_grounding_dino.SPECIAL_TOKENS)


def grounding_dino_settings(source, box_threshold: float, text_threshold: float, autocast_dtype) -> dict:
    """A Grounding DINO detector's settings, from a built one or from what it would be built from."""
    return {
        "type": "grounding-dino",
        "model": source_identity(source),
        "box_threshold": box_threshold,
        "text_threshold": text_threshold,
        "precision": precision_name(autocast_dtype),
    }


@dataclass(frozen=True)
class Caption:
    """One text row: its prompts, its token ids (``[CLS] p1 . p2 . ... [SEP]``) and each prompt's [start, end) span."""

    prompts: tuple[str, ...]
    input_ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def clean_prompt(prompt: str) -> str:
    """The prompt as the caption holds it: lower case, single spaces. Refuses "." and "?", where Grounding DINO would
    split the prompt into two phrases."""
    text = " ".join(prompt.lower().split())
    if any(mark in text for mark in _DELIMITERS):
        raise UserInputError(
            f"Prompt {shown_prompt(prompt)} contains '.' or '?': Grounding DINO splits phrases there; remove them "
            "from the prompt"
        )
    return text


def build_captions(tokenizer, prompts: Sequence[str], max_tokens: int = MAX_TEXT_TOKENS) -> list[Caption]:
    """Packs prompts, in order, into as few captions as fit ``max_tokens`` (each caption costs a forward pass).

    The ids are those of tokenizing ``"p1. p2."`` as one string (each prompt is tokenized alone, which gives the same
    pieces), so each prompt's span is exact. A prompt that cannot fit a caption alone raises ``UserInputError``.
    """
    cls_id, sep_id, dot_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.convert_tokens_to_ids(".")
    captions: list[Caption] = []
    group: list[str] = []
    ids, spans = [cls_id], []
    for prompt in prompts:
        pieces = tokenizer(clean_prompt(prompt), add_special_tokens=False)["input_ids"]
        if len(pieces) + 3 > max_tokens:  # [CLS] prompt . [SEP]
            raise UserInputError(
                f"Prompt {shown_prompt(prompt)} is {len(pieces)} tokens long; Grounding DINO reads at most "
                f"{max_tokens - 3} per prompt: shorten it"
            )
        if len(ids) + len(pieces) + 2 > max_tokens:
            captions.append(Caption(tuple(group), (*ids, sep_id), tuple(spans)))
            group, ids, spans = [], [cls_id], []
        spans.append((len(ids), len(ids) + len(pieces)))
        ids += [*pieces, dot_id]
        group.append(prompt)
    captions.append(Caption(tuple(group), (*ids, sep_id), tuple(spans)))
    return captions


def check_prompts(tokenizer, config, prompts: Sequence[str]) -> list[Caption]:
    """The captions of ``prompts`` for a model of ``config`` (a ``GroundingDinoConfig``); refuses (``UserInputError``)
    prompts with "." or "?" or too long for a caption."""
    return build_captions(tokenizer, prompts, min(MAX_TEXT_TOKENS, config.max_text_len))


def prompt_scores(probs: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(..., tokens) token probabilities -> (..., prompts): each prompt's best token.

    Where the best token of the whole caption lies inside a prompt, this is Grounding DINO's own box score, so the
    thresholds people know keep their meaning. (mmdetection's ``convert_grounding_to_cls_scores`` takes the mean
    over the span instead.)
    """
    return torch.stack([probs[..., start:end].max(-1).values for start, end in spans], -1)


def assign(
    logits: torch.Tensor,
    boxes_cxcywh: torch.Tensor,
    spans: Sequence[tuple[int, int]],
    box_threshold: float,
    text_threshold: float,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's queries against one caption: which to keep, with which prompt and confidence. Pure.

    Args:
        logits: (queries, tokens) token logits (``outputs.logits[i]``).
        boxes_cxcywh: (queries, 4) boxes, cx, cy, w, h relative to the unpadded image (``outputs.pred_boxes[i]``).
        spans: each prompt's [start, end) token span in the caption.
        box_threshold: keep a query whose best prompt scores above this.
        text_threshold: ... and whose best prompt token scores above this (transformers' rule for a token to enter
            a label); with the best-token score it matters only when set above ``box_threshold``.
        width, height: the original image's size in pixels.

    Returns:
        xyxy (n, 4) float32 pixels clipped to the image, confidence (n,) float32 in [0, 1] (the prompt's best token
        probability), and the prompt index (n,) int of each kept query.
    """
    scores = prompt_scores(logits.float().sigmoid().cpu(), spans)
    best, prompt_index = scores.max(-1)
    keep = (best > box_threshold) & (best > text_threshold)
    cx, cy, w, h = boxes_cxcywh[keep].float().cpu().unbind(-1)
    size = torch.tensor([width, height, width, height], dtype=torch.float32)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * size
    xyxy = xyxy.clamp(min=0).minimum(size).numpy().reshape(-1, 4)
    valid = non_degenerate(xyxy)
    return xyxy[valid], best[keep].numpy()[valid].astype(np.float32), prompt_index[keep].numpy()[valid]


class GroundingDinoDetector:
    """Finds the ontology's prompts with a built (MM) Grounding DINO (a :class:`~grounded_sam.Detector`).

    Args:
        model: ``GroundingDinoForObjectDetection`` or ``MMGroundingDinoForObjectDetection`` in eval mode.
        processor: the matching ``GroundingDinoProcessor``.
        ontology: prompts to look for and the class each labels.
        box_threshold: keep boxes whose best prompt's best token probability exceeds this.
        text_threshold: and whose best prompt token exceeds this (see :func:`assign`).
        autocast_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA), or None.

    The prompts are packed into captions of at most 256 tokens (usually one); each caption is one forward pass per
    batch. A prompt with "." or "?" or too long for a caption is refused here, once.
    """

    def __init__(
        self,
        model,
        processor,
        ontology: CaptionOntology,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model, self.processor, self.ontology = model, processor, ontology
        self.box_threshold, self.text_threshold, self.autocast_dtype = box_threshold, text_threshold, autocast_dtype
        self.captions = check_prompts(processor.tokenizer, model.config, ontology.prompts())

    @property
    def device(self) -> torch.device:
        return self.model.device

    def with_ontology(self, ontology: CaptionOntology) -> GroundingDinoDetector:
        """This detector's model, processor and thresholds for other prompts: nothing is loaded."""
        return GroundingDinoDetector(
            self.model, self.processor, ontology, self.box_threshold, self.text_threshold, self.autocast_dtype
        )

    def settings(self) -> dict:
        """What its detections depend on: the model, the thresholds and the precision (a dataset stores this)."""
        return grounding_dino_settings(
            self.model.config.name_or_path, self.box_threshold, self.text_threshold, self.autocast_dtype
        )

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detects the ontology's prompts in a batch of images.

        Images are batched only with images of the same processed size. Padding a smaller image to the batch's
        largest changes its result (Swin sees the padding, the valid ratios are rounded to feature cells, and the
        two-stage top-k then picks other proposals: on the tiny random model some logits moved by 17), while equal
        sizes give the one-by-one result to float precision; a folder of photos from one camera still batches whole.

        Args:
            images: (H, W, 3) uint8 RGB arrays.

        Returns:
            One ``sv.Detections`` per image (no masks): xyxy float32 pixels clipped to the image, confidence in [0, 1]
            (see :func:`assign`), class_id into ``ontology.classes()``, data["class_name"] and data["prompt"].
        """
        found: list[list[tuple]] = [[] for _ in images]
        with autocast(self.device, self.autocast_dtype):
            for indices, pixel_values in self._same_size_batches(images):
                for caption in self.captions:
                    outputs = self._forward(pixel_values, caption)
                    for row, index in enumerate(indices):
                        height, width = images[index].shape[:2]
                        kept = assign(
                            outputs.logits[row],
                            outputs.pred_boxes[row],
                            caption.spans,
                            self.box_threshold,
                            self.text_threshold,
                            width,
                            height,
                        )
                        found[index].append((*kept, caption))
        return [self._to_detections(parts) for parts in found]

    def _same_size_batches(self, images: Sequence[np.ndarray]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(image indices, (n, 3, h, w) pixel values) of images that the processor resizes to the same size."""
        # input_data_format: without it transformers guesses the layout and reads a 3-pixel-tall image channels-first
        pixels = [
            self.processor.image_processor(
                [image], return_tensors="pt", device=self.device, input_data_format="channels_last"
            )["pixel_values"]
            for image in images
        ]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, values in enumerate(pixels):
            groups.setdefault(tuple(values.shape[-2:]), []).append(index)
        for indices in groups.values():
            for chunk in chunks(indices, images_per_pass(self.device, len(indices))):
                yield list(chunk), torch.cat([pixels[index] for index in chunk])

    def _forward(self, pixel_values: torch.Tensor, caption: Caption):
        """One forward pass of equal-size images (no padding, so no pixel_mask) against one caption."""
        ids = torch.tensor([caption.input_ids], device=self.device).repeat(len(pixel_values), 1)
        return self.model(
            pixel_values=pixel_values.to(self.device, self.model.dtype),
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            token_type_ids=torch.zeros_like(ids),
        )

    def _to_detections(self, parts: list[tuple]) -> sv.Detections:
        """One image's kept queries of every caption -> Detections."""
        prompts = [caption.prompts[index] for _, _, indices, caption in parts for index in indices]
        class_names = [self.ontology.promptToClass(prompt) for prompt in prompts]
        return sv.Detections(
            xyxy=np.concatenate([xyxy for xyxy, *_ in parts]).astype(np.float32).reshape(-1, 4),
            confidence=np.concatenate([scores for _, scores, *_ in parts]).astype(np.float32),
            class_id=np.array([self.ontology.class_id(name) for name in class_names], dtype=int),
            data={CLASS_NAME: np.array(class_names, dtype=str), PROMPT: np.array(prompts, dtype=str)},
        )

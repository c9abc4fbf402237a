"""OWLv2 as a batched zero-shot box detector: images + ontology -> sv.Detections.

The prompts are embedded once per detector (they are the same for every image); each batch of images runs the vision
tower once, then OWLv2's class and box heads. Every image is padded bottom/right to a square and resized (960 x 960
for the released checkpoints), so boxes come relative to that square: they are scaled by max(h, w) and clipped to
the image, and boxes left wholly in the padding are dropped. transformers' post-processing does not clip, and applies
no NMS to text queries; here the boxes of each class go through NMS (two prompts of one class suppress each other).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
import torch
from torchvision.ops import batched_nms

from grounded_sam.detection.base import check_prompt_lengths
from grounded_sam.detection.phrases import non_degenerate
from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.device import autocast, chunks, images_per_pass, precision_name
from grounded_sam.models.hub import source_identity
from grounded_sam.ontology import CaptionOntology

DEFAULT_BOX_THRESHOLD = 0.1  # transformers' default; peers use 0.1 to 0.3
NMS_THRESHOLD = 0.3  # transformers' image-guided detection and peers' text-query pipelines


def owlv2_settings(source, box_threshold: float, nms_threshold: float, autocast_dtype) -> dict:
    """An OWLv2 detector's settings, from a built one or from what it would be built from."""
    return {
        "type": "owlv2",
        "model": source_identity(source),
        "box_threshold": box_threshold,
        "nms_threshold": nms_threshold,
        "precision": precision_name(autocast_dtype),
    }


def text_limit(config) -> int:
    """How many tokens (start and end included) the text tower of an ``Owlv2Config`` reads: 16 when released."""
    return config.text_config.max_position_embeddings


def check_prompts(tokenizer, config, prompts: Sequence[str]) -> None:
    """Refuses (``UserInputError``) prompts longer than the text tower reads; the processor does not cut them, and
    the model would fail on the whole batch."""
    check_prompt_lengths(tokenizer, prompts, text_limit(config), "OWLv2")


def square_boxes_to_pixels(boxes_cxcywh: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 4) cx, cy, w, h relative to the padded square -> (n, 4) float32 xyxy pixels clipped to the image."""
    cx, cy, w, h = boxes_cxcywh.float().unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * float(max(height, width))
    return xyxy.clamp(min=0).minimum(torch.tensor([width, height, width, height], dtype=xyxy.dtype))


class Owlv2Detector:
    """Finds the ontology's prompts with a built OWLv2 (a :class:`~grounded_sam.Detector`).

    Args:
        model: ``Owlv2ForObjectDetection`` in eval mode.
        processor: the matching ``Owlv2Processor``.
        ontology: prompts to look for and the class each labels.
        box_threshold: keep boxes whose best prompt's probability exceeds this.
        nms_threshold: IoU above which the lower-scoring of two boxes of one class is dropped (1.0: no NMS).
        autocast_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA), or None.

    A prompt longer than the text tower reads (see :func:`check_prompts`) is refused here, once.
    """

    def __init__(
        self,
        model,
        processor,
        ontology: CaptionOntology,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model, self.processor, self.ontology = model, processor, ontology
        self.box_threshold, self.nms_threshold, self.autocast_dtype = box_threshold, nms_threshold, autocast_dtype
        self.max_text_tokens = text_limit(model.config)
        check_prompts(processor.tokenizer, model.config, ontology.prompts())
        self._prompt_class = np.array([ontology.class_id(ontology.promptToClass(p)) for p in ontology.prompts()])
        self._queries: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def with_ontology(self, ontology: CaptionOntology) -> Owlv2Detector:
        """This detector's model, processor and thresholds for other prompts: nothing is loaded."""
        return Owlv2Detector(
            self.model, self.processor, ontology, self.box_threshold, self.nms_threshold, self.autocast_dtype
        )

    def settings(self) -> dict:
        """What its detections depend on: the model, the thresholds and the precision (a dataset stores this)."""
        return owlv2_settings(
            self.model.config.name_or_path, self.box_threshold, self.nms_threshold, self.autocast_dtype
        )

    def query_embeds(self) -> torch.Tensor:
        """(prompts, dim) text query embeddings, computed once (call under inference mode and autocast)."""
        if self._queries is None:
            text = self.processor.tokenizer(
                self.ontology.prompts(), padding="max_length", max_length=self.max_text_tokens, return_tensors="pt"
            ).to(self.device)
            self._queries = self.model.owlv2.get_text_features(**text).pooler_output
        return self._queries

    @torch.inference_mode()
    def logits_and_boxes(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, boxes, prompts) logits and (batch, boxes, 4) cx, cy, w, h boxes relative to each padded square.

        This is ``model(**processor(images, text))`` taken apart (equal to 1.5e-5 in logits on the tiny model) so
        that the text is embedded once, not once per image.
        """
        logits, boxes = [], []
        with autocast(self.device, self.autocast_dtype):
            queries = self.query_embeds()
            for batch in chunks(list(images), images_per_pass(self.device, len(images))):
                pixel_values = self.processor.image_processor(
                    batch, return_tensors="pt", device=self.device, input_data_format="channels_last"
                )["pixel_values"].to(self.device, self.model.dtype)
                feature_map = self.model.image_embedder(pixel_values=pixel_values)[0]  # (n, rows, columns, dim)
                n, rows, columns, dim = feature_map.shape
                features = feature_map.reshape(n, rows * columns, dim)
                logits.append(self.model.class_predictor(features, queries[None].expand(n, -1, -1), None)[0].float())
                boxes.append(self.model.box_predictor(features, feature_map).float())
        return torch.cat(logits).cpu(), torch.cat(boxes).cpu()

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detects the ontology's prompts in a batch of images (every image is resized to the same square, so a batch
        needs no padding and equals one by one).

        Args:
            images: (H, W, 3) uint8 RGB arrays.

        Returns:
            One ``sv.Detections`` per image (no masks): xyxy float32 pixels clipped to the image, confidence in [0, 1]
            (sigmoid of OWLv2's class logit of the box's best prompt), class_id into ``ontology.classes()``,
            data["class_name"] and data["prompt"].
        """
        if not images:
            return []
        logits, boxes = self.logits_and_boxes(images)
        return [
            self.to_detections(image_logits, image_boxes, *image.shape[:2])
            for image_logits, image_boxes, image in zip(logits, boxes, images)
        ]

    def to_detections(self, logits: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> sv.Detections:
        """One image's (boxes, prompts) logits and (boxes, 4) square-relative cx, cy, w, h boxes -> Detections. Pure.

        Each box takes its best prompt (transformers' rule) and is kept when that prompt's probability exceeds
        ``box_threshold``; then per-class NMS. Rows come sorted by decreasing confidence.
        """
        scores, prompt_index = logits.float().sigmoid().max(-1)
        keep = scores > self.box_threshold
        xyxy = square_boxes_to_pixels(boxes[keep], height, width)
        scores, prompt_index = scores[keep], prompt_index[keep]
        valid = torch.from_numpy(non_degenerate(xyxy.numpy()))  # boxes left wholly in the padding are empty here
        xyxy, scores, prompt_index = xyxy[valid], scores[valid], prompt_index[valid]
        class_id = torch.from_numpy(self._prompt_class[prompt_index.numpy()]).long()
        if self.nms_threshold < 1.0:
            order = batched_nms(xyxy, scores, class_id, self.nms_threshold)  # kept indices, by decreasing score
        else:
            order = torch.argsort(scores, descending=True, stable=True)
        prompts = [self.ontology.prompts()[index] for index in prompt_index[order].tolist()]
        classes = self.ontology.classes()
        class_names = [classes[index] for index in class_id[order].tolist()]
        return sv.Detections(
            xyxy=xyxy[order].numpy().astype(np.float32).reshape(-1, 4),
            confidence=scores[order].numpy().astype(np.float32),
            class_id=class_id[order].numpy().astype(int),
            data={CLASS_NAME: np.array(class_names, dtype=str), PROMPT: np.array(prompts, dtype=str)},
        )

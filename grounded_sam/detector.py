"""Florence-2 as a batched zero-shot box detector: images + caption ontology -> supervision.Detections."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import supervision as sv
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .device import autocast
from .ontology import CaptionOntology
from .parsing import GroundedBox, bins_to_xyxy, match_phrase, non_degenerate, parse_grounded_boxes

logger = logging.getLogger(__name__)

PHRASE_GROUNDING = "phrase_grounding"
OPEN_VOCABULARY = "open_vocabulary"
_TASK_TOKENS = {PHRASE_GROUNDING: "<CAPTION_TO_PHRASE_GROUNDING>", OPEN_VOCABULARY: "<OPEN_VOCABULARY_DETECTION>"}


class Florence2Detector:
    """Finds the ontology's prompts in images with a built Florence-2 model.

    Args:
        model: a ``Florence2ForConditionalGeneration`` in eval mode, on its device.
        processor: the matching ``Florence2Processor``.
        ontology: prompts to look for and the class each labels.
        task: ``"phrase_grounding"`` (one caption holding every prompt, one sequence per image) or
            ``"open_vocabulary"`` (one sequence per image x prompt pair; vision features computed once per image).
        max_new_tokens: generation budget per sequence.
        num_beams: 1 is greedy search; more uses beam search (slower).
        autocast_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA), or None.
    """

    def __init__(
        self,
        model,
        processor,
        ontology: CaptionOntology,
        task: str = PHRASE_GROUNDING,
        max_new_tokens: int = 1024,
        num_beams: int = 1,
        autocast_dtype: torch.dtype | None = None,
    ):
        if task not in _TASK_TOKENS:
            raise ValueError(f"Unknown task {task!r}: choose one of {sorted(_TASK_TOKENS)}")
        if num_beams < 1 or max_new_tokens < 1:
            raise ValueError(f"num_beams and max_new_tokens must be >= 1, got {num_beams} and {max_new_tokens}")
        self.model, self.processor, self.ontology = model, processor, ontology
        self.task, self.max_new_tokens, self.num_beams = task, max_new_tokens, num_beams
        self.autocast_dtype = autocast_dtype
        self._pieces: dict[int, str] = {}

    @property
    def device(self) -> torch.device:
        return self.model.device

    def caption(self) -> str:
        """The phrase-grounding caption: every prompt, separated by periods."""
        return ". ".join(self.ontology.prompts()) + "."

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detects the ontology's prompts in a batch of images with one ``generate`` call.

        Args:
            images: (H, W, 3) uint8 RGB arrays.

        Returns:
            One ``sv.Detections`` per image (no masks): xyxy float32 pixels clipped to the image, confidence in
            [0, 1], class_id into ``ontology.classes()``, data["class_name"] and data["prompt"].
        """
        if not images:
            return []
        if self.task == PHRASE_GROUNDING:
            prompts_per_sequence = [None] * len(images)
            sequences, log_probs = self._generate_phrase_grounding(images)
        else:
            prompts_per_sequence = self.ontology.prompts() * len(images)
            sequences, log_probs = self._generate_open_vocabulary(images)
        per_image = len(sequences) // len(images)
        results = []
        for index, image in enumerate(images):
            boxes, prompts = [], []
            for row in range(index * per_image, (index + 1) * per_image):
                found = parse_grounded_boxes(self._to_pieces(sequences[row]), log_probs[row])
                boxes += found
                prompts += [prompts_per_sequence[row]] * len(found)
            results.append(self.to_detections(boxes, prompts, image.shape[1], image.shape[0]))
        return results

    def to_detections(
        self, boxes: Sequence[GroundedBox], asked_prompts: Sequence[str | None], width: int, height: int
    ) -> sv.Detections:
        """Turns parsed boxes into Detections, dropping boxes whose phrase matches no prompt and degenerate boxes.

        ``asked_prompts[i]`` is the prompt box ``i`` was generated for (open-vocabulary mode), or None to match its
        phrase against every prompt (phrase grounding).
        """
        prompts = self.ontology.prompts()
        kept, kept_prompts = [], []
        for box, asked in zip(boxes, asked_prompts):
            prompt = asked if asked is not None else match_phrase(box.phrase, prompts)
            if prompt is None:
                logger.debug("dropping box with phrase %r: it matches no prompt", box.phrase)
                continue
            kept.append(box)
            kept_prompts.append(prompt)
        xyxy = bins_to_xyxy(np.array([box.bins for box in kept], dtype=np.float64).reshape(-1, 4), width, height)
        valid = non_degenerate(xyxy)
        class_names = [self.ontology.promptToClass(prompt) for prompt in kept_prompts]
        detections = sv.Detections(
            xyxy=xyxy[valid],
            confidence=np.clip(np.array([box.confidence for box in kept], dtype=np.float32), 0, 1)[valid],
            class_id=np.array([self.ontology.class_id(name) for name in class_names], dtype=int)[valid],
            data={
                "class_name": np.array(class_names, dtype=str)[valid],
                "prompt": np.array(kept_prompts, dtype=str)[valid],
            },
        )
        return detections

    def _generate_phrase_grounding(self, images):
        text = _TASK_TOKENS[PHRASE_GROUNDING] + self.caption()
        inputs = self.processor(images=list(images), text=[text] * len(images), return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return self._generate(**inputs)

    def _generate_open_vocabulary(self, images):
        prompts = self.ontology.prompts()
        pixel_values = self.processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
        with autocast(self.device, self.autocast_dtype):
            features = self.model.get_image_features(pixel_values.to(self.device, self.model.dtype)).pooler_output
        features = features.repeat_interleave(len(prompts), dim=0)
        texts = [self.open_vocabulary_text(prompt) for prompt in prompts] * len(images)
        tokens = self.processor.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        tokens = tokens.to(self.device)
        image_outputs = BaseModelOutputWithPooling(pooler_output=features)
        return self._generate(**tokens, mm_encoder_outputs={"image": image_outputs})

    def open_vocabulary_text(self, prompt: str) -> str:
        """The encoder text for one prompt, laid out as ``Florence2Processor`` lays it out for an image and text."""
        processor = self.processor
        instruction = processor.task_prompts_with_input[_TASK_TOKENS[OPEN_VOCABULARY]].format(input=prompt)
        tokenizer = processor.tokenizer
        return processor.image_token * processor.num_image_tokens + tokenizer.bos_token + instruction + tokenizer.eos_token

    def _generate(self, **inputs) -> tuple[torch.Tensor, np.ndarray]:
        greedy = self.num_beams == 1
        with autocast(self.device, self.autocast_dtype):
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
                return_dict_in_generate=True,
                output_logits=greedy,
                output_scores=not greedy,
            )
        sequences = output.sequences
        if greedy:
            # Raw logits: processed scores give forced tokens probability 1 and hide the model's uncertainty.
            log_probs = torch.stack([
                step.float().log_softmax(-1).gather(-1, sequences[:, i + 1, None])[:, 0]
                for i, step in enumerate(output.logits)
            ], dim=1)
        else:
            log_probs = self.model.compute_transition_scores(sequences, output.scores, output.beam_indices).float()
        # Column 0 is the decoder start token, which was not generated.
        log_probs = torch.cat([torch.zeros_like(log_probs[:, :1]), log_probs], dim=1)
        return sequences.cpu(), log_probs[:, : sequences.shape[1]].cpu().numpy()

    def _to_pieces(self, sequence: torch.Tensor) -> list[str]:
        return [self._piece(token_id) for token_id in sequence.tolist()]

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            tokenizer = self.processor.tokenizer
            token = tokenizer.convert_ids_to_tokens(token_id)
            special = token in tokenizer.all_special_tokens or token in tokenizer.get_added_vocab()
            piece = token if special else tokenizer.convert_tokens_to_string([token])
            self._pieces[token_id] = piece
        return piece


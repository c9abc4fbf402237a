"""Florence-2 as a batched zero-shot box detector: images + caption ontology -> supervision.Detections."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Sequence

import numpy as np
import supervision as sv
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from grounded_sam.detection.florence2_decoding import (
    CACHE_ARGUMENT,
    LocationLogProbs,
    StaticCacheKeeper,
    decoding_options,
)
from grounded_sam.detection.florence2_parsing import LOCATION_BINS, GroundedBox, bins_to_xyxy, parse_grounded_boxes
from grounded_sam.detection.phrases import match_phrase, non_degenerate
from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.device import autocast, chunks, images_per_pass, precision_name
from grounded_sam.errors import UserInputError
from grounded_sam.models.hub import source_identity
from grounded_sam.ontology import CaptionOntology

logger = logging.getLogger(__name__)

PHRASE_GROUNDING = "phrase_grounding"
OPEN_VOCABULARY = "open_vocabulary"
OBJECT_DETECTION = "object_detection"  # Florence-2's own "<OD>": every object it knows, no prompt
_TASK_TOKENS = {
    PHRASE_GROUNDING: "<CAPTION_TO_PHRASE_GROUNDING>",
    OPEN_VOCABULARY: "<OPEN_VOCABULARY_DETECTION>",
    OBJECT_DETECTION: "<OD>",
}
TASKS = tuple(_TASK_TOKENS)


def check_generation_options(task: str, max_new_tokens: int, num_beams: int) -> None:
    """Raises UserInputError for an unknown task or a non-positive budget, before any model is loaded."""
    if task not in _TASK_TOKENS:
        raise UserInputError(f"Unknown task {task!r}: choose one of {sorted(_TASK_TOKENS)}")
    if num_beams < 1 or max_new_tokens < 1:
        raise UserInputError(f"num_beams and max_new_tokens must be >= 1, got {num_beams} and {max_new_tokens}")


def florence2_settings(source, task: str, max_new_tokens: int, num_beams: int, autocast_dtype) -> dict:
    """A Florence-2 detector's settings, from a built one or from what it would be built from."""
    return {
        "type": "florence2",
        "model": source_identity(source),
        "task": task,
        "max_new_tokens": max_new_tokens,
        "num_beams": num_beams,
        "precision": precision_name(autocast_dtype),
    }


class Florence2Detector:
    """Finds the ontology's prompts in images with a built Florence-2 model (a :class:`~grounded_sam.Detector`).

    Args:
        model: a ``Florence2ForConditionalGeneration`` in eval mode, on its device.
        processor: the matching ``Florence2Processor``.
        ontology: prompts to look for and the class each labels. With ``task="object_detection"`` it may be None.
        task: ``"phrase_grounding"`` (one caption holding every prompt, one sequence per image; split over several
            captions when too long for the encoder), ``"open_vocabulary"`` (one sequence per image x prompt pair) or
            ``"object_detection"`` (Florence-2's ``<OD>`` task: no prompt, one sequence per image naming every object
            it finds). Either way each image's vision features are computed once.
        max_new_tokens: generation budget per sequence.
        num_beams: 1 is greedy search; more uses beam search (slower).
        autocast_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA), or None.

    With ``"object_detection"`` and an ontology, the objects whose name matches a prompt are kept, under that prompt's
    class; without one, every name Florence-2 writes is a class of its own, and class_id indexes
    :attr:`found_classes` (the names in first-seen order, kept across calls so ids stay stable).

    One detector serves one thread at a time (its confidence hook records one ``generate`` call). A prompt too long
    for Florence-2 is refused here, once.
    """

    def __init__(
        self,
        model,
        processor,
        ontology: CaptionOntology | None,
        task: str = PHRASE_GROUNDING,
        max_new_tokens: int = 1024,
        num_beams: int = 1,
        autocast_dtype: torch.dtype | None = None,
    ):
        check_generation_options(task, max_new_tokens, num_beams)
        if ontology is None and task != OBJECT_DETECTION:
            raise UserInputError(f"task={task!r} needs an ontology; only task='object_detection' runs without one")
        self.model, self.processor, self.ontology = model, processor, ontology
        self.found_classes: list[str] = []
        self.task, self.max_new_tokens, self.num_beams = task, max_new_tokens, num_beams
        self.autocast_dtype = autocast_dtype
        self.generate_options: dict = {}  # more keyword arguments for generate (see compile())
        self.static_cache = StaticCacheKeeper(model, max_new_tokens)
        self._pieces: dict[int, str] = {}
        self._location_lookup: tuple[torch.Tensor, torch.Tensor] | None = None
        self._location_recorder: LocationLogProbs | None = None
        self._row_prompts, self._row_tokens = self._rows()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def settings(self) -> dict:
        """What its detections depend on: the model and the decoding options (a dataset stores this)."""
        return florence2_settings(
            self.model.config.name_or_path, self.task, self.max_new_tokens, self.num_beams, self.autocast_dtype
        )

    def with_ontology(self, ontology: CaptionOntology | None, task: str | None = None) -> Florence2Detector:
        """This detector's model, processor and options for other prompts (and task): nothing is loaded."""
        return Florence2Detector(
            self.model,
            self.processor,
            ontology,
            task=task or self.task,
            max_new_tokens=self.max_new_tokens,
            num_beams=self.num_beams,
            autocast_dtype=self.autocast_dtype,
        )

    def compile(self) -> None:
        """``torch.compile`` the vision tower, and decode greedily with a static KV cache that transformers'
        ``generate`` compiles (CUDA graphs on CUDA; see :func:`.florence2_decoding.decoding_options`). The first
        batch of each size pays the compilation; fused kernels may round differently from eager mode."""
        self.model.model.vision_tower = torch.compile(self.model.model.vision_tower)
        self.generate_options = decoding_options(self.device, self.num_beams) or {}

    def captions(self) -> list[list[str]]:
        """The prompts of each phrase-grounding caption.

        Usually one caption holds every prompt; a long ontology is split so that image tokens plus caption fit the
        encoder's position limit (beyond it Florence-2 fails with an index error, or a device-side assert on CUDA).
        """
        tokenizer = self.processor.tokenizer
        budget = self._max_text_tokens()
        groups: list[list[str]] = [[]]
        used = 0
        for prompt in self.ontology.prompts():
            size = len(tokenizer(" " + prompt + ".", add_special_tokens=False)["input_ids"])
            if size > budget:
                shown = repr(prompt if len(prompt) <= 60 else prompt[:60] + "...")
                raise UserInputError(
                    f"Prompt {shown} is {size} tokens long; Florence-2 has room for {budget}: shorten it"
                )
            if used + size > budget and groups[-1]:
                groups.append([])
                used = 0
            groups[-1].append(prompt)
            used += size
        return groups

    @staticmethod
    def caption(prompts: Sequence[str]) -> str:
        """The phrase-grounding caption for ``prompts``: the prompts separated by periods."""
        return ". ".join(prompts) + "."

    def _encode_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The encoder tokens of one row per text for ``task``, as the processor lays them out (image tokens, task
        instruction, text); a 1-pixel stand-in image, since each batch's real images are encoded apart."""
        stand_in = np.zeros((1, 1, 3), dtype=np.uint8)
        tokens = self.processor(
            text=[_TASK_TOKENS[self.task] + text for text in texts],
            images=[stand_in] * len(texts),
            padding=True,
            return_tensors="pt",
            input_data_format="channels_last",
        )
        return {key: tokens[key] for key in ("input_ids", "attention_mask")}

    def _max_text_tokens(self) -> int:
        limit = self.model.config.text_config.max_position_embeddings
        return limit - int(self._encode_texts([""])["attention_mask"].sum())

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detects the ontology's prompts in a batch of images with one ``generate`` call.

        Each image's vision features are computed once and shared by all its rows: one row per caption (phrase
        grounding, usually one) or one row per prompt (open vocabulary).

        Args:
            images: (H, W, 3) uint8 RGB arrays.

        Returns:
            One ``sv.Detections`` per image (no masks): xyxy float32 pixels clipped to the image, confidence in
            [0, 1], class_id into ``ontology.classes()`` (into :attr:`found_classes` for object detection without an
            ontology), data["class_name"] and data["prompt"] (the name Florence-2 wrote, for object detection).
        """
        if not images:
            return []
        sequences, log_probs = self.generate(images)
        rows = len(self._row_prompts)
        results = []
        for index, image in enumerate(images):
            boxes, candidates = [], []
            for offset, prompts in enumerate(self._row_prompts):
                found = parse_grounded_boxes(
                    self.token_pieces(sequences[index * rows + offset]), log_probs[index * rows + offset]
                )
                boxes += found
                candidates += [prompts] * len(found)
            results.append(self.to_detections(boxes, candidates, image.shape[1], image.shape[0]))
        return results

    def to_detections(
        self, boxes: Sequence[GroundedBox], candidates: Sequence[Sequence[str]], width: int, height: int
    ) -> sv.Detections:
        """Turns parsed boxes into Detections, dropping boxes whose phrase matches no prompt and degenerate boxes.

        ``candidates[i]`` are the prompts box ``i`` may belong to: its caption's prompts, matched by phrase (phrase
        grounding, and object detection with an ontology), or the one prompt it was generated for (open vocabulary,
        taken as is). Object detection without an ontology keeps every box with a name, the name as its class.
        """
        kept, kept_prompts = [], []
        for box, prompts in zip(boxes, candidates):
            if self.ontology is None:
                prompt = box.phrase or None
            else:
                prompt = prompts[0] if self.task == OPEN_VOCABULARY else match_phrase(box.phrase, prompts)
            if prompt is None:
                logger.debug("dropping box with phrase %r: it matches no prompt", box.phrase)
                continue
            kept.append(box)
            kept_prompts.append(prompt)
        xyxy = bins_to_xyxy(np.array([box.bins for box in kept], dtype=np.float64).reshape(-1, 4), width, height)
        valid = non_degenerate(xyxy)
        class_names = [self._class_of(prompt) for prompt in kept_prompts]
        return sv.Detections(
            xyxy=xyxy[valid],
            confidence=np.clip(np.array([box.confidence for box in kept], dtype=np.float32), 0, 1)[valid],
            class_id=np.array([self._class_id(name) for name in class_names], dtype=int)[valid],
            data={
                CLASS_NAME: np.array(class_names, dtype=str)[valid],
                PROMPT: np.array(kept_prompts, dtype=str)[valid],
            },
        )

    def _class_of(self, prompt: str) -> str:
        return prompt if self.ontology is None else self.ontology.promptToClass(prompt)

    def _class_id(self, class_name: str) -> int:
        if self.ontology is not None:
            return self.ontology.class_id(class_name)
        if class_name not in self.found_classes:
            self.found_classes.append(class_name)
        return self.found_classes.index(class_name)

    def _rows(self) -> tuple[list[list[str]], dict[str, torch.Tensor]]:
        """Each image's rows, built once: the prompts of each row and the rows' encoder tokens."""
        if self.task == OBJECT_DETECTION:  # the task token alone (the processor refuses text beside it)
            row_prompts = [self.ontology.prompts() if self.ontology is not None else []]
            texts = [""]
        elif self.task == PHRASE_GROUNDING:
            row_prompts = self.captions()
            texts = [self.caption(prompts) for prompts in row_prompts]
        else:
            row_prompts = [[prompt] for prompt in self.ontology.prompts()]
            texts = self.ontology.prompts()
        tokens = self._encode_texts(texts)
        return row_prompts, {key: value.to(self.device) for key, value in tokens.items()}

    def generate(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """Generates every row for every image, image-major, in one ``generate`` call; returns the sequences and each
        token's log-probability (0 for tokens that are not locations)."""
        # Resized and normalized where the model runs (transformers' torchvision backend), in one batch.
        # input_data_format: without it transformers guesses the layout and reads a 3-pixel-tall image channels-first
        pixel_values = self.processor.image_processor(
            list(images), return_tensors="pt", device=self.device, input_data_format="channels_last"
        )["pixel_values"]
        rows_per_image = len(self._row_tokens["input_ids"])
        tokens = {key: value.repeat(len(images), 1) for key, value in self._row_tokens.items()}
        greedy = self.num_beams == 1
        recording = self._location_log_probs().recording() if greedy else contextlib.nullcontext()
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype), recording as steps:
            pixel_values = pixel_values.to(self.device, self.model.dtype)
            passes = chunks(pixel_values, images_per_pass(self.device, len(pixel_values)))
            features = torch.cat([self.model.get_image_features(chunk).pooler_output for chunk in passes])
            output = self.model.generate(
                **tokens,
                **self._generate_options(*tokens["input_ids"].shape),
                mm_encoder_outputs={
                    "image": BaseModelOutputWithPooling(pooler_output=features.repeat_interleave(rows_per_image, dim=0))
                },
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
                return_dict_in_generate=True,
                output_scores=not greedy,
            )
        sequences = output.sequences
        if greedy:
            log_probs = self._location_log_probs().gather(steps, sequences)
        else:
            # Beam search: the beams' own (processed) scores, realigned to the kept sequences.
            log_probs = self.model.compute_transition_scores(sequences, output.scores, output.beam_indices).float()
            log_probs = torch.cat([torch.zeros_like(log_probs[:, :1]), log_probs], dim=1)  # column 0: start token
        return sequences.cpu(), log_probs[:, : sequences.shape[1]].cpu().numpy()

    def _generate_options(self, rows: int, encoder_length: int) -> dict:
        """``generate_options``, with ``cache_implementation="static"`` turned into the kept static cache."""
        options = dict(self.generate_options)
        if options.pop("cache_implementation", None) == "static":
            options[CACHE_ARGUMENT] = self.static_cache.for_batch(rows, encoder_length)
        return options

    def _location_log_probs(self) -> LocationLogProbs:
        if self._location_recorder is None:
            self._location_recorder = LocationLogProbs(self.model.lm_head, *self._location_tokens())
            weakref.finalize(self, self._location_recorder.remove)  # detectors may come and go on one model
        return self._location_recorder

    def _location_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids of ``<loc_0>``..``<loc_999>`` (1000,), and a (vocabulary,) lookup from token id to bin (-1: none)."""
        if self._location_lookup is None:
            tokenizer = self.processor.tokenizer
            ids = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOCATION_BINS)])
            if None in ids or tokenizer.unk_token_id in ids:
                raise UserInputError("The tokenizer has no <loc_0>..<loc_999> tokens: pass a Florence-2 processor")
            ids = torch.tensor(ids)
            lookup = torch.full((self.model.lm_head.out_features,), -1, dtype=torch.long)
            lookup[ids] = torch.arange(LOCATION_BINS)
            self._location_lookup = ids.to(self.device), lookup.to(self.device)
        return self._location_lookup

    def token_pieces(self, sequence: torch.Tensor) -> list[str]:
        """Generated token ids as the parser reads them: markup tokens whole (``<loc_12>``, ``</s>``), text decoded."""
        return [self._piece(token_id) for token_id in sequence.tolist()]

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            tokenizer = self.processor.tokenizer
            token = tokenizer.convert_ids_to_tokens(token_id)
            if token is None:  # an id past the tokenizer's vocabulary (the model's embedding table can be larger)
                piece = ""
            elif token in tokenizer.all_special_tokens or token in tokenizer.get_added_vocab():
                piece = token
            else:
                piece = tokenizer.convert_tokens_to_string([token])
            self._pieces[token_id] = piece
        return piece

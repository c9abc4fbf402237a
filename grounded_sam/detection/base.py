"""The seam between the pipeline and a detector: what any detector must do, and what it says it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import supervision as sv

from grounded_sam.errors import UserInputError


@runtime_checkable
class Detector(Protocol):
    """Anything that finds an ontology's prompts in a batch of images.

    ``detect(images)`` takes (H, W, 3) uint8 RGB arrays and returns one ``sv.Detections`` per image: xyxy float32
    pixels of that image, confidence in [0, 1], class_id into the ontology's ``classes()``, and
    data["class_name"] and data["prompt"]. One model call per batch is the rule; an image with nothing found gets an
    empty Detections. Optionally, ``settings()`` returns what its results depend on (JSON-ready), which a labeled
    dataset stores so that resuming with another detector is refused; and ``with_ontology(ontology)`` returns the
    same model with other prompts, which the app uses for each request's prompts.
    """

    def detect(self, images: Sequence[np.ndarray]) -> list[sv.Detections]: ...


def part_settings(part) -> dict:
    """What a pipeline part (detector or segmenter) says it is: its ``settings()``, or, for a part without one, its
    class, so that a dataset labeled with one part is not resumed with another."""
    settings = getattr(part, "settings", None)
    if callable(settings):
        return dict(settings())
    kind = type(part)
    return {"type": f"{kind.__module__}.{kind.__qualname__}"}


def check_prompt_lengths(tokenizer, prompts: Sequence[str], limit: int, model: str) -> None:
    """Refuses (``UserInputError``) a prompt longer than ``limit`` tokens with its start and end tokens: a text tower
    with ``limit`` positions would fail on it, or its processor would cut it silently."""
    for prompt in prompts:
        size = len(tokenizer(prompt, verbose=False)["input_ids"])
        if size > limit:
            raise UserInputError(
                f"Prompt {shown_prompt(prompt)} is {size} tokens long with its start and end tokens; {model} reads "
                f"at most {limit}: shorten it"
            )


def shown_prompt(prompt: str, limit: int = 60) -> str:
    """A prompt as error messages quote it: repr, cut at ``limit`` characters."""
    return repr(prompt if len(prompt) <= limit else prompt[:limit] + "...")

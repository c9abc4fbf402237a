"""Mapping the phrases a detector writes back to the ontology's prompts, and the box sanity check detectors share.

Pure functions: Florence-2 writes a phrase before each box (``"Dogs"`` for the prompt ``"a dog"``), and Grounding
DINO's labels are runs of caption tokens; both are matched to prompts here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_ARTICLES = {"a", "an", "the"}


def non_degenerate(xyxy: np.ndarray, min_size: float = 1.0) -> np.ndarray:
    """Boolean (n,) mask of boxes at least ``min_size`` pixels wide and high (inverted boxes fail)."""
    return ((xyxy[:, 2] - xyxy[:, 0]) >= min_size) & ((xyxy[:, 3] - xyxy[:, 1]) >= min_size)


def normalize_phrase(text: str) -> tuple[str, ...]:
    """Lower-cases, strips accents and punctuation, and drops leading articles: ``"The Cafés!"`` -> ``("cafes",)``."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(char for char in text if not unicodedata.combining(char))
    words = re.sub(r"[\W_]+", " ", text).split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    return tuple(words)


def _word_forms(word: str) -> set[str]:
    """The word and what it would be with a simple plural ending removed ("buses" -> bus, "puppies" -> puppy)."""
    forms = {word}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("es"):
            forms.add(word[:-2])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
    return forms


def _same_words(a: Sequence[str], b: Sequence[str]) -> bool:
    return len(a) == len(b) and all(_word_forms(x) & _word_forms(y) for x, y in zip(a, b))


def match_phrase(phrase: str, prompts: Sequence[str]) -> str | None:
    """Returns the prompt that ``phrase`` refers to, or None.

    Words are compared after :func:`normalize_phrase`, a simple plural matching its singular. A match of the whole
    phrase wins. Otherwise the prompt whose words appear as a run inside the phrase (or the phrase's words inside the
    prompt) with the most words in common wins; ties go to the earlier prompt. ``"Dogs"`` matches ``"a dog"``;
    ``"a brown dog"`` matches ``"dog"``; ``"cat"`` matches nothing in ``["dog"]``.
    """
    words = normalize_phrase(phrase)
    if not words:
        return None
    normalized = [normalize_phrase(prompt) for prompt in prompts]
    for prompt, prompt_words in zip(prompts, normalized):
        if _same_words(words, prompt_words):
            return prompt
    best, best_overlap = None, 0
    for prompt, prompt_words in zip(prompts, normalized):
        if _contains_run(words, prompt_words) or _contains_run(prompt_words, words):
            overlap = min(len(words), len(prompt_words))
            if overlap > best_overlap:
                best, best_overlap = prompt, overlap
    return best


def _contains_run(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    size = len(shorter)
    return size > 0 and any(_same_words(longer[i : i + size], shorter) for i in range(len(longer) - size + 1))

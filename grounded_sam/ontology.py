"""Caption ontologies: which text prompts to look for and which class each one labels."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from grounded_sam.errors import UserInputError


class CaptionOntology:
    """Maps text prompts (what the detector is asked to find) to class names (what is written to datasets).

    Many prompts may map to one class: ``{"a dog": "dog", "puppy": "dog"}``. Method names follow autodistill's
    ``CaptionOntology`` so code written for it keeps working; unlike autodistill, :meth:`classes` lists each class once,
    in first-seen order, so ``class_id`` indexes a list without duplicates.

    Args:
        prompts_to_classes: ``{prompt: class_name}``, both non-blank strings.

    Raises:
        ValueError: the mapping is empty, or a prompt or class is not a non-blank string.
    """

    def __init__(self, prompts_to_classes: Mapping[str, str]):
        if not isinstance(prompts_to_classes, Mapping):
            raise UserInputError(
                f"CaptionOntology expects a mapping {{prompt: class_name}}, got {type(prompts_to_classes).__name__}; "
                "for a list of prompts use CaptionOntology({p: p for p in prompts})"
            )
        if not prompts_to_classes:
            raise UserInputError(
                "The ontology is empty: give at least one {prompt: class_name} pair, e.g. {'a dog': 'dog'}"
            )
        self._prompt_to_class: dict[str, str] = {}
        for prompt, class_name in prompts_to_classes.items():
            prompt = _clean_entry(prompt, "prompt")
            self._prompt_to_class[prompt] = _clean_entry(class_name, f"class for prompt {_short(prompt)}")
        self._classes = list(dict.fromkeys(self._prompt_to_class.values()))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CaptionOntology:
        """Reads an ontology from YAML (``.yaml``/``.yml``) or JSON (``.json``).

        The file holds either a mapping ``{prompt: class_name}`` or a plain list of prompts (each its own class).
        It must be UTF-8 and at most 1 MiB; YAML anchors and aliases, and keys given twice, are refused.
        """
        path = Path(path)
        content = load_mapping_file(path)
        if isinstance(content, list):
            content = {prompt: prompt for prompt in content}
        if not isinstance(content, Mapping):
            raise UserInputError(
                f"Ontology file {path} must hold a mapping {{prompt: class_name}} or a list of prompts, "
                f"got {type(content).__name__}"
            )
        try:
            return cls(content)
        except ValueError as error:
            raise UserInputError(f"Ontology file {path}: {error}") from None

    def prompts(self) -> list[str]:
        """The prompts, in the order given."""
        return list(self._prompt_to_class)

    def classes(self) -> list[str]:
        """The class names, each once, in first-seen order. ``class_id`` values index this list."""
        return list(self._classes)

    def promptToClass(self, prompt: str) -> str:  # noqa: N802 (autodistill's name)
        """The class that ``prompt`` labels."""
        try:
            return self._prompt_to_class[prompt]
        except KeyError:
            raise KeyError(f"{prompt!r} is not a prompt of this ontology; prompts: {self.prompts()}") from None

    def classToPrompt(self, class_name: str) -> str:  # noqa: N802 (autodistill's name)
        """The first prompt that maps to ``class_name``."""
        for prompt, name in self._prompt_to_class.items():
            if name == class_name:
                return prompt
        raise KeyError(f"{class_name!r} is not a class of this ontology; classes: {self._classes}")

    def class_id(self, class_name: str) -> int:
        """Index of ``class_name`` in :meth:`classes`."""
        try:
            return self._classes.index(class_name)
        except ValueError:
            raise KeyError(f"{class_name!r} is not a class of this ontology; classes: {self._classes}") from None

    def to_dict(self) -> dict[str, str]:
        return dict(self._prompt_to_class)

    def __len__(self) -> int:
        return len(self._prompt_to_class)

    def __iter__(self) -> Iterator[str]:
        return iter(self._prompt_to_class)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaptionOntology) and self._prompt_to_class == other._prompt_to_class

    def __repr__(self) -> str:
        return f"CaptionOntology({self._prompt_to_class!r})"


def _clean_entry(value: object, what: str) -> str:
    # Only the type goes into the message: a parsed value can be huge (never repr it whole).
    if not isinstance(value, str):
        raise UserInputError(f"Ontology {what} must be a string, got a {type(value).__name__}")
    if not value.strip():
        raise UserInputError(f"Ontology {what} is blank")
    return value.strip()


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


MAX_FILE_BYTES = 1 << 20  # an ontology of a few thousand prompts is ~100 KB


def load_mapping_file(path: Path, what: str = "Ontology file"):
    """The parsed content of a small UTF-8 JSON or YAML file, refusing what could blow up or silently lose data:
    files over ``MAX_FILE_BYTES``, YAML anchors and aliases (a few hundred bytes of nested aliases expand to
    gigabytes), and keys given twice. ``what`` names the file in messages."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserInputError(f"{what} {path} is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(f"{what} {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UserInputError(f"{what} {path} is not valid {kind}: {_brief(error)}") from None
    except _DuplicateKeyError as error:
        raise UserInputError(f"{what} {path} gives the key {_short(str(error))} twice; keep one") from None


class _DuplicateKeyError(Exception):
    pass


def _unique_pairs(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without anchors and aliases, and with duplicate keys refused."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"anchors and aliases (& and *) are not allowed (line {mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=True) for key, _ in node.value]
        for index, key in enumerate(keys):
            if isinstance(key, str) and key in keys[:index]:
                raise _DuplicateKeyError(key)
        return super().construct_mapping(node, deep=deep)


def _brief(error: Exception) -> str:
    """One line for a JSON or YAML parse error: what went wrong and where."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        return f"{getattr(error, 'problem', None) or error} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())

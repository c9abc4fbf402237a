"""What every command shares: the option types, one-line errors in the command line's own words, printing."""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

# The model options, as --flags; their Python names are the keyword arguments of GroundedSAM2.
Florence = Annotated[str | None, typer.Option(help="Florence-2 hub id or local folder (default: the preset's).")]
Sam = Annotated[
    str | None,
    typer.Option(
        help="SAM 2 hub id, local folder or Meta .pt file (default: the preset's); with --backend sam3, SAM 3's "
        "(default: facebook/sam3)."
    ),
]
DetectorName = Annotated[
    str, typer.Option("--detector", help="florence2, grounding-dino or owlv2: what finds the boxes SAM 2 segments.")
]
DetectorModel = Annotated[
    str | None,
    typer.Option(
        help="The detector's hub id or local folder (default: the preset's Florence-2, "
        "IDEA-Research/grounding-dino-tiny, google/owlv2-base-patch16-ensemble)."
    ),
]
BoxThreshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="grounding-dino, owlv2, --backend sam3: keep boxes scoring above this (default 0.35, 0.1, 0.5).",
    ),
]
TextThreshold = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="grounding-dino: the box's best prompt token must score above this (0.25)."),
]
Backend = Annotated[
    str,
    typer.Option(help="grounded-sam2 (the detector, then SAM 2) or sam3 (SAM 3 alone, text to masks; gated weights)."),
]
Preset = Annotated[str, typer.Option(help="fast, default or accurate (see `grounded-sam models`).")]
Device = Annotated[str, typer.Option(help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1...")]
Dtype = Annotated[str, typer.Option(help="auto (bf16 on CUDA), float32, bfloat16, float16.")]
MinConfidence = Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop boxes below this confidence.")]
Nms = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, help="IoU above which overlapping boxes of a class are suppressed; 0 turns NMS off."
    ),
]
Compile = Annotated[
    bool, typer.Option(help="torch.compile the image encoders and Florence-2's decoding (long runs on a GPU).")
]
# Mask clean-up (grounded_sam.segmentation.cleanup: Meta's SAM 2 rules, areas in pixels of the original image).
MaxHoleArea = Annotated[
    int,
    typer.Option(min=0, help="Fill holes of at most this many pixels in every mask (Meta's max_hole_area); 0: off."),
]
MaxSprinkleArea = Annotated[
    int,
    typer.Option(min=0, help="Then remove specks of at most this many pixels (Meta's max_sprinkle_area); 0: off."),
]
KeepLargestPart = Annotated[bool, typer.Option(help="Then keep only the largest connected part of every mask.")]
Prompts = Annotated[
    list[str] | None,
    typer.Option("--prompt", "-p", help="What to find; repeatable. 'a dog=dog' names its class (default: the prompt)."),
]
OntologyFile = Annotated[Path | None, typer.Option("--ontology", help="YAML/JSON ontology file {prompt: class}.")]

# Python names -> what the command line calls them, for messages written in Python's words.
_FLAGS = {"input_folder": "FOLDER", "output_folder": "--output", "nms_threshold": "--nms", "formats": "--format"}


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, no traceback."""


def cli_words(message: str) -> str:
    """A message in the command line's words: ``recursive=True`` -> ``--recursive``, ``max_pixels=...`` ->
    ``--max-pixels ...``, ``(split)`` -> ``(--split)``, ``formats must be`` -> ``--format must be``."""
    from grounded_sam.labeling.options import LabelOptions
    from grounded_sam.pipeline.spec import PipelineSpec

    names = {option.name for option in (*fields(LabelOptions), *fields(PipelineSpec))} | set(_FLAGS)

    def flag(name: str) -> str:
        return _FLAGS.get(name, "--" + name.replace("_", "-"))

    def keyword(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in names:
            return match.group(0)
        if value == "True":
            return flag(name)
        if value == "False":
            return "--no-" + name.replace("_", "-")
        return f"{flag(name)} {value}"

    def bare(match: re.Match) -> str:  # "max_pixels" anywhere; "(split)"; "formats must be" opening the message
        opening, name, after = match.group(1) or "", match.group(2), match.group(3)
        alone = "_" in name or (opening and after == ")") or (match.start() == 0 and after)
        return opening + flag(name) if name in names and alone else match.group(0)

    message = re.sub(r"\b([a-z_]+)=(True|False|\.\.\.|[^\s,;)]+)", keyword, message)
    return re.sub(r"(?<![-\w])(\()?([a-z][a-z_]*)\b(?=( must\b|\)))?", bare, message)


def user_errors(command):
    """Turns the errors a user can fix (grounded-sam's own, and a missing file) into one line on stderr, in the
    command line's words, and exit code 2; anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from grounded_sam.errors import GroundedSAMError

        try:
            return command(*args, **kwargs)
        except (UserError, GroundedSAMError, FileNotFoundError) as error:
            typer.secho(f"Error: {cli_words(' '.join(str(error).split()))}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper


def ontology_from(prompts: list[str] | None, path: Path | None):
    """The ontology of ``--ontology`` and ``--prompt`` together; ``-p 'a dog=dog'`` names the prompt's class."""
    from grounded_sam.ontology import CaptionOntology

    if not prompts and path is None:
        raise UserError("Say what to look for: --prompt 'a dog' (repeatable) or --ontology FILE")
    mapping = dict(CaptionOntology.from_file(path).to_dict()) if path is not None else {}
    for text in prompts or []:
        prompt, _, name = text.rpartition("=") if "=" in text else (text, "", text)
        mapping[prompt] = name
    return CaptionOntology(mapping)


def pipeline_spec(ontology, florence, sam, preset, device, dtype, min_confidence, nms, compile=False, **options):
    """The pipeline these options describe (options checked, nothing loaded); ``ontology`` None: no prompts yet.
    ``options``: more PipelineSpec fields, as the flags give them (``detector``, ``detector_model``,
    ``box_threshold``, ``text_threshold``, ``backend`` and the mask clean-up's)."""
    from grounded_sam.pipeline.spec import PipelineSpec

    return PipelineSpec(
        ontology.to_dict() if ontology is not None else {},
        florence=florence,
        sam=sam,
        preset=preset,
        device=device,
        dtype=dtype,
        min_confidence=min_confidence,
        nms_threshold=nms or None,
        compile=compile,
        **options,
    )


def console():
    """Rich output on stderr; when piped, no wrapping (long reasons and hub ids stay whole on their line)."""
    from rich.console import Console

    piped = not sys.stderr.isatty()
    return Console(stderr=True, soft_wrap=piped, width=1000 if piped else None)


def class_table(per_class: dict, title: str | None = None):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    table.add_column("detections", justify="right")
    for name, count in per_class.items():
        table.add_row(name, str(count))
    return table

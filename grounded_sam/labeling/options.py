"""Every option of a labeling run, declared once: ``label_folder``, ``GroundedSAM2.label`` and ``grounded-sam label``
take these (the command line's flags, defaults and help come from here; a test checks that they match)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

from grounded_sam.errors import UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS
from grounded_sam.labeling.folders import SPLIT_NAMES, check_split_ratios, normalize_extensions

FORMATS = ("yolo", "coco")
COCO_SEGMENTATIONS = ("rle", "polygon")


def _option(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class LabelOptions:
    """How a folder is labeled. Text values are accepted where the command line gives text (``formats="yolo,coco"``,
    ``extension=".jpg"``) and normalized; invalid values raise ``UserInputError`` naming the option."""

    extension: tuple[str, ...] | None = _option(
        None, "Only these extensions (.jpg); repeatable [default: all common ones]."
    )
    recursive: bool = _option(False, "Also images in sub-folders.")
    split: tuple[float, ...] = _option((0.8, 0.2), "train,valid[,test] fractions, e.g. 0.8,0.2 or 0.7,0.2,0.1.")
    seed: int = _option(0, "Seed of the split assignment.")
    formats: tuple[str, ...] = _option(FORMATS, "yolo, coco or yolo,coco.", flag="--format")
    yolo_boxes_only: bool = _option(False, "Write YOLO boxes instead of polygons.")
    coco_segmentation: str = _option("rle", "rle (exact) or polygon.")
    polygon_approximation: float = _option(0.0, "Fraction of polygon points supervision may drop (0: keep all).")
    keep_empty: bool = _option(True, "Keep images without detections as negatives.")
    record_confidence: bool = _option(False, "Write the confidences files and the COCO score.")
    overwrite: bool = _option(False, "Replace a dataset labeled with other settings in the output folder.")
    discard_corrections: bool = _option(
        False, "With --overwrite: also replace a dataset holding images corrected by hand (grounded-sam app)."
    )
    link: bool = _option(True, "Hard-link images into the dataset when possible instead of copying.")
    max_pixels: int | None = _option(
        DEFAULT_MAX_PIXELS,
        "Skip images with more pixels than this (read from the header, before decoding); 0: no limit. Bounds memory.",
    )
    batch_size: int = _option(8, "Images per model batch.")
    workers: int = _option(
        4, "Threads decoding images ahead of the model (and as many converting masks behind it); 0: none."
    )
    ray: bool = _option(
        False,
        "Label on a Ray cluster: RAY_ADDRESS or --ray-address, else a local Ray on this machine (the ray extra).",
    )
    ray_address: str | None = _option(None, "Address of the Ray cluster for --ray (default: RAY_ADDRESS, else local).")
    actors: int | None = _option(
        None, "Ray workers for --ray, each holding one pipeline [default: one per GPU, else one per CPU]."
    )
    gpus_per_actor: float | None = _option(
        None, "GPUs each Ray worker takes (0.5: two per GPU) [default: 1 when Ray sees GPUs, else CPU workers]."
    )
    progress: bool = _option(True, "Show a progress bar (only on a terminal).", cli=False)
    verbose: bool = _option(True, "Print the summary at the end.", cli=False)

    def __post_init__(self):
        set_value = object.__setattr__  # frozen: normalized values are set once, here
        if self.extension is not None:
            set_value(self, "extension", normalize_extensions(self.extension))
        formats = self.formats.replace(" ", "").split(",") if isinstance(self.formats, str) else self.formats
        set_value(self, "formats", tuple(formats))
        set_value(self, "split", check_split_ratios(self.split))
        set_value(self, "seed", int(self.seed))
        if not self.formats or set(self.formats) - set(FORMATS):
            raise UserInputError(f"formats must be one or both of {', '.join(FORMATS)}, got {', '.join(self.formats)}")
        if self.coco_segmentation not in COCO_SEGMENTATIONS:
            raise UserInputError(
                f"coco_segmentation must be one of {COCO_SEGMENTATIONS}, got {self.coco_segmentation!r}"
            )
        if not 0.0 <= self.polygon_approximation < 1.0:
            raise UserInputError(f"polygon_approximation must be in [0, 1), got {self.polygon_approximation}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UserInputError(f"max_pixels must be >= 1 or None, got {self.max_pixels}")
        if self.batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise UserInputError(f"workers must be >= 0, got {self.workers}")
        self._check_ray_options()

    def _check_ray_options(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise UserInputError(f"actors must be >= 1 or None, got {self.actors}")
        if self.gpus_per_actor is not None and not self.gpus_per_actor >= 0:
            raise UserInputError(f"gpus_per_actor must be >= 0 or None, got {self.gpus_per_actor}")
        given = [name for name in ("ray_address", "actors", "gpus_per_actor") if getattr(self, name) is not None]
        if given and not self.ray:
            raise UserInputError(f"{', '.join(given)}: only for runs on Ray; add ray=True")

    @classmethod
    def from_keywords(cls, options: Mapping) -> LabelOptions:
        """``LabelOptions(**options)``, with a misspelled option named and the closest real one suggested."""
        names = [option.name for option in fields(cls)]
        for name in options:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                raise UserInputError(
                    f"Unknown labeling option {name!r}"
                    f"{f'; did you mean {close[0]!r}?' if close else ''} (options: {', '.join(names)})"
                )
        return cls(**options)

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLIT_NAMES[: len(self.split)]

    def dataset_settings(self, classes) -> dict:
        """What the dataset's files depend on besides the model (stored, and compared when a run resumes)."""
        written = {name: value for name, value in asdict(self).items() if name in WRITTEN}
        return {"classes": list(classes), **written}


# The options the dataset's files depend on; the others change how a run goes, not what it writes.
WRITTEN = (
    "split",
    "seed",
    "formats",
    "yolo_boxes_only",
    "coco_segmentation",
    "polygon_approximation",
    "keep_empty",
    "record_confidence",
)

"""Finding the images of a folder, naming their copies in a dataset, and assigning each one a split.

Everything here is decided per image from its path relative to the input folder, so a resumed or extended run gives
the images it already saw the same output name and the same split.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from grounded_sam.errors import OutputFolderError, UserInputError

MAX_NAME_BYTES = 200
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SPLIT_NAMES = ("train", "valid", "test")


def normalize_extensions(extension: str | Iterable[str] | None) -> tuple[str, ...]:
    """``None`` -> every common image format; ``"jpg"``, ``".JPG"`` or a list of them -> lower-case ``.ext`` tuple."""
    if extension is None:
        return IMAGE_EXTENSIONS
    items = [extension] if isinstance(extension, str) else list(extension)
    if not items or not all(isinstance(item, str) and item.strip(".") for item in items):
        raise UserInputError(f"extension must be None, '.jpg' or a list like ['.jpg', '.png'], got {extension!r}")
    return tuple(sorted({"." + item.strip().lstrip(".").lower() for item in items}))


def find_images(
    folder: str | os.PathLike,
    extension: str | Iterable[str] | None = None,
    recursive: bool = False,
    exclude: Sequence[str | os.PathLike] = (),
    errors: list[dict] | None = None,
) -> list[PurePosixPath]:
    """Lists the image files of ``folder`` by extension (case-insensitive), as sorted paths relative to it.

    Args:
        folder: the folder to search.
        extension: ``None`` for every format in ``IMAGE_EXTENSIONS``, or one extension or a list of them.
        recursive: walk sub-folders too. Symlinked folders are followed, each real folder once, so a symlink loop
            cannot hang the walk.
        exclude: folders to leave out (the output folder, when it sits inside the input).
        errors: if given, folders that could not be read are appended as ``{"path", "reason"}``.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"Input folder not found: {root} (it does not exist or is not a folder)")
    wanted = normalize_extensions(extension)
    excluded = {_identity(Path(path)) for path in exclude if Path(path).is_dir()}
    seen = {_identity(root)}
    found = []

    def unreadable(error: OSError) -> None:
        if errors is not None:
            where = Path(error.filename).relative_to(root).as_posix() if error.filename else str(root)
            errors.append({"path": where, "reason": f"folder could not be read: {error.strerror or error}"})

    for current, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        kept = []
        for dirname in sorted(dirnames) if recursive else []:
            identity = _identity(Path(current, dirname))
            if identity not in seen and identity not in excluded:
                seen.add(identity)
                kept.append(dirname)
        dirnames[:] = kept
        relative = PurePosixPath(Path(current).relative_to(root).as_posix())
        for filename in filenames:
            if Path(filename).suffix.lower() in wanted and Path(current, filename).is_file():
                found.append(relative / filename)
    return sorted(found)


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def output_names(
    sources: Sequence[PurePosixPath], taken: Mapping[PurePosixPath, str] | None = None
) -> dict[PurePosixPath, str]:
    """Gives each source a distinct file name for the flat ``images/`` folders of a dataset.

    A top-level ``dog.jpg`` keeps its name; ``a/b/dog.jpg`` becomes ``a__b__dog.jpg``. Names whose stems would clash
    (``dog.jpg`` next to ``dog.png`` share a YOLO label file; ``Dog.jpg`` and ``dog.jpg`` clash on case-insensitive
    disks) and names that could be read two ways (a part that itself holds ``__``) get ``-`` and 8 hex digits of a
    hash of the relative path. ``taken`` holds the names an earlier run already gave; they are kept.
    """
    candidates = {source: _short_enough(_flat_name(source), source) for source in sources}
    groups: dict[str, list[PurePosixPath]] = defaultdict(list)
    for source, name in candidates.items():
        groups[_stem_key(name)].append(source)
    names = {}
    for members in groups.values():
        for source in members:
            ambiguous = any("__" in part for part in source.parts)
            names[source] = _hashed(candidates[source], source) if len(members) > 1 or ambiguous else candidates[source]
    taken = dict(taken or {})
    used_stems = {_stem_key(name) for name in taken.values()}
    for source, name in names.items():
        if source in taken:
            names[source] = taken[source]
        elif _stem_key(name) in used_stems:  # an image added since an earlier run clashes with one it named
            names[source] = _hashed(candidates[source], source)
    return names


def _flat_name(source: PurePosixPath) -> str:
    name = "__".join(source.parts)
    return "_" + name[1:] if name.startswith(".") else name  # image globs (ultralytics') skip hidden files


def _stem_key(name: str) -> str:
    return PurePosixPath(name).stem.casefold()


def _hashed(name: str, source: PurePosixPath) -> str:
    path = PurePosixPath(name)
    return f"{path.stem}-{_digest(str(source))[:8]}{path.suffix}"


def _short_enough(name: str, source: PurePosixPath) -> str:
    """Names over MAX_NAME_BYTES (file systems allow 255, and temporary and record names add to it) keep the start of
    their stem and a hash of the path."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    path = PurePosixPath(name)
    stem = path.stem.encode("utf-8")[: MAX_NAME_BYTES - 9 - len(path.suffix.encode("utf-8"))]
    return f"{stem.decode('utf-8', 'ignore')}-{_digest(str(source))[:8]}{path.suffix}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def is_utf8_name(source: PurePosixPath | str) -> bool:
    """False for file names that are not valid UTF-8 (kept by Python as surrogate escapes), which cannot be written
    into a UTF-8 dataset (JSON, YAML) as they are."""
    try:
        str(source).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: PurePosixPath | str) -> str:
    """A path as text that can always be printed and written to JSON (undecodable bytes shown as ``\\xff``)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def without_undecodable_names(found: Sequence[PurePosixPath], skipped: list[dict]) -> list[PurePosixPath]:
    """The sources whose names are valid UTF-8; the others go to ``skipped`` with the reason."""
    kept = [source for source in found if is_utf8_name(source)]
    skipped += [
        {"path": printable(source), "reason": "the file name is not valid UTF-8; rename the file"}
        for source in found
        if not is_utf8_name(source)
    ]
    return kept


def check_folder_path(path: Path, what: str, option: str) -> None:
    """Refuses a path that is not valid UTF-8 (its name goes into JSON and YAML files a run writes), or that lies
    below a file (nothing could be created there)."""
    if not is_utf8_name(path.absolute()):
        raise UserInputError(
            f"The {what} path {printable(path.absolute())} is not valid UTF-8 ({option}); rename the "
            "folder or choose another one"
        )
    above = next((parent for parent in path.absolute().parents if os.path.exists(parent)), None)
    if above is not None and not above.is_dir():
        raise OutputFolderError(
            f"The {what} {path} lies below {above}, which is a file ({option}); choose another path"
        )


def check_not_nested(input_root: Path, output_root: Path, option: str) -> None:
    """Refuses an input folder that is the output folder or lies inside it: the run would write over, or remove,
    the images it reads. (An output folder inside the input folder is fine: it is left out of the scan.)"""
    source, output = Path(os.path.realpath(input_root)), Path(os.path.realpath(output_root))
    if source == output or output in source.parents:
        raise OutputFolderError(
            f"The input folder {input_root} lies inside the output folder {output_root} ({option}): the run would "
            "write where the images are. Choose an output folder outside the input folder"
        )


def check_split_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """Validates ``(train, valid)`` or ``(train, valid, test)`` fractions that sum to 1."""
    try:
        values = tuple(float(value) for value in ratios)
    except (TypeError, ValueError):
        raise UserInputError(f"split must be fractions like (0.8, 0.2) or (0.7, 0.2, 0.1), got {ratios!r}") from None
    if (
        len(values) not in (2, 3)
        or not all(math.isfinite(value) and value >= 0 for value in values)
        or abs(sum(values) - 1.0) > 1e-6
    ):
        raise UserInputError(
            f"split must be 2 or 3 non-negative fractions (train, valid[, test]) that sum to 1, got {ratios!r}"
        )
    if values[0] == 0:
        raise UserInputError(f"split gives the train set no images: {ratios!r}")
    return values


def assign_split(source: PurePosixPath, ratios: Sequence[float], seed: int = 0) -> str:
    """Picks ``"train"``, ``"valid"`` or ``"test"`` for one image from a hash of its relative path and ``seed``.

    The hash maps each path to a fixed number in [0, 1); the split is where it falls among the cumulative ratios, so
    adding images to a folder never moves the ones already assigned.
    """
    position = int(_digest(f"{seed}:{source}")[:16], 16) / 2**64
    cumulative = 0.0
    for name, ratio in zip(SPLIT_NAMES, ratios):
        cumulative += ratio
        if position < cumulative:
            return name
    return SPLIT_NAMES[len(ratios) - 1]  # rounding: ratios that sum to 0.9999999

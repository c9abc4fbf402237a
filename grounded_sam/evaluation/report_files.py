"""The files ``eval`` and ``compare`` write where the user names them (``--json``, ``--plot``): each marked as
grounded-sam's, and an existing file replaced only when it carries that mark, so that naming the ground truth, an
image or a dataset's own state by mistake changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from grounded_sam.errors import OutputFolderError
from grounded_sam.labeling.files import atomic_write_text

WRITTEN_BY = "grounded-sam"  # the JSON reports' "written_by" and the PNG pictures' "Software" text
_MARK_READ_LIMIT = 1 << 16  # the JSON mark is on the report's first lines; a foreign file is never read whole


def check_report_file(path: str | Path | None, option: str) -> None:
    """Refuses, before any work, a path the report cannot be written to or may not replace.

    Raises:
        OutputFolderError: ``path`` is a folder, its folder does not exist, or it is a file grounded-sam did not
            write.
    """
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f"{option} {path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise OutputFolderError(f"{option} {path}: its folder {path.parent} does not exist; create it first")
    if path.is_symlink() and not path.exists():
        raise OutputFolderError(f"{option} {path} is a link to nothing grounded-sam wrote; choose another file")
    if path.exists() and not written_by_us(path):
        raise OutputFolderError(
            f"{option} {path} exists and grounded-sam did not write it; choose another file (nothing was changed)"
        )


def written_by_us(path: Path) -> bool:
    """Whether ``path`` is a report grounded-sam wrote: a JSON object whose ``written_by`` is ours, or a PNG whose
    ``Software`` text is."""
    with open(path, "rb") as file:
        start = file.read(_MARK_READ_LIMIT)
    if start.startswith(b"\x89PNG"):
        from PIL import Image

        with Image.open(path) as image:
            return image.info.get("Software") == WRITTEN_BY
    return start.startswith(b'{\n  "written_by": ' + json.dumps(WRITTEN_BY).encode())


def write_report_json(path: str | Path, report: dict, option: str = "--json") -> None:
    """Writes ``report`` as JSON, its first key ``written_by``, replacing only a report of ours."""
    check_report_file(path, option)
    atomic_write_text(Path(path), json.dumps({"written_by": WRITTEN_BY, **report}, indent=2, ensure_ascii=False) + "\n")

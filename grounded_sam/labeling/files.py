"""File-level pieces of a labeled dataset: safe writes and removals, records, the COCO assembler, locks.

Every file is written under a temporary name in its folder and renamed into place, so a reader (or a run that was
killed) sees either the whole old file or the whole new one. Temporary names hold the process id and a random part:
processes on two machines writing one shared folder can have the same process id.

Nothing here follows a symbolic link below the output folder: folders are checked part by part with ``lstat``
(:func:`real_directory`), temporary files are created with ``O_EXCL | O_NOFOLLOW``, a rename replaces a link rather
than what it points to, and removals unlink files and links only, never a folder's contents. The output folder
itself may be a link: it is resolved once, where the user named it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from grounded_sam.errors import OutputFolderError
from grounded_sam.labeling.formats import coco_annotation, coco_categories

TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\..+\.\d+(-[0-9a-f]+)?" + re.escape(TEMPORARY_SUFFIX) + "$")  # pid-only: older runs
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def temporary_path(path: Path) -> Path:
    """``.NAME.PID-RANDOM.tmp`` beside ``path``: unique across processes and machines."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def stays_inside(relative: str | PurePosixPath) -> bool:
    """Whether a relative path read from a record or a manifest stays below its root: no ``..``, not absolute (a
    dataset from elsewhere may have been edited to name anything)."""
    path = PurePosixPath(relative)
    return not path.is_absolute() and ".." not in path.parts


def real_directory(root: Path, relative: str | PurePosixPath = ".", create: bool = True) -> Path:
    """``root / relative`` as a real folder, creating the parts that are missing (with ``create``; without, missing
    parts are fine and only the existing ones are checked).

    Raises:
        OutputFolderError: a part below ``root`` is a symbolic link or a file (nothing is written through it), or
            ``relative`` leaves ``root`` (``..``, an absolute path).
    """
    if not stays_inside(relative):
        raise OutputFolderError(f"{relative} is not a folder inside {root}: a record or manifest there was edited")
    path = root
    for part in PurePosixPath(relative).parts:
        if part == ".":
            continue
        path = path / part
        try:
            if create:
                os.mkdir(path)
                continue
            mode = os.lstat(path).st_mode
        except FileExistsError:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:  # only without create: nothing below exists either
            return path
        if stat.S_ISLNK(mode):
            raise OutputFolderError(
                f"{path} is a symbolic link (to {os.readlink(path)}) inside the output folder; grounded-sam never "
                "writes through links: remove the link or choose another output folder"
            )
        if not stat.S_ISDIR(mode):
            raise OutputFolderError(
                f"{path} is a file where grounded-sam keeps a folder; move it away or choose another output folder"
            )
    return path


def check_output_names(output: Path, names: Iterable[str], ours: Iterable[str], folders_ok: Iterable[str] = ()) -> None:
    """Refuses, before a run writes the files ``names`` into ``output``, one that exists and is not in ``ours`` (what
    earlier runs listed in their manifest), or one that is a folder where a file goes (``folders_ok``: names that are
    folders).

    Raises:
        OutputFolderError: naming the first such file and how many more.
    """
    ours, folders_ok = set(ours), set(folders_ok)
    names = list(names)
    foreign = [name for name in names if name not in ours and os.path.lexists(output / name)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputFolderError(
            f"The output folder {output} holds {foreign[0]}{more}, which grounded-sam did not write; choose an "
            "empty or new folder (nothing was changed)"
        )
    folders = [name for name in names if name not in folders_ok and stat.S_ISDIR(_lstat_mode(output / name))]
    if folders:
        raise OutputFolderError(
            f"{output / folders[0]} is a folder where grounded-sam writes a file; move it away (nothing was changed)"
        )


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _create_exclusive(path: Path):
    """A new file opened for binary writing; fails rather than follow a link or open an existing file."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW | _BINARY, 0o644), "wb")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in its folder (which must exist) and a rename."""
    temporary = temporary_path(path)
    try:
        with _create_exclusive(temporary) as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        remove_file(temporary)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: Path, line: str) -> None:
    """Appends ``line`` and a newline to a log file in an existing folder, creating it if missing; never through a
    link. A file with other hard links (a ``cp -al`` backup of the dataset) is copied, appended to and renamed into
    place, so the other names keep what they held. A write cut by a crash can leave a torn last line: readers skip
    lines that do not parse."""
    data = (line + "\n").encode("utf-8")
    with os.fdopen(os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _NO_FOLLOW | _BINARY, 0o644), "r+b") as file:
        if os.fstat(file.fileno()).st_nlink <= 1:
            file.write(data)
            return
        held = file.read()
    atomic_write_bytes(path, held + data)


def place_image(source: Path, destination: Path, link: bool) -> None:
    """Hard-links ``source`` to ``destination`` when ``link`` and the disk allow it, else copies its bytes."""
    if link and _same_file(source, destination):
        return  # linked by an earlier, interrupted run (and renaming a link onto itself would leave the temporary)
    temporary = temporary_path(destination)
    try:
        try:
            if not link:
                raise OSError("copy requested")
            os.link(source.resolve(), temporary)
        except OSError:  # another disk, a file system without hard links, or link=False: copy the bytes as they are
            with open(source, "rb") as original, _create_exclusive(temporary) as copy:
                shutil.copyfileobj(original, copy)
        os.replace(temporary, destination)
    finally:
        remove_file(temporary)


def _same_file(source: Path, destination: Path) -> bool:
    try:
        placed, original = os.lstat(destination), os.stat(source)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(placed.st_mode) and (placed.st_dev, placed.st_ino) == (original.st_dev, original.st_ino)


def remove_file(path: Path) -> bool:
    """Unlinks ``path`` if it is a file or a link (the link, not its target); never touches a folder. Returns
    whether something was removed."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def remove_owned_file(root: Path, relative: str | PurePosixPath) -> bool:
    """Removes ``root / relative`` (a file or link the dataset's records name), reaching it without following a
    link: if a folder on the way is a link, or the path leaves ``root``, nothing is removed."""
    if not stays_inside(relative):
        return False
    path = root
    parts = PurePosixPath(relative).parts
    for part in parts[:-1]:
        path = path / part
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # a link or a file: not ours to go through
                return False
        except FileNotFoundError:
            return False
    return remove_file(path / parts[-1])


def remove_empty_directory(root: Path, relative: str | PurePosixPath) -> None:
    """Removes ``root / relative`` if it is a real, empty folder; anything else stays."""
    path = root / relative
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.rmdir(path)
    except OSError:  # missing, or not empty: something that is not ours stays there
        pass


def remove_partial_files(folders: Iterable[Path]) -> None:
    """Deletes the temporary files a killed run left in ``folders`` (names only this module gives)."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if _TEMPORARY.match(entry.name) and not entry.is_dir(follow_symlinks=False):
                remove_file(Path(entry.path))


class CocoAssembler:
    """Builds ``instances_{split}.json`` for every split in one pass over the records: image and annotation entries
    go to temporary files as they come and are joined into each COCO file at the end, so memory stays flat."""

    def __init__(self, folder: Path, classes, splits, segmentation: str, score: bool):
        self.folder, self.classes, self.segmentation, self.score = folder, list(classes), segmentation, score
        self.parts = {
            split: (
                tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder),
                tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder),
            )
            for split in splits
        }

    def add(self, header: dict, entries: list[dict]) -> None:
        images, annotations = self.parts[header["split"]]
        if not header["kept"]:
            return
        image = {
            "id": header["image_id"],
            "file_name": header["name"],
            "width": header["width"],
            "height": header["height"],
        }
        images.write(("," if images.tell() else "") + json.dumps(image, ensure_ascii=False))
        for offset, entry in enumerate(entries):
            annotation = coco_annotation(
                entry, header["annotation_id"] + offset, header["image_id"], self.segmentation, self.score
            )
            annotations.write(("," if annotations.tell() else "") + json.dumps(annotation))

    def write(self) -> None:
        head = {"info": {"description": "grounded-sam"}, "licenses": [], "categories": coco_categories(self.classes)}
        for split, (images, entries) in self.parts.items():
            path = self.folder / f"instances_{split}.json"
            temporary = temporary_path(path)
            try:
                with io.TextIOWrapper(_create_exclusive(temporary), encoding="utf-8") as file:
                    file.write(json.dumps(head)[:-1] + ', "images": [')
                    _copy_from_start(images, file)
                    file.write('], "annotations": [')
                    _copy_from_start(entries, file)
                    file.write("]}\n")
                os.replace(temporary, path)
            finally:
                remove_file(temporary)

    def close(self) -> None:
        for images, entries in self.parts.values():
            images.close()
            entries.close()


def _copy_from_start(source, destination) -> None:
    source.seek(0)
    shutil.copyfileobj(source, destination)


class FolderLock:
    """An exclusive lock on an output folder for the length of a run, so two runs cannot interleave their writes.

    Uses ``fcntl.flock`` (released by the OS if the process dies); where fcntl does not exist (Windows) it does
    nothing.
    """

    def __init__(self, path: Path):
        self.file = None
        try:
            import fcntl
        except ImportError:
            return
        self.file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644), "r+b")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class WriterGate:
    """Lets the images of a dataset be written by the run that owns it (its own thread, or its Ray workers on any
    machine), and by no one else: not by a worker that outlived its run.

    A run's driver, holding the :class:`FolderLock`, writes a new random token into ``owner`` (:meth:`take_over`)
    and, before it cleans up what earlier runs left, waits with an exclusive ``flock`` on ``writers`` until no image
    is being written (:meth:`quiet`). A writer holds a shared ``flock`` on ``writers`` while it writes one image, and
    first checks that ``owner`` still holds its run's token. A worker of a run whose driver was killed (Ray ends
    them about a second later) thus either finishes the image it is on before the next run looks at the folder, or
    writes nothing more; it never writes into a folder that the next run is cleaning up. Where fcntl does not exist
    (Windows) only the token is checked.

    Args:
        owner, writers: the token file and the lock file (in the dataset's state folder).
        token: the run's token, as :meth:`take_over` wrote it.
    """

    def __init__(self, owner: Path, writers: Path, token: str):
        self.owner, self.writers, self.token = owner, writers, token
        self._shared = None  # opened on first use, in the process that writes (a gate is rebuilt in each worker)

    @classmethod
    def take_over(cls, owner: Path, writers: Path) -> WriterGate:
        """Makes the calling run the owner: later writes by earlier runs' workers are refused."""
        token = secrets.token_hex(8)
        atomic_write_text(owner, token + "\n")
        return cls(owner, writers, token)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held while one image's files and record are written.

        Raises:
            OutputFolderError: another run has taken the folder over (this writer's run is gone).
        """
        if self._shared is None:
            self._shared = _open_lock_file(self.writers)
        _flock(self._shared, "LOCK_SH")
        try:
            if self.owner.read_text(encoding="utf-8").strip() != self.token:
                raise OutputFolderError(
                    f"Another run took over {self.owner.parent.parent}; this worker's run has ended, so it stops"
                )
            yield
        finally:
            _flock(self._shared, "LOCK_UN")

    @contextlib.contextmanager
    def quiet(self, timeout: float = 120.0) -> Iterator[None]:
        """Held while the dataset is cleaned up: no image is half-written meanwhile, by this run or an earlier one.

        Raises:
            OutputFolderError: images were still being written after ``timeout`` seconds.
        """
        file = _open_lock_file(self.writers)  # its own open file: flock conflicts with this process's shared lock
        try:
            deadline = time.monotonic() + timeout
            while not _flock(file, "LOCK_EX", blocking=False):
                if time.monotonic() > deadline:
                    raise OutputFolderError(
                        f"Workers of an earlier run are still writing to {self.owner.parent.parent} after "
                        f"{timeout:.0f} s; stop them (`ray list actors`) and rerun the same command"
                    )
                time.sleep(0.05)
            yield
        finally:
            file.close()

    def give_up(self) -> None:
        """Ends the run's ownership (its token file goes): writers that are left write nothing more."""
        with contextlib.suppress(OSError):
            if self.owner.read_text(encoding="utf-8").strip() == self.token:
                remove_file(self.owner)

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
            self._shared = None


def _open_lock_file(path: Path):
    return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644), "r+b")


def _flock(file, operation: str, blocking: bool = True) -> bool:
    """``fcntl.flock``; False when ``blocking`` is off and the lock is held elsewhere. Without fcntl: True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(file, getattr(fcntl, operation) | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False

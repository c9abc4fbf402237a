"""Writing a labeled dataset one image at a time, so that a run can stop anywhere and resume.

Layout of an output folder::

    data.yaml                        YOLO: path, train, val (test), nc, names
    {train,valid,test}/images/       copies (or hard links) of the source files, never re-encoded
    {train,valid,test}/labels/       YOLO label files, one line per polygon (or box)
    {train,valid,test}/confidences/  optional: one confidence per label line, same order (YOLO readers ignore it)
    annotations/instances_{split}.json   COCO instance segmentation
    report.json                      what the last run did
    .grounded-sam/settings.json      what the dataset was labeled with; a rerun must match it
    .grounded-sam/records/NAME.json  one per finished image: a header line, then its detections (RLE masks)
    .grounded-sam/pending/NAME.json  an image being written: its files are removed on the next run unless its
                                     record exists

An image's record is written last, so an image counts as done only when all its files are whole. Before its first
file is written, a pending entry names the image, so a run killed halfway leaves nothing the next run cannot find:
every file grounded-sam removes (an interrupted image's, or the whole dataset's with ``overwrite``) is known from
these records and entries, never from a folder listing, and no symbolic link below the output folder is followed
(see ``files``; the record format is in ``records``). The files that span all images (COCO, data.yaml) are
assembled from the records at the end, streaming, so memory does not grow with the number of images. Image and
annotation ids are given at the end of each run to the records that have none, in source-path order, and kept in
the records (``records.give_ids``): the same ids whatever order images were finished in (Ray workers finish in any
order), and adding images later never renumbers earlier ones.

One image's files are written by :class:`ImageWriter`, which depends only on its arguments, so any process may run
it: the run's background thread, or Ray workers on other machines writing into a shared folder
(``grounded_sam.integrations.ray``). Only the run that holds the folder's lock may write, and a worker that outlived
its run writes nothing more once the next run has started (``files.WriterGate``).

A correction (``grounded-sam app``, :meth:`DatasetWriter.rewrite_labels`) replaces one image's record and then its
label files, under a pending entry like a new image. A pending entry whose record is whole means the label files may
be older than the record, so they are written again from the record when the dataset is next opened: the record is
the truth. Corrected images are never relabeled silently: a resumed run skips them like every finished image, and
``overwrite`` refuses a dataset holding any unless ``discard_corrections`` is set.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import supervision as sv
import yaml

from grounded_sam.detections import detections_from_json
from grounded_sam.errors import OutputFolderError, UserInputError
from grounded_sam.labeling.files import (
    CocoAssembler,
    FolderLock,
    WriterGate,
    append_line,
    atomic_write_text,
    real_directory,
    remove_empty_directory,
    remove_file,
    remove_owned_file,
    remove_partial_files,
)
from grounded_sam.labeling.folders import SPLIT_NAMES
from grounded_sam.labeling.formats import data_yaml
from grounded_sam.labeling.image_writer import (
    ConvertedLabels,
    ImageWriter,
    convert_labels,
    guarded_io,
    write_error,
    write_label_files,
)
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import (
    CORRECTIONS_LOG,
    OWNER_FILE,
    PENDING_DIR,
    RECORD_VERSION,
    RECORDS_DIR,
    REVIEW_DIR,
    REVIEW_MANIFEST,
    SETTINGS_FILE,
    STATE_DIR,
    WRITERS_FILE,
    corrected_images,
    give_ids,
    image_files,
    listed_files,
    next_ids,
    now_text,
    read_record,
    record_files,
    record_path,
    record_text,
    whole_record_header,
)

SPLIT_FOLDERS = ("images", "labels", "confidences")


def check_output_folder(root: Path) -> None:
    """Raises OutputFolderError when ``root`` is a file, a non-empty folder that grounded-sam did not write, or a
    dataset whose state folder is a link."""
    if root.is_file():
        raise OutputFolderError(f"Output folder {root} is a file; pass a folder path")
    if not root.is_dir():
        return
    real_directory(root, STATE_DIR, create=False)
    if not (root / SETTINGS_FILE).is_file() and any(entry.name != STATE_DIR for entry in root.iterdir()):
        raise OutputFolderError(
            f"Output folder {root} is not empty and was not written by grounded-sam; "
            "choose a new or empty folder (nothing in it was changed)"
        )


class DatasetWriter:
    """Writes images, labels and records into ``output``; checks that a rerun uses the same settings.

    Args:
        output: the output folder; created if missing.
        options: how to write the dataset (``overwrite`` and ``link`` among them).
        classes: the class names ``class_id`` indexes.
        settings: everything the labels depend on (input folder, ontology, models, options), JSON-ready; stored on
            the first run and compared on every later one.

    Holds a lock on the folder until :meth:`close`; a second run on the same folder meanwhile is refused. Everything
    that can be refused (a foreign folder, other settings, a link inside the folder, a folder that cannot be written)
    is refused here, before anything is labeled.
    """

    def __init__(self, output: str | os.PathLike, options: LabelOptions, classes, settings: dict):
        self.root, self.options, self.classes = Path(output).absolute(), options, tuple(classes)
        check_output_folder(self.root)
        self._io(self.root.mkdir, parents=True, exist_ok=True)
        state = self._io(real_directory, self.root, STATE_DIR)
        try:  # before anything is changed: an overwrite must not pull the folder from under a running job
            self._lock = FolderLock(state / "lock")
        except BlockingIOError:
            raise OutputFolderError(
                f"Another run is writing to {self.root}; wait for it or use another folder"
            ) from None
        except OSError as error:
            raise write_error(error, state / "lock") from error
        try:
            self._pending = self.root / PENDING_DIR
            self._open(json.loads(json.dumps(settings)), options.overwrite)  # tuples -> lists, as stored
        except BaseException:
            self._lock.release()
            raise

    def _open(self, settings: dict, overwrite: bool) -> None:
        replace = self._compare_settings(settings, overwrite)
        if replace and not self.options.discard_corrections:
            self._refuse_replacing_corrections()
        for folder in self._folders():  # refused before anything is removed or written
            real_directory(self.root, folder, create=False)
        self.gate = self._io(WriterGate.take_over, self.root / OWNER_FILE, self.root / WRITERS_FILE)
        with self.gate.quiet():  # workers of a run killed a moment ago may still be finishing an image
            self._io(self._clean_up)
            if replace:
                self._io(self._remove_dataset)
        self._io(atomic_write_text, self.root / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True))
        for folder in self._folders(created_only=True):
            self._io(real_directory, self.root, folder)
        self.images = ImageWriter(self.root, self.options, self.gate.token)
        self.done: dict[PurePosixPath, str] = {}
        self._scan_records()

    @property
    def token(self) -> str:
        """This run's owner token, for the :class:`ImageWriter` of a worker process."""
        return self.gate.token

    def _clean_up(self) -> None:
        """Removes what killed writers left: temporary files, and the files of images they never recorded."""
        remove_partial_files([self.root, *(self.root / folder for folder in self._folders())])
        real_directory(self.root, PENDING_DIR)
        self._finish_interrupted_images()

    def _folders(self, created_only: bool = False) -> list[str]:
        """The folders this dataset writes into, relative to its root (``created_only``: those its options use)."""
        if created_only:
            wanted = (
                ["images"]
                + ["labels"] * ("yolo" in self.options.formats)
                + (["confidences"] * (self.options.record_confidence and "yolo" in self.options.formats))
            )
            splits = [f"{split}/{folder}" for split in self.options.splits for folder in wanted]
            return [RECORDS_DIR, PENDING_DIR, *splits] + ["annotations"] * ("coco" in self.options.formats)
        splits = [f"{split}/{folder}" for split in SPLIT_NAMES for folder in SPLIT_FOLDERS]
        return [STATE_DIR, RECORDS_DIR, PENDING_DIR, *splits, "annotations", REVIEW_DIR, f"{REVIEW_DIR}/thumbs"]

    def _compare_settings(self, settings: dict, overwrite: bool) -> bool:
        """Whether an existing dataset with other settings is to be replaced; raises when it may not be."""
        state = self.root / SETTINGS_FILE
        if not state.is_file():
            return False
        stored = json.loads(state.read_text(encoding="utf-8"))
        if stored == settings:
            return False
        if not overwrite:
            differing = describe_differences(stored, settings)
            raise OutputFolderError(
                f"{self.root} holds a dataset labeled with other settings (differing: {differing}). "
                "Use another output folder, or overwrite=True to replace that dataset."
            )
        return True

    def _refuse_replacing_corrections(self) -> None:
        corrected = corrected_images(self.root)
        if corrected:
            more = f" and {len(corrected) - 1} more" if len(corrected) > 1 else ""
            raise OutputFolderError(
                f"{self.root} holds images corrected by hand ({corrected[0]}{more}, see {CORRECTIONS_LOG}); "
                "overwrite=True would replace them. Use another output folder, or add discard_corrections=True "
                "to replace the corrected images too (nothing was changed)"
            )

    def _finish_interrupted_images(self) -> None:
        """Removes the files of images a killed run started writing and never recorded; an image whose record is
        whole gets its label files again from the record (a correction may have stopped before writing them)."""
        for entry in sorted(self._pending.glob("*.json")):
            name = entry.name[: -len(".json")]
            header = whole_record_header(record_path(self.root, name))
            if header is None:
                for split in SPLIT_NAMES:
                    for relative in image_files(split, name):
                        remove_owned_file(self.root, relative)
                remove_file(record_path(self.root, name))  # a cut record, if any
            elif header["kept"]:
                self._labels_from_record(header)
            remove_file(entry)

    def _labels_from_record(self, header: dict) -> None:
        _, entries = read_record(record_path(self.root, header["name"]))
        detections = detections_from_json(entries, header["height"], header["width"], self.classes)
        labels = self.convert(detections, (header["height"], header["width"], 3))
        write_label_files(self.root, header["split"], header["name"], labels)

    def _remove_dataset(self) -> None:
        """Removes what an earlier run wrote, as its records and manifests list it: records first (each turned into a
        pending entry), so an interrupted removal leaves nothing that looks done; the settings file last."""
        for record in record_files(self.root):
            atomic_write_text(self._pending / record.name, "{}")
            remove_file(record)
        self._finish_interrupted_images()
        owned = [f"annotations/instances_{split}.json" for split in SPLIT_NAMES] + ["data.yaml", "report.json"]
        owned.append(CORRECTIONS_LOG)  # reached only with discard_corrections (see _open)
        for relative in owned + listed_files(self.root / REVIEW_MANIFEST) + [REVIEW_MANIFEST]:
            remove_owned_file(self.root, relative)
        for folder in reversed(self._folders()[1:]):  # deepest first; the state folder and its lock stay
            remove_empty_directory(self.root, folder)
        for split in SPLIT_NAMES:
            remove_empty_directory(self.root, split)

    def _scan_records(self) -> None:
        """Finds the images earlier runs finished; removes records a power cut left broken, so their images are
        labeled again."""
        for path in record_files(self.root):
            header = whole_record_header(path)
            if header is None:
                self._io(remove_file, path)
                continue
            self.done[PurePosixPath(header["source"])] = header["name"]

    def convert(self, detections: sv.Detections, image_shape) -> ConvertedLabels:
        """:func:`convert_labels` with this dataset's options."""
        return convert_labels(self.options, detections, image_shape)

    def write(
        self, source: PurePosixPath, file: Path | bytes, name: str, split: str, image_shape, labels: ConvertedLabels
    ):
        """Writes one finished image (see :meth:`ImageWriter.write`)."""
        self.images.write(source, file, name, split, image_shape, labels)

    def rewrite_labels(self, name: str, labels: ConvertedLabels, changes: list | None = None) -> dict:
        """Replaces the labels of the dataset image named ``name`` with corrected ones (:meth:`convert` of them):
        its record, marked ``corrected_at``, then its label files, under a pending entry (see the module docstring);
        the image file stays. ``changes`` (JSON-ready) goes to the corrections log. Returns the new record header;
        call :meth:`finish` afterwards to rebuild the COCO files. Raises UserInputError for an unknown name."""
        path = record_path(self.root, name) if PurePosixPath(name).name == name else None
        header = whole_record_header(path) if path is not None else None
        if header is None or not header["kept"]:
            raise UserInputError(f"{name!r} is not an image of the dataset at {self.root}")
        if (self.root / CORRECTIONS_LOG).is_symlink():  # refused before the record changes, not after
            raise OutputFolderError(
                f"{self.root / CORRECTIONS_LOG} is a symbolic link; grounded-sam never writes through links: remove "
                "it (nothing was changed)"
            )
        if labels.count > header["count"]:  # more annotations than its id range holds: a fresh range at the end
            header["annotation_id"] = next_ids(self.root)[1]
        header.update(version=RECORD_VERSION, count=labels.count, corrected_at=now_text())
        log = {"time": header["corrected_at"], "image": name, "count": labels.count, "changes": changes or []}
        try:  # before anything is written: changes that are not JSON leave the dataset as it was
            log_line = json.dumps(log, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise UserInputError(f"changes must be JSON-ready (lists, dicts, numbers, strings): {error}") from None
        pending = self._pending / f"{name}.json"
        self._io(atomic_write_text, pending, "{}")
        self._io(atomic_write_text, path, record_text(header, labels.entries_json))
        self._io(write_label_files, self.root, header["split"], name, labels)
        self._io(append_line, self.root / CORRECTIONS_LOG, log_line)
        self._io(remove_file, pending)
        return header

    def finish(self) -> dict:
        """Cleans up after writers killed during the run (a Ray worker), gives ids to the records that have none,
        assembles the COCO files and data.yaml from the records in one streaming pass, and returns counts over the
        whole dataset."""
        with self.gate.quiet():
            self._io(self._clean_up)
            self._io(give_ids, self.root)
        return self._io(self._assemble)

    def _assemble(self) -> dict:
        counts = {"labeled": 0, "empty": 0, "per_class": Counter(), "per_split": Counter()}
        options = self.options
        coco = None
        if "coco" in options.formats:
            coco = CocoAssembler(
                self.root / "annotations",
                self.classes,
                options.splits,
                options.coco_segmentation,
                options.record_confidence,
            )
        try:
            for header, entries in self._records_with_entries():
                counts["labeled"] += 1
                counts["empty"] += not entries
                counts["per_split"][header["split"]] += header["kept"]
                counts["per_class"].update(self.classes[entry["class_id"]] for entry in entries)
                if coco is not None:
                    coco.add(header, entries)
            if coco is not None:
                coco.write()
        finally:
            if coco is not None:
                coco.close()
        if "yolo" in options.formats:
            content = data_yaml(str(self.root), self.classes, options.splits)
            atomic_write_text(self.root / "data.yaml", yaml.safe_dump(content, sort_keys=False))
        return counts

    def write_report(self, report: dict) -> None:
        self._io(atomic_write_text, self.root / "report.json", json.dumps(report, indent=2, ensure_ascii=False))

    def close(self) -> None:
        self.images.close()
        self.gate.give_up()
        self._lock.release()

    def _records_with_entries(self) -> Iterator[tuple[dict, list[dict]]]:
        for path in record_files(self.root):
            yield read_record(path)

    def _io(self, function, *args, target: Path | None = None, **kwargs):
        return guarded_io(self.root, function, *args, target=target, **kwargs)


def describe_differences(stored: dict, current: dict, prefix: str = "") -> str:
    """The settings that differ, as dotted keys with both values when they are short:
    ``model.precision (stored 'float32', now 'bfloat16')``."""
    parts = []
    for key in sorted(stored.keys() | current.keys()):
        old, new = stored.get(key), current.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            parts.append(describe_differences(old, new, f"{prefix}{key}."))
        elif len(repr(old)) + len(repr(new)) <= 120:
            parts.append(f"{prefix}{key} (stored {old!r}, now {new!r})")
        else:
            parts.append(f"{prefix}{key}")
    return ", ".join(parts)

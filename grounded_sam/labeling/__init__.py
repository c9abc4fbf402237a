"""Labeling: a folder of images -> a YOLO-seg + COCO dataset on disk, resumable, and read back as a supervision
dataset. ``options`` (every option, once), ``folders`` (finding and naming images), ``job`` (the run), ``writer``
and ``files`` (crash-safe writing), ``records`` (the on-disk schema), ``formats`` (YOLO and COCO), ``dataset``,
``corrections`` (fixing one image's labels by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grounded_sam.lazy import lazy_exports

_WHERE = {
    "LabelOptions": "grounded_sam.labeling.options",
    "LabelReport": "grounded_sam.labeling.job",
    "LabeledDataset": "grounded_sam.labeling.dataset",
    "LabelingJob": "grounded_sam.labeling.job",
    "correct_image": "grounded_sam.labeling.corrections",
    "label_folder": "grounded_sam.labeling.job",
    "read_corrections": "grounded_sam.labeling.corrections",
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

if TYPE_CHECKING:
    from grounded_sam.labeling.corrections import correct_image, read_corrections
    from grounded_sam.labeling.dataset import LabeledDataset
    from grounded_sam.labeling.job import LabelingJob, LabelReport, label_folder
    from grounded_sam.labeling.options import LabelOptions

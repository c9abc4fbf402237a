"""Pictures of evaluation reports, drawn with matplotlib's object API (no pyplot: no GUI backend, no global state)
and written as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from grounded_sam.evaluation.report_files import WRITTEN_BY, check_report_file
from grounded_sam.labeling.files import atomic_write_bytes

_LABELS = {"bbox": "box AP", "segm": "mask AP", "segm_cleaned": "cleaned mask AP"}


def plot_evaluation(report: dict, path: str | Path) -> None:
    """Writes a PNG of an :func:`~grounded_sam.evaluation.evaluate_dataset` report: AP@[.5:.95] per class (box,
    mask, cleaned masks), and with a sweep, AP, precision and recall against min_confidence. An existing ``path``
    is replaced only if grounded-sam wrote it (``OutputFolderError`` otherwise)."""
    from matplotlib.figure import Figure

    kinds = [kind for kind in _LABELS if report.get(kind)]
    swept = next((kind for kind in ("segm", "bbox") if report.get(kind) and "sweep" in report[kind]), None)
    figure = Figure(figsize=(11 if swept else 6.5, 4.2), layout="constrained")
    axes = figure.subplots(1, 2 if swept else 1, squeeze=False)[0]
    classes = list(report["classes"]["objects"]) + ["all"]
    series = {
        _LABELS[kind]: [report[kind]["per_class"].get(name) for name in classes[:-1]] + [report[kind]["AP"]]
        for kind in kinds
    }
    _bars(axes[0], classes, series, "AP@[.5:.95] per class")
    if swept:
        rows = report[swept]["sweep"]
        thresholds = [row["min_confidence"] for row in rows]
        for key in ("AP", "precision", "recall"):
            label = f"{_LABELS[swept]}" if key == "AP" else f"{key} (IoU 0.5)"
            axes[1].plot(thresholds, [_number(row[key]) for row in rows], marker=".", label=label)
        axes[1].set(xlabel="min_confidence", ylim=(0, 1.2), yticks=np.linspace(0, 1, 6), title="against min_confidence")
        axes[1].legend(loc="upper center", ncol=3, fontsize="small", frameon=False)
        axes[1].grid(alpha=0.3)
    _save(figure, path)


def plot_comparison(report: dict, path: str | Path) -> None:
    """Writes a PNG of a :func:`~grounded_sam.evaluation.compare` report: AP per class, one bar per configuration."""
    from matplotlib.figure import Figure

    classes = list(report["per_class"]) + ["all"]
    names = [row["name"] for row in report["configurations"]]
    series = {
        name: [report["per_class"][label][name] for label in classes[:-1]] + [report["overall"][name]] for name in names
    }
    figure = Figure(figsize=(max(6.5, 1.2 * len(classes) + 3), 4.2), layout="constrained")
    axis = figure.subplots()
    _bars(axis, classes, series, f"{_LABELS[report['iou_type']]}@[.5:.95] per class and configuration")
    _save(figure, path)


def _bars(axis, classes: list[str], series: dict[str, list], title: str) -> None:
    width = 0.8 / max(1, len(series))
    positions = np.arange(len(classes))
    for index, (label, values) in enumerate(series.items()):
        axis.bar(positions + (index - (len(series) - 1) / 2) * width, [_number(v) for v in values], width, label=label)
    axis.set_xticks(
        positions, classes, rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center"
    )
    axis.set(ylim=(0, 1.2), yticks=np.linspace(0, 1, 6), ylabel="AP", title=title)
    axis.legend(loc="upper center", ncol=min(4, len(series)), fontsize="small", frameon=False)
    axis.grid(axis="y", alpha=0.3)


def _number(value) -> float:
    """None (no ground truth, not asked, nothing kept) is drawn as a gap."""
    return float("nan") if value is None else float(value)


def _save(figure, path: str | Path) -> None:
    """Writes the PNG marked as ours (its ``Software`` text), replacing only a picture of ours."""
    check_report_file(path, "--plot")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": WRITTEN_BY})
    atomic_write_bytes(Path(path), buffer.getvalue())

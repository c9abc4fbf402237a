"""A static HTML page to look over a labeled dataset before training on it.

``write_review(dataset_folder)`` writes ``review/index.html`` and ``review/thumbs/*.jpg`` inside the dataset folder:
thumbnails with the masks, boxes and labels drawn, detections and images per class, a filter by class and split, and
the images the labeling run skipped with their reasons. The page is one self-contained file (inline CSS and script,
no network), so it opens from disk or from any static file server.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.annotate import annotate
from grounded_sam.detections import CLASS_NAME
from grounded_sam.errors import InvalidImageError, OutputFolderError, UserInputError
from grounded_sam.images import load_image
from grounded_sam.labeling.dataset import LabeledDataset
from grounded_sam.labeling.files import atomic_write_bytes, atomic_write_text, real_directory, remove_owned_file
from grounded_sam.labeling.records import REVIEW_DIR, REVIEW_MANIFEST, STATE_DIR, listed_files
from grounded_sam.progress import progress_bar

NO_DETECTIONS = "(no detections)"


def write_review(
    dataset_folder: str | os.PathLike, max_images: int = 1000, thumbnail_size: int = 320, progress: bool = True
) -> Path:
    """Writes the review page of a dataset written by ``label`` and returns the path of its ``index.html``.

    Args:
        dataset_folder: the output folder of ``GroundedSAM2.label`` / ``grounded-sam label``.
        max_images: thumbnails drawn at most, in name order (the counts always cover the whole dataset).
        thumbnail_size: longest side of a thumbnail, pixels.
        progress: show a progress bar while drawing thumbnails.
    """
    if max_images < 0 or thumbnail_size < 16:
        raise UserInputError(f"max_images must be >= 0 and thumbnail_size >= 16, got {max_images} and {thumbnail_size}")
    dataset = LabeledDataset(dataset_folder)
    root = Path(dataset_folder).absolute()
    real_directory(root, STATE_DIR, create=False)  # the manifest goes there: never through a link
    paths = sorted(dataset.image_paths)
    drawn_count = min(max_images, len(paths))
    planned = [f"{REVIEW_DIR}/index.html", *(f"{REVIEW_DIR}/thumbs/{index:06d}.jpg" for index in range(drawn_count))]
    earlier = _claim(root, planned)
    thumbs = real_directory(root, f"{REVIEW_DIR}/thumbs")
    cards, unreadable, written = [], [], {planned[0]}
    detections_per_class, images_per_class = Counter(), Counter()
    bar = progress_bar(len(paths), "Review", enabled=progress)
    for index, image_path in enumerate(paths):
        bar.update(1)
        drawn = index < drawn_count
        detections = dataset.annotations[image_path] if drawn else None  # masks decoded only for thumbnails
        names = detections.data[CLASS_NAME].tolist() if drawn else dataset.class_names(image_path)
        detections_per_class.update(names)
        images_per_class.update(set(names) or {NO_DETECTIONS})
        if not drawn:
            continue
        thumbnail = thumbs / f"{index:06d}.jpg"  # our own names: nothing from the dataset ends up in a path
        try:
            atomic_write_bytes(thumbnail, _jpeg(_thumbnail(image_path, detections, thumbnail_size)))
        except (FileNotFoundError, InvalidImageError) as error:  # one image gone: the page still comes out
            unreadable.append({"path": os.path.relpath(image_path, root), "reason": str(error)})
            continue
        written.add(f"{REVIEW_DIR}/thumbs/{thumbnail.name}")
        cards.append(_card(thumbnail.name, image_path, dataset.splits[image_path], names))
    bar.close()
    page = root / REVIEW_DIR / "index.html"
    skipped = _skipped(root) + unreadable
    atomic_write_text(
        page, _page(root, dataset.classes, cards, len(paths), detections_per_class, images_per_class, skipped)
    )
    for stale in (earlier | set(planned)) - written:  # only what a review wrote
        remove_owned_file(root, stale)
    atomic_write_text(root / REVIEW_MANIFEST, json.dumps({"files": sorted(written)}))
    return page


def _claim(root: Path, planned: list[str]) -> set[str]:
    """Refuses a file by a planned name that no earlier review wrote, then lists the planned names with the earlier
    ones before anything is written (whatever a killed run leaves is known to the next one; the earlier page stays
    whole until the new one replaces it). Returns the earlier review's files."""
    earlier = set(listed_files(root / REVIEW_MANIFEST))
    foreign = [name for name in planned if name not in earlier and os.path.lexists(root / name)]
    if foreign:
        raise OutputFolderError(
            f"{root / foreign[0]} is not a file grounded-sam wrote; move it away to write the review page there "
            "(nothing was changed)"
        )
    atomic_write_text(root / REVIEW_MANIFEST, json.dumps({"files": sorted(earlier | set(planned))}))
    return earlier


def _card(thumbnail: str, image_path: str, split: str, names: list[str]) -> dict:
    return {
        "src": f"thumbs/{thumbnail}",
        "name": Path(image_path).name,
        "split": split,
        "classes": sorted(set(names)),
        "counts": dict(Counter(names)),
    }


def _jpeg(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _thumbnail(image_path: str, detections: sv.Detections, side: int) -> np.ndarray:
    """The image shrunk to ``side`` pixels at most, then annotated, so labels stay readable on big images."""
    image = load_image(image_path)
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        detections = _scaled(detections, scale, size)
    return annotate(image, detections)


def _scaled(detections: sv.Detections, scale: float, size: tuple[int, int]) -> sv.Detections:
    scaled = sv.Detections(
        xyxy=detections.xyxy * scale,
        confidence=detections.confidence,
        class_id=detections.class_id,
        data=dict(detections.data),
    )
    if detections.mask is not None:
        masks = [cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for mask in detections.mask]
        scaled.mask = np.array(masks, dtype=bool).reshape(len(detections), size[1], size[0])
    return scaled


def _skipped(root: Path) -> list[dict]:
    report = root / "report.json"
    if not report.is_file():
        return []
    return json.loads(report.read_text(encoding="utf-8")).get("skipped", [])


def _page(root, classes, cards, total, detections_per_class, images_per_class, skipped) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{detections_per_class[name]}</td><td>{images_per_class[name]}</td></tr>"
        for name in [*classes, NO_DETECTIONS]
        if name != NO_DETECTIONS or images_per_class[name]
    )
    options = "".join(
        f'<option value="{html.escape(name)}">{html.escape(name)}</option>' for name in [*classes, NO_DETECTIONS]
    )
    splits = "".join(f'<option value="{name}">{name}</option>' for name in sorted({card["split"] for card in cards}))
    missing = "".join(
        f"<tr><td>{html.escape(item['path'])}</td><td>{html.escape(item['reason'])}</td></tr>" for item in skipped
    )
    shown = f"{len(cards)} of {total} images drawn (name order)" if len(cards) < total else f"{total} images"
    # "</script>" or "<!--<script" inside the data would end or derail the script element; JSON's \u escapes are the
    # same strings to JavaScript.
    data = json.dumps(cards, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _TEMPLATE.format(
        title=html.escape(root.name),
        folder=html.escape(str(root)),
        shown=shown,
        rows=rows,
        options=options,
        splits=splits,
        skipped_count=len(skipped),
        missing=missing or '<tr><td colspan="2">none</td></tr>',
        data=data,
        none=json.dumps(NO_DETECTIONS),
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Review: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
td:nth-child(n+2) {{ text-align: right; }}
#grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
figure {{ margin: 0; width: 320px; }}
figure img {{ max-width: 320px; max-height: 320px; display: block; }}
figcaption {{ font-size: 12px; color: #555; overflow-wrap: anywhere; }}
.hidden {{ display: none; }}
</style></head>
<body>
<h1>Review: {title}</h1>
<p>{folder} &middot; {shown}</p>
<h2>Classes</h2>
<table id="classes"><tr><th>class</th><th>detections</th><th>images</th></tr>{rows}</table>
<h2>Images</h2>
<p><label>Class <select id="class-filter"><option value="">all</option>{options}</select></label>
<label>Split <select id="split-filter"><option value="">all</option>{splits}</select></label>
<span id="shown-count"></span></p>
<div id="grid"></div>
<h2>Skipped images ({skipped_count})</h2>
<table id="skipped"><tr><th>image</th><th>reason</th></tr>{missing}</table>
<script id="cards" type="application/json">{data}</script>
<script>
"use strict";
const NONE = {none};
const cards = JSON.parse(document.getElementById("cards").textContent);
const grid = document.getElementById("grid");
const figures = cards.map((card) => {{
  const figure = document.createElement("figure");
  figure.className = "thumb";
  const image = document.createElement("img");
  image.src = card.src;
  image.alt = card.name;
  image.loading = "lazy";
  const caption = document.createElement("figcaption");
  const counts = Object.entries(card.counts).map(([name, count]) => `${{name}} ${{count}}`).join(", ");
  caption.textContent = `${{card.name}} \\u00b7 ${{card.split}} \\u00b7 ${{counts || NONE}}`;
  figure.append(image, caption);
  grid.append(figure);
  return figure;
}});
function applyFilters() {{
  const wanted = document.getElementById("class-filter").value;
  const split = document.getElementById("split-filter").value;
  let shown = 0;
  cards.forEach((card, index) => {{
    const matchesClass = !wanted || (wanted === NONE ? card.classes.length === 0 : card.classes.includes(wanted));
    const visible = matchesClass && (!split || card.split === split);
    figures[index].classList.toggle("hidden", !visible);
    shown += visible ? 1 : 0;
  }});
  document.getElementById("shown-count").textContent = `${{shown}} shown`;
}}
document.getElementById("class-filter").addEventListener("change", applyFilters);
document.getElementById("split-filter").addEventListener("change", applyFilters);
applyFilters();
</script>
</body></html>
"""

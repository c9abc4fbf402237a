"""README screenshots of the app's two screens (docs/app-segment.png, docs/app-dataset.png), taken from the running
app in headless Chromium (Debian's, through Playwright).

    python scripts/app_screenshots.py docs/                      # offline: see below
    python scripts/app_screenshots.py docs/ --florence ID_OR_DIR --sam ID_OR_DIR

Without model options it uses what this repository makes offline: the tiny Florence-2 of ``grounded_sam.testing``,
scripted to find the cup, spoon and saucer of scikit-image's coffee photo, and OpenCV's GrabCut standing in for SAM 2
behind the same segmenter methods (the tiny SAM 2's random weights draw noise). With ``--florence``/``--sam`` the
real models find and segment everything. Either way the pictures are the app's own pages; the viewport is fixed
(1280 x 820, device scale 1) so they stay small and comparable.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
import torch
from PIL import Image
from skimage import data

from grounded_sam.detections import MASK_SCORE, masks_to_detections

PROMPTS = "a cup, a spoon, a saucer"
# Boxes in Florence-2's 0-999 bins of the coffee photo (cup, spoon, saucer), as the scripted tiny decoder writes them.
SCRIPT = (
    "a cup<loc_283><loc_38><loc_683><loc_760>a spoon<loc_541><loc_163><loc_708><loc_815>"
    "a saucer<loc_125><loc_175><loc_800><loc_975>"
)
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
READY = "() => document.getElementById('status').dataset.state !== 'busy'"


class GrabCutState:
    def __init__(self, image: np.ndarray):
        self.image, self.original_size = image, image.shape[:2]


class GrabCutSegmenter:
    """OpenCV's GrabCut behind the methods the app and labeling call on a SAM 2 ``Segmenter`` (``set_image``,
    ``predict`` with boxes and clicks, ``segment``): a stand-in with sensible masks where no real SAM 2 is at hand."""

    device = torch.device("cpu")

    def settings(self) -> dict:
        return {"type": "grabcut", "model": "opencv grabcut"}

    def set_image(self, image: np.ndarray) -> GrabCutState:
        return GrabCutState(image)

    def predict(self, state: GrabCutState, points=None, labels=None, boxes=None, **_) -> sv.Detections:
        count = len(boxes) if boxes is not None else len(points)
        masks = [
            self._cut(
                state.image,
                None if boxes is None else boxes[i],
                [] if points is None else points[i],
                [] if labels is None else labels[i],
            )
            for i in range(count)
        ]
        return masks_to_detections(np.stack(masks), np.full(count, 0.9, np.float32))

    def segment(self, images, detections) -> list[sv.Detections]:
        results = []
        for image, found in zip(images, detections):
            found = found[:]
            found.mask = np.stack([self._cut(image, box, [], []) for box in found.xyxy]) if len(found) else None
            found.data[MASK_SCORE] = np.full(len(found), 0.9, np.float32)
            results.append(found)
        return results

    @staticmethod
    def _cut(image: np.ndarray, box, points, labels) -> np.ndarray:
        height, width = image.shape[:2]
        if box is None:  # a click alone: look around it
            x, y = points[0]
            box = [x - width * 0.15, y - height * 0.15, x + width * 0.15, y + height * 0.15]
        x1, y1, x2, y2 = (int(round(v)) for v in np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]))
        mask = np.full((height, width), cv2.GC_BGD, np.uint8)
        mask[y1 : y2 + 1, x1 : x2 + 1] = cv2.GC_PR_FGD
        for (x, y), label in zip(points, labels):
            cv2.circle(mask, (int(x), int(y)), max(3, width // 100), cv2.GC_FGD if label else cv2.GC_BGD, -1)
        background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(image[:, :, ::-1].copy(), mask, None, background, foreground, 4, cv2.GC_INIT_WITH_MASK)
        return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


def offline_models(folder: Path):
    """The scripted tiny Florence-2 (for the coffee photo) and GrabCut."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from grounded_sam.apps.web import AppModels
    from grounded_sam.detection import Florence2Detector
    from grounded_sam.ontology import CaptionOntology
    from grounded_sam.pipeline import PipelineSpec
    from grounded_sam.testing import build_tiny_florence2

    build_tiny_florence2(folder / "florence", script=SCRIPT)
    model = Florence2ForConditionalGeneration.from_pretrained(folder / "florence").eval()
    detector = Florence2Detector(
        model, AutoProcessor.from_pretrained(folder / "florence"), CaptionOntology({"a cup": "cup"}), max_new_tokens=96
    )
    return AppModels(GrabCutSegmenter(), detector, PipelineSpec(), "tiny Florence-2 (scripted) + GrabCut")


def coffee_photos(folder: Path) -> Path:
    """Three versions of the coffee photo (sizes and exposures), a small folder to label."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = data.coffee()
    for index, (width, gamma) in enumerate([(600, 1.0), (480, 0.8), (360, 1.25)]):
        resized = cv2.resize(photo, (width, width * 2 // 3), interpolation=cv2.INTER_AREA)
        exposed = (255 * (resized / 255.0) ** gamma).astype(np.uint8)
        Image.fromarray(exposed).save(folder / f"espresso_{index + 1}.jpg", quality=90)
    return folder


def label_dataset(models, photos: Path, output: Path) -> Path:
    from grounded_sam import CaptionOntology, GroundedSAM2

    ontology = CaptionOntology({prompt.strip(): prompt.strip().split()[-1] for prompt in PROMPTS.split(",")})
    template = models.florence  # the app's loaded Florence-2, asked here for the dataset's ontology
    detector = type(template)(template.model, template.processor, ontology, max_new_tokens=template.max_new_tokens)
    pipeline = GroundedSAM2(ontology, detector=detector, segmenter=models.segmenter)
    pipeline.label(str(photos), output_folder=str(output), split=(0.7, 0.3), progress=False, verbose=False)
    return output


def small_png(png: bytes, path: Path) -> None:
    """Stores a screenshot as a 96-colour PNG (a fifth of the size; the page's flat colours survive it)."""
    picture = Image.open(io.BytesIO(png)).convert("RGB").quantize(96, method=Image.Quantize.MEDIANCUT)
    picture.save(path, optimize=True)


def shoot(url: str, photo: Path, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    paths = [out / "app-segment.png", out / "app-dataset.png"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820}, device_scale_factor=1)
        page.set_default_timeout(600_000)
        page.goto(f"{url}/?tab=segment")
        page.wait_for_function("() => document.getElementById('status').textContent === 'ready'")
        page.click("#tab-segment")
        page.set_input_files("#file", str(photo))
        page.wait_for_function("() => document.getElementById('base').naturalWidth > 0")
        page.wait_for_function(READY)
        page.fill("#prompts", PROMPTS)
        page.click("#run")
        page.wait_for_function("() => document.querySelectorAll('#detections li').length > 0")
        page.click("#detections li:nth-child(2) .name")
        base = page.locator("#base").bounding_box()
        page.mouse.click(base["x"] + base["width"] * 0.61, base["y"] + base["height"] * 0.7)  # on the spoon
        page.wait_for_function("() => document.querySelectorAll('#marks .point').length === 1")
        page.wait_for_function(READY)
        small_png(page.screenshot(full_page=True), paths[0])
        page.click("#tab-dataset")
        page.click("#ds-list li:first-child button")
        page.wait_for_function("() => document.querySelectorAll('#detections li').length > 0")
        page.wait_for_function(READY)
        page.click("#detections li:last-child button.delete")  # a correction: drop the saucer
        page.wait_for_function(READY)
        page.click("#save")
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('saved')")
        page.click("#detections li:first-child .name")
        small_png(page.screenshot(full_page=True), paths[1])
        browser.close()
    return paths


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for app-segment.png and app-dataset.png")
    parser.add_argument("--florence", help="Florence-2 hub id or folder (default: the offline stand-ins)")
    parser.add_argument("--sam", help="SAM 2 hub id, folder or .pt file (with --florence)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from grounded_sam.apps.web import make_server, start_in_thread
    from grounded_sam.apps.web.guards import AppConfig
    from grounded_sam.apps.web.serve import free_port

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (apt install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.florence:
            from grounded_sam.apps.web import AppModels
            from grounded_sam.pipeline import PipelineSpec

            models = AppModels.from_spec(PipelineSpec(florence=args.florence, sam=args.sam, device=args.device))
        else:
            models = offline_models(folder)
        dataset = label_dataset(models, coffee_photos(folder / "photos"), folder / "photos_labeled")
        photo = folder / "coffee.jpg"
        Image.fromarray(data.coffee()).save(photo, quality=92)
        port = free_port()
        server = make_server(models, AppConfig(port=port), dataset)
        start_in_thread(server)
        try:
            paths = shoot(f"http://127.0.0.1:{port}", photo, args.out, chromium)
        finally:
            server.should_exit = True
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return paths


if __name__ == "__main__":
    main()

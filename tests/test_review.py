"""The HTML review page of a labeled dataset: its content, and loading it in a real headless Chromium."""

import os
import shutil
from collections import Counter

import pytest
from helpers import CannedModel, make_good_images

from grounded_sam import label_folder
from grounded_sam.apps.review import NO_DETECTIONS, write_review

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
REQUIRE_BROWSER = os.environ.get("GROUNDED_SAM_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Eight labeled images (three of them empty, the canned model finds nothing there) and two skipped files."""
    root = tmp_path_factory.mktemp("review")
    make_good_images(root / "photos", 7, empty_every=3)
    # a name that would derail an inline script if the page's JSON were not escaped
    (root / "photos" / "<!--<script>x.png").write_bytes((root / "photos" / "img_001.png").read_bytes())
    (root / "photos" / "broken.jpg").write_bytes(b"not a picture")
    (root / "photos" / "<img src=x onerror=alert(1)>.png").write_bytes(b"")
    report = label_folder(CannedModel(), root / "photos", output_folder=root / "dataset", progress=False, verbose=False)
    assert report.images_labeled == 8 and report.images_skipped == 2
    return root / "dataset"


def _expected_images_per_class(dataset) -> Counter:
    from grounded_sam import LabeledDataset

    labeled = LabeledDataset(dataset)
    counts = Counter()
    for path in labeled.image_paths:
        counts.update(set(labeled.annotations[path].data["class_name"]) or {NO_DETECTIONS})
    return counts


def test_page_has_every_thumbnail_count_and_skipped_reason(dataset):
    page = write_review(dataset, progress=False)
    text = page.read_text()
    assert page == dataset / "review" / "index.html"
    assert len(list((dataset / "review" / "thumbs").glob("*.jpg"))) == 8
    assert "broken.jpg" in text and "<!--" not in text and "Skipped images (2)" in text
    assert (
        "<img src=x onerror=alert(1)>.png" not in text and "&lt;img src=x" in text
    )  # a file name is text, never markup
    assert f"<td>{NO_DETECTIONS}</td><td>0</td><td>{_expected_images_per_class(dataset)[NO_DETECTIONS]}</td>" in text


def test_max_images_limits_thumbnails_not_counts(dataset, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(dataset, copy, symlinks=True)
    page = write_review(copy, max_images=3, progress=False)
    assert len(list((copy / "review" / "thumbs").glob("*.jpg"))) == 3
    assert "3 of 8 images drawn" in page.read_text()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not REQUIRE_BROWSER, reason="no Chromium (apt install chromium)")
def test_page_loads_in_headless_chromium_and_filters_by_class(dataset, tmp_path):
    sync_api = (
        pytest.importorskip("playwright.sync_api")
        if not REQUIRE_BROWSER
        else __import__("playwright.sync_api", fromlist=["sync_playwright"])
    )
    page_path = write_review(dataset, progress=False)
    expected = _expected_images_per_class(dataset)
    problems = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.goto(page_path.as_uri(), wait_until="load")
            thumbs = page.locator("figure.thumb")
            assert thumbs.count() == 8
            assert page.get_by_text("<!--<script>x.png", exact=False).count() == 1  # shown as text
            page.wait_for_function("[...document.images].every((image) => image.complete && image.naturalWidth > 0)")
            assert page.locator("#skipped tr").count() == 3  # header + the two skipped files
            for name in ("bright", "dark", NO_DETECTIONS):
                page.select_option("#class-filter", name)
                assert page.locator("figure.thumb:not(.hidden)").count() == expected[name], name
                assert page.locator("#shown-count").inner_text() == f"{expected[name]} shown"
            page.select_option("#class-filter", "")
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert expected["bright"] > 0 and expected[NO_DETECTIONS] > 0  # the filter checks above could not pass vacuously

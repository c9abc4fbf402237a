"""The web app end to end in headless Chromium (Debian's, through Playwright) with the tiny scripted models: the
segment screen, reviewing and correcting a labeled dataset, and the security rules. One server for the module."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import CannedModel, label_quietly
from PIL import Image
from skimage import data as skdata

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("GROUNDED_SAM_REQUIRE_BROWSER") == "1"  # CI: fail rather than skip
if not REQUIRE_BROWSER:
    pytest.importorskip("starlette")  # the app extra
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"  # shown as text, never run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningApp:
    """The app on a free loopback port, on a thread."""

    def __init__(self, models, dataset=None, **config):
        from grounded_sam.apps.web import AppConfig, make_server, start_in_thread

        self.config = AppConfig(port=free_port(), **config)
        self.server = make_server(models, self.config, dataset)
        start_in_thread(self.server)
        self.url = f"http://127.0.0.1:{self.config.port}"

    def listening(self) -> set[str]:
        return {sock.getsockname()[0] for server in self.server.servers for sock in server.sockets}

    def stop(self) -> None:
        self.server.should_exit = True


@pytest.fixture(scope="module")
def app_models(florence_dir, sam_dir):
    from grounded_sam.apps.web import AppModels
    from grounded_sam.pipeline import PipelineSpec

    spec = PipelineSpec(florence=str(florence_dir), sam=str(sam_dir), device="cpu", dtype="float32", max_new_tokens=64)
    return AppModels.from_spec(spec, "tiny")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(np.asarray(Image.fromarray(skdata.astronaut()).resize((640, 480)))).save(path)
    return path


def scene(index: int) -> np.ndarray:
    """64 x 48 gray with a bright disk of radius 3 + index and a dark ring (nothing for indices 0 and 4), so that the
    CannedModel's confidences (each region's share of the image) differ from image to image."""
    image = np.full((48, 64, 3), 128, np.uint8)
    if index % 4 == 0:
        return image
    yy, xx = np.mgrid[:48, :64]
    image[(yy - 24) ** 2 + (xx - 16) ** 2 < (3 + index) ** 2] = 240
    distance = (yy - 24) ** 2 + (xx - 48) ** 2
    image[(distance < 100) & (distance > 16)] = 10
    return image


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    """Eight canned scenes labeled into a dataset (two of them empty), half train, half valid."""
    root = tmp_path_factory.mktemp("app_dataset")
    (root / "photos").mkdir()
    for index in range(8):
        Image.fromarray(scene(index)).save(root / "photos" / f"img_{index:03d}.png")
    label_quietly(CannedModel(), root / "photos", root / "dataset", split=(0.5, 0.5))
    return root / "dataset"


@pytest.fixture(scope="module")
def running(app_models, labeled):
    app = RunningApp(app_models, labeled, max_pixels=2_000_000, max_upload_bytes=4 * 1024 * 1024)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None and not REQUIRE_BROWSER:
        pytest.skip("no Chromium (apt install chromium)")
    if REQUIRE_BROWSER:
        from playwright import sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


def new_tab(context, app):
    """A tab that records console errors, dialogs and every request that is not to the app (aborted: the page must
    need nothing from elsewhere)."""
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.problems, tab.outside = [], []
    tab.on("console", lambda message: tab.problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.on("dialog", lambda dialog: (tab.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))

    def guard(route):
        if route.request.url.startswith((app.url, "data:", "blob:")):
            route.continue_()
        else:
            tab.outside.append(route.request.url)
            route.abort()

    tab.route("**/*", guard)
    return tab


@pytest.fixture
def page(browser, running):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield new_tab(context, running)
    context.close()


def wait_ready(tab) -> None:
    tab.wait_for_function("() => document.getElementById('status').dataset.state !== 'busy'")
    assert tab.get_attribute("#status", "data-state") != "error", tab.inner_text("#status")


def upload(tab, path: Path, name: str | None = None) -> None:
    files = {"name": name, "mimeType": "image/png", "buffer": path.read_bytes()} if name else str(path)
    tab.set_input_files("#file", files=[files] if name else files)
    tab.wait_for_function(
        "() => document.getElementById('base').complete && document.getElementById('base').naturalWidth > 0"
    )
    wait_ready(tab)


def click_at(tab, x: float, y: float, button: str = "left") -> None:
    """Clicks pixel (x, y) of the original image, however large the page shows it."""
    box = tab.locator("#base").bounding_box()
    width, height = tab.evaluate(
        "() => [document.getElementById('base').naturalWidth, document.getElementById('base').naturalHeight]"
    )
    tab.mouse.click(
        box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height, button=button
    )


def drag(tab, start, end, image_width: int) -> None:
    base = tab.locator("#base").bounding_box()
    scale = base["width"] / image_width
    tab.mouse.move(base["x"] + start[0] * scale, base["y"] + start[1] * scale)
    tab.mouse.down()
    tab.mouse.move(base["x"] + end[0] * scale, base["y"] + end[1] * scale, steps=5)
    tab.mouse.up()


def overlay_src(tab, detection_id) -> str:
    return tab.get_attribute(f"#overlays img[data-id='{detection_id}']", "src")


def wait_src_change(tab, detection_id, before: str) -> str:
    tab.wait_for_function(
        "([id, before]) => { const img = document.querySelector(`#overlays img[data-id='${id}']`); "
        "return img && img.getAttribute('src') !== before; }",
        arg=[detection_id, before],
    )
    return overlay_src(tab, detection_id)


def data_url_mask(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")) > 0


def count(tab, selector: str) -> int:
    return tab.locator(selector).count()


def download(tab, button: str, folder: Path) -> Path:
    with tab.expect_download() as started:
        tab.click(button)
    path = folder / started.value.suggested_filename
    started.value.save_as(path)
    return path


def no_trouble(tab) -> None:
    assert tab.problems == [] and tab.outside == []


# ---- segment screen ----------------------------------------------------------------------------------------------


def test_upload_prompt_run_then_a_click_changes_the_selected_mask_and_the_json_decodes(page, running, photo, tmp_path):
    from pycocotools import mask as mask_utils

    page.goto(f"{running.url}/?tab=segment")
    wait_ready(page)
    page.click("#tab-segment")
    upload(page, photo, HOSTILE_NAME)
    assert page.inner_text("#image-name") == HOSTILE_NAME  # a file name is text, never markup
    page.fill("#prompts", "a dog, a person")
    page.click("#run")
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 3")
    # the script's boxes: two "a dog", one "Persons" -> "a person"; "the image" matches no prompt
    assert page.locator("#detections li .name").all_inner_texts() == ["a dog", "a dog", "a person"]
    assert count(page, "#overlays img") == 3 and count(page, "#marks .box") == 3
    assert all(float(text) > 0 for text in page.locator("#detections li .confidence").all_inner_texts())

    page.click("#detections li[data-id='0'] .name")  # select the first dog
    before = overlay_src(page, 0)
    click_at(page, 150, 150)  # a + point: the mask decoder on the cached embedding
    after_positive = wait_src_change(page, 0, before)
    assert count(page, "#marks .point.positive") == 1
    click_at(page, 250, 100, button="right")  # a - point
    after_negative = wait_src_change(page, 0, after_positive)
    assert count(page, "#marks .point.negative") == 1
    assert not np.array_equal(data_url_mask(before), data_url_mask(after_negative))

    page.uncheck("#detections li[data-id='1'] input.show")  # hidden in the page only
    assert "hidden" in page.get_attribute("#overlays img[data-id='1']", "class")
    result = json.loads(download(page, "#dl-json", tmp_path).read_text())
    assert result["image"] == HOSTILE_NAME and (result["width"], result["height"]) == (640, 480)
    rows = result["detections"]
    assert [row["class_name"] for row in rows] == ["a dog", "a person"]  # the hidden one left out
    assert [result["classes"][row["class_id"]] for row in rows] == ["a dog", "a person"]
    # the clicks land on the pixels aimed at, in the original image's pixels (the page shows it scaled)
    clicks = result["prompts"][0]
    assert np.floor(clicks["points"]).astype(int).tolist() == [[150, 150], [250, 100]] and clicks["labels"] == [1, 0]
    decoded = mask_utils.decode({"size": rows[0]["mask"]["size"], "counts": rows[0]["mask"]["counts"].encode()})
    assert decoded.shape == (480, 640)
    assert np.array_equal(decoded.astype(bool), data_url_mask(after_negative))  # what is shown is what is downloaded
    no_trouble(page)


def test_find_everything_segment_everything_and_a_click_adds_an_object(page, running, photo):
    page.goto(f"{running.url}/?tab=segment")
    wait_ready(page)
    page.click("#tab-segment")
    upload(page, photo)
    page.fill("#prompts", "")
    page.click("#find-all")  # Florence-2's object detection: every name it writes is a class
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 4")
    assert page.locator("#detections li .name").all_inner_texts() == ["a dog", "a dog", "the image", "Persons"]
    page.fill("#add-class", "thing")
    for field, value in (("#points-per-side", "4"), ("#pred-iou", "0"), ("#stability", "0")):
        page.fill(field, value)  # the random tiny SAM 2 scores low: keep every candidate
    page.click("#everything")
    page.wait_for_function("() => document.getElementById('status').textContent === 'ready'")
    names = page.locator("#detections li .name").all_inner_texts()
    assert names and set(names) == {"thing"}
    page.fill("#add-class", "cup")
    click_at(page, 320, 240)  # nothing selected: a click adds an object
    page.wait_for_function("(n) => document.querySelectorAll('#detections li').length === n", arg=len(names) + 1)
    assert page.locator("#detections li.selected .name").inner_text() == "cup"
    assert count(page, "#marks .point.positive") == 1
    no_trouble(page)


def test_a_drawn_box_adds_an_object_and_its_downloads(page, running, photo, tmp_path):
    page.goto(f"{running.url}/?tab=segment")
    wait_ready(page)
    page.click("#tab-segment")
    upload(page, photo)
    page.check("#tool-box")
    page.fill("#add-class", "cup")
    drag(page, (300, 200), (420, 330), 640)
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 1")
    assert page.inner_text("#detections li .name") == "cup" and count(page, "#detections li.selected") == 1
    mask = np.asarray(Image.open(download(page, "#dl-mask", tmp_path))) == 255
    cutout = np.asarray(Image.open(download(page, "#dl-cutout", tmp_path)))
    assert cutout.ndim == 3 and cutout.shape[2] == 4  # RGBA
    rows, columns = np.nonzero(mask)
    window = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
    np.testing.assert_array_equal(cutout[..., 3] == 255, mask[window])  # transparent outside the object
    np.testing.assert_array_equal(cutout[..., :3], np.asarray(Image.open(photo).convert("RGB"))[window])
    annotated = Image.open(download(page, "#dl-annotated", tmp_path))
    assert annotated.size == (640, 480) and annotated.mode == "RGB"
    no_trouble(page)


def test_a_folder_to_pick_from_and_an_ontology_file(page, running, photo, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    shutil.copy(photo, folder / "first.png")
    Image.new("RGB", (320, 240), (90, 120, 150)).save(folder / "second.png")
    (folder / "notes.txt").write_text("not an image")
    ontology = tmp_path / "pets.yaml"
    ontology.write_text("a dog: dog\npuppy: dog\na person: person\n")
    page.goto(f"{running.url}/?tab=segment")
    wait_ready(page)
    page.click("#tab-segment")
    page.set_input_files("#folder", str(folder))
    assert page.locator("#picked li button").all_inner_texts() == ["pictures/first.png", "pictures/second.png"]
    page.click("#picked li:nth-child(2) button")
    page.wait_for_function("() => document.getElementById('image-name').textContent === 'second.png'")
    wait_ready(page)
    assert page.input_value("#prompts") == "bright thing=bright, dark thing=dark"  # the dataset's ontology
    page.fill("#prompts", "")
    page.set_input_files("#ontology-file", str(ontology))
    page.wait_for_function("() => document.getElementById('prompts').value !== ''")
    assert page.input_value("#prompts") == "a dog=dog, puppy=dog, a person=person"
    page.click("#run")
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 3")
    assert page.locator("#detections li .name").all_inner_texts() == ["dog", "dog", "person"]
    no_trouble(page)


def test_two_tabs_of_one_browser_do_not_share_state(browser, running, photo, tmp_path):
    context = browser.new_context(accept_downloads=True)  # one context: cookies and storage shared
    first, second = new_tab(context, running), new_tab(context, running)
    try:
        gray = tmp_path / "gray.png"
        Image.new("RGB", (320, 240), (128, 128, 128)).save(gray)
        for tab, image in ((first, photo), (second, gray)):
            tab.goto(f"{running.url}/?tab=segment")
            wait_ready(tab)
            tab.click("#tab-segment")
            upload(tab, image)
        first.fill("#prompts", "a dog")
        first.click("#run")
        first.wait_for_function("() => document.querySelectorAll('#detections li').length === 2")
        assert count(second, "#detections li") == 0
        second_json = json.loads(download(second, "#dl-json", tmp_path).read_text())
        first_json = json.loads(download(first, "#dl-json", tmp_path).read_text())
        assert (second_json["width"], second_json["detections"]) == (320, [])
        assert (first_json["width"], len(first_json["detections"])) == (640, 2)
        no_trouble(first)
        no_trouble(second)
    finally:
        context.close()


# ---- dataset screen ----------------------------------------------------------------------------------------------


def listing(app) -> list[dict]:
    with urllib.request.urlopen(f"{app.url}/api/dataset") as response:
        return json.load(response)["images"]


def shown_names(tab) -> list[str]:
    return tab.eval_on_selector_all("#ds-list li", "(items) => items.map((item) => item.dataset.name)")


def test_the_dataset_list_filters_by_class_split_emptiness_and_confidence(page, running):
    images = listing(running)
    page.goto(running.url)
    wait_ready(page)
    assert len(shown_names(page)) == len(images) == 8
    page.select_option("#ds-class", "dark")
    dark = sorted(i["name"] for i in images if "dark" in i["classes"])
    assert sorted(shown_names(page)) == dark and len(dark) == 6
    page.select_option("#ds-class", "")
    page.select_option("#ds-split", "valid")
    valid = sorted(i["name"] for i in images if i["split"] == "valid")
    assert sorted(shown_names(page)) == valid and 0 < len(valid) < 8
    page.select_option("#ds-split", "")
    page.check("#ds-empty")
    empty = sorted(i["name"] for i in images if not i["classes"])
    assert sorted(shown_names(page)) == empty and len(empty) == 2
    page.uncheck("#ds-empty")
    lowest = sorted(i["min_confidence"] for i in images if i["min_confidence"] is not None)
    threshold = (lowest[2] + lowest[3]) / 2  # between the third and fourth lowest: three images pass
    page.check("#ds-low")
    page.fill("#ds-low-threshold", str(threshold))
    page.dispatch_event("#ds-low-threshold", "change")
    low = sorted(i["name"] for i in images if i["min_confidence"] is not None and i["min_confidence"] < threshold)
    assert sorted(shown_names(page)) == low and len(low) == 3
    no_trouble(page)


def test_delete_a_detection_change_a_class_add_one_then_save_and_every_reader_sees_it(page, running, labeled):
    import supervision as sv
    from pycocotools.coco import COCO

    from grounded_sam import LabeledDataset
    from grounded_sam.labeling import read_corrections

    target = next(image for image in listing(running) if sorted(image["classes"]) == ["bright", "dark"])
    name, split = target["name"], target["split"]
    page.goto(running.url)
    wait_ready(page)
    page.click(f"#ds-list li[data-name='{name}'] button")
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 2")
    wait_ready(page)
    names = page.locator("#detections li .name").all_inner_texts()
    dark_id = page.get_attribute(f"#detections li:nth-child({names.index('dark') + 1})", "data-id")
    bright_id = page.get_attribute(f"#detections li:nth-child({names.index('bright') + 1})", "data-id")
    page.click(f"#detections li[data-id='{dark_id}'] button.delete")
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 1")
    page.select_option(f"#detections li[data-id='{bright_id}'] select.class", "dark")
    page.wait_for_function("() => document.querySelector('#detections li .name').textContent === 'dark'")
    page.check("#tool-box")
    page.fill("#add-class", "bright")
    drag(page, (4, 4), (30, 20), 64)  # a missed object, by box (the scene is 64 x 48)
    page.wait_for_function("() => document.querySelectorAll('#detections li').length === 2")
    page.click("#save")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('saved')")
    no_trouble(page)

    image_path = labeled / split / "images" / name
    assert LabeledDataset(labeled).annotations[str(image_path)].data["class_name"].tolist() == ["dark", "bright"]
    coco_file = labeled / "annotations" / f"instances_{split}.json"
    from_coco = sv.DetectionDataset.from_coco(str(labeled / split / "images"), str(coco_file))
    found = next(d for path, d in from_coco.annotations.items() if Path(path).name == name)
    assert [from_coco.classes[i] for i in found.class_id] == ["dark", "bright"]
    coco = COCO(str(coco_file))
    image_id = next(i for i, image in coco.imgs.items() if image["file_name"] == name)
    assert [coco.cats[a["category_id"]]["name"] for a in coco.imgToAnns[image_id]] == ["dark", "bright"]
    ids = [
        a["id"]
        for s in ("train", "valid")
        for a in COCO(str(labeled / "annotations" / f"instances_{s}.json")).anns.values()
    ]
    assert len(set(ids)) == len(ids)  # still unique after the image grew back to two
    from_yolo = sv.DetectionDataset.from_yolo(  # the YOLO files ultralytics trains on
        str(labeled / split / "images"), str(labeled / split / "labels"), str(labeled / "data.yaml"), force_masks=True
    )
    found = next(d for path, d in from_yolo.annotations.items() if Path(path).name == name)
    assert sorted(from_yolo.classes[i] for i in found.class_id) == ["bright", "dark"]
    (entry,) = [e for e in read_corrections(labeled) if e["image"] == name]
    assert entry["count"] == 2 and [next(iter(change)) for change in entry["changes"]] == ["delete", "class", "add"]
    page.check("#ds-corrected")
    assert shown_names(page) == [name]
    assert "corrected" in page.inner_text(f"#ds-list li[data-name='{name}']")


# ---- security ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/dataset/image?name=../../../../etc/passwd",
        "/api/dataset/image?name=..%2F..%2F.grounded-sam%2Fsettings.json",
        "/api/dataset/image?name=%2Fetc%2Fpasswd",
        "/api/dataset/image?name=data.yaml",  # a file of the dataset folder, but not one of its images
        "/api/dataset/image?name=img_001.png%00.txt",
        "/static/..%2Fserver.py",
        "/static/../server.py",
        "/static/index.html/../../guards.py",
    ],
)
def test_path_traversal_is_refused(running, path):
    connection = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    connection.request("GET", path)  # sent as written: http.client does not normalise ../
    response = connection.getresponse()
    body = response.read()
    assert response.status == 404, (path, response.status)
    assert b"root:" not in body and b"import" not in body and b"classes" not in body


def test_a_dataset_image_is_served_by_its_name(running):
    name = listing(running)[0]["name"]
    with urllib.request.urlopen(f"{running.url}/api/dataset/image?name={urllib.request.quote(name)}") as response:
        assert response.headers["Content-Type"] == "image/png" and response.read()[:4] == b"\x89PNG"


def other_address() -> str | None:
    """An address of this machine that is not loopback (None when it has none)."""
    from conftest import _real_connect

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            _real_connect(probe, ("10.255.255.255", 1))  # a UDP connect sends nothing: it picks the interface
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_the_server_answers_on_127_0_0_1_only(running):
    assert running.listening() == {"127.0.0.1"}
    other = other_address()
    if other is not None:  # this machine's LAN address: nothing listens there
        from conftest import _real_connect

        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.settimeout(5)
            _real_connect(probe, (other, running.config.port))
    connection = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    connection.request("GET", "/", headers={"Host": f"attacker.example:{running.config.port}"})  # DNS rebinding
    assert connection.getresponse().status == 400


def post(url, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def new_session(app) -> dict:
    return post(f"{app.url}/api/session", b"{}", {})[1]


def test_uploads_over_the_size_or_pixel_limit_are_refused(running):
    headers = {"X-Session": new_session(running)["session"], "Content-Type": "application/octet-stream"}
    connection = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    connection.putrequest("POST", "/api/image")
    for key, value in {**headers, "Content-Length": str(5 * 1024 * 1024)}.items():
        connection.putheader(key, value)
    connection.endheaders()  # no body: the declared size alone is refused, before anything is read
    response = connection.getresponse()
    assert response.status == 413 and "limit" in json.load(response)["error"]
    big = io.BytesIO()
    Image.new("RGB", (2000, 1500)).save(big, format="PNG")  # 3 MP over the 2 MP limit, in a small file
    status, reply = post(f"{running.url}/api/image", big.getvalue(), headers)
    assert status == 413 and "megapixels" in reply["error"]
    assert post(f"{running.url}/api/image", b"not an image", headers)[0] == 400
    forged = {"X-Session": "forged", "Content-Type": "application/json"}
    assert post(f"{running.url}/api/run", b"{}", forged)[0] == 401


def test_cross_origin_posts_are_refused(running):
    headers = {"X-Session": new_session(running)["session"], "Content-Type": "application/json"}
    status, reply = post(
        f"{running.url}/api/run", b'{"prompts": "a dog"}', {**headers, "Origin": "http://evil.example"}
    )
    assert status == 403 and "Cross-origin" in reply["error"]


def test_the_page_forbids_other_origins_and_inline_script(running):
    with urllib.request.urlopen(running.url) as response:
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy.split("frame-ancestors")[0]


def test_the_auth_token_guards_page_and_api(app_models, browser):
    guarded = RunningApp(app_models, auth_token="s3cret-token")  # the same models: loaded once per process
    try:
        for path in ("/", "/api/dataset"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(guarded.url + path)
            assert refused.value.code == 401
        assert post(f"{guarded.url}/api/session", b"{}", {})[0] == 401
        assert post(f"{guarded.url}/api/session", b"{}", {"Authorization": "Bearer s3cret-token"})[0] == 200
        context = browser.new_context()
        tab = new_tab(context, guarded)
        assert tab.goto(f"{guarded.url}/login?token=wrong").status == 401
        tab.goto(f"{guarded.url}/login?token=s3cret-token")  # an HttpOnly cookie, then the page
        wait_ready(tab)
        assert tab.url == f"{guarded.url}/" and tab.inner_text("#status") == "ready"
        assert tab.evaluate("() => document.cookie") == ""  # not readable by scripts
        context.close()
    finally:
        guarded.stop()

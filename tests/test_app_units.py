"""The web app's parts without a browser: the exposure warning, what a page may send, sessions, model choices, the
command line, and the notebook one-liner on a real Jupyter kernel."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("GROUNDED_SAM_REQUIRE_BROWSER") != "1":  # CI: fail rather than skip
    pytest.importorskip("starlette")  # the app extra

from grounded_sam.apps.web import guards
from grounded_sam.apps.web.serve import exposure_warning
from grounded_sam.apps.web.state import AppError, SessionStore

SCRIPT = Path(sys.executable).parent / "grounded-sam"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.5"])
def test_loopback_hosts_need_no_warning(host):
    assert exposure_warning(host, auth=False) is None


def test_other_hosts_get_a_warning_louder_without_auth():
    open_warning, guarded_warning = exposure_warning("0.0.0.0", auth=False), exposure_warning("192.168.1.7", True)
    assert "WITHOUT a password (add --auth)" in open_warning and "0.0.0.0" in open_warning
    assert "with the token" in guarded_warning and "--auth" not in guarded_warning
    assert exposure_warning("my-laptop.lan", auth=False) is not None  # a name may resolve to anything


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a dog, a person", {"a dog": "a dog", "a person": "a person"}),
        ("a dog=dog\npuppy = dog", {"a dog": "dog", "puppy": "dog"}),
        (" , ,", None),
    ],
)
def test_prompts_text_reads_as_an_ontology_and_back(text, expected):
    ontology = guards.ontology(text)
    assert (ontology.to_dict() if ontology else None) == expected
    if ontology is not None:
        assert guards.ontology(guards.prompts_text(ontology)) == ontology


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (lambda v: guards.point(v, (100, 200)), [250, 10]),  # x past the width
        (lambda v: guards.point(v, (100, 200)), "10,10"),
        (lambda v: guards.box(v, (100, 200)), [10, 10, 11, 11]),  # too small to mean an object
        (lambda v: guards.box(v, (100, 200)), [10, 10, 50, 150]),  # y past the height
        (guards.click_label, True),
        (guards.class_name, "   "),
        (guards.task, "caption"),
        (lambda v: guards.number(v, "min_confidence", 0, 1), float("nan")),
    ],
)
def test_what_a_page_sends_is_checked(check, value):
    with pytest.raises(AppError):
        check(value)


def test_a_box_may_be_drawn_from_any_corner():
    assert guards.box([90, 80, 20, 10], (100, 120)) == [20.0, 10.0, 90.0, 80.0]


def test_sessions_are_dropped_when_too_many_or_idle():
    store = SessionStore(max_sessions=2, ttl_s=0.2)
    first, second, third = (store.create("m") for _ in range(3))
    with pytest.raises(AppError, match="reload the page"):
        store.get(first)  # the least recently used one went
    assert store.get(second) and store.get(third) and len(store) == 2
    time.sleep(0.3)
    with pytest.raises(AppError):
        store.get(third)


@pytest.mark.slow
def test_a_model_pair_loads_once_on_first_use(florence_dir, sam_dir):
    from grounded_sam.apps.web import AppModels, ModelChoices
    from grounded_sam.pipeline import PipelineSpec

    spec = PipelineSpec(florence=str(florence_dir), sam=str(sam_dir), device="cpu", dtype="float32")
    first = AppModels.from_spec(spec, "first")
    choices = ModelChoices(first, {"second": spec})
    assert choices.listing() == [{"name": "first", "loaded": True}, {"name": "second", "loaded": False}]
    second = choices.get("second")
    assert second is not first and choices.get("second") is second and choices.get(None) is first
    with pytest.raises(AppError, match="No model pair"):
        choices.get("third")
    offline = ModelChoices.with_cached_presets(first)  # no preset is in this test's (empty) cache
    assert offline.names() == ["first"]


def run_cli(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *arguments], capture_output=True, text=True, timeout=timeout)


def test_help_loads_neither_torch_nor_the_server():
    code = (
        "import sys; from grounded_sam.apps.cli import app; app(['app', '--help'], standalone_mode=False); "
        "print(*(name in sys.modules for name in ('torch', 'transformers', 'starlette', 'uvicorn')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False False False", result.stderr


def test_a_busy_port_is_refused_before_models_load():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("app", "--port", str(port), "--florence", "/nowhere", timeout=120)
    assert result.returncode == 2 and f"Port {port} on 127.0.0.1 is in use" in result.stderr


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    result = run_cli("app", str(tmp_path), timeout=120)
    assert result.returncode == 2 and "is not a dataset written by grounded-sam label" in result.stderr


@pytest.mark.slow
def test_check_starts_the_app_on_a_dataset_and_exits(florence_dir, sam_dir, six_scenes, tmp_path):
    from helpers import CannedModel, label_quietly

    label_quietly(CannedModel(), six_scenes, tmp_path / "dataset")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    models = ["--florence", str(florence_dir), "--sam", str(sam_dir), "--device", "cpu"]
    result = run_cli("app", str(tmp_path / "dataset"), "--port", str(port), "--check", "--auth", *models)
    assert result.returncode == 0, result.stderr
    assert f"ok: http://127.0.0.1:{port}/ answers" in result.stdout and "on cpu" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr  # 127.0.0.1: nothing to warn about


@pytest.mark.slow
def test_the_notebook_one_liner_shows_the_app_inline(florence_dir, sam_dir, tmp_path):
    """On a real Jupyter kernel: the documented cell displays an IFrame of the app, which answers while the kernel
    lives."""
    import nbformat
    from nbclient import NotebookClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cells = [
        "import grounded_sam\n"
        "from grounded_sam import CaptionOntology, GroundedSAM2\n"
        f"model = GroundedSAM2(CaptionOntology({{'a dog': 'dog'}}), florence={str(florence_dir)!r}, "
        f"sam={str(sam_dir)!r}, device='cpu', dtype='float32')",
        f"grounded_sam.show_app(model, port={port})",
        "import urllib.request\n"
        f"page = urllib.request.urlopen('http://127.0.0.1:{port}/').read().decode()\n"
        "print('<title>grounded-sam</title>' in page)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown = notebook.cells[1].outputs[-1]["data"]
    assert f'src="http://127.0.0.1:{port}/"' in shown["text/html"] and "<iframe" in shown["text/html"]
    assert notebook.cells[2].outputs[0]["text"].strip() == "True"


def test_the_page_files_are_package_data():
    """An installed wheel serves the page: every file of static/ matches pyproject's package-data."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = sorted((root / "grounded_sam" / "apps" / "web" / "static").iterdir())
    assert {path.name for path in static} >= {"index.html", "app.js", "app.css"}
    for path in static:
        relative = path.relative_to(root / "grounded_sam").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns["grounded_sam"]), relative


class CountingSegmenter:
    """A real (tiny) SAM 2 segmenter that counts its image-encoder and mask-decoder passes."""

    def __init__(self, segmenter):
        self.segmenter, self.encoded, self.decoded = segmenter, 0, 0

    def set_image(self, image):
        self.encoded += 1
        return self.segmenter.set_image(image)

    def predict(self, state, **prompts):
        self.decoded += 1
        return self.segmenter.predict(state, **prompts)


@pytest.mark.slow
def test_clicks_run_the_mask_decoder_only_on_the_image_s_cached_embedding(sam_dir):
    import numpy as np

    from grounded_sam.apps.web import AppModels, editing
    from grounded_sam.apps.web.state import Workspace
    from grounded_sam.pipeline import PipelineSpec
    from grounded_sam.segmentation import Segmenter

    counting = CountingSegmenter(Segmenter(str(sam_dir), device="cpu", dtype="float32"))
    models = AppModels(counting, None, PipelineSpec(), "counting")
    workspace = Workspace(image=np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), name="a.png")
    detection = editing.add_from_box(models, workspace, "object", [8, 8, 40, 30])
    editing.refine(models, workspace, detection, [20, 20], 1)
    editing.refine(models, workspace, detection, [35, 10], 0)
    editing.add_from_click(models, workspace, "object", [50, 40])
    assert (counting.encoded, counting.decoded) == (1, 4)
    assert detection.points == [[20, 20], [35, 10]] and detection.labels == [1, 0]
    other = Workspace(image=workspace.image.copy(), name="b.png")  # another tab's image: its own embedding
    editing.add_from_box(models, other, "object", [8, 8, 40, 30])
    assert counting.encoded == 2


@pytest.mark.slow
def test_the_click_benchmark_runs_on_a_tiny_sam(sam_dir, tmp_path):
    """benchmarks/app_click.py end to end (on the tiny SAM 2 here), so it does not rot between measurements."""
    import importlib.util
    import json

    path = Path(__file__).parents[1] / "benchmarks" / "app_click.py"
    spec = importlib.util.spec_from_file_location("app_click", path)
    app_click = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_click)
    out = tmp_path / "result.json"
    app_click.main(["--sam", str(sam_dir), "--clicks", "3", "--sizes", "64x48,200x100", "--out", str(out)])
    report = json.loads(out.read_text())
    assert sorted(report["sizes"]) == ["200x100", "64x48"]
    for size in report["sizes"].values():
        assert len(size["click_decoder_only_s"]) == len(size["click_with_reencode_s"]) == 3
        assert size["median_decoder_only_s"] > 0 and size["ratio"] > 0


@pytest.mark.slow
def test_typed_prompts_run_on_another_detector_and_find_everything_says_it_needs_florence(sam_dir, tmp_path, rng):
    from grounded_sam.apps.web import AppModels
    from grounded_sam.detection.florence2 import OBJECT_DETECTION, PHRASE_GROUNDING
    from grounded_sam.ontology import CaptionOntology
    from grounded_sam.pipeline import PipelineSpec
    from grounded_sam.testing import build_tiny_owlv2

    owlv2 = build_tiny_owlv2(tmp_path / "owlv2")
    spec = PipelineSpec(detector="owlv2", detector_model=str(owlv2), box_threshold=0.0, sam=str(sam_dir), device="cpu")
    models = AppModels.from_spec(spec)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for prompts in ({"a cat": "cat"}, {"a dog": "dog", "a person": "person"}):  # each request its own prompts
        found = models.detect(image, CaptionOntology(prompts), PHRASE_GROUNDING, 0.0, None)
        assert len(found) > 0 and set(found.data["class_name"]) <= set(prompts.values())
    assert not models.finds_everything and models.describe()["detector"] == "owlv2"
    with pytest.raises(AppError, match="Find everything needs Florence-2"):
        models.detect(image, None, OBJECT_DETECTION, 0.0, None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = ["--detector", "owlv2", "--detector-model", str(owlv2), "--sam", str(sam_dir), "--device", "cpu"]
    result = run_cli("app", "--port", str(port), "--check", *flags)
    assert result.returncode == 0 and f"ok: http://127.0.0.1:{port}/ answers" in result.stdout, result.stderr

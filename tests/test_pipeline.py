"""GroundedSAM2 end to end on tiny local models loaded through from_pretrained."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import supervision as sv
import torch
from PIL import Image

from grounded_sam import CaptionOntology, GroundedSAM2, InvalidImageError, ModelNotAvailableError

pytestmark = pytest.mark.slow


def _check_well_formed(found: sv.Detections, height: int, width: int, ontology: CaptionOntology):
    n = len(found)
    assert found.xyxy.shape == (n, 4) and found.xyxy.dtype == np.float32
    assert found.mask.shape == (n, height, width) and found.mask.dtype == bool
    assert found.confidence.shape == (n,) and ((found.confidence >= 0) & (found.confidence <= 1)).all()
    assert found.class_id.shape == (n,) and np.issubdtype(found.class_id.dtype, np.integer)
    assert (
        (found.xyxy[:, [0, 2]] <= width).all() and (found.xyxy[:, [1, 3]] <= height).all() and (found.xyxy >= 0).all()
    )
    classes = ontology.classes()
    assert [classes[i] for i in found.class_id] == found.data["class_name"].tolist()
    assert all(ontology.promptToClass(p) == c for p, c in zip(found.data["prompt"], found.data["class_name"]))
    assert found.data["mask_score"].shape == (n,)


def test_predict_and_predict_batch_on_files_give_well_formed_detections(florence_dir, sam_dir, tmp_path):
    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "dog.jpeg")
    Image.fromarray(skimage.data.coffee()).save(tmp_path / "b.png")
    ontology = CaptionOntology({"a dog": "dog", "puppy": "dog", "a person": "person"})
    model = GroundedSAM2(ontology=ontology, florence=str(florence_dir), sam=str(sam_dir), device="cpu", dtype="float32")
    dets = model.predict(tmp_path / "dog.jpeg")
    many = model.predict_batch([tmp_path / "dog.jpeg", tmp_path / "b.png"], batch_size=8)
    assert isinstance(dets, sv.Detections) and len(many) == 2
    _check_well_formed(dets, 300, 451, ontology)
    _check_well_formed(many[1], 400, 600, ontology)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_real_photographs(model, ontology, name):
    image = getattr(skimage.data, name)()
    found = model.predict(image)
    _check_well_formed(found, *image.shape[:2], ontology)
    assert found.data["class_name"].tolist() == ["dog", "dog", "person"]
    assert found.mask.any(axis=(1, 2)).all()


def test_batch_equals_one_by_one_with_uneven_box_counts(model, rng):
    images = [
        skimage.data.astronaut(),
        rng.integers(0, 256, size=(700, 1100, 3), dtype=np.uint8),  # wide enough to keep the 1-bin box
        skimage.data.chelsea(),
        np.zeros((3, 3, 3), dtype=np.uint8),  # too small for any box but the full-width ones
    ]
    batched = model.predict_batch(images, batch_size=4)
    single = [model.predict(image) for image in images]
    assert len({len(found) for found in batched}) > 1, "the test needs different box counts per image"
    for together, alone in zip(batched, single):
        np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-5)
        np.testing.assert_allclose(together.confidence, alone.confidence, atol=1e-5)
        np.testing.assert_array_equal(together.mask, alone.mask)
        np.testing.assert_array_equal(together.class_id, alone.class_id)
    # batches that do not divide the list keep the order too
    for together, chunked in zip(batched, model.predict_batch(images, batch_size=3)):
        np.testing.assert_array_equal(together.mask, chunked.mask)


def test_empty_result_is_well_formed(florence_dir, sam_dir):
    ontology = CaptionOntology({"a cat": "cat"})  # no phrase the scripted model writes matches it
    model = GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cpu", max_new_tokens=64)
    found = model.predict(np.zeros((40, 50, 3), dtype=np.uint8))
    assert len(found) == 0 and found.mask.shape == (0, 40, 50) and found.xyxy.shape == (0, 4)
    assert found.data["class_name"].shape == (0,) and found.data["mask_score"].shape == (0,)


def test_min_confidence_and_nms(florence_dir, sam_dir, ontology, model):
    image = skimage.data.coffee()
    everything = model.predict(image)
    threshold = float(np.sort(everything.confidence)[len(everything) // 2])  # a box sits exactly on it
    strict = GroundedSAM2(
        ontology, florence=florence_dir, sam=sam_dir, device="cpu", min_confidence=threshold, max_new_tokens=64
    )
    kept = strict.predict(image)
    assert 0 < len(kept) < len(everything) and threshold in kept.confidence  # "at least", not "more than"
    # the person box overlaps the first dog box a little: only class-agnostic NMS may remove it
    per_class = GroundedSAM2(
        ontology, florence=florence_dir, sam=sam_dir, device="cpu", nms_threshold=0.01, max_new_tokens=64
    )
    assert len(per_class.predict(image)) == len(everything)
    agnostic = GroundedSAM2(
        ontology,
        florence=florence_dir,
        sam=sam_dir,
        device="cpu",
        nms_threshold=0.01,
        class_agnostic_nms=True,
        max_new_tokens=64,
    )
    assert len(agnostic.predict(image)) == len(everything) - 1


@pytest.mark.parametrize("kind", ["str", "path", "pil", "array", "gray", "rgba", "palette", "sixteen_bit"])
def test_every_input_kind(model, ontology, tmp_path, kind):
    rgb = skimage.data.chelsea()
    sources = {
        "str": lambda: str(_saved(rgb, tmp_path / "a.jpg")),
        "path": lambda: _saved(rgb, tmp_path / "a.png"),
        "pil": lambda: Image.fromarray(rgb),
        "array": lambda: rgb,
        "gray": lambda: Image.fromarray(rgb).convert("L"),
        "rgba": lambda: _saved(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), tmp_path / "a.png"),
        "palette": lambda: _saved(Image.fromarray(rgb).convert("P"), tmp_path / "p.png"),
        "sixteen_bit": lambda: _saved(rgb[:, :, 0].astype(np.uint16) * 257, tmp_path / "deep.png"),
    }
    _check_well_formed(model.predict(sources[kind]()), 300, 451, ontology)


def _saved(image, path):
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
    return path


@pytest.mark.parametrize(
    "source, error, message",
    [
        ("missing.jpg", FileNotFoundError, "not found"),
        ("notes.jpg", InvalidImageError, "Cannot read image"),
        (np.zeros((3, 40, 50), dtype=np.uint8), InvalidImageError, "channels first"),
        (np.zeros((40, 50, 3), dtype=np.float64), InvalidImageError, "uint8"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, tmp_path, source, error, message):
    (tmp_path / "notes.jpg").write_text("not an image")
    if isinstance(source, str):
        source = tmp_path / source
    with pytest.raises(error, match=message):
        model.predict(source)


def test_predict_batch_rejects_a_single_image(model):
    with pytest.raises(ValueError, match="list of images"):
        model.predict_batch("dog.jpeg")


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"ontology": {"a dog": "dog"}}, ValueError, "CaptionOntology"),
        ({"preset": "huge"}, ValueError, "Unknown preset"),
        ({"dtype": "int8"}, ValueError, "Unknown dtype"),
        ({"min_confidence": 2.0}, ValueError, "min_confidence"),
        ({"nms_threshold": 0.0}, ValueError, "nms_threshold"),
        ({"task": "segment", "florence": "/never/loaded"}, ValueError, "Unknown task"),  # checked before loading
        ({"device": "tpu-ish"}, ValueError, "Unknown device"),
        ({"florence": "/no/such/florence"}, ModelNotAvailableError, "directory not found"),
        ({"sam": "nobody/no-such-sam"}, ModelNotAvailableError, "hf download nobody/no-such-sam"),
    ],
)
def test_bad_construction_raises(florence_dir, sam_dir, ontology, options, error, message):
    arguments = {"ontology": ontology, "florence": florence_dir, "sam": sam_dir, "device": "cpu", **options}
    with pytest.raises(error, match=message):
        GroundedSAM2(**arguments)


def test_unknown_hub_model_offline_says_how_to_get_it(ontology, sam_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        GroundedSAM2(ontology, florence="florence-community/Florence-2-large", sam=sam_dir, device="cpu")
    text = str(error.value)
    assert "HF_HUB_OFFLINE" in text and "hf download florence-community/Florence-2-large" in text
    assert "florence=" in text


def test_import_does_no_work():
    code = (
        "import sys, torch\n"
        "torch.cuda.is_available = lambda: (_ for _ in ()).throw(AssertionError('probed CUDA at import'))\n"
        "import grounded_sam\n"
        "assert 'transformers.models.florence2.modeling_florence2' not in sys.modules\n"
        "print(grounded_sam.__version__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "grounded-sam"  # installed next to the interpreter running the tests
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("grounded-sam ")


def test_bfloat16_autocast_runs_and_keeps_output_types(florence_dir, sam_dir, ontology):
    model = GroundedSAM2(
        ontology, florence=florence_dir, sam=sam_dir, device="cpu", dtype="bfloat16", max_new_tokens=64
    )
    image = skimage.data.astronaut()
    found = model.predict(image)
    _check_well_formed(found, *image.shape[:2], ontology)
    assert found.confidence.dtype == np.float32 and found.data["mask_score"].dtype == np.float32
    assert not torch.is_autocast_enabled("cpu")  # autocast stays inside the call

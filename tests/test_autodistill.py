"""grounded-sam as an autodistill base model, run through autodistill's own label() on tiny local models."""

import os

import cv2
import numpy as np
import pytest
import supervision as sv
from PIL import Image
from skimage import data as skdata

if os.environ.get("GROUNDED_SAM_REQUIRE_AUTODISTILL") == "1":
    import autodistill  # noqa: F401 -- fail loudly where these tests must run
pytest.importorskip("autodistill", reason="the autodistill extra is not installed")
from autodistill.detection import CaptionOntology, DetectionBaseModel

from grounded_sam.integrations.autodistill import GroundedSAM2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model(florence_dir, sam_dir):
    # the tiny Florence-2 writes "a dog" (2 boxes) and "Persons" (2 boxes) for every image
    ontology = CaptionOntology({"a person": "person", "a dog": "dog", "a cat": "cat"})
    return GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cpu", dtype="float32", max_new_tokens=64)


def test_is_a_real_autodistill_base_model(base_model):
    assert isinstance(base_model, DetectionBaseModel)


def test_predict_follows_autodistill_conventions(base_model, tmp_path):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(path, quality=95)
    from_path = base_model.predict(str(path))
    from_bgr = base_model.predict(cv2.imread(str(path)))  # what autodistill's label() passes
    assert np.array_equal(from_path.mask, from_bgr.mask)
    assert sorted(set(from_path.class_id)) == [0, 1]  # person is prompt 0, dog prompt 1
    assert [base_model.ontology.classes()[i] for i in from_path.class_id] == list(from_path.data["class_name"])


def test_autodistills_own_label_writes_a_dataset_supervision_reads(base_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, pixels in enumerate([skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]):
        Image.fromarray(np.ascontiguousarray(pixels[::4, ::4])).save(folder / f"image_{index}.jpg")
    dataset = base_model.label(str(folder), extension=".jpg", output_folder=str(tmp_path / "out"))
    assert len(dataset) == 4
    found = 0
    for split in ("train", "valid"):
        images = tmp_path / "out" / split / "images"
        if not images.exists():
            continue
        read = sv.DetectionDataset.from_yolo(
            str(images), str(tmp_path / "out" / split / "labels"), str(tmp_path / "out" / "data.yaml")
        )
        assert read.classes == ["person", "dog", "cat"]
        for _, _, detections in read:
            found += 1
            assert set(detections.class_id) == {0, 1} and detections.mask is not None
    assert found == 4


def test_prompts_with_surrounding_spaces_keep_autodistill_positions(florence_dir, sam_dir):
    spaced = CaptionOntology({" a cat": "cat", "a person ": "person", "a dog": "dog"})
    model = GroundedSAM2(spaced, florence=florence_dir, sam=sam_dir, device="cpu", dtype="float32", max_new_tokens=64)
    found = model.predict(np.asarray(skdata.astronaut()[::4, ::4][:, :, ::-1]))
    assert sorted(set(found.class_id)) == [1, 2] and set(found.data["class_name"]) == {"person", "dog"}
    with pytest.raises(ValueError, match="surrounding spaces"):
        GroundedSAM2(
            CaptionOntology({"a dog": "dog", "a dog ": "puppy"}), florence=florence_dir, sam=sam_dir, device="cpu"
        )

"""Evaluation against ground truth: known answers, equality with pycocotools' COCOeval run directly, ground-truth
readers (COCO, YOLO), matching by file name, and what is refused."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from helpers import CannedModel, coco_of_every_split
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from grounded_sam import label_folder
from grounded_sam.detections import mask_to_rle
from grounded_sam.errors import UserInputError
from grounded_sam.evaluation import evaluate_dataset, evaluate_detections, load_ground_truth
from grounded_sam.segmentation.cleanup import MaskCleanup

HEIGHT, WIDTH = 240, 320


def _ellipse(box):
    x1, y1, x2, y2 = box
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1


def synthetic(images=10, objects=6, classes=("dog", "cat", "car"), first_annotation_id=1, seed=0):
    """(COCO instances dict, perfect predictions {file name: sv.Detections}, class list): objects on a grid, no
    overlap, ellipse masks in their boxes, classes cycling, confidences random in [0.5, 1). Category and image ids
    are not 1, 2, ... on purpose."""
    rng = np.random.default_rng(seed)
    instances = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 10 + k, "name": n} for k, n in enumerate(classes)],
    }
    columns = int(np.ceil(np.sqrt(objects)))
    cell_w, cell_h = WIDTH // columns, HEIGHT // int(np.ceil(objects / columns))
    predictions, annotation_id = {}, first_annotation_id
    for i in range(images):
        name = f"img_{i:04d}.jpg"
        instances["images"].append({"id": 100 + i, "file_name": name, "height": HEIGHT, "width": WIDTH})
        boxes, masks, class_ids = [], [], []
        for k in range(objects):
            w, h = rng.uniform(0.4, 0.9) * cell_w, rng.uniform(0.4, 0.9) * cell_h
            x1 = (k % columns) * cell_w + rng.uniform(0, cell_w - w)
            y1 = (k // columns) * cell_h + rng.uniform(0, cell_h - h)
            mask = _ellipse((x1, y1, x1 + w, y1 + h))
            box = sv.mask_to_xyxy(mask[None])[0].astype(float) + [0, 0, 1, 1]  # covering the mask's pixels
            class_id = (i + k) % len(classes)
            instances["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": 100 + i,
                    "category_id": 10 + class_id,
                    "iscrowd": 0,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": float(mask.sum()),
                    "segmentation": mask_to_rle(mask),
                }
            )
            annotation_id += 1
            boxes.append(box)
            masks.append(mask)
            class_ids.append(class_id)
        predictions[name] = sv.Detections(
            xyxy=np.array(boxes, np.float32),
            mask=np.array(masks),
            confidence=rng.uniform(0.5, 1.0, objects).astype(np.float32),
            class_id=np.array(class_ids),
        )
    return instances, predictions, list(classes)


@pytest.fixture(scope="module")
def three_classes():
    return synthetic()


def test_perfect_labels_score_ap_1(three_classes):
    truth, perfect, classes = three_classes
    report = evaluate_detections(truth, perfect, classes)
    for kind in ("bbox", "segm"):
        assert (report[kind]["AP"], report[kind]["AP50"], report[kind]["AP75"]) == (1.0, 1.0, 1.0)
        assert report[kind]["per_class"] == {"dog": 1.0, "cat": 1.0, "car": 1.0}
        assert (report[kind]["precision"], report[kind]["recall"]) == (1.0, 1.0)
    assert report["images"]["evaluated"] == 10 and report["classes"]["objects"] == {"dog": 20, "cat": 20, "car": 20}
    assert report["notes"] == []


def test_every_box_of_one_class_moved_off_scores_that_class_0(three_classes):
    truth, perfect, classes = three_classes
    moved = {}
    for name, detections in perfect.items():
        detections = copy.deepcopy(detections)
        cat = detections.class_id == classes.index("cat")
        detections.xyxy[cat] += 1000
        detections.mask[cat] = False
        detections.mask[cat, :3, :3] = True  # a tiny mask in a corner, away from every object
        moved[name] = detections
    report = evaluate_detections(truth, moved, classes)
    for kind in ("bbox", "segm"):
        assert report[kind]["per_class"] == {"dog": 1.0, "cat": 0.0, "car": 1.0}
        assert report[kind]["AP"] == pytest.approx(2 / 3)


def test_one_missed_object_per_image_scores_what_pycocotools_gives():
    truth, perfect, classes = synthetic(objects=10, classes=("dog",))
    missed = {name: detections[1:] for name, detections in perfect.items()}
    report = evaluate_detections(truth, missed, classes)
    direct = _cocoeval(truth, _results(missed, "bbox"), "bbox")
    # recall 0.9 at precision 1: COCO's 101 recall points 0, 0.01 ... 0.90 count, the 10 above it do not
    assert report["bbox"]["AP"] == direct.stats[0] == pytest.approx(91 / 101)
    assert report["segm"]["AP"] == pytest.approx(91 / 101) and report["bbox"]["recall"] == 0.9


def _results(detections_by_name, iou_type, image_ids=None):
    """COCO results written out by hand, as pycocotools' documentation has them."""
    results = []
    for index, (name, detections) in enumerate(detections_by_name.items()):
        for k in range(len(detections)):
            result = {
                "image_id": (image_ids or {}).get(name, 100 + index),
                "category_id": 10 + int(detections.class_id[k]),
                "score": float(detections.confidence[k]),
            }
            if iou_type == "bbox":
                x1, y1, x2, y2 = detections.xyxy[k].tolist()
                result["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                rle = mask_utils.encode(np.asfortranarray(detections.mask[k].astype(np.uint8)))
                result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            results.append(result)
    return results


def _cocoeval(instances, results, iou_type, category=None):
    ground_truth = COCO()
    ground_truth.dataset = copy.deepcopy(instances)
    ground_truth.createIndex()
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
    if category is not None:
        evaluator.params.catIds = [category]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


@pytest.fixture(scope="module")
def noisy(three_classes):
    """Jittered boxes and eroded masks, a tenth of the objects missed, two false positives per image."""
    truth, perfect, classes = three_classes
    rng = np.random.default_rng(1)
    predictions = {}
    for name, detections in perfect.items():
        kept = detections[rng.random(len(detections)) > 0.1]
        kept.xyxy = (kept.xyxy + rng.normal(0, 3, kept.xyxy.shape)).astype(np.float32)
        kept.mask = np.array([np.roll(mask, rng.integers(-3, 4), axis=1) for mask in kept.mask])
        false = np.zeros((2, HEIGHT, WIDTH), bool)
        false[0, 5:25, 5:25] = True
        false[1, 200:235, 290:315] = True
        wrong = sv.Detections(
            xyxy=np.array([[5, 5, 25, 25], [290, 200, 315, 235]], np.float32),
            mask=false,
            confidence=rng.uniform(0.1, 0.9, 2).astype(np.float32),
            class_id=rng.integers(0, 3, 2),
        )
        predictions[name] = sv.Detections.merge([kept, wrong])
    return truth, predictions, classes


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_numbers_equal_pycocotools_run_directly(noisy, iou_type):
    truth, predictions, classes = noisy
    report = evaluate_detections(truth, predictions, classes)[iou_type]
    direct = _cocoeval(truth, _results(predictions, iou_type), iou_type)
    assert [report["AP"], report["AP50"], report["AP75"]] == [float(value) for value in direct.stats[:3]]
    assert 0.3 < report["AP"] < 0.99  # a case where the numbers say something
    for k, name in enumerate(classes):  # each class on its own, as COCOeval restricted to that category scores it
        alone = _cocoeval(truth, _results(predictions, iou_type), iou_type, category=10 + k)
        assert report["per_class"][name] == pytest.approx(alone.stats[0], abs=1e-12)
        assert report["per_class_AP50"][name] == pytest.approx(alone.stats[1], abs=1e-12)


def test_the_sweep_equals_evaluating_only_the_detections_kept(noisy):
    truth, predictions, classes = noisy
    thresholds = [0.0, 0.3, 0.6, 0.8]
    rows = evaluate_detections(truth, predictions, classes, sweep=thresholds)["segm"]["sweep"]
    assert [row["min_confidence"] for row in rows] == thresholds
    for row in rows:
        kept = {name: found[found.confidence >= row["min_confidence"]] for name, found in predictions.items()}
        fresh = evaluate_detections(truth, kept, classes)["segm"]
        assert row["AP"] == pytest.approx(fresh["AP"], abs=1e-12)
        assert row["AP50"] == pytest.approx(fresh["AP50"], abs=1e-12)
        assert (row["precision"], row["recall"]) == (fresh["precision"], fresh["recall"])
    assert rows[-1]["recall"] < rows[0]["recall"]


def test_precision_and_recall_at_the_datasets_confidences(three_classes):
    truth, perfect, classes = three_classes
    with_false = {}
    for name, detections in perfect.items():  # two false positives per image, at 0.3 and 0.2
        wrong = sv.Detections(
            xyxy=np.array([[0, 0, 4, 4], [316, 236, 320, 240]], np.float32),
            confidence=np.array([0.3, 0.2], np.float32),
            class_id=np.array([0, 1]),
        )
        with_false[name] = sv.Detections.merge(
            [sv.Detections(detections.xyxy, None, detections.confidence, detections.class_id), wrong]
        )
    report = evaluate_detections(truth, with_false, classes, sweep=[0.0, 0.25, 0.5])
    assert report["segm"] is None and "lack masks" in report["notes"][0]
    rows = report["bbox"]["sweep"]
    assert [(row["precision"], row["recall"]) for row in rows] == [(60 / 80, 1.0), (60 / 70, 1.0), (1.0, 1.0)]
    assert all(row["AP"] == 1.0 for row in rows)  # the false positives score below every true one
    assert (report["bbox"]["precision"], report["bbox"]["recall"]) == (0.75, 1.0)


def test_no_detection_at_all_scores_0(three_classes):
    truth, perfect, classes = three_classes
    empty = {name: sv.Detections.empty() for name in perfect}
    report = evaluate_detections(truth, empty, classes, sweep=[0.0])
    assert report["bbox"]["AP"] == 0.0 and report["bbox"]["precision"] is None and report["bbox"]["recall"] == 0.0


def test_ground_truth_ids_from_0_and_without_area_or_iscrowd_are_read_right():
    truth, perfect, classes = synthetic(first_annotation_id=0)
    for annotation in truth["annotations"]:
        del annotation["area"], annotation["iscrowd"]
    report = evaluate_detections(truth, perfect, classes)
    assert report["bbox"]["AP"] == report["segm"]["AP"] == 1.0  # pycocotools alone reads id 0 as "unmatched"
    coco = load_ground_truth(truth).coco
    assert [annotation["id"] for annotation in coco.dataset["annotations"]][:2] == [1, 2]
    assert coco.dataset["annotations"][0]["area"] == float(mask_utils.area(truth["annotations"][0]["segmentation"]))


def _rectangles_dataset(folder, box_line=False):
    """3 images with two rectangles each as a YOLO-seg dataset and as COCO polygons; predictions = the rectangles."""
    names = ["dog", "cat"]
    (folder / "train" / "images").mkdir(parents=True)
    (folder / "train" / "labels").mkdir(parents=True)
    (folder / "data.yaml").write_text(yaml.safe_dump({"train": "train/images", "val": "train/images", "names": names}))
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]}
    predictions = {}
    for index in range(3):
        name = f"p{index}.png"
        Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(folder / "train" / "images" / name)
        coco["images"].append({"id": index + 1, "file_name": name, "width": WIDTH, "height": HEIGHT})
        boxes = [[40 + 8 * index, 40, 120, 160], [160, 80 + 4 * index, 280, 200]]
        lines, masks = [], []
        for class_id, (x1, y1, x2, y2) in enumerate(boxes):
            polygon = [x1, y1, x2, y1, x2, y2, x1, y2]
            normalised = [value / (WIDTH if k % 2 == 0 else HEIGHT) for k, value in enumerate(polygon)]
            lines.append(" ".join(map(str, [class_id, *normalised])))
            masks.append(mask_utils.decode(mask_utils.frPyObjects([polygon], HEIGHT, WIDTH))[..., 0].astype(bool))
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": class_id + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "segmentation": [polygon],
                }
            )
        if box_line:
            lines[0] = f"0 {80 / WIDTH} {100 / HEIGHT} {80 / WIDTH} {120 / HEIGHT}"
        (folder / "train" / "labels" / f"p{index}.txt").write_text("\n".join(lines) + "\n")
        predictions[name] = sv.Detections(
            xyxy=np.array(boxes, np.float32) + 6,
            mask=np.array([np.roll(mask, 6, axis=0) for mask in masks]),
            confidence=np.array([0.9, 0.8], np.float32),
            class_id=np.array([0, 1]),
        )
    return coco, predictions, names


def test_a_yolo_seg_dataset_is_the_same_ground_truth_as_its_coco_polygons(tmp_path):
    coco, predictions, names = _rectangles_dataset(tmp_path / "gold")
    (tmp_path / "gold.json").write_text(json.dumps(coco))
    from_yolo = evaluate_detections(tmp_path / "gold", predictions, names)
    from_coco = evaluate_detections(tmp_path / "gold.json", predictions, names)
    for kind in ("bbox", "segm"):
        assert from_yolo[kind]["AP"] == pytest.approx(from_coco[kind]["AP"], abs=1e-12)
        assert from_yolo[kind]["per_class"] == pytest.approx(from_coco[kind]["per_class"], abs=1e-12)
        assert 0.2 < from_yolo[kind]["AP"] < 1.0


def test_yolo_box_lines_give_box_ground_truth_only(tmp_path):
    _, predictions, names = _rectangles_dataset(tmp_path / "gold", box_line=True)
    report = evaluate_detections(tmp_path / "gold", predictions, names)
    assert report["bbox"]["AP"] is not None and report["segm"] is None
    assert "mask AP not computed: the ground truth lack" in report["notes"][-1]


def test_images_match_by_file_name_and_what_is_on_one_side_only_is_reported(three_classes):
    truth, perfect, classes = three_classes
    truth = copy.deepcopy(truth)
    for image in truth["images"]:
        image["file_name"] = f"gold/images/{image['file_name']}"
    truth["images"].append({"id": 999, "file_name": "gold/images/unlabeled.jpg", "width": WIDTH, "height": HEIGHT})
    truth["categories"].append({"id": 50, "name": "horse"})
    predictions = {**perfect, "not_in_gold.jpg": perfect["img_0000.jpg"]}
    report = evaluate_detections(truth, predictions, [*classes, "cow"])
    assert report["bbox"]["AP"] == 1.0 and report["bbox"]["per_class"]["horse"] is None  # nothing to find
    assert report["images"] == {
        "evaluated": 10,
        "ground_truth_only": 1,
        "ground_truth_only_names": ["gold/images/unlabeled.jpg"],
        "labeled_only": 1,
    }
    assert report["classes"]["labeled_only"] == ["cow"] and report["classes"]["ground_truth_only"] == ["horse"]


def _widen_the_first_image(truth):
    truth["images"][0]["width"] += 1
    for annotation in truth["annotations"]:
        if annotation["image_id"] == truth["images"][0]["id"]:
            del annotation["segmentation"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop("categories"), "no 'categories' list"),
        (lambda t: t["annotations"][0].update(image_id=12345), "unknown image_id"),
        (lambda t: t["categories"].append({"id": 77, "name": "dog"}), "'dog' is given twice"),
        (lambda t: t["annotations"][0].update(bbox=None, segmentation=None), "neither a bbox nor a segmentation"),
        (lambda t: t["images"][0].pop("width"), "lacks 'width'"),
        (lambda t: t["annotations"][0]["segmentation"].update(size=[10, 10]), "has size \\[10, 10\\]"),
        (lambda t: [image.update(file_name=f"x{image['id']}.jpg") for image in t["images"]], "No image of"),
        (_widen_the_first_image, "is 320 x 240 as labeled but 321 x 240"),
    ],
)
def test_bad_ground_truth_is_refused_saying_what_is_wrong(three_classes, change, message):
    truth, perfect, classes = three_classes
    truth = copy.deepcopy(truth)
    change(truth)
    with pytest.raises(ValueError, match=message):
        evaluate_detections(truth, perfect, classes)


def test_a_bad_yolo_label_is_refused_with_its_file_and_line(tmp_path):
    _, predictions, names = _rectangles_dataset(tmp_path / "gold")
    (tmp_path / "gold" / "train" / "labels" / "p1.txt").write_text("0 0.1 0.1 0.2 0.2\n7 0.1 0.1 0.2 0.2\n")
    with pytest.raises(ValueError, match="p1.txt line 2: class 7 is not one of the 2 names"):
        evaluate_detections(tmp_path / "gold", predictions, names)


def _set_first(key, value):
    return lambda truth: truth["annotations"][0].update({key: value})


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(annotations=[5]),
        _set_first("bbox", 5),
        _set_first("area", "big"),
        _set_first("iscrowd", "yes"),
        lambda t: t["images"][0].update(width=float("inf")),
        _set_first("segmentation", [[1, 2, 3]]),
        lambda t: t["annotations"][0]["segmentation"].update(counts=5),
    ],
    ids=["not-an-object", "bbox-number", "area-text", "iscrowd-text", "width-inf", "short-polygon", "counts-int"],
)
def test_malformed_ground_truth_is_a_user_error_never_a_crash(three_classes, change):
    truth, perfect, classes = three_classes
    truth = copy.deepcopy(truth)
    change(truth)
    with pytest.raises(UserInputError, match="Ground truth"):
        evaluate_detections(truth, perfect, classes)


@pytest.mark.parametrize("value", ["1e12", "nan", "inf", "-3"])
def test_a_yolo_polygon_outside_the_image_is_refused_before_it_is_rasterised(tmp_path, value):
    _, predictions, names = _rectangles_dataset(tmp_path / "gold")
    (tmp_path / "gold" / "train" / "labels" / "p1.txt").write_text(f"0 0.1 0.1 {value} 0.2 0.3 0.3\n")
    with pytest.raises(UserInputError, match="p1.txt line 1: coordinates must be fractions"):
        evaluate_detections(tmp_path / "gold", predictions, names)


@pytest.fixture
def canned_dataset(six_scenes, tmp_path):
    """Six canned scenes labeled by helpers.CannedModel (no model weights), and a ground truth made of its own COCO
    files (every split in one file)."""
    label_folder(CannedModel(), six_scenes, output_folder=tmp_path / "labeled", progress=False, verbose=False)
    merged = coco_of_every_split(tmp_path / "labeled")
    (tmp_path / "gold.json").write_text(json.dumps(merged))
    return tmp_path / "labeled", tmp_path / "gold.json"


def test_a_dataset_scores_ap_1_against_its_own_coco_files_read_from_its_records(canned_dataset):
    dataset, gold = canned_dataset
    report = evaluate_dataset(dataset, gold)
    assert report["bbox"]["AP"] == report["segm"]["AP"] == 1.0 and report["images"]["evaluated"] == 6
    for labels in dataset.glob("*/labels/*.txt"):  # the YOLO files (which hold no confidence) are not read
        labels.unlink()
    for coco in (dataset / "annotations").glob("*.json"):
        coco.unlink()
    assert evaluate_dataset(dataset, gold)["segm"] == report["segm"]


def test_clean_up_at_evaluation_scores_what_labeling_with_it_would_write(canned_dataset, six_scenes, tmp_path):
    dataset, gold = canned_dataset
    cleanup = MaskCleanup(max_hole_area=500)  # fills the dark rings' holes
    report = evaluate_dataset(dataset, gold, cleanup=cleanup)
    assert report["segm"]["AP"] == 1.0 and report["segm_cleaned"]["AP"] < 1.0
    assert report["mask_cleanup"] == cleanup.settings()

    class CleaningModel(CannedModel):  # the clean-up applied where the Segmenter applies it, before writing
        def predict_arrays(self, images):
            found = super().predict_arrays(images)
            for detections in found:
                detections.mask = cleanup.apply(detections.mask)
            return found

    label_folder(CleaningModel(), six_scenes, output_folder=tmp_path / "cleaned", progress=False, verbose=False)
    assert evaluate_dataset(tmp_path / "cleaned", gold)["segm"] == report["segm_cleaned"]


def test_a_dataset_without_confidences_is_refused(canned_dataset):
    dataset, gold = canned_dataset
    for record in (dataset / ".grounded-sam" / "records").glob("*.json"):
        header, entries = record.read_text().splitlines()
        entries = [{**entry, "confidence": None} for entry in json.loads(entries)]
        record.write_text(header + "\n" + json.dumps(entries) + "\n")
    with pytest.raises(ValueError, match="no confidence, and AP ranks detections by it"):
        evaluate_dataset(dataset, gold)


def test_the_evaluation_benchmark_runs(monkeypatch, capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "evaluation.py"
    spec = importlib.util.spec_from_file_location("evaluation_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr(sys, "argv", ["evaluation.py", "--images", "3", "--objects", "4", "--repeat", "1"])
    benchmark.main()
    result = json.loads(capsys.readouterr().out)
    assert 0.2 < result["mask_AP"] < 1.0 and result["evaluate_seconds"] > 0
    assert result["cleanup_ms_per_1920x1080_mask_at_border"]["all_three"] > 0
    mask = benchmark.sam_like_mask(108, 192)
    assert not np.array_equal(MaskCleanup(10, 10, True).clean(mask), mask)  # there is something to clean

import numpy as np
import pytest
import supervision as sv
from supervision.dataset.formats.yolo import yolo_annotations_to_detections

from grounded_sam.detections import detections_from_json, mask_to_rle, rle_to_mask
from grounded_sam.labeling.formats import coco_annotation, coco_polygons, data_yaml, detections_to_record, yolo_lines

H, W = 60, 80


def _disk():
    yy, xx = np.mgrid[:H, :W]
    return (yy - 30) ** 2 + (xx - 40) ** 2 < 400


def _ring():
    yy, xx = np.mgrid[:H, :W]
    distance = (yy - 30) ** 2 + (xx - 40) ** 2
    return (distance < 400) & (distance > 64)


def _two_parts():
    mask = np.zeros((H, W), bool)
    mask[5:20, 5:25] = True
    mask[30:55, 40:75] = True
    return mask


def _riddled():
    # many holes with no straight path on the mask between some of them: supervision's seam search gives up here
    rng = np.random.default_rng(0)
    mask = np.ones((H, W), bool)
    mask[rng.random((H, W)) < 0.2] = False
    mask[:, :2] = mask[:2] = mask[-2:] = mask[:, -2:] = False
    return mask


def _detections(*masks, confidences=None):
    mask = np.stack(masks)
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(mask).astype(np.float32),
        mask=mask,
        confidence=np.array(confidences or [0.9] * len(masks), dtype=np.float32),
        class_id=np.arange(len(masks)) % 2,
    )


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 1), (1, 7), (7, 1), (37, 53), (768, 1024)])
def test_rle_is_pycocotools_own_encoding(shape):
    """Our faster column-major copy gives the string pycocotools gives for the textbook Fortran copy, also for a
    mask that is a strided view."""
    from pycocotools import mask as mask_utils

    mask = np.random.default_rng(1).random((shape[0], shape[1] * 2)) < 0.3
    for view in (mask[:, : shape[1]], mask[:, ::2]):
        reference = mask_utils.encode(np.asfortranarray(view, dtype=np.uint8))
        assert mask_to_rle(view) == {"size": list(shape), "counts": reference["counts"].decode("ascii")}


@pytest.mark.parametrize("make_mask", [_disk, _ring, _two_parts, _riddled])
def test_rle_round_trip_is_exact(make_mask):
    mask = make_mask()
    rle = mask_to_rle(mask)
    assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
    assert np.array_equal(rle_to_mask(rle), mask)
    assert np.array_equal(sv.rle_to_mask(rle["counts"], (W, H)), mask)  # supervision reads it the same way


@pytest.mark.parametrize("make_mask", [_disk, _ring, _two_parts, _riddled])
def test_yolo_polygons_read_back_by_supervision_match_the_mask(make_mask):
    mask = make_mask()
    lines, sources = yolo_lines(_detections(mask), (H, W, 3))
    assert sources == [0] * len(lines)
    back = yolo_annotations_to_detections(lines, (W, H), with_masks=True)
    assert set(back.class_id) == {0}
    assert _iou(back.mask.any(axis=0), mask) >= 0.98


def test_holes_stay_holes_and_parts_are_separate_lines():
    assert len(yolo_lines(_detections(_ring()), (H, W))[0]) == 1  # hole joined to the outline by a seam
    assert len(yolo_lines(_detections(_two_parts()), (H, W))[0]) == 2
    back = yolo_annotations_to_detections(yolo_lines(_detections(_ring()), (H, W))[0], (W, H), with_masks=True)
    assert not back.mask[0][30, 40]  # the centre of the ring is empty


def test_line_sources_follow_detections_and_boxes_only_writes_boxes():
    detections = _detections(_two_parts(), _disk())
    lines, sources = yolo_lines(detections, (H, W))
    assert sources == [0, 0, 1] and [line.split()[0] for line in lines] == ["0", "0", "1"]
    boxes, box_sources = yolo_lines(detections, (H, W), boxes_only=True)
    assert box_sources == [0, 1] and all(len(line.split()) == 5 for line in boxes)
    x1, y1, x2, y2 = detections.xyxy[1]
    cx, cy, w, h = map(float, boxes[1].split()[1:])
    assert (cx, cy, w, h) == pytest.approx(
        ((x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H), abs=1e-5
    )


def test_record_round_trip_keeps_everything():
    detections = _detections(_ring(), _two_parts(), confidences=[0.25, 0.75])
    entries = detections_to_record(detections)
    back = detections_from_json(entries, H, W, ["dog", "person"])
    assert np.array_equal(back.xyxy, detections.xyxy)
    assert np.array_equal(back.mask, detections.mask)
    assert np.array_equal(back.confidence, detections.confidence)
    assert list(back.class_id) == [0, 1] and list(back.data["class_name"]) == ["dog", "person"]
    assert [entry["area"] for entry in entries] == [int(_ring().sum()), int(_two_parts().sum())]


def test_empty_record_is_well_formed():
    back = detections_from_json([], H, W, ["dog"])
    assert len(back) == 0 and back.mask.shape == (0, H, W) and back.xyxy.shape == (0, 4)
    assert back.confidence.shape == back.class_id.shape == back.data["class_name"].shape == (0,)


def test_coco_annotation_fields():
    entry = detections_to_record(_detections(_disk(), confidences=[0.5]), coco_segmentation="polygon")[0]
    annotation = coco_annotation(entry, annotation_id=7, image_id=3, segmentation="rle")
    x1, y1, x2, y2 = entry["xyxy"]
    assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1] and annotation["category_id"] == 1
    assert annotation["segmentation"] == entry["mask"] and annotation["iscrowd"] == 0 and "score" not in annotation
    polygon = coco_annotation(entry, 7, 3, segmentation="polygon", score=True)
    assert polygon["segmentation"] == entry["polygons"] and polygon["score"] == 0.5
    assert all(len(part) >= 6 for part in coco_polygons(_two_parts()))


def test_data_yaml_lists_splits_and_names():
    content = data_yaml("/data/out", ["dog", "person"], ("train", "valid", "test"))
    assert content == {
        "path": "/data/out",
        "train": "train/images",
        "val": "valid/images",
        "test": "test/images",
        "nc": 2,
        "names": ["dog", "person"],
    }
    assert "test" not in data_yaml("/data/out", ["dog"], ("train", "valid"))

import matplotlib
import numpy as np
import pytest
import supervision as sv

from grounded_sam import annotate, plot
from grounded_sam.annotate import detection_labels

matplotlib.use("Agg")


@pytest.fixture
def image():
    return np.full((120, 160, 3), 90, np.uint8)


def _detections(with_class=True):
    mask = np.zeros((2, 120, 160), bool)
    mask[0, 10:50, 10:60] = True
    mask[1, 60:110, 80:150] = True
    return sv.Detections(
        xyxy=np.array([[10, 10, 60, 50], [80, 60, 150, 110]], np.float32),
        mask=mask,
        confidence=np.array([0.873, 0.5], np.float32),
        class_id=np.array([0, 1]) if with_class else None,
        data={"class_name": np.array(["dog", "person"])} if with_class else {},
    )


def test_annotate_draws_masks_boxes_and_labels_on_a_copy(image):
    detections = _detections()
    drawn = annotate(image, detections)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and (image == 90).all()
    assert (drawn[30, 30] != 90).any() and (drawn[90, 120] != 90).any()  # inside each mask
    assert (drawn[115, 5] == 90).all()  # far from everything
    assert detection_labels(detections) == ["dog 0.87", "person 0.50"]


def test_annotate_handles_empty_no_class_and_no_mask(image):
    empty = sv.Detections.empty()
    assert np.array_equal(annotate(image, empty), image)
    plain = _detections(with_class=False)
    assert detection_labels(plain) == ["#0 0.87", "#1 0.50"]
    assert (annotate(image, plain) != image).any()
    boxes_only = sv.Detections(xyxy=plain.xyxy, class_id=np.array([0, 0]))
    drawn = annotate(image, boxes_only, labels=["a", "b"])
    assert (drawn[30, 10] != 90).any() and (drawn[30, 30] == 90).all()  # box edge drawn, inside left alone


def test_plot_shows_the_annotated_image_or_the_image_alone(image):
    import matplotlib.pyplot as plt

    plt.close("all")
    plot(image, _detections())
    shown = plt.gcf().axes[0].images[0].get_array()
    assert np.array_equal(shown, annotate(image, _detections()))  # RGB, as annotate returns it
    plot(image)
    assert np.array_equal(plt.gcf().axes[0].images[0].get_array(), image)
    plt.close("all")

"""Label quality measured against hand-labeled ground truth: box and mask AP with pycocotools' COCOeval, AP per
class, precision and recall, AP against min_confidence, and comparisons of labeling configurations."""

from grounded_sam.evaluation.compare import Configuration, compare
from grounded_sam.evaluation.evaluate import evaluate_dataset, evaluate_detections
from grounded_sam.evaluation.ground_truth import GroundTruth, load_ground_truth

__all__ = ["Configuration", "GroundTruth", "compare", "evaluate_dataset", "evaluate_detections", "load_ground_truth"]

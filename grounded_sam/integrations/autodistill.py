"""grounded-sam as an autodistill base model: a drop-in for ``autodistill_grounded_sam_2.GroundedSAM2``.

Needs the ``autodistill`` extra (``pip install "grounded-sam[autodistill]"``). Imported only when you import this
module, so the rest of grounded-sam never loads autodistill.

    from autodistill.detection import CaptionOntology
    from grounded_sam.integrations.autodistill import GroundedSAM2

    base_model = GroundedSAM2(ontology=CaptionOntology({"a dog": "dog", "a person": "person"}))
    dataset = base_model.label("photos/", extension=".jpg")      # autodistill's own label()
"""

from __future__ import annotations

import os

import numpy as np
import supervision as sv
from autodistill.detection import CaptionOntology as AutodistillCaptionOntology
from autodistill.detection import DetectionBaseModel
from autodistill.helpers import load_image as autodistill_load_image

from grounded_sam.detections import CLASS_NAME, PROMPT
from grounded_sam.errors import UserInputError
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline import grounded_sam2 as pipeline


class GroundedSAM2(DetectionBaseModel):
    """Florence-2 boxes + SAM 2 masks behind autodistill's ``DetectionBaseModel`` interface.

    Args:
        ontology: autodistill's ``CaptionOntology`` (prompt -> class).
        florence, sam, preset, device, dtype, **options: as for ``grounded_sam.GroundedSAM2`` (``sam`` may be a hub
            id, a local folder or a Meta ``.pt`` file).

    ``predict`` follows autodistill's conventions: a path, a PIL image, or a numpy array in OpenCV's BGR order (what
    autodistill's ``label`` passes); ``class_id`` indexes ``ontology.classes()``, one entry per prompt as autodistill
    lists them. ``label`` is autodistill's own; for a resumable, streaming labeler use
    ``base_model.model.label(...)`` (grounded-sam's).
    """

    ontology: AutodistillCaptionOntology

    def __init__(
        self,
        ontology: AutodistillCaptionOntology,
        florence: str | os.PathLike | None = None,
        sam: str | os.PathLike | None = None,
        preset: str = "default",
        device="auto",
        dtype="auto",
        **options,
    ):
        self.ontology = ontology
        ours = CaptionOntology({prompt: name for prompt, name in ontology.promptMap})
        if len(ours.prompts()) != len(ontology.promptMap):
            raise UserInputError(f"Prompts that differ only in surrounding spaces are one prompt: {ontology.prompts()}")
        # autodistill's class_id is the prompt's position; ours keeps the order and strips surrounding spaces
        self._prompt_index = {prompt: index for index, prompt in enumerate(ours.prompts())}
        self.model = pipeline.GroundedSAM2(
            ours, florence=florence, sam=sam, preset=preset, device=device, dtype=dtype, **options
        )

    def predict(self, input) -> sv.Detections:
        """Segments the ontology's prompts in one image (path, PIL image, or BGR numpy array)."""
        # paths go to our loader (it applies EXIF rotation, as autodistill's cv2.imread does); arrays are BGR
        image = input if isinstance(input, (str, os.PathLike)) else autodistill_load_image(input, return_format="PIL")
        detections = self.model.predict(image)
        classes = self.ontology.classes()
        detections.class_id = np.array([self._prompt_index[prompt] for prompt in detections.data[PROMPT]], dtype=int)
        detections.data[CLASS_NAME] = np.array([classes[index] for index in detections.class_id], dtype=str)
        return detections

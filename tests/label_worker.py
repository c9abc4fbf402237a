"""Runs GroundedSAM2.label in its own process, for the test that kills it partway (test_label_e2e.py).

Usage: python label_worker.py FLORENCE_DIR SAM_DIR INPUT OUTPUT SECONDS_PER_BATCH
"""

import sys
import time

from helpers import ONTOLOGY

from grounded_sam import CaptionOntology, GroundedSAM2


def main(florence: str, sam: str, source: str, output: str, delay: str) -> None:
    model = GroundedSAM2(
        CaptionOntology(ONTOLOGY), florence=florence, sam=sam, device="cpu", dtype="float32", max_new_tokens=64
    )
    predict = model.predict_arrays

    def slow_predict(images):  # a slower model, so that the test can kill the run between images
        time.sleep(float(delay))
        return predict(images)

    model.predict_arrays = slow_predict
    model.label(source, output_folder=output, batch_size=1, progress=False, verbose=False)


if __name__ == "__main__":
    main(*sys.argv[1:])

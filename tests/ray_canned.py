"""A picklable spec of the CannedModel for the Ray tests and benchmark, with faults to inject; and, run as a script,
a labeling driver in its own process, for the test that kills it.

Usage: python ray_canned.py ADDRESS INPUT OUTPUT SECONDS_PER_BATCH
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass

from helpers import CannedModel


@dataclass(frozen=True)
class CannedSpec:
    """What crosses to the Ray workers in place of a PipelineSpec: builds a CannedModel (same settings, so a dataset
    labeled by it matches one labeled by ``CannedModel()`` in a single process).

    Args:
        seconds_per_batch: sleep before each batch (a slower model, so that a run can be killed partway).
        kill_at_batch: SIGKILL the worker process as it starts its Nth batch (0: never), once per ``marker`` file:
            the first worker to get there creates the marker and dies, with its earlier batches written or being
            written and the rest of its task undone.
        marker: the file that says the kill happened.
        pid_folder: each worker writes an empty file named by its process id here when it builds its model.
        claimed_settings: what ``settings()`` says, when not the built model's (a spec that lies).
    """

    seconds_per_batch: float = 0.0
    kill_at_batch: int = 0
    marker: str | None = None
    pid_folder: str | None = None
    claimed_settings: dict | None = None

    @property
    def ontology(self) -> dict:
        return CannedModel().ontology.to_dict()

    def settings(self) -> dict:
        return self.claimed_settings or CannedModel().settings()

    def build(self) -> FaultyCannedModel:
        if self.pid_folder:
            open(os.path.join(self.pid_folder, str(os.getpid())), "w").close()
        return FaultyCannedModel(self)


class FaultyCannedModel(CannedModel):
    def __init__(self, spec: CannedSpec):
        super().__init__()
        self.spec = spec

    def predict_arrays(self, images):
        time.sleep(self.spec.seconds_per_batch)
        if len(self.batches) + 1 == self.spec.kill_at_batch and _first(self.spec.marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().predict_arrays(images)


def _first(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def main(address: str, source: str, output: str, seconds_per_batch: str) -> None:
    from grounded_sam import label_folder

    spec = CannedSpec(seconds_per_batch=float(seconds_per_batch))
    label_folder(
        spec,
        source,
        output_folder=output,
        ray=True,
        ray_address=address,
        actors=2,
        batch_size=2,
        progress=False,
        verbose=False,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Labeling on a Ray cluster: the job of ``label_folder``, spread over a pool of Ray Data actors that each hold one
pipeline, writing the same dataset a single process writes.

How a run goes:

- This process (the driver) connects to Ray (``ray_address``, else ``RAY_ADDRESS``, else a local Ray it starts and
  stops), decides how many actors with what resources, and opens the same :class:`LabelingJob` as a single-process
  run: the same scan, settings check, folder lock and resume rules.
- What crosses to the actors is the pipeline's spec (sources and options, a few hundred bytes), never a built model:
  each actor builds its ``GroundedSAM2`` once and keeps it. Ray Data is fed the images still to do, one row per
  chunk of ``BATCHES_PER_TASK`` model batches (their paths and dataset names), so each actor runs exactly the
  batches the single process would, through the same :class:`Engine`.
- The actor writes each image's files and record straight into the output folder (:class:`ImageWriter`), which
  every node must see at the same path. Only a summary per image comes back (its path, and the reason when it was
  skipped): masks never travel through Ray's object store. The driver shows one progress bar over all actors.
- At the end the driver gives ids (source-path order, ``records.give_ids``) and assembles data.yaml, the COCO files
  and report.json as a single-process run does, so the dataset is the same, byte for byte.

Faults: an actor process that dies is restarted by Ray and its rows are redone (Ray Data's defaults for actor
pools: unlimited restarts and task retries); images of a redone row that already have their record are not written
again, and what the dead process left half-written is removed when the run ends. An exception in the pipeline
stops the run as it does in a single process. A driver that dies leaves a dataset the same command resumes; its
actors end with it and write nothing once the next run owns the folder (``files.WriterGate``).

Ray is imported here only, when a run on Ray starts: the plain install needs no Ray (the ``ray`` extra).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from grounded_sam.device import chunks
from grounded_sam.errors import GroundedSAMError, UserInputError
from grounded_sam.labeling.folders import assign_split
from grounded_sam.labeling.image_writer import ImageWriter, convert_labels
from grounded_sam.labeling.job import LabelingJob, LabelReport
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.writer import describe_differences
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline.spec import PipelineSpec
from grounded_sam.progress import progress_bar

logger = logging.getLogger(__name__)

# Model batches per Ray task. A task is the unit Ray balances and redoes after a crash; at 4 batches of 8 it lasts
# about 1.3 s on a GPU at 25 images/s, well above Ray Data's cost per task (about 7 ms measured on a 2-core box).
BATCHES_PER_TASK = 4


@dataclass(frozen=True)
class ActorPlan:
    """The actor pool of a run: ``actors`` workers, each with ``gpus`` GPUs (0: a CPU worker) and one CPU, each
    building ``spec``."""

    actors: int
    gpus: float
    spec: object


def label_on_ray(spec, input_folder, output_folder, options: LabelOptions) -> LabelReport:
    """``label_folder(..., ray=True)``: labels ``input_folder`` on Ray with pipelines built from ``spec``.

    Args:
        spec: a :class:`PipelineSpec`, or any picklable object with ``ontology`` (a dict), ``settings()`` and
            ``build()`` (the model ``label_folder`` takes).
        input_folder, output_folder: as for ``label_folder``; both must be at the same path on every node.
        options: the run's options (``ray_address``, ``actors``, ``gpus_per_actor`` among them).

    Raises:
        UserInputError: Ray is not installed, or the cluster cannot hold the actors asked for; and whatever a
            single-process run raises.
    """
    ray = _import_ray()
    started_here = _connect(ray, options.ray_address)
    try:
        plan = plan_actors(ray.cluster_resources(), spec, options)
        settings = _worker_settings(ray, plan)
        ontology = CaptionOntology(dict(spec.ontology))
        with LabelingJob(input_folder, output_folder, ontology, settings, options) as job:
            return _label(ray, job, plan, settings)
    finally:
        if started_here:
            ray.shutdown()


def plan_actors(resources: dict, spec, options: LabelOptions) -> ActorPlan:
    """How many actors, with how many GPUs each, for a cluster with ``resources`` (``ray.cluster_resources()``).

    Defaults: one actor per GPU when the cluster has GPUs (and the spec's device allows them), else one CPU actor
    per CPU. A pool the cluster cannot hold is refused: Ray would wait for it forever.
    """
    gpus_seen, cpus_seen = float(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    device = str(getattr(spec, "device", "auto"))
    gpus = options.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if gpus_seen and (device == "auto" or device.startswith("cuda")) else 0.0
    if gpus and not gpus_seen:
        raise UserInputError(
            f"gpus_per_actor={gpus:g} asks for GPUs, and the Ray cluster has none ({cpus_seen} CPUs); "
            "leave gpus_per_actor out for CPU workers"
        )
    if gpus and device not in ("auto", "cuda"):
        raise UserInputError(
            f"device={device!r} with GPU workers: each Ray worker sees only the GPUs Ray gives it, so use "
            "device='auto' (or gpus_per_actor=0 for CPU workers)"
        )
    if not gpus and device.startswith("cuda"):
        why = "the Ray cluster has no GPU" if not gpus_seen else "gpus_per_actor=0 asks for CPU workers"
        raise UserInputError(f"device={device!r} needs GPU workers, and {why}: use device='auto'")
    room = min(int(gpus_seen // gpus), cpus_seen) if gpus else cpus_seen
    actors = options.actors or max(room, 1)
    if actors > room:
        each = f"{gpus:g} GPU and 1 CPU" if gpus else "1 CPU"
        raise UserInputError(
            f"actors={actors} do not fit the Ray cluster ({gpus_seen:g} GPUs, {cpus_seen} CPUs: room for {room} "
            f"workers of {each} each); ask for fewer actors, or start more nodes"
        )
    return ActorPlan(actors, gpus, _worker_spec(spec, gpus))


def _worker_spec(spec, gpus: float):
    """The spec as each worker builds it: ``device="auto"`` made explicit (a CPU worker on a GPU machine sees every
    GPU, as Ray leaves CUDA_VISIBLE_DEVICES alone without a GPU request), local model paths made absolute."""
    if not isinstance(spec, PipelineSpec):
        return spec
    changes = {}
    if spec.device == "auto":
        changes["device"] = "cuda" if gpus else "cpu"
    for name in ("florence", "sam"):
        value = getattr(spec, name)
        if value is not None and Path(value).expanduser().exists():
            changes[name] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(spec, **changes)


def _worker_settings(ray, plan: ActorPlan) -> dict:
    """What the workers' pipelines' ``settings()`` will be. Computed here when this machine can resolve the
    workers' device, else (a driver without a GPU for GPU workers) by a Ray task on a GPU."""
    try:
        return plan.spec.settings()
    except UserInputError:
        if not plan.gpus:
            raise
    return ray.get(ray.remote(num_gpus=plan.gpus)(_settings_of).remote(plan.spec))


def _settings_of(spec) -> dict:
    return spec.settings()


def _label(ray, job: LabelingJob, plan: ActorPlan, settings: dict) -> LabelReport:
    """Runs the actor pool over the job's images still to do, then finishes the job as a single process does."""
    options, report, names = job.options, job.new_report(), job.names()
    rows = [
        {"sources": [str(source) for source in chunk], "names": [names[source] for source in chunk]}
        for chunk in chunks(job.todo, options.batch_size * BATCHES_PER_TASK)
    ]
    skipped: list[dict] = []
    with progress_bar(len(job.sources), "Labeling", initial=report.already_done, enabled=options.progress) as bar:
        for source, reason in _summaries(ray, _dataset(ray, rows, job, plan, settings)) if rows else ():
            if reason:
                skipped.append({"path": source, "reason": reason})
            else:
                report.labeled_this_run += 1
            bar.update(1)
    return job.finish(report, skipped)


def _summaries(ray, dataset):
    """(source, reason) of each image as the actors finish them; the pipeline's own error if one fails."""
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    # Its lines are about what this module chose ("progress bars disabled") or errors raised here anyway; the
    # driver's own bar says how the run goes.
    ray_data_log.setLevel(logging.CRITICAL)
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from zip(batch.column("source").to_pylist(), batch.column("reason").to_pylist())
    except ray.exceptions.RayError as error:
        raise _original(error) from None
    finally:
        ray_data_log.setLevel(level)


def _dataset(ray, rows: list[dict], job: LabelingJob, plan: ActorPlan, settings: dict):
    """The Ray Data pipeline: rows -> LabelActor pool -> per-image summaries."""
    import ray.data

    resources = {"num_gpus": plan.gpus} if plan.gpus else {"num_cpus": 1}
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        LabelActor,
        fn_constructor_kwargs={
            "spec": plan.spec,
            "settings": settings,
            "input_root": str(job.input_root.resolve()),
            "output_root": str(job.output_folder),
            "options": job.options,
            "token": job.writer.token,
        },
        batch_size=1,  # one row (a chunk of whole model batches) per call
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        **resources,
    )
    # from_items, not a read stage: a read task needs a free CPU, and CPU actors take them all (it waited forever).
    context = dataset.context
    context.enable_progress_bars = False  # the driver's own bar covers every actor
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # the pipeline's own error (OutputWriteError...), not Ray's wrapper
    context.max_consecutive_actor_init_deaths = plan.actors  # a one-off death while loading is retried; a broken
    # spec still fails once every actor died of it
    context.execution_no_progress_timeout_s = -1  # a task of big models on CPUs can outlast the 30 min default
    return dataset


class PipelineError(Exception):
    """Carries one of grounded-sam's own errors (``GroundedSAMError``) from a worker to the driver untouched: Ray
    Data appends its retry advice to the message of the exception it passes on, which would end up in the one-line
    error of the command line."""

    def __init__(self, error, *appended):
        super().__init__(error, *appended)
        self.error = error


def _original(error: BaseException) -> BaseException:
    """The error a worker raised on purpose, from inside Ray's wrappers; else ``error`` as Ray gave it (a bug, or a
    worker that could not start), traceback and all."""
    cause = error
    for _ in range(8):  # RayTaskError(PipelineError).cause -> PipelineError
        if isinstance(cause, PipelineError):
            return cause.error if isinstance(cause.error, BaseException) else error
        cause = getattr(cause, "cause", None)
        if cause is None:
            break
    return error


class LabelActor:
    """One Ray worker: builds the pipeline once, then labels and writes rows of images.

    Args:
        spec: what to build (see :func:`label_on_ray`).
        settings: the settings the dataset was opened with; the built pipeline must have them.
        input_root, output_root: absolute folders, the same on every node.
        options: the run's options.
        token: the run's owner token (``DatasetWriter.token``).
    """

    def __init__(self, spec, settings: dict, input_root: str, output_root: str, options: LabelOptions, token: str):
        self.input_root, self.options, self.failed = Path(input_root), options, None
        try:
            self.model = spec.build()
            built = self.model.settings()
            if built != settings:
                raise UserInputError(
                    "A Ray worker built its pipeline with other settings than the run was opened with (differing: "
                    f"{describe_differences(settings, built)}); give device and dtype explicitly"
                )
        except GroundedSAMError as error:
            # Raised at the first call instead: of an exception raised while an actor starts, Ray keeps only the
            # text (ActorDiedError), while from a call it passes on the exception itself (a model missing on that
            # node, other settings), which the driver raises as a single-process run would.
            self.failed = PipelineError(error)
        self.images = ImageWriter(Path(output_root), options, token)

    def __call__(self, rows):
        """``rows``: a pyarrow table of chunks (``sources``, ``names``: lists). Returns one row per image:
        ``source`` and ``reason`` (empty when it was labeled, else why it was skipped)."""
        import pyarrow as pa

        if self.failed is not None:
            raise self.failed
        summary = {"source": [], "reason": []}
        for sources, names in zip(rows.column("sources").to_pylist(), rows.column("names").to_pylist()):
            skipped: list[dict] = []
            try:
                self._label_chunk([PurePosixPath(source) for source in sources], names, skipped)
            except GroundedSAMError as error:  # a full disk, another run taking the folder over...
                raise PipelineError(error) from error
            labeled = set(sources) - {item["path"] for item in skipped}
            summary["source"] += [source for source in sources if source in labeled]
            summary["reason"] += [""] * len(labeled)
            summary["source"] += [item["path"] for item in skipped]
            summary["reason"] += [item["reason"] for item in skipped]
        return pa.table(summary)

    def _label_chunk(self, sources: list[PurePosixPath], names: list[str], skipped: list[dict]) -> None:
        name_of, options = dict(zip(sources, names)), self.options

        def convert(source, image, detections):
            return convert_labels(options, detections, image.shape)

        def write(source, image, labels):
            name = name_of[source]
            if self.images.finished(name) is None:  # else written by an earlier try of this row (a worker died)
                split = assign_split(source, options.split, options.seed)
                self.images.write(source, self.input_root / source, name, split, image.shape, labels)

        from grounded_sam.pipeline.engine import Engine

        engine = Engine(self.model, options.batch_size, options.workers, max_pixels=options.max_pixels)
        engine.run(self.input_root, sources, write, skipped, prepare=convert)


def _import_ray():
    try:
        import ray
        import ray.data  # the part labeling uses, from the same extra
    except ImportError:
        raise UserInputError(
            'ray=True needs Ray Data: pip install "grounded-sam[ray]" (on every node of the cluster)'
        ) from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Connects to Ray unless this process already is; returns whether a connection was made here (to be closed)."""
    if ray.is_initialized():
        return False
    # With no address, ray.init takes RAY_ADDRESS, then a cluster `ray start` made on this machine, else starts one.
    ray.init(address=address, logging_level=logging.WARNING)
    return True

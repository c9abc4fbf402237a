"""Labeling on Ray: on a local Ray cluster the tests start on the CPU (two CPU actors), the dataset is the one a single
process writes, byte for byte, also when a worker is killed with SIGKILL or the driver is killed and rerun.

Needs the ``ray`` extra; CI sets GROUNDED_SAM_REQUIRE_RAY=1 so that a missing Ray fails there instead of skipping.
The refusals at the end need no Ray.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
from helpers import CannedModel, label_quietly, make_good_images, make_hostile_folder, snapshot, without_path
from ray_canned import CannedSpec
from typer.testing import CliRunner

from grounded_sam import CaptionOntology, GroundedSAM2, UserInputError, label_folder
from grounded_sam.apps import cli
from grounded_sam.integrations.ray import LabelActor, plan_actors
from grounded_sam.labeling.job import LabelingJob
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import PENDING_DIR, record_files
from grounded_sam.pipeline.spec import PipelineSpec

TESTS = Path(__file__).parent
REQUIRE_RAY = os.environ.get("GROUNDED_SAM_REQUIRE_RAY") == "1"


def _import(name: str):
    if REQUIRE_RAY:
        return __import__(name)  # fail loudly where these tests must run
    return pytest.importorskip(name, reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A local Ray on the CPU for this module: 2 CPU slots, no dashboard, loopback only, no usage report; worker
    processes find the tests' helper modules (they build CannedSpec's model). Yields its address, for a driver in
    another process to connect to."""
    ray = _import("ray")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("RAY_USAGE_STATS_ENABLED", "0")
        environment.setenv("RAY_AUTH_MODE", "disabled")  # else ray.init writes ~/.ray/auth_token (2.60's default)
        environment.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=300 * 2**20,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=str(tmp_path_factory.mktemp("ray")),  # short: Ray's socket paths must stay under 108 bytes
        )
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def _on_ray(spec, photos, output, **options):
    return label_folder(
        spec, photos, output_folder=output, ray=True, actors=2, progress=False, verbose=False, **options
    )


def _leftovers(output: Path) -> list[str]:
    partial = [path for path in output.rglob("*") if path.name.endswith(".tmp")]
    return sorted(str(path.relative_to(output)) for path in partial + list((output / PENDING_DIR).iterdir()))


@pytest.mark.slow
def test_the_tiny_pipeline_on_ray_writes_the_single_process_dataset(
    ray_address, model, eight_photos_in_four_formats, tmp_path
):
    single = model.label(eight_photos_in_four_formats, output_folder=tmp_path / "single", batch_size=2, verbose=False)
    on_ray = model.label(
        eight_photos_in_four_formats, output_folder=tmp_path / "ray", batch_size=2, ray=True, actors=2, verbose=False
    )  # the model's spec crosses to the workers, which build their own pipeline from it
    assert on_ray.report.labeled_this_run == 8 and len(on_ray) == len(single) == 8
    assert without_path(snapshot(tmp_path / "ray")) == without_path(snapshot(tmp_path / "single"))


@pytest.mark.slow
def test_every_odd_image_gives_the_single_process_dataset_and_skip_list(ray_address, tmp_path):
    photos = tmp_path / "photos"
    make_good_images(photos, 12, empty_every=4)
    make_hostile_folder(photos / "hostile")
    options = {"recursive": True, "split": (0.7, 0.2, 0.1), "batch_size": 2}
    single = label_quietly(CannedModel(), photos, tmp_path / "single", **options)
    on_ray = _on_ray(CannedSpec(), photos, tmp_path / "ray", **options)
    assert without_path(snapshot(tmp_path / "ray")) == without_path(snapshot(tmp_path / "single"))
    assert on_ray.skipped == single.skipped and on_ray.images_skipped == 5
    assert on_ray.labeled_this_run == single.labeled_this_run == 28


@pytest.mark.slow
def test_a_worker_killed_mid_run_still_gives_the_same_dataset(ray_address, tmp_path):
    photos = tmp_path / "photos"
    make_good_images(photos, 24, empty_every=4)
    (tmp_path / "pids").mkdir()
    label_quietly(CannedModel(), photos, tmp_path / "single", batch_size=1)
    spec = CannedSpec(0.05, kill_at_batch=3, marker=str(tmp_path / "killed"), pid_folder=str(tmp_path / "pids"))
    report = _on_ray(spec, photos, tmp_path / "ray", batch_size=1)  # 6 tasks of 4 images
    assert (tmp_path / "killed").exists() and len(list((tmp_path / "pids").iterdir())) == 3  # 2 actors, 1 restarted
    assert report.labeled_this_run == 24 and report.skipped == []
    assert without_path(snapshot(tmp_path / "ray")) == without_path(snapshot(tmp_path / "single"))
    assert _leftovers(tmp_path / "ray") == []


@pytest.mark.slow
@pytest.mark.parametrize("resume_with", ["ray", "single-process"])
def test_a_driver_killed_mid_run_then_the_same_command_gives_the_same_dataset(ray_address, tmp_path, resume_with):
    photos, output = tmp_path / "photos", tmp_path / "ray"
    make_good_images(photos, 24, empty_every=4)
    label_quietly(CannedModel(), photos, tmp_path / "single", batch_size=2)
    driver = subprocess.Popen(
        [sys.executable, str(TESTS / "ray_canned.py"), ray_address, str(photos), str(output), "0.3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while len(record_files(output)) < 4 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode()[-3000:]
    assert not (output / "report.json").exists()
    # Rerun at once: the killed run's actors may still be finishing an image for a moment.
    if resume_with == "ray":
        report = _on_ray(CannedSpec(0.3), photos, output, batch_size=2, ray_address=ray_address)
    else:
        report = label_quietly(CannedModel(), photos, output, batch_size=2)
    assert 4 <= report.already_done < 24 and report.already_done + report.labeled_this_run == 24
    assert without_path(snapshot(output)) == without_path(snapshot(tmp_path / "single"))
    assert _leftovers(output) == []


@pytest.mark.slow
def test_an_error_in_a_worker_stops_the_run_as_itself(ray_address, six_scenes, tmp_path):
    lying = CannedSpec(claimed_settings={"model": "what the driver was told"})
    with pytest.raises(UserInputError, match=r"A Ray worker built its pipeline with other settings.*now 'canned'\)\);"):
        _on_ray(lying, six_scenes, tmp_path / "out")
    assert record_files(tmp_path / "out") == [] and not (tmp_path / "out" / "report.json").exists()


_KILLED_MID_WRITE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import pyarrow as pa
from ray_canned import CannedSpec
from grounded_sam.integrations.ray import LabelActor
from grounded_sam.labeling.options import LabelOptions

real_replace, renamed = os.replace, []
def dies_renaming_the_third_record(source, destination):
    if os.path.basename(os.path.dirname(destination)) == "records":
        renamed.append(destination)
        if len(renamed) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # its label file is whole, its record under a temporary name
    real_replace(source, destination)
os.replace = dies_renaming_the_third_record
sources, names = sys.argv[5].split(","), sys.argv[5].split(",")
actor = LabelActor(CannedSpec(), {"model": "canned"}, sys.argv[2], sys.argv[3], LabelOptions(workers=0), sys.argv[4])
actor(pa.table({"sources": [sources], "names": [names]}))
"""


def test_a_row_redone_after_its_worker_died_mid_write_writes_each_image_once(six_scenes, tmp_path):
    """What Ray does when a worker process dies: the row goes to a new worker, which must finish what the dead one
    left half-written and rewrite nothing it finished; the run's end clears the rest."""
    pa = _import("pyarrow")
    model, options = CannedModel(), LabelOptions(workers=0, progress=False)
    label_quietly(CannedModel(), six_scenes, tmp_path / "single", workers=0)
    with LabelingJob(six_scenes, tmp_path / "ray", model.ontology, model.settings(), options) as job:
        sources = [str(source) for source in job.todo]
        arguments = [str(TESTS), str(six_scenes.resolve()), str(job.output_folder), job.writer.token, ",".join(sources)]
        worker = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, *arguments], capture_output=True, text=True)
        assert worker.returncode == -signal.SIGKILL, worker.stderr[-3000:]
        finished = {path.name: path.stat().st_ino for path in record_files(job.output_folder)}
        assert (
            len(finished) == 2 and len(_leftovers(job.output_folder)) == 2
        )  # the pending entry, the record's temporary
        folders = str(six_scenes.resolve()), str(job.output_folder)
        actor = LabelActor(CannedSpec(), model.settings(), *folders, options, job.writer.token)  # the new worker
        names = [job.names()[PurePosixPath(source)] for source in sources]
        summary = actor(pa.table({"sources": [sources], "names": [names]}))
        assert sorted(summary.column("source").to_pylist()) == sources
        again = {path.name: path.stat().st_ino for path in record_files(job.output_folder)}
        assert all(again[name] == inode for name, inode in finished.items())  # not written again
        job.finish(job.new_report())
    assert without_path(snapshot(tmp_path / "ray")) == without_path(snapshot(tmp_path / "single"))
    assert _leftovers(tmp_path / "ray") == []


# Refusals: no Ray needed.


def test_ray_options_without_ray_are_refused_in_python_and_cli_words(six_scenes, tmp_path):
    with pytest.raises(UserInputError, match="actors: only for runs on Ray; add ray=True"):
        LabelOptions(actors=2)
    result = CliRunner().invoke(cli.app, ["label", str(six_scenes), "-p", "a dog", "--gpus-per-actor", "1"])
    assert result.exit_code == 2 and "--gpus-per-actor: only for runs on Ray; add --ray" in result.output


def test_a_pipeline_built_from_parts_cannot_go_to_ray(six_scenes, tmp_path):
    from_parts = GroundedSAM2(CaptionOntology({"a dog": "dog"}), detector=object(), segmenter=object())
    assert from_parts.spec is None
    with pytest.raises(UserInputError, match="builds the pipeline again on every Ray worker from its spec"):
        from_parts.label(six_scenes, output_folder=tmp_path / "out", ray=True)
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_the_message_says_which_extra(six_scenes, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    with pytest.raises(UserInputError, match=r'pip install "grounded-sam\[ray\]"'):
        label_folder(CannedSpec(), six_scenes, output_folder=tmp_path / "out", ray=True)


@pytest.mark.parametrize(
    "resources, spec, options, expected",
    [
        ({"CPU": 16}, CannedSpec(), {}, (16, 0.0)),
        ({"CPU": 64, "GPU": 8}, PipelineSpec(), {}, (8, 1.0)),
        ({"CPU": 64, "GPU": 8}, PipelineSpec(), {"gpus_per_actor": 0.5}, (16, 0.5)),
        ({"CPU": 64, "GPU": 8}, PipelineSpec(device="cpu"), {"actors": 4}, (4, 0.0)),
        ({"CPU": 4, "GPU": 8}, PipelineSpec(), {}, (4, 1.0)),  # each worker also takes a CPU
    ],
)
def test_the_actor_pool_fits_the_cluster(resources, spec, options, expected):
    plan = plan_actors(resources, spec, LabelOptions(ray=True, **options))
    assert (plan.actors, plan.gpus) == expected
    if isinstance(spec, PipelineSpec):  # "auto" made explicit: a CPU worker on a GPU machine sees every GPU
        assert plan.spec.device == ("cuda" if plan.gpus else "cpu")


@pytest.mark.parametrize(
    "resources, spec, options, message",
    [
        ({"CPU": 4}, CannedSpec(), {"gpus_per_actor": 1}, "the Ray cluster has none"),
        ({"CPU": 4}, CannedSpec(), {"actors": 5}, r"actors=5 do not fit the Ray cluster \(0 GPUs, 4 CPUs: room for 4"),
        ({"CPU": 8, "GPU": 2}, PipelineSpec(), {"actors": 3}, "room for 2 workers of 1 GPU and 1 CPU each"),
        ({"CPU": 8, "GPU": 2}, PipelineSpec(device="cuda:1"), {}, "each Ray worker sees only the GPUs Ray gives it"),
        ({"CPU": 8}, PipelineSpec(device="cuda"), {}, "needs GPU workers"),
    ],
)
def test_a_pool_the_cluster_cannot_hold_is_refused(resources, spec, options, message):
    with pytest.raises(UserInputError, match=message):
        plan_actors(resources, spec, LabelOptions(ray=True, **options))

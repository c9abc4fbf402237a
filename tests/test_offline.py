"""Offline use: hub ids resolved from the Hugging Face cache, local folders and Meta files, with no network at all."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import socket, sys

    def refuse(self, address):
        raise RuntimeError(f"network access attempted: {address}")

    socket.socket.connect = refuse  # any connection attempt fails the run
    from grounded_sam import CaptionOntology, GroundedSAM2, Segmenter

    model = GroundedSAM2(CaptionOntology({"a dog": "dog"}), florence="florence-community/Florence-2-base",
                         sam="facebook/sam2.1-hiera-tiny", device="cpu", dtype="float32", max_new_tokens=16)
    Segmenter(sam=sys.argv[1], device="cpu")
    print("loaded", model.settings()["detector"]["model"], model.settings()["segmenter"]["model"])
    """
)


def _into_cache(cache, repo_id, folder):
    """Lays out ``folder`` as the Hugging Face cache holds a downloaded repo (snapshot + refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")


def test_cached_hub_ids_and_local_files_load_with_no_network(florence_dir, sam_dir, tmp_path):
    cache = tmp_path / "hub"
    _into_cache(cache, "florence-community/Florence-2-base", florence_dir)
    _into_cache(cache, "facebook/sam2.1-hiera-tiny", sam_dir)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(sam_dir)], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded florence-community/Florence-2-base facebook/sam2.1-hiera-tiny" in result.stdout


def test_cached_models_load_when_the_hub_cannot_be_reached_even_without_offline_mode(florence_dir, sam_dir, tmp_path):
    cache = tmp_path / "hub"
    _into_cache(cache, "florence-community/Florence-2-base", florence_dir)
    _into_cache(cache, "facebook/sam2.1-hiera-tiny", sam_dir)
    environment = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    environment.update(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(sam_dir)], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


MISSING = textwrap.dedent(
    """
    import socket, time
    from grounded_sam import CaptionOntology, GroundedSAM2

    def unreachable(self, address):
        raise OSError(101, "Network is unreachable")

    socket.socket.connect = unreachable
    started = time.monotonic()
    try:
        GroundedSAM2(CaptionOntology({"a dog": "dog"}), preset="fast", device="cpu")
    except OSError as error:
        print(f"{time.monotonic() - started:.1f}")
        print(error)
    """
)


def test_models_that_are_not_cached_fail_at_once_naming_each_when_the_hub_cannot_be_reached(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    environment.update(HF_HUB_CACHE=str(tmp_path / "empty"), HF_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-c", MISSING], capture_output=True, text=True, env=environment, timeout=300
    )
    seconds, message = result.stdout.splitlines()[:2]
    assert float(seconds) < 5, f"{seconds} s before the error (hub retries?)"
    assert "the Hugging Face hub cannot be reached" in message
    assert "Florence-2 'florence-community/Florence-2-base' (florence=...)" in message
    assert "SAM 2 'facebook/sam2.1-hiera-tiny' (sam=...)" in message
    assert result.stderr.count("Warning") <= 1, result.stderr

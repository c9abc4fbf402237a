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
    print("loaded", model.settings()["florence"], model.settings()["sam"])
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
    result = subprocess.run([sys.executable, "-c", CHILD, str(sam_dir)], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded florence-community/Florence-2-base facebook/sam2.1-hiera-tiny" in result.stdout

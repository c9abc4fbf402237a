"""Shared fixtures: tiny local models built once per session, and a guard that keeps tests off the network."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere

import numpy as np
import pytest

from grounded_sam import CaptionOntology, GroundedSAM2
from grounded_sam.testing import build_tiny_florence2, build_tiny_sam2

# "a dog": two boxes; "the image": matches no prompt, dropped; "Persons": matches "a person" (case, plural), one
# normal box and one a single location bin wide, which is under a pixel (degenerate) on images narrower than 1000 px.
SCRIPT = (
    "a dog<loc_100><loc_120><loc_450><loc_600><loc_600><loc_550><loc_900><loc_950>"
    "the image<loc_0><loc_0><loc_999><loc_999>"
    "Persons<loc_400><loc_100><loc_900><loc_400><loc_10><loc_10><loc_11><loc_300>"
)
ONTOLOGY = {"a dog": "dog", "puppy": "dog", "a person": "person"}

_real_connect = socket.socket.connect


def _local_only_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost"):
        return _real_connect(self, address)
    raise RuntimeError(f"Tests must not reach the network (tried to connect to {address})")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _local_only_connect)


@pytest.fixture(scope="session")
def florence_dir(tmp_path_factory):
    return build_tiny_florence2(tmp_path_factory.mktemp("florence"), script=SCRIPT)


@pytest.fixture(scope="session")
def sam_dir(tmp_path_factory):
    return build_tiny_sam2(tmp_path_factory.mktemp("sam"))


@pytest.fixture(scope="session")
def ontology():
    return CaptionOntology(ONTOLOGY)


@pytest.fixture(scope="session")
def model(florence_dir, sam_dir, ontology):
    return GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cpu", dtype="float32", max_new_tokens=64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

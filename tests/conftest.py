"""Shared fixtures: tiny local models built once per session, folders of test images, and a guard that keeps tests
off the network."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere

import numpy as np
import pytest
from helpers import ONTOLOGY, make_good_images
from PIL import Image
from skimage import data as skdata

from grounded_sam import CaptionOntology, GroundedSAM2
from grounded_sam.testing import DEMO_SCRIPT, build_tiny_florence2, build_tiny_sam2

SCRIPT = DEMO_SCRIPT  # what the tiny Florence-2 writes for any image (see grounded_sam.testing)

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


@pytest.fixture(scope="session")
def two_photos_and_a_broken_file(tmp_path_factory):
    """astronaut.jpg (128 x 128), cat.png (226 x 150) and broken.jpg, which is not a picture."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(folder / "astronaut.jpg")
    Image.fromarray(skdata.chelsea()[::2, ::2]).save(folder / "cat.png")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    return folder


@pytest.fixture(scope="session")
def eight_photos_and_a_broken_file(tmp_path_factory):
    """Eight JPEGs of four scikit-image photos at different sizes, and broken.jpg."""
    folder = tmp_path_factory.mktemp("engine_photos")
    for index, picture in enumerate([skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()] * 2):
        Image.fromarray(picture[:: 2 + index % 3, :: 2 + index % 2]).save(folder / f"p{index}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"nope")
    return folder


@pytest.fixture(scope="session")
def eight_photos_in_four_formats(tmp_path_factory):
    """JPEG, PNG, lossless WebP and grayscale PNG photos from scikit-image."""
    folder = tmp_path_factory.mktemp("photos")
    pictures = {
        "astronaut.jpg": skdata.astronaut()[::4, ::4],
        "cat.png": skdata.chelsea()[::2, ::2],
        "coffee.webp": skdata.coffee()[::3, ::3],
        "rocket.png": skdata.rocket()[::3, ::3],
    }
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(folder / name, **({"lossless": True} if name.endswith("webp") else {}))
    for index in range(4):
        Image.fromarray(np.asarray(skdata.camera()[index * 40 : index * 40 + 96, :128])).save(
            folder / f"cam{index}.png"
        )
    return folder


@pytest.fixture
def twelve_scenes_every_fourth_empty(tmp_path):
    """12 canned scenes (helpers.scene), 3 of them without anything the CannedModel finds."""
    make_good_images(tmp_path / "photos", 12, empty_every=4)
    return tmp_path / "photos"


@pytest.fixture
def six_scenes(tmp_path):
    """6 canned scenes, each with a bright disk and a dark ring."""
    make_good_images(tmp_path / "photos", 6)
    return tmp_path / "photos"

"""README.md's snippets and commands, run as they stand.

Every Python block runs in order, in one fresh interpreter (as a reader pasting them would), in a folder holding the
files they name; every `grounded-sam` line of the bash blocks runs too. The hub ids they use resolve from a Hugging
Face cache made of tiny models, with the hub offline: nothing is patched in grounded-sam.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from grounded_sam.models import PRESETS
from grounded_sam.models.presets import DETECTOR_MODELS, SAM3_MODEL
from grounded_sam.testing import build_tiny_grounding_dino, build_tiny_owlv2, build_tiny_sam3

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SCRIPT = Path(sys.executable).parent / "grounded-sam"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _into_cache(cache: Path, repo_id: str, folder: Path) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    if not repo.exists():
        shutil.copytree(folder, repo / "snapshots" / "0")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0")


def _meta_checkpoint(path: Path) -> bool:
    """A random-weight checkpoint in Meta's format, when Meta's sam2 (the parity extra) is installed."""
    try:
        import torch
        from sam2.build_sam import build_sam2
    except ImportError:
        return False
    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return True


def _gold_set(photos: Path, gold: Path) -> None:
    """gold/images (the photos) and gold/instances.json: hand labels as COCO polygons, "dog" boxes where the tiny
    Florence-2's script puts them (two per image) and a "cat" it never finds."""
    shutil.copytree(photos, gold / "images")
    truth = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]}
    for index, path in enumerate(sorted((gold / "images").iterdir())):
        width, height = Image.open(path).size
        truth["images"].append({"id": index + 1, "file_name": path.name, "width": width, "height": height})
        for category, bins in ((1, (100, 120, 450, 600)), (1, (600, 550, 900, 950)), (2, (300, 300, 700, 700))):
            x1, y1, x2, y2 = ((value + 0.5) / 1000 * (width, height)[k % 2] for k, value in enumerate(bins))
            truth["annotations"].append(
                {"id": len(truth["annotations"]) + 1, "image_id": index + 1, "category_id": category,
                 "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "bbox": [x1, y1, x2 - x1, y2 - y1]}
            )  # fmt: skip
    (gold / "instances.json").write_text(json.dumps(truth))


def _clip(path: Path, picture: np.ndarray, frames: int = 24) -> None:
    """A short mp4 (OpenCV's mp4v) of a picture panning right, for the video snippets."""
    import cv2

    height, width = picture.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (width, height))
    for index in range(frames):
        writer.write(np.ascontiguousarray(np.roll(picture, 2 * index, axis=1)[:, :, ::-1]))
    writer.release()


@pytest.fixture(scope="module")
def world(tmp_path_factory, florence_dir, sam_dir):
    """A folder with what the README's snippets name, and the environment they run in (every preset's models and
    each detector's default model in the Hugging Face cache, as tiny models)."""
    folder = tmp_path_factory.mktemp("readme")
    cache = folder / ".cache"
    for preset in PRESETS.values():
        _into_cache(cache, preset.florence, florence_dir)
        _into_cache(cache, preset.sam, sam_dir)
    tiny = tmp_path_factory.mktemp("readme_detectors")
    _into_cache(cache, DETECTOR_MODELS["grounding-dino"], build_tiny_grounding_dino(tiny / "grounding-dino"))
    _into_cache(cache, DETECTOR_MODELS["owlv2"], build_tiny_owlv2(tiny / "owlv2"))
    _into_cache(cache, SAM3_MODEL, build_tiny_sam3(tiny / "sam3"))
    big = np.asarray(Image.fromarray(skdata.coffee()).resize((1800, 1200)))  # room for the clicks and boxes shown
    Image.fromarray(big).save(folder / "dog.jpeg")
    Image.fromarray(skdata.astronaut()).save(folder / "a.jpg")
    Image.fromarray(skdata.chelsea()).save(folder / "b.png")
    (folder / "photos").mkdir()
    for name in ("astronaut", "chelsea", "rocket"):
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(folder / "photos" / f"{name}.jpg")
    _gold_set(folder / "photos", folder / "gold")
    _clip(folder / "clip.mp4", np.asarray(Image.fromarray(skdata.coffee()).resize((320, 240))))
    shutil.copytree(ROOT / "ontologies", folder / "ontologies")
    shutil.copytree(ROOT / "samples", folder / "samples")
    shutil.copytree(florence_dir, folder / "models" / "florence-2-base")
    shutil.copytree(sam_dir, folder / "models" / "sam2.1-hiera-tiny")
    has_checkpoint = _meta_checkpoint(folder / "checkpoints" / "sam2.1_hiera_tiny.pt")
    environment = {
        **os.environ,
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(folder / ".hf"),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "RAY_USAGE_STATS_ENABLED": "0",  # the runs on a local Ray ("Label on a cluster")
    }
    return folder, environment, has_checkpoint


def test_the_python_snippets_run_in_order(world):
    folder, environment, has_checkpoint = world
    blocks = _blocks("python")
    assert len(blocks) >= 7
    if not has_checkpoint:
        pytest.skip("Meta's sam2 (the parity extra) builds the checkpoint the README loads")
    if not _has_ray():
        pytest.skip("the ray extra runs the README's labeling on Ray")
    code = "\n".join(blocks)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=environment, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (folder / "photos_labeled" / "data.yaml").is_file()


def test_the_command_lines_run(world):
    folder, environment, _ = world
    lines = [line.split("  #")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    commands = [line for line in lines if line.startswith("grounded-sam") and "download" not in line]
    assert len(commands) >= 5
    if not _has_ray():
        commands = [command for command in commands if "--ray" not in command]
    for command in commands:
        arguments = shlex.split(command)
        result = subprocess.run(
            [str(SCRIPT), *arguments[1:]], cwd=folder, env=environment, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"


def _has_ray() -> bool:
    """Whether the ray extra is installed; where CI requires the Ray tests, it must be."""
    if os.environ.get("GROUNDED_SAM_REQUIRE_RAY") == "1":
        return True
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def test_what_the_quickstart_runs(world):
    folder, environment, _ = world
    quickstart = (ROOT / "scripts" / "quickstart.sh").read_text()
    command = next(line for line in quickstart.splitlines() if 'grounded-sam" label' in line)
    arguments = shlex.split(command.replace('"$venv/bin/grounded-sam"', "grounded-sam").replace('"${models[@]}"', ""))
    result = subprocess.run(
        [str(SCRIPT), *arguments[1:], "--preset", "fast"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "samples_labeled" / "review" / "index.html").is_file()


def test_every_labeling_option_is_in_the_readme_table():
    from dataclasses import fields

    from grounded_sam import LabelOptions

    table = README[README.index("`model.label(input_folder, extension=None") : README.index("### Throughput")]
    for option in fields(LabelOptions):
        assert f"`{option.name}`" in table, f"README's option table lacks {option.name}"

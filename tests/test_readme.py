"""README.md's snippets and commands, run as they stand.

Every Python block runs in order, in one fresh interpreter (as a reader pasting them would), in a folder holding the
files they name; every `grounded-sam` line of the bash blocks runs too. The hub ids they use resolve from a Hugging
Face cache made of tiny models, with the hub offline: nothing is patched in grounded-sam.
"""

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
    """A folder with what the README's snippets name, and the environment they run in."""
    folder = tmp_path_factory.mktemp("readme")
    cache = folder / ".cache"
    for preset in PRESETS.values():
        _into_cache(cache, preset.florence, florence_dir)
        _into_cache(cache, preset.sam, sam_dir)
    big = np.asarray(Image.fromarray(skdata.coffee()).resize((1800, 1200)))  # room for the clicks and boxes shown
    Image.fromarray(big).save(folder / "dog.jpeg")
    Image.fromarray(skdata.astronaut()).save(folder / "a.jpg")
    Image.fromarray(skdata.chelsea()).save(folder / "b.png")
    (folder / "photos").mkdir()
    for name in ("astronaut", "chelsea", "rocket"):
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(folder / "photos" / f"{name}.jpg")
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
    }
    return folder, environment, has_checkpoint


def test_the_python_snippets_run_in_order(world):
    folder, environment, has_checkpoint = world
    blocks = _blocks("python")
    assert len(blocks) >= 7
    if not has_checkpoint:
        pytest.skip("Meta's sam2 (the parity extra) builds the checkpoint the README loads")
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
    for command in commands:
        arguments = shlex.split(command)
        result = subprocess.run(
            [str(SCRIPT), *arguments[1:]], cwd=folder, env=environment, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"


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

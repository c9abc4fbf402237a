"""The notebooks run top to bottom on the tiny local models, and are committed without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_models(florence_dir, sam_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook_models")
    (folder / "florence").symlink_to(florence_dir, target_is_directory=True)
    (folder / "sam").symlink_to(sam_dir, target_is_directory=True)
    return folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} holds outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_on_tiny_models(path, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDED_SAM_NOTEBOOK_MODELS", str(tiny_models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "IProgress not found" not in printed and "Traceback" not in printed

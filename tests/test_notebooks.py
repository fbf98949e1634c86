"""Every tutorial notebook runs headless from top to bottom (`make notebooks`; CI runs it)."""

import pathlib
import time

import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_the_tutorials_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["00_from_the_document", "01_attention", "02_image_captioning",
                     "03_visual_question_answering", "04_image_text_retrieval", "05_open_problems"]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("VLM_KERAS_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    # Runs in a scratch copy of the notebooks folder's role: files it writes go to tmp_path.
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors
    print(f"{path.stem}: {time.perf_counter() - start:.0f} s")

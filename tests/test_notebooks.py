"""The tutorials: each notebook is generated from its percent-format source (checked in every run),
and every notebook runs headless from top to bottom (`make notebooks`; CI runs it)."""

import pathlib
import time

import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_the_tutorials_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["00_from_the_document", "01_attention", "02_image_captioning",
                     "03_visual_question_answering", "04_image_text_retrieval", "05_open_problems"]
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py")) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_is_its_source(path):
    """The .ipynb holds exactly the cells of its .py source: edit the .py, then run
    `python notebooks/run_notebooks.py NAME` (or `jupytext --sync notebooks/NAME.py`)."""
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    source = jupytext.read(path.with_suffix(".py"))
    notebook = nbformat.read(path, as_version=4)
    cells = [(c.cell_type, c.source) for c in source.cells]
    saved = [(c.cell_type, c.source) for c in notebook.cells]
    assert len(saved) == len(cells), f"{path.name} has {len(saved)} cells, its source {len(cells)}"
    for i, (want, have) in enumerate(zip(cells, saved)):
        assert have == want, f"{path.name}: cell {i} differs from {path.stem}.py"
    executed = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in executed), f"{path.name} is saved without its outputs"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("VLM_KERAS_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    # Runs in a scratch folder: files it writes go to tmp_path.
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors
    print(f"{path.stem}: {time.perf_counter() - start:.0f} s")

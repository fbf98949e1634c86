"""Runs the tutorial notebooks from their sources and saves them with their outputs.

    python notebooks/run_notebooks.py                      # all six
    python notebooks/run_notebooks.py 02_image_captioning  # or those named

Each `NN_name.py` here (jupytext's percent format: `# %%` starts a code cell, `# %% [markdown]` a
text cell) is the source of `NN_name.ipynb`: edit the .py, then run this to write the .ipynb with
the outputs of a real run (what GitHub shows). `jupytext --sync notebooks/NN_name.py` updates the
notebook's cells without running them. `tests/test_notebooks.py` fails when a source and its
notebook disagree, and CI executes every notebook.
"""

import argparse
import pathlib
import re
import sys
import time

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
# TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) reach stderr before any Python
# setting can silence them; they say nothing about the tutorial, so they are dropped.
STARTUP_LOG = re.compile(r"^(?:[IWE]\d{4} .*|WARNING: All log messages before absl::InitializeLog\(\).*)$")


def sources():
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def run(source):
    """Executes one source in the notebooks folder; writes the paired .ipynb."""
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                out["text"] = "".join(line for line in out["text"].splitlines(keepends=True)
                                      if not STARTUP_LOG.match(line.rstrip("\n")))
                if not out["text"].strip():
                    continue
            outputs.append(out)
        cell.outputs = outputs
    nbformat.write(notebook, source.with_suffix(".ipynb"))
    print(f"{source.stem}: executed in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    names = parser.parse_args(argv).names
    chosen = [s for s in sources() if not names or s.stem in names]
    if names and len(chosen) != len(names):
        sys.exit(f"unknown notebook(s); expected some of {', '.join(s.stem for s in sources())}")
    for source in chosen:
        run(source)


if __name__ == "__main__":
    main()

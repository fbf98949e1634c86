"""benchmarks/learning_curves.py at a tiny size: one JSON line per run, the summary, and a resumed
benchmark that trains nothing twice."""

import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "learning_curves.py"


def run(tmp_path, *args):
    out = subprocess.run([sys.executable, str(SCRIPT), "--tasks", "retrieval", "--sizes", "retrieval=40,60",
                          "--epochs", "retrieval=1", "--seeds", "0", "--data-root", str(tmp_path / "data"),
                          "--out", str(tmp_path / "curves.jsonl"), *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_learning_curves_write_resume_and_summarise(tmp_path):
    first = run(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "curves.jsonl").read_text().splitlines()]
    assert [(r["task"], r["model"], r["size"], r["seed"]) for r in rows] == [
        ("retrieval", "default", 40, 0), ("retrieval", "default", 60, 0)]
    for r in rows:
        assert 0.0 <= r["score_test"] <= 1.0 and 0.0 <= r["score_compositional"] <= 1.0
        assert r["score_test"] == (r["text_to_image_r1_test"] + r["image_to_text_r1_test"]) / 2
    # The smaller set trains on fewer images (both are scored on the larger set's splits).
    assert rows[0]["train_images"] < rows[1]["train_images"]
    assert "| retrieval | default |" in first
    again = run(tmp_path)            # everything is on record: nothing is trained again
    assert not any(line.startswith("{") for line in again.splitlines())
    assert len((tmp_path / "curves.jsonl").read_text().splitlines()) == 2
    assert "| retrieval | default |" in again

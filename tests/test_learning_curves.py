"""benchmarks/learning_curves.py at a tiny size: one JSON line per run, the summary, and a resumed
benchmark that trains nothing twice."""

import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "learning_curves.py"


def run(tmp_path, *args):
    out = subprocess.run([sys.executable, str(SCRIPT), "--tasks", "retrieval", "--sizes", "retrieval=40,60",
                          "--epochs", "retrieval=1", "--seeds", "0", "--models", "retrieval=default",
                          "--data-root", str(tmp_path / "data"),
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
    assert "retrieval pools: an oracle's R@1 (text -> image / image -> text / their mean, the score) is" in first
    again = run(tmp_path)            # everything is on record: nothing is trained again
    assert not any(line.startswith("{") for line in again.splitlines())
    assert len((tmp_path / "curves.jsonl").read_text().splitlines()) == 2
    assert "| retrieval | default |" in again


def test_summary_means_spreads_and_caption_bleu(capsys):
    """The summary's figures for hand-made runs: the mean and (population) standard deviation over
    seeds, the gap, the share of the largest size, and the captioning runs' BLEU-4 table."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = [dict(task="captioning", model="lstm", epochs=6, size=size, seed=seed, train_images=size * 4 // 5,
                 score_test=test, score_compositional=comp, bleu4_test=b_test, bleu4_compositional=b_comp)
            for size, seed, test, comp, b_test, b_comp in [
                (10, 0, 1.0, 0.5, 0.20, 0.10), (10, 1, 3.0, 1.5, 0.40, 0.20),
                (20, 0, 4.0, 3.0, 0.50, 0.45), (20, 1, 4.0, 2.0, 0.70, 0.45)]]
    module.summary(runs)
    printed = capsys.readouterr().out
    # size 10: test 2.0 ± 1.0, compositional 1.0 ± 0.5, gaps 0.5 and 1.5; share 2.0 / 4.0
    assert "| captioning | lstm | 8 | 2 | 2.000 ± 1.000 | 1.000 ± 0.500 | 1.000 ± 0.500 | 0.50 | n/a | n/a |" in printed
    assert "| captioning | lstm | 16 | 2 | 4.000 ± 0.000 | 2.500 ± 0.500 | 1.500 ± 0.500 | 1.00 | n/a | n/a |" in printed
    assert "| lstm | 8 | 2 | 0.300 ± 0.100 | 0.150 ± 0.050 | 0.150 ± 0.050 |" in printed
    assert "| lstm | 16 | 2 | 0.600 ± 0.100 | 0.450 ± 0.000 | 0.150 ± 0.100 |" in printed
    # A retrieval run's directions, each its own row, with the seconds' range.
    module.summary([dict(task="retrieval", model="default", epochs=1, size=10, seed=seed, train_images=8,
                         score_test=0.5, score_compositional=0.25, text_to_image_r1_test=t2i,
                         text_to_image_r1_compositional=0.25, image_to_text_r1_test=1.0 - t2i,
                         image_to_text_r1_compositional=0.25, seconds=seconds)
                    for seed, t2i, seconds in [(0, 0.25, 30.2), (1, 0.75, 41.6)]])
    printed = capsys.readouterr().out
    assert "| retrieval text -> image R@1 | default | 8 | 2 | 0.500 ± 0.250 | 0.250 ± 0.000 | 0.250 ± 0.250 | 30-42 |" in printed
    assert "| retrieval image -> text R@1 | default | 8 | 2 | 0.500 ± 0.250 | 0.250 ± 0.000 | 0.250 ± 0.250 | 30-42 |" in printed

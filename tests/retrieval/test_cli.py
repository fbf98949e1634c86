"""Retrieval on the command line: train / evaluate retrieval, index a folder, search it, errors."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run_cli
from vlm_keras.cli import main
from vlm_keras.data.formats import coco
from vlm_keras.retrieval.index import load_index, search, write_index


@pytest.fixture(scope="module")
def images_dir(shapes_dir, tmp_path_factory):
    """4 readable test images (one in a sub-folder), a text file named .png and a truncated PNG."""
    test = coco.load_caption_split(shapes_dir, "test")
    folder = tmp_path_factory.mktemp("photos")
    (folder / "holiday").mkdir()
    for i, path in enumerate(test.image_paths[:4]):
        shutil.copy(path, folder / ("holiday" if i == 3 else ".") / f"scene{i}.png")
    (folder / "notes.png").write_text("these are not pixels")
    (folder / "truncated.png").write_bytes(pathlib.Path(test.image_paths[0]).read_bytes()[:200])
    return folder


@pytest.fixture(scope="module")
def index_file(tiny_retrieval, images_dir, tmp_path_factory):
    _, model_dir = tiny_retrieval
    out = tmp_path_factory.mktemp("index") / "photos.npz"
    assert main(["index", "--model", str(model_dir), str(images_dir), "--out", str(out)]) == 0
    return out


def test_index_skips_and_lists_unreadable_files(capsys, tiny_retrieval, images_dir, tmp_path):
    _, model_dir = tiny_retrieval
    code, out, err = run_cli(capsys, "index", "--model", model_dir, images_dir, "--out", tmp_path / "i.npz")
    assert code == 0
    summary = json.loads(out)
    assert summary["num_images"] == 4 and summary["index"] == str(tmp_path / "i.npz")
    assert sorted(pathlib.Path(s["path"]).name for s in summary["skipped"]) == ["notes.png", "truncated.png"]
    assert all("could not be decoded" in s["error"] for s in summary["skipped"])
    assert "Indexing 6 files" in err and "skipped" in err and "notes.png" in err   # progress on stderr
    index = load_index(tmp_path / "i.npz")
    assert len(index) == 4 and index.embeddings.shape == (4, 16)
    assert sorted(pathlib.Path(p).name for p in index.paths) == [f"scene{i}.png" for i in range(4)]


def test_search_ranks_by_cosine_similarity(capsys, tiny_retrieval, shapes_dir, index_file):
    result, _ = tiny_retrieval
    query = coco.load_caption_split(shapes_dir, "test").captions[2][0]
    code, out, _ = run_cli(capsys, "search", "--index", index_file, query, "-k", "3")
    assert code == 0
    got = json.loads(out)
    assert got["query"] == query and [r["rank"] for r in got["results"]] == [1, 2, 3]
    index = load_index(index_file)
    scores = result.embed_images(index.paths) @ result.embed_texts([query])[0]
    order = np.argsort(-scores)[:3]
    assert [r["path"] for r in got["results"]] == [index.paths[i] for i in order]
    np.testing.assert_allclose([r["score"] for r in got["results"]], scores[order], atol=1e-4)
    code, out, _ = run_cli(capsys, "search", "--index", index_file, query, "-k", "10")
    assert len(json.loads(out)["results"]) == 4                     # k larger than the index


def test_index_and_search_with_the_exported_saved_model(capsys, tiny_retrieval, shapes_dir, images_dir,
                                                        index_file, tmp_path):
    _, model_dir = tiny_retrieval
    assert run_cli(capsys, "export", "--model", model_dir, "--out", tmp_path / "sm")[0] == 0
    code, out, _ = run_cli(capsys, "index", "--model", tmp_path / "sm", images_dir, "--out", tmp_path / "sm.npz")
    assert code == 0 and json.loads(out)["num_images"] == 4
    np.testing.assert_allclose(load_index(tmp_path / "sm.npz").embeddings, load_index(index_file).embeddings,
                               atol=1e-5)
    query = coco.load_caption_split(shapes_dir, "test").captions[0][0]
    from_export = search(tmp_path / "sm.npz", query, k=4)
    from_folder = search(index_file, query, k=4)
    assert [r["path"] for r in from_export] == [r["path"] for r in from_folder]
    # An index built with the export is searched with the model folder too (same model).
    assert search(tmp_path / "sm.npz", query, k=4, model_path=model_dir)[0]["path"] == from_folder[0]["path"]


def test_search_refuses_another_model(tiny_retrieval, index_file, tmp_path):
    index = load_index(index_file)
    info = dict(index.info, probe_embedding=list(np.roll(index.info["probe_embedding"], 1)))
    write_index(tmp_path / "other.npz", index.embeddings, index.paths, info)
    with pytest.raises(ValueError, match="does not match the one that built the index"):
        search(tmp_path / "other.npz", "a red circle")


def test_index_and_search_errors(capsys, tiny_retrieval, images_dir, index_file, tmp_path):
    _, model_dir = tiny_retrieval
    code, _, err = run_cli(capsys, "search", "--index", tmp_path / "missing.npz", "a red circle")
    assert_one_line_error(code, err, "missing.npz", "does not exist")
    (tmp_path / "notes.npz").write_text("not an index")
    code, _, err = run_cli(capsys, "search", "--index", tmp_path / "notes.npz", "a red circle")
    assert_one_line_error(code, err, "notes.npz", "is not a vlm_keras image index")
    code, _, err = run_cli(capsys, "search", "--index", index_file, "  ")
    assert_one_line_error(code, err, "the query is", "expected a non-empty text")
    code, _, err = run_cli(capsys, "search", "--index", index_file, "a red circle", "-k", "0")
    assert_one_line_error(code, err, "-k/--top-k", "expected an integer >= 1, got 0")

    code, _, err = run_cli(capsys, "index", "--model", model_dir, tmp_path / "nowhere", "--out", tmp_path / "x.npz")
    assert_one_line_error(code, err, "nowhere", "does not exist")
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    shutil.copy(images_dir / "notes.png", bad_only)
    code, _, err = run_cli(capsys, "index", "--model", model_dir, bad_only, "--out", tmp_path / "x.npz")
    assert_one_line_error(code, err, "bad_only", "holds no readable image", "notes.png")
    code, _, err = run_cli(capsys, "index", "--model", model_dir, images_dir, "--out", tmp_path)
    assert_one_line_error(code, err, "is a folder")
    captioner = tmp_path / "captioner"
    captioner.mkdir()
    (captioner / "config.json").write_text(json.dumps({"task": "captioning", "image_size": 64}))
    (captioner / "model.keras").write_bytes(b"")
    code, _, err = run_cli(capsys, "index", "--model", captioner, images_dir, "--out", tmp_path / "x.npz")
    assert_one_line_error(code, err, "holds a captioning model, not a retrieval model")
    assert not (tmp_path / "x.npz").exists()


def test_train_and_evaluate_retrieval_with_the_cli(capsys, shapes_dir, tmp_path):
    model_dir = tmp_path / "retrieval"
    code, out, _ = run_cli(capsys, "train", "retrieval", "--data", shapes_dir, "--out", model_dir, "--epochs", "1",
                        "--embed-dim", "16", "--batch-size", "64", "--pooling", "flatten")
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["model_dir"] == str(model_dir) and 0 <= metrics["text_to_image_r10_test"] <= 1
    config = json.loads((model_dir / "config.json").read_text())
    assert config["task"] == "retrieval" and config["pooling"] == "flatten" and config["batch_size"] == 64
    code, out, _ = run_cli(capsys, "evaluate", "retrieval", "--model", model_dir, "--data", shapes_dir,
                        "--split", "compositional")
    assert code == 0
    report = json.loads(out)
    assert report["split"] == "compositional"
    assert report["text_to_image_r10"] == pytest.approx(metrics["text_to_image_r10_compositional"])
    assert "true_matches" not in report
    code, out, _ = run_cli(capsys, "evaluate", "retrieval", "--model", model_dir, "--data", shapes_dir,
                           "--split", "compositional", "--true-matches")
    assert code == 0
    both = json.loads(out)
    assert both["text_to_image_r10"] == pytest.approx(report["text_to_image_r10"])
    assert both["true_matches"]["text_to_image_r10"] >= report["text_to_image_r10"]
    code, _, err = run_cli(capsys, "evaluate", "retrieval", "--model", tmp_path / "none", "--data", shapes_dir)
    assert_one_line_error(code, err, "none", "does not exist")

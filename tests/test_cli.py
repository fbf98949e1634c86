"""The `vlm-keras` command: results on stdout, one-line errors with exit code 2 on bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error, run_cli
from vlm_keras.data.formats import coco


def test_caption_with_model_folder_and_saved_model(capsys, tiny_captioner, tiny_model_dir, shapes_dir, tmp_path):
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:2]
    expected = tiny_captioner.caption(images)
    code, out, _ = run_cli(capsys, "caption", "--model", str(tiny_model_dir), *images)
    assert code == 0
    assert [line.split("\t")[1] for line in out.strip().splitlines()] == expected

    code, out, _ = run_cli(capsys, "export", "--model", str(tiny_model_dir), "--out", str(tmp_path / "sm"))
    assert code == 0 and json.loads(out)["export_path"] == str(tmp_path / "sm")
    code, out, _ = run_cli(capsys, "caption", "--model", str(tmp_path / "sm"), *images)
    assert code == 0
    assert [line.split("\t")[1] for line in out.strip().splitlines()] == expected


def test_evaluate_prints_json_and_writes_predictions(capsys, tiny_model_dir, shapes_dir, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", str(tiny_model_dir), "--data",
                        str(shapes_dir), "--split", "compositional", "--predictions", str(tmp_path / "p.json"))
    assert code == 0
    scores = json.loads(out.strip().splitlines()[-1])
    assert scores["split"] == "compositional" and 0 <= scores["coco_bleu4"] <= 1
    assert len(json.loads((tmp_path / "p.json").read_text())) == scores["num_images"]


def test_missing_image(capsys, tiny_model_dir, tmp_path):
    code, _, err = run_cli(capsys, "caption", "--model", str(tiny_model_dir), str(tmp_path / "nope.png"))
    assert_one_line_error(code, err, "nope.png", "does not exist")


def test_not_an_image_and_corrupt_image(capsys, tiny_model_dir, shapes_dir, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels")
    code, _, err = run_cli(capsys, "caption", "--model", str(tiny_model_dir), str(text))
    assert_one_line_error(code, err, "notes.png")

    good = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(good, "rb").read()[:200])
    code, _, err = run_cli(capsys, "caption", "--model", str(tiny_model_dir), str(truncated))
    assert_one_line_error(code, err, "truncated.png")


def test_folder_without_a_model(capsys, shapes_dir, tmp_path):
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    for argv in (["caption", "--model", str(tmp_path), image],
                 ["export", "--model", str(tmp_path), "--out", str(tmp_path / "x")],
                 ["evaluate", "captioner", "--model", str(tmp_path / "missing")]):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, str(tmp_path))


def test_bad_data_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "captioner", "--data", str(tmp_path / "nodata"), "--out",
                        str(tmp_path / "m"), "--epochs", "1")
    assert_one_line_error(code, err, "nodata")
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path, broken, dirs_exist_ok=True)
    (broken / "annotations").mkdir()
    (broken / "annotations" / "captions_train.json").write_text("{not json")
    code, _, err = run_cli(capsys, "train", "captioner", "--data", str(broken), "--out", str(tmp_path / "m"),
                        "--epochs", "1")
    assert_one_line_error(code, err, "captions_train.json")


def test_console_script_exit_code_and_data_command(tmp_path):
    exe = shutil.which("vlm-keras", path=os.path.dirname(sys.executable)) or shutil.which("vlm-keras")
    if exe is None:
        pytest.fail("the vlm-keras console script is not installed (pip install -e .)")
    out = subprocess.run([exe, "data", "shapes", "--out", str(tmp_path / "d"), "--num-images", "20"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["data_dir"] == str(tmp_path / "d")
    assert sorted(coco.list_caption_splits(tmp_path / "d")) == ["compositional", "test", "train", "val"]
    bad = subprocess.run([exe, "caption", "--model", str(tmp_path), str(tmp_path / "x.jpg")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "x.jpg" in bad.stderr.strip().splitlines()[-1]


def test_train_evaluate_export_with_the_cli(capsys, shapes_dir, tmp_path):
    model_dir = tmp_path / "transformer"
    code, out, _ = run_cli(capsys, "train", "captioner", "--data", str(shapes_dir), "--out", str(model_dir),
                        "--model-type", "transformer", "--epochs", "1", "--image-size", "64",
                        "--precision", "mixed_bfloat16", "--strategy", "default", "--backup-every", "2")
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert json.loads((model_dir / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert (model_dir / "checkpoints" / "training.csv").is_file()
    assert metrics["model_dir"] == str(model_dir) and 0 <= metrics["coco_bleu4_test"] <= 1
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "transformer"

    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", str(model_dir), "--data", str(shapes_dir),
                        "--split", "test", "--beam-size", "3")
    assert code == 0 and 0 <= json.loads(out)["coco_bleu4"] <= 1

    code, out, _ = run_cli(capsys, "export", "--model", str(model_dir), "--out", str(tmp_path / "sm"))
    assert code == 0
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    code, out, _ = run_cli(capsys, "caption", "--model", str(tmp_path / "sm"), "--beam-size", "3", image)
    from vlm_keras.captioning import Captioner

    assert code == 0 and out.rstrip("\n").split("\t")[1] == Captioner.load(model_dir).caption([image], beam_size=3)[0]


def test_bad_beam_size_and_attention_map_on_a_saved_model(capsys, tiny_captioner, shapes_dir, tmp_path):
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    export = tiny_captioner.export(tmp_path / "sm")
    code, _, err = run_cli(capsys, "caption", "--model", str(export), "--beam-size", "0", image)
    assert_one_line_error(code, err, "--beam-size")
    code, _, err = run_cli(capsys, "caption", "--model", str(export), "--attention-map", str(tmp_path / "m.png"), image)
    assert_one_line_error(code, err, "--attention-map needs a model folder")

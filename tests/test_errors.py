"""Bad input and a bad environment through the command line: one line, exit code 2, nothing lost.

Each case was a traceback, a silently wrong result or lost work before (issue 14)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import vlm_keras.io
from tests.helpers import assert_one_line_error, run_cli
from vlm_keras.data.formats import coco


@pytest.fixture(scope="module")
def exports(tiny_captioner, trained_vqa, tiny_retrieval, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {"captioning": tiny_captioner.export(folder / "captioner"),
            "vqa": trained_vqa[0].export(folder / "vqa"),
            "retrieval": tiny_retrieval[0].export(folder / "retrieval")}


@pytest.fixture
def image(shapes_dir):
    return coco.load_caption_split(shapes_dir, "test").image_paths[0]


@pytest.mark.parametrize("task", ["vqa", "retrieval"])
def test_caption_with_another_task_s_export(capsys, exports, image, task):
    code, _, err = run_cli(capsys, "caption", "--model", exports[task], image)
    assert_one_line_error(code, err, f"is a SavedModel of a {task} model", "needs a captioning model")


@pytest.mark.parametrize("task", ["captioning", "retrieval"])
def test_ask_with_another_task_s_export(capsys, exports, image, task):
    code, _, err = run_cli(capsys, "ask", "--model", exports[task], image, "what color is the circle")
    assert_one_line_error(code, err, f"is a SavedModel of a {task} model", "needs a vqa model")


@pytest.mark.parametrize("top_k", ["0", "-1"])
def test_ask_top_k_must_be_positive(capsys, trained_vqa, image, top_k):
    code, _, err = run_cli(capsys, "ask", "--model", trained_vqa[1], image, "what color is the circle",
                           "--top-k", top_k)
    assert_one_line_error(code, err, "--top-k", f"expected an integer >= 1, got {top_k}")


def test_ask_top_k_lists_that_many_answers(capsys, trained_vqa, image):
    code, out, _ = run_cli(capsys, "ask", "--model", trained_vqa[1], image, "what color is the circle",
                           "--top-k", "2")
    assert code == 0 and len(json.loads(out)["top_k"]) == 2


def test_a_damaged_model_archive_and_debug(capsys, tiny_model_dir, tmp_path, image):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
    (folder / "manifest.json").unlink()
    (folder / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run_cli(capsys, "caption", "--model", folder, image)
    assert_one_line_error(code, err, "model.keras' cannot be read", "the folder is damaged")
    code, _, err = run_cli(capsys, "--debug", "caption", "--model", folder, image)
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("vlm-keras: error:")


def test_a_bug_still_shows_its_traceback(capsys, monkeypatch, tiny_model_dir, image):
    from vlm_keras.captioning import Captioner

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(Captioner, "caption", broken)
    with pytest.raises(KeyError, match="a bug"):
        run_cli(capsys, "caption", "--model", tiny_model_dir, image)


def _full_disk(monkeypatch, free=1000):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(vlm_keras.io.shutil, "disk_usage",
                        lambda path: type(usage)(usage.total, usage.total - free, free))


def test_training_onto_a_full_disk_is_one_line_before_any_weights_are_written(capsys, monkeypatch, shapes_dir,
                                                                                tmp_path):
    _full_disk(monkeypatch)
    code, _, err = run_cli(capsys, "train", "captioner", "--data", shapes_dir, "--out", tmp_path / "m",
                           "--epochs", "1", "--image-size", "32", "--option", "units=8")
    assert_one_line_error(code, err, "not enough free disk space", "to write checkpoints", "MB needed")
    assert not list((tmp_path / "m").rglob("*.h5"))


def test_exporting_onto_a_full_disk(capsys, monkeypatch, tiny_model_dir, tmp_path):
    _full_disk(monkeypatch)
    code, _, err = run_cli(capsys, "export", "--model", tiny_model_dir, "--out", tmp_path / "sm")
    assert_one_line_error(code, err, "not enough free disk space", "the export")
    assert not (tmp_path / "sm").exists()


def test_the_console_script_leaves_cleanly_after_a_real_disk_error(tmp_path):
    """h5py crashes the interpreter's shutdown after writing onto a full disk (a segfault, exit
    139); the console script exits with its one-line error first."""
    script = f"""
        import errno, sys
        import keras, numpy as np
        import vlm_keras.cli as cli
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        def full_disk(args):
            raise OSError(errno.ENOSPC, "No space left on device", {str(tmp_path / 'x.h5')!r})
        cli.COMMANDS["export"] = full_disk
        sys.argv = ["vlm-keras", "export", "--model", "m", "--out", "o"]
        cli.run()
    """
    import textwrap

    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("vlm-keras: error: [Errno 28] No space left on device")


def test_evaluate_refuses_to_overwrite_its_own_annotations_before_any_work(capsys, tiny_model_dir, shapes_dir):
    target = shapes_dir / "annotations" / "captions_test.json"
    before = target.read_bytes()
    code, _, err = run_cli(capsys, "evaluate", "captioner", "--model", tiny_model_dir, "--data", shapes_dir,
                           "--predictions", target)
    assert_one_line_error(code, err, "captions_test.json", "which this run reads")
    assert "Encoding" not in err  # refused before the images were encoded
    assert target.read_bytes() == before
    code, _, err = run_cli(capsys, "evaluate", "captioner", "--model", tiny_model_dir, "--data", shapes_dir,
                           "--predictions", tiny_model_dir / "config.json")
    assert_one_line_error(code, err, "config.json", "which this run reads")
    code, _, err = run_cli(capsys, "evaluate", "captioner", "--model", tiny_model_dir, "--data", shapes_dir,
                           "--predictions", shapes_dir)
    assert_one_line_error(code, err, "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_evaluate_refuses_an_unwritable_place_before_any_work(capsys, tiny_model_dir, shapes_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run_cli(capsys, "evaluate", "captioner", "--model", tiny_model_dir, "--data", shapes_dir,
                           "--predictions", locked / "p.json")
    assert_one_line_error(code, err, "is not writable")


def test_train_refuses_another_task_s_model_folder(capsys, trained_vqa, shapes_dir):
    _, vqa_folder = trained_vqa
    before = (vqa_folder / "model.keras").read_bytes()
    code, _, err = run_cli(capsys, "train", "captioner", "--data", shapes_dir, "--out", vqa_folder, "--epochs", "1")
    assert_one_line_error(code, err, "holds a vqa model; refusing to write a captioning model over it")
    assert (vqa_folder / "model.keras").read_bytes() == before


def test_exports_and_model_folders_honour_the_umask(tiny_captioner, tmp_path):
    previous = os.umask(0o022)
    try:
        export = tiny_captioner.export(tmp_path / "sm")
        folder = tiny_captioner.save(tmp_path / "folder")
    finally:
        os.umask(previous)
    for path in [export, *export.rglob("*"), folder, *folder.iterdir()]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_a_second_writer_of_one_folder_is_refused(tmp_path):
    from vlm_keras.errors import OutputPathError
    from vlm_keras.io import folder_lock

    with folder_lock(tmp_path / "out", "the model folder"):
        with pytest.raises(OutputPathError, match=rf"the model folder '.*out' is being written by another "
                                                  rf"vlm-keras run \(process {os.getpid()}\)"):
            with folder_lock(tmp_path / "out", "the model folder"):
                pass
    with folder_lock(tmp_path / "out"):  # released
        pass


def test_two_trainings_into_one_folder(shapes_dir, tmp_path):
    """The second run is refused at once while the first holds the folder."""
    script = f"""
        import sys, time
        from vlm_keras.io import folder_lock
        with folder_lock({str(tmp_path / 'm')!r}):
            print("locked", flush=True)
            time.sleep(60)
    """
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = subprocess.run([sys.executable, "-m", "vlm_keras.cli", "train", "captioner", "--data", str(shapes_dir),
                              "--out", str(tmp_path / "m"), "--epochs", "1"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        assert f"is being written by another vlm-keras run (process {holder.pid})" in out.stderr
    finally:
        holder.kill()
        holder.wait()

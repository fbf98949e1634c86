"""A training run killed with SIGKILL mid-epoch resumes from its last backup and ends where an
uninterrupted run ends; logs; atomic checkpoint writes."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vlm_keras.fit import BestWeights, TrainingBackup, atomic_save_weights

# 32 train images x 5 captions = 160 examples; 8 per step -> 20 steps per epoch.
TRAIN = """
    import json, os, signal, sys, keras
    from vlm_keras import train_captioner

    class KillAt(keras.callbacks.Callback):
        '''SIGKILL this process after global step `at`: no cleanup, no flush, like a power cut.'''
        def __init__(self, at):
            super().__init__()
            self.at, self.seen = at, 0
        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == self.at:
                os.kill(os.getpid(), signal.SIGKILL)

    kill_at = int(sys.argv[2])
    r = train_captioner(data=DATA, epochs=3, image_size=32, units=16, embed_dim=8, num_layers=1,
                        dropout=0.3, batch_size=8, seed=5, verbose=0, eval_splits=("test",), out=sys.argv[1],
                        backup_every=3, callbacks=[KillAt(kill_at)] if kill_at else [])
    print(json.dumps({"bleu4": r.metrics["coco_bleu4_test"], "val_loss": r.history["val_loss"],
                      "resumed_from": r.metrics["resumed_from"]}))
"""


def _train(shapes_dir, out, kill_at=0):
    script = textwrap.dedent(TRAIN).replace("DATA", repr(str(shapes_dir)))
    return subprocess.run([sys.executable, "-c", script, str(out), str(kill_at)], capture_output=True,
                          text=True, timeout=600)


def test_sigkill_mid_epoch_then_the_same_command_resumes_and_matches(shapes_dir, tmp_path):
    whole = _train(shapes_dir, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = json.loads(whole.stdout.strip().splitlines()[-1])
    assert expected["resumed_from"] is None

    # Killed at step 27 = epoch 2, step 7; the last backup was taken at epoch 2, step 6.
    crashed = _train(shapes_dir, tmp_path / "crashed", kill_at=27)
    assert crashed.returncode == -signal.SIGKILL
    state = json.loads((tmp_path / "crashed" / "checkpoints" / "backup" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 6)
    assert not (tmp_path / "crashed" / "model.keras").exists()
    rows = list(csv.DictReader(open(tmp_path / "crashed" / "checkpoints" / "training.csv")))
    assert [r["epoch"] for r in rows] == ["0"]  # the CSV log survived the crash

    resumed = _train(shapes_dir, tmp_path / "crashed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert got["resumed_from"] == {"epoch": 1, "step": 6}
    np.testing.assert_allclose(got["val_loss"], expected["val_loss"], rtol=1e-4)
    assert got["bleu4"] == pytest.approx(expected["bleu4"], abs=1e-6)
    # Finished: the backup is gone, the model folder is whole, the log has every epoch once.
    assert not (tmp_path / "crashed" / "checkpoints" / "backup").exists()
    assert (tmp_path / "crashed" / "model.keras").is_file()
    rows = list(csv.DictReader(open(tmp_path / "crashed" / "checkpoints" / "training.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]


EVALUATION = """
    import json, os, signal, sys
    from vlm_keras import train_captioner
    from vlm_keras.captioning import Captioner

    if sys.argv[2] == "kill":  # SIGKILL once training is over, while the test split is evaluated
        Captioner.evaluate = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    r = train_captioner(data=DATA, epochs=2, image_size=32, units=16, embed_dim=8, num_layers=1, batch_size=16,
                        seed=5, verbose=0, eval_splits=("test",), out=sys.argv[1])
    print(json.dumps({"bleu4": r.metrics["coco_bleu4_test"], "val_loss": r.history["val_loss"],
                      "resumed_from": r.metrics["resumed_from"], "train_seconds": r.metrics["train_seconds"]}))
"""


def test_a_run_killed_after_training_keeps_its_model_and_resumes_without_training_again(shapes_dir, tmp_path):
    from vlm_keras import load_model, train_captioner
    from vlm_keras.errors import ResumeError

    script = textwrap.dedent(EVALUATION).replace("DATA", repr(str(shapes_dir)))
    out = tmp_path / "m"
    killed = subprocess.run([sys.executable, "-c", script, str(out), "kill"], capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # Nothing is lost: the model folder is complete (it loads, its manifest checks out) and the
    # backup that finished training is still there.
    saved = load_model(out)
    assert len(saved.history["val_loss"]) == 2 and "coco_bleu4_test" not in saved.metrics
    state = json.loads((out / "checkpoints" / "backup" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 0)
    rows = list(csv.DictReader(open(out / "checkpoints" / "training.csv")))

    # Other settings would train another model: refused, with the way out.
    with pytest.raises(ResumeError, match=r"epochs 2 there, 3 now.* run that command again to finish it, or "
                                          r"delete '.*backup'"):
        train_captioner(data=str(shapes_dir), epochs=3, image_size=32, units=16, embed_dim=8, num_layers=1,
                        batch_size=16, seed=5, verbose=0, eval_splits=("test",), out=out)

    # A backup written before an option existed lacks its key: named, not an empty list.
    state_file = out / "checkpoints" / "backup" / "state.json"
    original = state_file.read_text()
    older = json.loads(original)
    del older["settings"]["grounded_words"]
    state_file.write_text(json.dumps(older))
    with pytest.raises(ResumeError, match=r"\(grounded_words '\(not recorded\)' there, None now\)"):
        train_captioner(data=str(shapes_dir), epochs=2, image_size=32, units=16, embed_dim=8, num_layers=1,
                        batch_size=16, seed=5, verbose=0, eval_splits=("test",), out=out)
    state_file.write_text(original)

    # The same command again evaluates the trained model: no epoch is trained twice.
    resumed = subprocess.run([sys.executable, "-c", script, str(out), "run"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert got["resumed_from"] == {"epoch": 2, "step": 0}
    assert got["val_loss"] == saved.history["val_loss"] and got["train_seconds"] > 0
    assert list(csv.DictReader(open(out / "checkpoints" / "training.csv"))) == rows
    assert not (out / "checkpoints" / "backup").exists()
    final = load_model(out)
    assert final.metrics["coco_bleu4_test"] == pytest.approx(got["bleu4"])
    images = saved.encode_images(np.zeros((2, 32, 32, 3), np.float32))
    assert final.caption_features(images) == saved.caption_features(images)


def test_backup_state_always_names_a_complete_weights_file(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])
    model.compile("adam", "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    backup = TrainingBackup(tmp_path / "backup", every=1)
    backup.set_model(model)
    backup.save(0, 1)
    backup.save(0, 2)
    state = json.loads((tmp_path / "backup" / "state.json").read_text())
    assert state["step"] == 2
    files = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert files == sorted(["state.json", state["weights"]])  # the older weights file is gone
    seeds = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    assert len(state["seed_states"]) == len(seeds) == 1

    fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])
    fresh.compile("adam", "mse")
    restorer = TrainingBackup(tmp_path / "backup")
    restorer.set_model(fresh)
    assert restorer.restore() == (0, 2)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())


@pytest.mark.parametrize("monitor,mode,values,kept", [
    ("val_loss", "min", [0.5, 0.3, 0.4, 0.35], 1),
    ("val_accuracy", "max", [0.6, 0.7, 0.74, 0.73], 2),   # loss would have picked another epoch
])
def test_best_weights_keeps_the_best_epoch_by_the_monitored_value(tmp_path, monitor, mode, values, kept):
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    backup = TrainingBackup(tmp_path / "backup")
    best = BestWeights(tmp_path, monitor, backup, mode)
    best.set_model(model)
    for epoch, value in enumerate(values):
        model.set_weights([np.full((1, 1), float(epoch), np.float32)])      # weight = epoch
        best.on_epoch_end(epoch, {monitor: value})
    model.load_weights(tmp_path / "best.weights.h5")
    assert model.get_weights()[0].item() == kept
    assert backup.best == values[kept]
    model.load_weights(tmp_path / "latest.weights.h5")
    assert model.get_weights()[0].item() == len(values) - 1


def test_best_weights_rejects_an_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="'maximum'"):
        BestWeights(tmp_path, "val_accuracy", TrainingBackup(tmp_path / "backup"), mode="maximum")


def test_best_weights_names_a_monitor_that_is_never_logged(tmp_path):
    import keras

    best = BestWeights(tmp_path, "val_accuracy", TrainingBackup(tmp_path / "backup"), "max")
    best.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    with pytest.raises(ValueError, match=r"'val_accuracy' is not among the logged values \(loss, val_loss\)"):
        best.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.2})


def test_atomic_save_weights_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "latest.weights.h5"
    atomic_save_weights(model, path)
    before = path.read_bytes()

    def broken_save(self, filepath, **kwargs):
        open(filepath, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save_weights", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save_weights(model, path)
    assert path.read_bytes() == before


def test_tensorboard_logs_scalars_and_sample_captions(shapes_dir, tmp_path):
    import tensorflow as tf

    from vlm_keras import train_captioner

    train_captioner(data=str(shapes_dir), epochs=1, image_size=32, units=16, embed_dim=8, num_layers=1,
                    batch_size=16, seed=0, verbose=0, eval_splits=(), out=tmp_path / "m", tensorboard=True)
    board = tmp_path / "m" / "checkpoints" / "tensorboard"
    texts, scalars = [], set()
    for event_file in board.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.tag == "samples":
                    texts.append(tf.make_ndarray(value.tensor).item().decode())
                else:
                    scalars.add(value.tag)
    assert any("loss" in tag for tag in scalars)
    assert texts and texts[0].startswith("1. ")
    assert os.path.isfile(tmp_path / "m" / "checkpoints" / "training.csv")


def _tiny_fit(tmp_path, epochs, verbose=1):
    import keras
    import tensorflow as tf

    from vlm_keras.distribute import get_strategy
    from vlm_keras.fit import resumable_fit

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices((np.ones((8, 2), "float32"), np.ones((8, 1), "float32"))).batch(4)
    (tmp_path / "run").mkdir()
    return resumable_fit(model, lambda epoch, skip: data.skip(skip), data, epochs, tmp_path / "run",
                         strategy=get_strategy("default"), verbose=verbose)


def test_progress_counts_the_runs_epochs_and_prints_a_line_per_epoch_outside_a_terminal(tmp_path, capsys):
    _tiny_fit(tmp_path, 3)
    out = capsys.readouterr().out
    # Each epoch is its own fit(): the count is the run's (3), not fit()'s own ("Epoch 3/3", never "1/1").
    assert [line for line in out.splitlines() if line.startswith("Epoch ")] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    # Captured output is no terminal: one summary line per epoch, no carriage-return redraws.
    assert "\r" not in out and out.count("val_loss") == 3


def test_progress_redraws_in_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vlm_keras.fit.live_progress", lambda: True)
    _tiny_fit(tmp_path, 2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "\r" in out

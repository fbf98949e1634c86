"""The training loop every `train_*` shares: checkpoints, backups, resume after a crash, logs.

A run writes, under its checkpoint folder:
- `latest.weights.h5` and `best.weights.h5` after every epoch (best: the epoch with the best
  monitored value; by default the lowest validation loss);
- `backup/`: the weights, optimizer state, dropout RNG state, epoch and step, every
  `backup_every` steps and at every epoch end, with the run's settings and the seconds trained
  so far. Run the same command again after a crash (even SIGKILL) and training resumes from
  there; a command with other settings is refused (`ResumeError`). The backup outlives the
  training: `TrainingRun` deletes it (`discard_backup`) only once the model folder is written;
- `training.csv`: one row per epoch (always), and with `tensorboard=True` a `tensorboard/` folder.

Every file is written to a temporary sibling and renamed into place (`os.replace` is atomic), so
a crash leaves the previous good file, never half of a new one.

The training data of epoch e is shuffled by (seed, e) alone, and a resumed epoch skips the steps
already taken, so a resumed run sees the batches an uninterrupted run would have seen.
"""

import os
import pathlib
import shutil
import time

import keras
import numpy as np

from vlm_keras.distribute import fit_context
from vlm_keras.errors import ResumeError
from vlm_keras.io import atomic_write, ensure_free_space, live_progress, log, read_json, write_json

BACKUP_DIR = "backup"
CSV_LOG = "training.csv"


def atomic_save_weights(model, path):
    """`model.save_weights(path)` through a temporary file and an atomic rename, after checking
    that the disk can take it."""
    path = pathlib.Path(path)
    ensure_free_space(path.parent, weights_bytes(model.weights), f"'{path.name}'")
    return atomic_write(path, model.save_weights, suffix=".weights.h5")


def weights_bytes(variables):
    """The bytes `variables` take in a weights file (their values; the file adds a little)."""
    return int(sum(np.prod(v.shape, dtype=np.int64) * np.dtype(v.dtype).itemsize for v in variables))


def _seed_states(model):
    # Dropout's RNG state lives in SeedGenerator variables, which save_weights leaves out.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class TrainingBackup(keras.callbacks.Callback):
    """Writes the resumable state every `every` steps and at each epoch end.

    The weights file is written first under a new name, then `state.json` (pointing at it) is
    replaced atomically: whatever instant the process dies, `state.json` names a complete file.

    Args:
        backup_dir: the folder.
        every: steps between mid-epoch backups (None: epoch ends only).
        settings: a JSON dict of the run's settings; `restore` refuses a backup written with others.
    """

    def __init__(self, backup_dir, every=None, settings=None):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.every = every
        self.settings = settings
        self.epoch = 0
        self.first_step = 0  # steps of the current epoch that were taken before this fit()
        self.history = {}
        self.best = None
        self.seconds_before = 0.0  # training seconds of the processes before this one
        self.started = time.perf_counter()
        self._serial = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if self.every and step % self.every == 0:
            self.save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save(epoch + 1, 0)

    def save(self, epoch, step):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        weights_name = f"weights-{epoch}-{step}-{os.getpid()}-{self._serial}.weights.h5"
        variables = list(self.model.weights) + list(getattr(self.model.optimizer, "variables", []))
        ensure_free_space(self.backup_dir, weights_bytes(variables), "a training backup")
        self.model.save_weights(self.backup_dir / weights_name)
        state = {"epoch": epoch, "step": step, "weights": weights_name, "history": self.history,
                 "best": self.best, "settings": self.settings, "seconds": self.seconds,
                 "seed_states": [np.asarray(v.numpy()).tolist() for v in _seed_states(self.model)]}
        write_json(self.backup_dir / "state.json", state)
        for old in self.backup_dir.glob("weights-*.weights.h5"):
            if old.name != weights_name:
                old.unlink(missing_ok=True)

    @property
    def seconds(self):
        """Seconds trained so far, the processes before this one included."""
        return self.seconds_before + time.perf_counter() - self.started

    def restore(self):
        """Loads the last backup into the model; returns (epoch, step), or (0, 0) without one.

        Raises ResumeError when the backup was written by a run with other settings."""
        state = read_json(self.backup_dir / "state.json")
        if state is None:
            return 0, 0
        saved = state.get("settings")
        if self.settings is not None and saved is not None and saved != self.settings:
            # A key only one side has (an option added since the backup was written) is a change
            # too, even when this run's value is None: say so rather than list nothing.
            absent = "(not recorded)"
            changed = [f"{key} {saved.get(key, absent)!r} there, {self.settings.get(key, absent)!r} now"
                       for key in sorted(set(saved) | set(self.settings))
                       if saved.get(key, absent) != self.settings.get(key, absent)]
            raise ResumeError(f"'{self.backup_dir}' holds the backup of an unfinished run with other settings "
                              f"({'; '.join(changed)}); run that command again to finish it, or delete "
                              f"'{self.backup_dir}' (or choose another output folder) to start afresh")
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / state["weights"])
        for variable, value in zip(_seed_states(self.model), state["seed_states"]):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        self.history = state["history"]
        self.best = state["best"]
        self.seconds_before = float(state.get("seconds", 0.0))
        return state["epoch"], state["step"]


class BestWeights(keras.callbacks.Callback):
    """Keeps `latest.weights.h5` and `best.weights.h5` (the lowest `monitor` with mode "min", the
    highest with "max") in a folder, atomically."""

    def __init__(self, checkpoint_dir, monitor, backup, mode="min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r}: expected 'min' or 'max'")
        self.checkpoint_dir = pathlib.Path(checkpoint_dir)
        self.monitor = monitor
        self.mode = mode
        self.backup = backup  # where `best` survives a crash

    def _improves(self, value):
        best = self.backup.best
        return best is None or (value < best if self.mode == "min" else value > best)

    def on_epoch_end(self, epoch, logs=None):
        atomic_save_weights(self.model, self.checkpoint_dir / "latest.weights.h5")
        logs = logs or {}
        if self.monitor not in logs:
            # A name that is never logged would keep no best epoch at all, silently.
            raise ValueError(f"monitor {self.monitor!r} is not among the logged values "
                             f"({', '.join(sorted(logs)) or 'none'})")
        value = logs[self.monitor]
        if self._improves(value):
            self.backup.best = float(value)
            atomic_save_weights(self.model, self.checkpoint_dir / "best.weights.h5")


class TextSamples(keras.callbacks.Callback):
    """Writes `sample_fn()` (a list of strings, e.g. captions of a few validation images) to
    TensorBoard as text after every epoch."""

    def __init__(self, log_dir, sample_fn, name="samples"):
        super().__init__()
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.sample_fn = sample_fn
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        lines = self.sample_fn()
        with self.writer.as_default():
            tf.summary.text(self.name, "\n\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1)),
                            step=epoch + 1)
        self.writer.flush()


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting the run's epochs: each epoch is its own `fit()` (see
    `resumable_fit`), which would print "Epoch 5/5" when 8 are planned. Outside a terminal or a
    notebook it prints one line per epoch (`verbose=2`), not a redraw per step."""

    def __init__(self, epochs):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs
        if self.verbose == 1 and not live_progress():
            self.verbose = 2


def _require_tensorboard():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError("tensorboard=True needs the tensorboard package: "
                          "pip install 'vlm_keras[tensorboard]' (or pip install tensorboard)") from None


def resumable_fit(trained, make_train_dataset, val_data, epochs, checkpoint_dir, *, strategy,
                  verbose=1, backup_every=200, tensorboard=False, sample_fn=None, callbacks=(),
                  monitor="val_loss", mode="min", settings=None, metric_callbacks=()):
    """Trains `trained` for `epochs`, resuming from `checkpoint_dir/backup` when it holds a backup.

    Args:
        trained: a compiled model.
        make_train_dataset: `f(epoch, skip)` -> the batches of epoch `epoch` after the first
            `skip` steps; its order must depend on the epoch alone (see the module docstring).
        val_data: validation batches, or None (then the training counterpart of `monitor` picks the
            best epoch).
        epochs: epochs in the whole run, resumed epochs included.
        checkpoint_dir: the folder described in the module docstring.
        strategy: the `tf.distribute.Strategy` the model was built under.
        backup_every: steps between mid-epoch backups (None: only at epoch ends).
        tensorboard: also write TensorBoard scalars (and `sample_fn()`'s text) there.
        sample_fn: returns a few strings to log per epoch (only with `tensorboard`).
        callbacks: extra Keras callbacks.
        monitor: the logged value that picks the best epoch, e.g. "val_loss" or "val_accuracy";
            without `val_data`, its training counterpart ("loss", "accuracy").
        mode: "min" (the lowest value is best) or "max".
        settings: the run's settings (a JSON dict), kept with the backup: a backup written with
            other settings is refused instead of resumed.
        metric_callbacks: callbacks that add values to each epoch's logs (e.g. "val_cider_d");
            they run before the best epoch is picked and the logs are written.

    Returns:
        (history dict of per-epoch lists, seconds spent training, resumed runs included,
        resumed_from), where resumed_from is None or {"epoch", "step"}; the best epoch's weights
        are loaded. The backup is kept: `discard_backup` once the trained model is safely saved.
    """
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    if val_data is None:
        monitor = monitor.removeprefix("val_")
    backup = TrainingBackup(checkpoint_dir / BACKUP_DIR, every=backup_every, settings=settings)
    backup.set_model(trained)
    first_epoch, first_step = backup.restore()
    resumed = {"epoch": first_epoch, "step": first_step} if (first_epoch or first_step) else None
    if resumed and verbose:
        log(f"Training finished in an earlier run; its weights are in '{backup.backup_dir}'"
            if first_epoch >= epochs else
            f"Resuming from the backup in '{backup.backup_dir}': epoch {first_epoch + 1}, step {first_step}")
    if resumed is None:
        (checkpoint_dir / CSV_LOG).unlink(missing_ok=True)  # a fresh run starts a fresh log
    # BestWeights before the backup, so the backup records the `best` of the epoch it follows.
    all_callbacks = [*metric_callbacks, BestWeights(checkpoint_dir, monitor, backup, mode), backup,
                     keras.callbacks.CSVLogger(str(checkpoint_dir / CSV_LOG), append=True)]
    if tensorboard:
        _require_tensorboard()
        all_callbacks.append(keras.callbacks.TensorBoard(str(checkpoint_dir / "tensorboard")))
        if sample_fn is not None:
            all_callbacks.append(TextSamples(checkpoint_dir / "tensorboard" / "samples", sample_fn))
    all_callbacks.extend(callbacks)
    if verbose:
        all_callbacks.append(RunProgress(epochs))

    backup.started = time.perf_counter()
    with fit_context(trained, strategy):
        for epoch in range(first_epoch, epochs):
            skip = first_step if epoch == first_epoch else 0
            backup.first_step = skip
            # One fit() per epoch: each epoch gets its own (seed, epoch)-ordered dataset, and a
            # resumed epoch can start mid-way. Keras keeps the traced step across calls.
            trained.fit(make_train_dataset(epoch, skip), validation_data=val_data,
                        initial_epoch=epoch, epochs=epoch + 1, callbacks=all_callbacks,
                        verbose=verbose, shuffle=False)
    seconds = backup.seconds
    best = checkpoint_dir / "best.weights.h5"
    if best.is_file():
        trained.load_weights(best)
    return backup.history, seconds, resumed


def discard_backup(checkpoint_dir):
    """Deletes the resumable backup: call it once the trained model is safely saved."""
    shutil.rmtree(pathlib.Path(checkpoint_dir) / BACKUP_DIR, ignore_errors=True)

"""`TrainingRun`: the part of every `train_*` that does not depend on the task.

A trainer reads as: open a run from its config (`with TrainingRun(config) as run:` checks what can
fail before any work, locks the output folder, creates the `tf.distribute` strategy and seeds
everything), load its data (the evaluation splits too, so a broken one fails before training),
build its models under `run.scope()`, cache the frozen encoder's features (`run.features`),
`run.compile` and `run.fit` the trained model, and `run.finish`.

Nothing trained is lost to what follows training: `finish` saves the model folder first (on the
chief only, in a multi-worker run), then evaluates, then records the figures, and only then deletes
the resumable backup. If evaluation fails, or the process dies, the model folder is there and the
same command resumes from the backup: it skips the finished training and evaluates again.
"""

import contextlib
import pathlib
import tempfile
import time

import keras

from vlm_keras import __version__
from vlm_keras.bundle import CHECKPOINT_DIR, check_model_folder
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.sources import caption_source, vqa_source
from vlm_keras.data.text import Tokenizer
from vlm_keras.distribute import get_strategy, global_batch_size, is_chief
from vlm_keras.encoders.features import cached_features
from vlm_keras.encoders.vgg16 import build_image_encoder
from vlm_keras.fit import discard_backup, resumable_fit, weights_bytes
from vlm_keras.io import ensure_free_space, folder_lock, log
from vlm_keras.precision import adam, dtype_policy


# Options that do not change what is trained: a run resumed with other values of these is the same run.
NOT_TRAINING_SETTINGS = ("eval_splits", "tensorboard", "backup_every", "jit_compile")


class TrainingRun:
    """One training run of any task, from its config to its saved model folder; a context manager.

    Creating it checks what can fail in a second rather than after training (a bad `out`, one
    that holds another task's model), then creates the strategy (MultiWorkerMirroredStrategy
    must exist before TensorFlow runs any op) and seeds everything. Entering it locks `out`, so
    a second run writing there is refused instead of interleaving its files with this one's.

    Args:
        config: a `RunConfig` subclass (`CaptionerConfig`, `VQAConfig`, `RetrievalConfig`).
    """

    def __init__(self, config):
        if config.out:
            check_model_folder(config.out, config.TASK)
        self.config = config
        self.started = time.perf_counter()
        self.strategy = get_strategy(config.strategy)
        keras.utils.set_random_seed(config.seed)
        self.global_batch = global_batch_size(config.batch_size, self.strategy)
        self.history, self.train_seconds, self.resumed = {}, 0.0, None
        self._lock = contextlib.ExitStack()

    def __enter__(self):
        if self.config.out and is_chief(self.strategy):
            self._lock.enter_context(folder_lock(self.config.out, "the model folder"))
        return self

    def __exit__(self, *exc_info):
        self._lock.close()

    @property
    def verbose(self):
        return self.config.verbose

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @contextlib.contextmanager
    def scope(self):
        """Build models inside: the strategy's scope and the config's precision policy."""
        with self.strategy.scope(), dtype_policy(self.config.precision):
            yield

    # -- data and features ---------------------------------------------------------------------
    def source(self, questions=False):
        """The dataset the config names (`data`, or `annotations` / `questions` with `images`), in
        any published layout; with `questions`, a VQA dataset (the scenes get theirs written)."""
        config = self.config
        options = dict(num_images=config.num_images, seed=config.seed, data_root=config.data_root,
                       verbose=bool(self.verbose))
        if questions:
            return vqa_source(config.data, questions=config.questions, annotations=config.annotations,
                              images=config.images, **options)
        return caption_source(config.data, annotations=config.annotations, images=config.images, **options)

    def caption_data(self):
        """A captions dataset: (its source, its splits, the train split, the val split or None, the
        tokenizer built from every training caption)."""
        data_dir = self.source()
        train_split, val_split = train_and_val(data_dir)
        tokenizer = Tokenizer.from_texts([c for refs in train_split.captions for c in refs],
                                         max_length=self.config.max_length, min_count=self.config.min_word_count)
        if self.verbose:
            log(f"train: {len(train_split)} images, {sum(map(len, train_split.captions))} captions; "
                f"vocabulary {tokenizer.vocab_size} tokens; {tokenizer.describe_lengths('captions')}")
        return data_dir, data_dir.splits, train_split, val_split, tokenizer

    def build_encoder(self, trainable=False):
        """The config's image encoder (VGG16 at `image_size`, `weights`, `feature_layer`, `outline`)."""
        config = self.config
        with self.scope():
            return build_image_encoder(config.image_size, weights=config.weights, trainable=trainable,
                                       feature_layer=config.feature_layer, outline=config.resolved_outline)

    def features(self, encoder, image_paths, what):
        """The frozen encoder's features of `image_paths`, computed once, as one tensor, in
        `feature_precision` whatever `precision` trains in (a twin of `encoder` with its weights
        when the two differ)."""
        config = self.config
        if config.feature_precision != config.precision:
            if getattr(self, "_feature_encoder", None) is None:
                with dtype_policy(config.feature_precision):
                    self._feature_encoder = build_image_encoder(config.image_size, weights=None,
                                                                feature_layer=config.feature_layer,
                                                                outline=config.resolved_outline)
                self._feature_encoder.set_weights(encoder.get_weights())
            encoder = self._feature_encoder
        return cached_features(encoder, image_paths, config.image_size, verbose=self.verbose, what=what)

    # -- training ------------------------------------------------------------------------------
    def compile(self, trained, learning_rate=None, **compile_options):
        """Compiles `trained` with Adam (loss-scaled under mixed_float16) at `learning_rate` (a
        float or a schedule; default the config's) and the config's `jit_compile`."""
        if learning_rate is None:
            learning_rate = self.config.resolved_learning_rate
        with self.strategy.scope():
            trained.compile(optimizer=adam(learning_rate, self.config.precision),
                            jit_compile=self.config.jit_compile, **compile_options)

    def checkpoint_dir(self):
        """OUT/checkpoints, the configured folder, or a new temporary one; a folder of its own
        below it for every worker but the chief of a multi-worker run (two writers must never
        share a file)."""
        config = self.config
        folder = config.checkpoint_dir
        if folder is None:
            folder = (pathlib.Path(config.out) / CHECKPOINT_DIR if config.out
                      else pathlib.Path(tempfile.mkdtemp(prefix="vlm_keras_checkpoints_")))
        folder = pathlib.Path(folder)
        if not is_chief(self.strategy):
            folder = folder / f"worker_{self.strategy.cluster_resolver.task_id}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def fit(self, trained, train_batches, val_data, monitor="val_loss", mode="min", sample_fn=None,
            metric_callbacks=()):
        """`resumable_fit` with the config's settings; returns the per-epoch history.

        Args:
            trained: the compiled model.
            train_batches: `f(epoch, skip)` -> that epoch's batches after `skip` steps.
            val_data: validation batches, or None.
            monitor, mode: what picks the epoch whose weights are kept.
            sample_fn: strings logged to TensorBoard after each epoch (with `tensorboard`).
            metric_callbacks: callbacks that add values to the epoch's logs before `monitor` is read.
        """
        config = self.config
        self.checkpoint_folder = self.checkpoint_dir()
        # latest + best weights, and a backup with the optimizer's state: about 5 copies of the weights.
        ensure_free_space(self.checkpoint_folder, 5 * weights_bytes(trained.weights), "checkpoints")
        settings = {k: v for k, v in self.config.record().items() if k not in NOT_TRAINING_SETTINGS}
        settings.update(task=config.TASK, replicas=self.replicas)
        self.history, self.train_seconds, self.resumed = resumable_fit(
            trained, train_batches, val_data, config.epochs, self.checkpoint_folder, strategy=self.strategy,
            verbose=self.verbose, backup_every=config.backup_every or None, tensorboard=config.tensorboard,
            callbacks=config.callbacks, sample_fn=sample_fn, monitor=monitor, mode=mode, settings=settings,
            metric_callbacks=metric_callbacks)
        return self.history

    # -- the model folder ----------------------------------------------------------------------
    def model_config(self, model_type, **extra):
        """What config.json records: the run's options, the architecture and the versions."""
        return dict(self.config.record(), task=self.config.TASK, model_type=model_type, replicas=self.replicas,
                    vlm_keras_version=__version__, **extra)

    def finish(self, result, splits, describe, keys=None, metrics=None):
        """Saves, evaluates, records; returns `result`. See the module docstring for the order.

        Args:
            result: the trained `Captioner`, `VQAModel` or `RetrievalModel`.
            splits: [(split name, loaded split)] to score with `result.evaluate`.
            describe: `describe(report)` -> the line logged for each split.
            keys: {report key: metrics name} of the figures to keep (default: all, as named).
            metrics: figures to record besides the evaluation's.
        """
        result.history, result.checkpoint_dir = self.history, str(self.checkpoint_folder)
        all_metrics = {"train_seconds": self.train_seconds, "epochs": self.config.epochs,
                       "resumed_from": self.resumed, **(metrics or {})}
        result.metrics = all_metrics
        writes_folder = bool(self.config.out) and is_chief(self.strategy)
        if writes_folder:
            result.save(self.config.out)  # the trained model is safe before any evaluation
        elif self.config.out and self.verbose:
            log(f"worker {self.strategy.cluster_resolver.task_id}: the chief writes '{self.config.out}'")
        for split, data in splits:
            report = result.evaluate(data, verbose=self.verbose)
            for name, value in report.items():
                if keys is None or name in keys:
                    all_metrics[f"{keys[name] if keys else name}_{split}"] = value
            if self.verbose:
                log(f"{split}: {describe(report)}")
        all_metrics["seconds"] = time.perf_counter() - self.started
        if writes_folder:
            result.save_metrics(self.config.out)
        discard_backup(self.checkpoint_folder)  # everything is written: nothing left to resume
        return result


def train_and_val(source, what="dataset"):
    """A source's (train split, val split or None); DatasetError when it has no train split."""
    available = source.splits
    if "train" not in available:
        raise DatasetError(f"the {what} in '{source.root}' ({source.layout}) has no train split; splits: "
                           f"{', '.join(available) or 'none'}")
    return source.split("train"), source.split("val") if "val" in available else None

"""`ModelBundle`: a trained model with everything needed to use it, and its model folder.

Model folder layout (nanoGPT style: the config lives next to the weights):
    config.json    task, model type, image size, encoder, sizes, vocabularies
    model.keras    the end-to-end Keras model (sub-models "image_encoder" and the task's head)
    history.json   per-epoch training metrics        metrics.json   evaluation figures
    manifest.json  the SHA-256 of each file above: written last, checked by `load`
    checkpoints/   per-epoch weights written during training

A folder checks itself: `load` refuses a folder whose files do not match its manifest (an
interrupted save, an edited config.json) and one whose vocabularies do not fit the model's layer
shapes, with a one-line `ModelFolderError` that names the mismatch.
"""

import hashlib
import json
import pathlib
import zipfile

import keras
import numpy as np

from vlm_keras import __version__
from vlm_keras.data.text import Tokenizer
from vlm_keras.encoders.features import load_images
from vlm_keras.errors import ModelFolderError
from vlm_keras.fit import weights_bytes
from vlm_keras.io import LOCK_FILE, atomic_write, check_output_file, ensure_free_space, read_json, write_json

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
CHECKPOINT_DIR = "checkpoints"  # train_*(out=...) writes per-epoch weights here
FOLDER_FILES = (MODEL_FILE, "history.json", "metrics.json", CONFIG_FILE)


class ModelBundle:
    """Base of `Captioner`, `VQAModel` and `RetrievalModel`: the Keras model, its config, history
    and metrics.

    Subclasses set `TASK`. `_vocabularies()` says what to add to config.json and
    `_from_folder(model, config, history, metrics)` does the inverse; the defaults keep one
    `tokenizer` and suit a subclass built as `cls(model, tokenizer, config, ...)` (`Captioner`,
    `RetrievalModel`); `VQAModel` overrides them.

    Args:
        model: the end-to-end Keras model; its encoder is the sub-model "image_encoder".
        config: a JSON-serialisable dict; must hold "image_size".
        history: per-epoch training metrics, if it was trained in this process.
        metrics: evaluation figures.
        checkpoint_dir: where training wrote per-epoch weights.
    """

    TASK = None

    def __init__(self, model, config, history=None, metrics=None, checkpoint_dir=None):
        self.model = model
        self.config = dict(config, task=self.TASK)
        self.history = history or {}
        self.metrics = metrics or {}
        self.checkpoint_dir = checkpoint_dir
        self.folder = None  # the model folder it was loaded from or saved to

    @property
    def encoder(self):
        return self.model.get_layer("image_encoder")

    @property
    def image_size(self):
        return int(self.config["image_size"])

    def encode_images(self, images, batch_size=32):
        """File paths, encoded bytes or preprocessed (N, S, S, 3) arrays -> encoder features."""
        pixels = images if isinstance(images, np.ndarray) else load_images(images, self.image_size)
        if not len(pixels):
            return np.zeros((0,) + tuple(self.encoder.output_shape[1:]), np.float32)
        return self.encoder.predict(pixels, batch_size=batch_size, verbose=0)

    def check_predictions_path(self, path, split):
        """Raises OutputPathError, before any work, when `path` cannot take the predictions of an
        evaluation of `split`: a folder, an unwritable place, or a file the run reads (an
        annotation file of the dataset, a file of this model's folder)."""
        folders = {pathlib.Path(f).parent for f in getattr(split, "files", [])}
        if self.folder is not None:
            folders.add(pathlib.Path(self.folder))
        inputs = [p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_file()]
        check_output_file(path, inputs, "predictions file")

    def _vocabularies(self):
        return {"tokenizer": self.tokenizer.get_config()}

    @classmethod
    def _from_folder(cls, model, config, history, metrics):
        tokenizer = Tokenizer.from_config(config.pop("tokenizer"))
        return cls(model, tokenizer, config, history=history, metrics=metrics)

    def save(self, model_dir):
        """Writes the model folder. Each file is written under a temporary name and moved into
        place atomically, and manifest.json, which names them all with their checksums, last: a
        folder whose save was interrupted is refused by `load` rather than half-used. Other files
        in the folder (checkpoints) are kept."""
        model_dir = check_model_folder(model_dir, self.TASK)
        model_dir.mkdir(parents=True, exist_ok=True)
        ensure_free_space(model_dir, weights_bytes(self.model.weights), f"the model folder '{model_dir}'")
        config = dict(self.config, **self._vocabularies())
        atomic_write(model_dir / MODEL_FILE, lambda tmp: self.model.save(tmp), suffix=".keras")
        write_json(model_dir / "history.json", self.history, indent=1)
        write_json(model_dir / "metrics.json", self.metrics, indent=1)
        write_json(model_dir / CONFIG_FILE, config, indent=1)
        _write_manifest(model_dir)
        self.folder = model_dir
        return model_dir

    def save_metrics(self, model_dir):
        """Rewrites metrics.json (and the manifest) of a folder this bundle was saved to."""
        model_dir = pathlib.Path(model_dir)
        write_json(model_dir / "metrics.json", self.metrics, indent=1)
        _write_manifest(model_dir)

    @classmethod
    def load(cls, model_dir):
        """Loads a folder written by `save`, after checking that its files belong together.

        Raises:
            ModelFolderError: naming the folder and what is wrong: missing files, a config.json that
                is not the expected JSON object, a folder of another task, files that do not match
                the manifest, an unreadable model.keras, or vocabularies that do not fit the model.
        """
        model_dir = pathlib.Path(model_dir)
        if not model_dir.is_dir():
            raise ModelFolderError(f"model folder '{model_dir}' does not exist")
        if not (model_dir / CONFIG_FILE).is_file() or not (model_dir / MODEL_FILE).is_file():
            raise ModelFolderError(
                f"'{model_dir}' holds no vlm_keras model (expected {CONFIG_FILE} and {MODEL_FILE})")
        config = read_config(model_dir)
        task = config.get("task", "captioning")
        if task != cls.TASK:
            raise ModelFolderError(f"'{model_dir}' holds a {task} model, not a {cls.TASK} model")
        _check_manifest(model_dir)
        _register_custom_objects()
        try:
            model = keras.saving.load_model(model_dir / MODEL_FILE)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            raise ModelFolderError(f"'{model_dir / MODEL_FILE}' cannot be read ({type(error).__name__}: "
                                   f"{_first_line(error)}); the folder is damaged: train again, or restore "
                                   "it from a copy") from None
        try:
            bundle = cls._from_folder(model, config, read_json(model_dir / "history.json", {}),
                                      read_json(model_dir / "metrics.json", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelFolderError(f"'{model_dir / CONFIG_FILE}' lacks or mangles an entry the model needs "
                                   f"({type(error).__name__}: {_first_line(error)})") from None
        mismatches = [f"{what}: {expected} in {CONFIG_FILE}, {actual} in {MODEL_FILE}"
                      for what, expected, actual in bundle._sizes() if expected != actual]
        if mismatches:
            raise ModelFolderError(f"'{model_dir}': {CONFIG_FILE} does not belong to {MODEL_FILE} "
                                   f"({'; '.join(mismatches)})")
        bundle.folder = model_dir
        return bundle

    def _sizes(self):
        """[(what, the size config.json implies, the size the model has)] that must agree."""
        return [("image size", self.image_size, int(self.encoder.input_shape[1]))]


def read_config(model_dir):
    """config.json of a model folder as a dict; ModelFolderError when it is not a JSON object."""
    path = pathlib.Path(model_dir) / CONFIG_FILE
    try:
        config = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"'{path}' is not readable JSON ({_first_line(error)})") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"'{path}' holds {type(config).__name__}; expected a JSON object")
    return config


def _checksums(model_dir):
    sums = {}
    for name in FOLDER_FILES:
        digest = hashlib.sha256()
        with open(model_dir / name, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        sums[name] = digest.hexdigest()
    return sums


def _write_manifest(model_dir):
    write_json(model_dir / MANIFEST_FILE, {"files": _checksums(model_dir), "vlm_keras_version": __version__},
               indent=1)


def _check_manifest(model_dir):
    """Raises ModelFolderError when the folder's files differ from its manifest. Folders saved
    before manifests existed have none and are not checked."""
    manifest = read_json(model_dir / MANIFEST_FILE)
    if manifest is None:
        return
    expected = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        raise ModelFolderError(f"'{model_dir / MANIFEST_FILE}' is not a vlm_keras manifest")
    missing = [name for name in expected if not (model_dir / name).is_file()]
    if missing:
        raise ModelFolderError(f"'{model_dir}' lacks {', '.join(missing)}, which its manifest lists: the "
                               "save was interrupted; run the training command again to finish it")
    changed = [name for name, digest in _checksums(model_dir).items() if expected.get(name) != digest]
    if changed:
        raise ModelFolderError(f"'{model_dir}': {', '.join(changed)} changed after the folder was saved (they "
                               f"do not match {MANIFEST_FILE}): an interrupted save, or an edit; run the "
                               "training command again to rewrite the folder")


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _register_custom_objects():
    """Imports the layers a saved model may name: `keras.saving.load_model` finds them only once
    their registration decorators have run. (A task's own objects, such as the captioners' loss,
    are registered by its module, which any of its loads imports.)"""
    import vlm_keras.layers  # noqa: F401


def check_model_folder(model_dir, task=None):
    """Raises ModelFolderError unless `model_dir` is absent, empty, or a vlm_keras model folder (of
    `task`, when given).

    `train_*(out=...)` calls it before training, so a bad target fails in a second, not after an
    hour of training."""
    model_dir = pathlib.Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ModelFolderError(f"model folder '{model_dir}' exists and is not a folder")
    ours = {*FOLDER_FILES, MANIFEST_FILE, CHECKPOINT_DIR, LOCK_FILE}
    foreign = model_dir.is_dir() and any(p.name not in ours for p in model_dir.iterdir())
    has_config = (model_dir / CONFIG_FILE).is_file()
    if foreign and not has_config:
        raise ModelFolderError(
            f"refusing to write a model into '{model_dir}': it is not empty and holds no "
            f"{CONFIG_FILE} (it is not a vlm_keras model folder)")
    if task is not None and has_config:
        held = read_config(model_dir).get("task", "captioning")
        if held != task:
            raise ModelFolderError(f"'{model_dir}' holds a {held} model; refusing to write a {task} model "
                                   "over it (choose another output folder)")
    return model_dir

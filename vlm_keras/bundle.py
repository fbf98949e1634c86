"""`ModelBundle`: a trained model with everything needed to use it, and its model folder.

Model folder layout (nanoGPT style: the config lives next to the weights):
    config.json    task, model type, image size, encoder, sizes, vocabularies
    model.keras    the end-to-end Keras model (sub-models "image_encoder" and the task's head)
    history.json   per-epoch training metrics        metrics.json   evaluation figures
    checkpoints/   per-epoch weights written during training
"""

import pathlib

import keras
import numpy as np

from vlm_keras.data.text import Tokenizer
from vlm_keras.encoders.features import load_images
from vlm_keras.io import atomic_write, read_json, write_json

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"  # train_*(out=...) writes per-epoch weights here


class ModelFolderError(ValueError):
    """A folder that should hold a saved model does not."""


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

    def _vocabularies(self):
        return {"tokenizer": self.tokenizer.get_config()}

    @classmethod
    def _from_folder(cls, model, config, history, metrics):
        tokenizer = Tokenizer.from_config(config.pop("tokenizer"))
        return cls(model, tokenizer, config, history=history, metrics=metrics)

    def save(self, model_dir):
        """Writes the model folder. Each file is written under a temporary name and moved into
        place atomically, config.json last, so an interrupted save never leaves a half-written
        file where a good one was. Other files in the folder (checkpoints) are kept."""
        model_dir = check_model_folder(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        config = dict(self.config, **self._vocabularies())
        atomic_write(model_dir / MODEL_FILE, lambda tmp: self.model.save(tmp), suffix=".keras")
        write_json(model_dir / "history.json", self.history, indent=1)
        write_json(model_dir / "metrics.json", self.metrics, indent=1)
        write_json(model_dir / CONFIG_FILE, config, indent=1)
        return model_dir

    @classmethod
    def load(cls, model_dir):
        """Loads a folder written by `save`."""
        model_dir = pathlib.Path(model_dir)
        if not model_dir.is_dir():
            raise ModelFolderError(f"model folder '{model_dir}' does not exist")
        if not (model_dir / CONFIG_FILE).is_file() or not (model_dir / MODEL_FILE).is_file():
            raise ModelFolderError(
                f"'{model_dir}' holds no vlm_keras model (expected {CONFIG_FILE} and {MODEL_FILE})")
        config = read_json(model_dir / CONFIG_FILE)
        task = config.get("task", "captioning")
        if task != cls.TASK:
            raise ModelFolderError(f"'{model_dir}' holds a {task} model, not a {cls.TASK} model")
        _register_custom_objects()
        model = keras.saving.load_model(model_dir / MODEL_FILE)
        return cls._from_folder(model, config, read_json(model_dir / "history.json", {}),
                                read_json(model_dir / "metrics.json", {}))


def _register_custom_objects():
    """Imports the layers a saved model may name: `keras.saving.load_model` finds them only once
    their registration decorators have run. (A task's own objects, such as the captioners' loss,
    are registered by its module, which any of its loads imports.)"""
    import vlm_keras.layers  # noqa: F401


def check_model_folder(model_dir):
    """Raises ModelFolderError unless `model_dir` is absent, empty, or a vlm_keras model folder.

    `train_*(out=...)` calls it before training, so a bad target fails in a second, not after an
    hour of training."""
    model_dir = pathlib.Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ModelFolderError(f"model folder '{model_dir}' exists and is not a folder")
    ours = {CONFIG_FILE, MODEL_FILE, "history.json", "metrics.json", CHECKPOINT_DIR}
    foreign = model_dir.is_dir() and any(p.name not in ours for p in model_dir.iterdir())
    if foreign and not (model_dir / CONFIG_FILE).is_file():
        raise ModelFolderError(
            f"refusing to write a model into '{model_dir}': it is not empty and holds no "
            f"{CONFIG_FILE} (it is not a vlm_keras model folder)")
    return model_dir

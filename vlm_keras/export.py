"""SavedModel export: the parts every task's export shares, and loading an export.

An export is self-contained: image decoding, the encoder, the task's head (and for captions the
decoding loop) and the vocabularies are all in the graph, so it runs with TensorFlow alone, no
vlm_keras import. Each task writes its own signatures (`captioning.export`, `vqa.export`,
`retrieval.export`) through `write_export`, which writes the folder atomically and records what the
signatures take and return in `assets/vlm_keras.json`.

A SavedModel is code: loading one runs its graph. Load exports only from sources you trust.
"""

import json
import pathlib

import keras
import tensorflow as tf

from vlm_keras.errors import VlmKerasError
from vlm_keras.fit import weights_bytes
from vlm_keras.io import ensure_free_space, replace_directory, write_json

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_INFO_FILE = "vlm_keras.json"


class ExportError(VlmKerasError, ValueError):
    """The export target is unsafe to write, or a folder is not a SavedModel."""


def write_export(path, model, endpoints, info, overwrite=True, track=()):
    """Writes a SavedModel of `model` with the given signatures, atomically.

    Args:
        path: the export folder. An existing SavedModel there is replaced only with `overwrite`;
            a non-empty folder that is not a SavedModel is never touched.
        model: the Keras model whose variables the signatures use.
        endpoints: [(signature name, function, input signature)]; the first is also exported as
            "serving_default".
        info: a JSON-serialisable dict written to `assets/vlm_keras.json`.
        overwrite: replace an existing SavedModel at `path`.
        track: other resources the functions use (e.g. a tokenizer's lookup table).

    Returns:
        `path` as a `pathlib.Path`. The export is written to a temporary sibling folder and moved
        into place at the end: an interrupted export never replaces a good one.
    """
    path = pathlib.Path(path)
    check_target(path, overwrite)
    ensure_free_space(path.parent, weights_bytes(model.weights), f"the export '{path}'")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in track:
        archive.track(resource)
    for name, function, signature in endpoints:
        archive.add_endpoint(name, function, input_signature=signature)

    def write(folder):
        archive.write_out(str(folder), verbose=False)
        write_json(folder / "assets" / EXPORT_INFO_FILE, info, indent=1)

    return replace_directory(path, write)


def check_target(path, overwrite):
    """Raises ExportError unless `path` can take an export (absent, empty, or a SavedModel that
    `overwrite` allows replacing)."""
    path = pathlib.Path(path)
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"export path '{path}' exists and is not a folder")
        if any(path.iterdir()):
            if not (path / SAVED_MODEL_FILE).is_file():
                raise ExportError(f"refusing to export into '{path}': it is not empty and is not a SavedModel")
            if not overwrite:
                raise ExportError(f"'{path}' already holds a SavedModel; pass overwrite=True to replace it")


def is_saved_model(path):
    return (pathlib.Path(path) / SAVED_MODEL_FILE).is_file()


def load_saved_model(path):
    """Loads an export; returns (the loaded object, its serving_default signature, the info dict).

    Loading runs the export's graph: load only exports from sources you trust.
    """
    path = pathlib.Path(path)
    if not is_saved_model(path):
        raise ExportError(f"'{path}' is not a SavedModel (no {SAVED_MODEL_FILE})")
    loaded = tf.saved_model.load(str(path))
    info = {}
    info_file = path / "assets" / EXPORT_INFO_FILE
    if info_file.is_file():
        with open(info_file, encoding="utf-8") as f:
            info = json.load(f)
    return loaded, loaded.signatures["serving_default"], info

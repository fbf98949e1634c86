"""`load_model`: any vlm_keras model folder, as the task class its config names.

It lives apart from `bundle.py` so that the base class imports none of its subclasses.
"""

import pathlib

from vlm_keras.bundle import CONFIG_FILE, read_config
from vlm_keras.captioning import Captioner
from vlm_keras.retrieval import RetrievalModel
from vlm_keras.vqa import VQAModel

TASK_CLASSES = {"captioning": Captioner, "vqa": VQAModel, "retrieval": RetrievalModel}


def load_model(model_dir):
    """Loads any vlm_keras model folder: a `Captioner`, a `VQAModel` or a `RetrievalModel`, by the
    task in its config (folders without one are captioners, as the first releases wrote them)."""
    model_dir = pathlib.Path(model_dir)
    task = read_config(model_dir).get("task", "captioning") if (model_dir / CONFIG_FILE).is_file() else "captioning"
    return TASK_CLASSES.get(task, Captioner).load(model_dir)

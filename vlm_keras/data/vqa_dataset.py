"""Writes questions about the synthetic scenes in the VQA v2 format (layout: see `vqa.py`)."""

import hashlib
import json
import pathlib

import numpy as np

from vlm_keras.data.coco import DatasetError
from vlm_keras.data.questions import generate_questions, human_answers
from vlm_keras.data.shapes import SPLITS, Scene, check_int
from vlm_keras.data.coco import _entry_name, _is_int, _read_json_object
from vlm_keras.data.vqa import HUMAN_ANSWERS, _require_list, vqa_files, write_vqa_split_files

VQA_VERSION = "1.0"
DATA_TYPE = "vlm_scenes"
_QUESTION_ID_STRIDE = 100  # question id = image_id * 100 + k


def write_vqa_dataset(data_dir, seed=0, questions_per_image=6):
    """Writes VQA v2 question and annotation files for every split of a scenes dataset.

    A split whose two files exist with the same settings (recorded in their "info", with a hash
    of the scenes file they were made from) is kept as it is.

    Args:
        data_dir: a scenes dataset written by `shapes_dataset.write_shapes_dataset`.
        seed: non-negative int; different seeds give different questions.
        questions_per_image: questions per image, 1 to 99.

    Returns:
        `data_dir` as a `pathlib.Path`.

    Raises:
        DatasetError: if `data_dir` holds no `annotations/scenes_<split>.json`, or one is bad.
        ValueError: naming the file, if existing VQA files were written with other settings or
            from another scenes file (remove them to write new ones).
    """
    data_dir = pathlib.Path(data_dir)
    splits = [s for s in SPLITS if _scenes_file(data_dir, s).is_file()]
    if not splits:
        raise DatasetError(
            f"no annotations/scenes_<split>.json in '{data_dir}'; expected a scenes dataset "
            "written by write_shapes_dataset"
        )
    for split in splits:
        settings = _settings(data_dir, split, seed, questions_per_image)
        if not all(_written_with(file, settings) for file in vqa_files(data_dir, split)):
            write_vqa_split(data_dir, split, seed, questions_per_image)
    return data_dir


def write_vqa_split(data_dir, split, seed=0, questions_per_image=6):
    """Writes `questions_<split>.json` and `vqa_<split>.json` from `scenes_<split>.json`.

    Each image's questions come from `np.random.default_rng([seed, split index, image_id, 1])`
    (the last number keeps this stream apart from the scenes' own), so they do not depend on
    the other images. Held-out colour-shape pairs are named only in the "compositional" split.
    The same inputs give byte-identical files; each file is written atomically.

    Args:
        data_dir: a scenes dataset folder.
        split: one of `shapes.SPLITS`.
        seed: non-negative int.
        questions_per_image: questions per image, 1 to 99.

    Returns:
        `(questions_file, annotations_file)` as `pathlib.Path`s.
    """
    data_dir = pathlib.Path(data_dir)
    settings = _settings(data_dir, split, seed, questions_per_image)
    info = {"description": "vlm_keras synthetic scene questions", **settings}
    entries = []
    for image_id, scene in _read_scenes(_scenes_file(data_dir, split)):
        rng = np.random.default_rng([seed, SPLITS.index(split), image_id, 1])
        generated = generate_questions(scene, rng, questions_per_image,
                                       allow_heldout=split == "compositional")
        for k, qa in enumerate(generated):
            entries.append({
                "question_id": image_id * _QUESTION_ID_STRIDE + k, "image_id": image_id,
                "question": qa["question"], "question_type": qa["question_type"],
                "answer_type": qa["answer_type"], "multiple_choice_answer": qa["answer"],
                "answers": human_answers(qa, rng, HUMAN_ANSWERS),
            })
    return write_vqa_split_files(data_dir, split, entries, info, DATA_TYPE)


def _settings(data_dir, split, seed, questions_per_image):
    if split not in SPLITS:
        raise ValueError(f"split is {split!r}; expected one of {SPLITS}")
    scenes_file = _scenes_file(data_dir, split)
    if not scenes_file.is_file():
        raise DatasetError(f"scenes '{scenes_file}' does not exist")
    return {
        "version": VQA_VERSION,
        "seed": check_int("seed", seed, 0),
        "questions_per_image": _check_questions_per_image(questions_per_image),
        "split": split,
        "scenes_sha256": hashlib.sha256(scenes_file.read_bytes()).hexdigest(),
    }


def _check_questions_per_image(value):
    value = check_int("questions_per_image", value, 1)
    if value >= _QUESTION_ID_STRIDE:
        raise ValueError(f"questions_per_image is {value}; expected at most "
                         f"{_QUESTION_ID_STRIDE - 1} (question ids are image_id * 100 + k)")
    return value


def _written_with(path, settings):
    """True if `path` exists with `settings` in its "info", False if it does not exist.

    Raises ValueError, naming `path`, if it exists with other settings or cannot be read.
    """
    if not path.exists():
        return False
    try:
        with open(path, encoding="utf-8") as file:
            info = json.load(file)["info"]
        existing = {key: info.get(key) for key in settings}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"'{path}' exists but its settings cannot be read ({error}); "
                         "remove it to write new VQA files") from error
    differences = [f"{key} is {existing[key]!r} there, {value!r} requested"
                   for key, value in settings.items() if existing[key] != value]
    if differences:
        raise ValueError(f"'{path}' was written with other settings ({'; '.join(differences)}); "
                         "remove it to write new VQA files")
    return True


def load_scenes(data_dir, split):
    """{image_id: `Scene`} from a scenes dataset's `annotations/scenes_<split>.json`, validated."""
    scenes_file = _scenes_file(data_dir, split)
    if not scenes_file.is_file():
        raise DatasetError(f"scenes '{scenes_file}' does not exist")
    return dict(_read_scenes(scenes_file))


def _scenes_file(data_dir, split):
    return pathlib.Path(data_dir) / "annotations" / f"scenes_{split}.json"


def _read_scenes(path):
    """Yields (image_id, Scene) from a scenes file, checking each entry."""
    where = f"scenes '{path}'"
    content = _read_json_object(path, where, ("scenes",))
    index_by_id = {}
    for index, entry in enumerate(_require_list(content, "scenes", where)):
        name = _entry_name("scene", index, entry, "image_id")
        if not isinstance(entry, dict) or not _is_int(entry.get("image_id")):
            raise DatasetError(f'{where}: {name} has no int "image_id"')
        if entry["image_id"] in index_by_id:
            raise DatasetError(f"{where}: {name} repeats image_id {entry['image_id']} of scene "
                               f"#{index_by_id[entry['image_id']]}")
        index_by_id[entry["image_id"]] = index
        try:
            scene = Scene.from_dict(entry.get("scene") or {})
        except (ValueError, TypeError, AttributeError) as error:
            raise DatasetError(f"{where}: {name} is not a valid scene: {error}") from error
        yield entry["image_id"], scene


# --- loading -----------------------------------------------------------------------------------

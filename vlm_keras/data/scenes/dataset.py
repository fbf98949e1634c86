"""Writes the synthetic scenes to disk: images and captions in the COCO captions layout
(`write_scenes_dataset`), and their questions in the VQA v2 layout (`write_vqa_dataset`).
"""

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import pathlib
import shutil
import uuid

import numpy as np

from vlm_keras.data.formats.coco import write_coco_captions
from vlm_keras.data.formats.reader import DatasetError, read_json_object, require_list, unique_entries
from vlm_keras.data.formats.vqa import HUMAN_ANSWERS, vqa_files, write_vqa_split_files
from vlm_keras.data.scenes.captions import render_example
from vlm_keras.data.scenes.questions import generate_questions, human_answers
from vlm_keras.data.scenes.scenes import DATASET_VERSION, HELDOUT_PAIRS, SPLITS, Scene, check_int
from vlm_keras.io import log, write_json, write_text

_INFO_FILE = "dataset_info.json"
VQA_VERSION = "1.0"
DATA_TYPE = "vlm_scenes"
_QUESTION_ID_STRIDE = 100  # question id = image_id * 100 + k


def write_scenes_dataset(
    out_dir, num_images=6000, seed=0, image_size=128, num_compositional=None, progress=True
):
    """Writes the synthetic scenes dataset in COCO captions layout.

        out_dir/annotations/captions_<split>.json   COCO captions, 5 per image
        out_dir/annotations/scenes_<split>.json     {"scenes": [{"image_id", "scene"}, ...]}
        out_dir/<split>/000000000001.png ...
        out_dir/dataset_info.json                   the settings; written last

    The dataset is built in a hidden sibling folder and renamed to `out_dir` when complete, so
    an interrupted run leaves no `out_dir`. Output is byte-identical for the same settings.

    Args:
        out_dir: dataset folder. If it already holds a dataset with the same settings it is
            reused; an existing folder with anything else in it raises ValueError.
        num_images: train + val + test images (>= 10), split 80/10/10.
        seed: non-negative int; different seeds give different data.
        image_size: side of the square PNG images in pixels.
        num_compositional: images in the "compositional" split (held-out colour-shape pairs);
            None means as many as test, 0 means no such split.
        progress: print a progress line to stderr every 10%.

    Returns:
        `out_dir` as a `pathlib.Path`.
    """
    counts = _split_counts(num_images, num_compositional)
    settings = {
        "version": DATASET_VERSION,
        "seed": check_int("seed", seed, 0),
        "num_images": counts["train"] + counts["val"] + counts["test"],
        "image_size": check_int("image_size", image_size, 16),
        "num_compositional": counts["compositional"],
    }
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        _check_existing(out_dir, settings)
        if progress:
            log(f"scenes: reusing '{out_dir}'")
        return out_dir

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden sibling; mkdir (unlike mkdtemp's 0700) keeps the user's umask.
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        _write_splits(staging, counts, settings, progress)
        info = {**settings, "splits": counts, "heldout_pairs": [list(p) for p in HELDOUT_PAIRS]}
        write_text(staging / _INFO_FILE, json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty: checked above
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only the staging folder we created
        raise
    return out_dir


def _split_counts(num_images, num_compositional):
    num_images = check_int("num_images", num_images, 10)  # 10 keeps every split non-empty
    train, val = num_images * 8 // 10, num_images // 10
    test = num_images - train - val
    if num_compositional is None:
        num_compositional = test
    num_compositional = check_int("num_compositional", num_compositional, 0)
    return {"train": train, "val": val, "test": test, "compositional": num_compositional}


def _check_existing(out_dir, settings):
    """Returns if `out_dir` is a complete dataset with `settings`; raises ValueError if not."""
    advice = "choose another out_dir or remove it"
    info_file = out_dir / _INFO_FILE
    if not info_file.is_file():
        raise ValueError(
            f"out_dir '{out_dir}' exists and is not a scenes dataset (no {_INFO_FILE}); {advice}"
        )
    try:
        existing = json.loads(info_file.read_text())
        splits = dict(existing["splits"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"out_dir '{out_dir}': cannot read {_INFO_FILE} ({error}); {advice}")
    differences = [
        f"{key} is {existing.get(key)!r} there, {value!r} requested"
        for key, value in settings.items()
        if existing.get(key) != value
    ]
    if differences:
        raise ValueError(
            f"out_dir '{out_dir}' holds a scenes dataset with different settings "
            f"({'; '.join(differences)}); {advice}"
        )
    for split, count in splits.items():
        if count and not (out_dir / "annotations" / f"captions_{split}.json").is_file():
            raise ValueError(
                f"out_dir '{out_dir}' is incomplete: no captions_{split}.json; {advice}"
            )


def _write_splits(root, counts, settings, progress):
    """Renders every split into `root`. Image ids run from 1 across all splits."""
    (root / "annotations").mkdir()
    total, done, next_id = sum(counts.values()), 0, 1
    step = max(1, total // 10)
    for split_index, split in enumerate(SPLITS):
        if counts[split] == 0:
            continue
        (root / split).mkdir()
        images, captions, scenes = [], {}, []
        first_id = next_id
        # One stream per image: image i is the same whatever the other splits' sizes, and whichever
        # process renders it.
        jobs = [(settings["seed"], split_index, index, split == "compositional", settings["image_size"],
                 root / split / f"{first_id + index:012d}.png") for index in range(counts[split])]
        for job, (scene, references) in zip(jobs, _render(jobs)):
            images.append({"id": next_id, "file_name": job[-1].name,
                           "width": settings["image_size"], "height": settings["image_size"]})
            captions[next_id] = references
            scenes.append({"image_id": next_id, "scene": scene})
            next_id, done = next_id + 1, done + 1
            if progress and (done % step == 0 or done == total):
                log(f"scenes: {done}/{total} images")
        info = {
            "description": "vlm_keras synthetic scenes", "seed": settings["seed"],
            "image_size": settings["image_size"], "heldout_pairs": [list(p) for p in HELDOUT_PAIRS],
            "version": DATASET_VERSION, "split": split,
        }
        write_coco_captions(root / "annotations" / f"captions_{split}.json", images, captions, info)
        write_json(root / "annotations" / f"scenes_{split}.json", {"scenes": scenes})


def _render(jobs, parallel_from=1000):
    """`render_example` over `jobs`, in order; in worker processes (one a core, up to 4) for large
    splits. The workers are spawned, not forked: the parent may hold TensorFlow's threads."""
    workers = min(4, os.cpu_count() or 1)
    if len(jobs) < parallel_from or workers < 2:
        yield from map(render_example, jobs)
        return
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(render_example, jobs, chunksize=64)


def write_vqa_dataset(data_dir, seed=0, questions_per_image=6):
    """Writes VQA v2 question and annotation files for every split of a scenes dataset.

    A split whose two files exist with the same settings (recorded in their "info", with a hash
    of the scenes file they were made from) is kept as it is.

    Args:
        data_dir: a scenes dataset written by `write_scenes_dataset`.
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
    content = read_json_object(path, where, ("scenes",))
    for entry, name, image_id in unique_entries(require_list(content, "scenes", where), "scene", "image_id", where):
        try:
            scene = Scene.from_dict(entry.get("scene") or {})
        except (ValueError, TypeError, AttributeError) as error:
            raise DatasetError(f"{where}: {name} is not a valid scene: {error}") from error
        yield image_id, scene

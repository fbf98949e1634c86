"""TFDS datasets written out once as folders in the COCO captions (and VQA v2) layout.

Every trainer reads folders (`formats.coco.load_caption_split`, `formats.vqa.load_vqa_split`), so a
TFDS dataset becomes one: `tfds_dataset_dir("coco_captions", root)` reads the prepared dataset split by split
and writes

    root/tfds-coco_captions-2014-1.1.0/annotations/captions_<split>.json
    root/tfds-coco_captions-2014-1.1.0/<split>/<image_id:012d>.jpg   (the encoded bytes, as stored)
    root/tfds-coco_captions-2014-1.1.0/annotations/{questions,vqa}_<split>.json   (with questions)
    root/tfds-coco_captions-2014-1.1.0/tfds_source.json             (written last)

Features understood (others, such as coco_captions' "objects", are not read):

    image       an Image feature (required)
    image_id or image/id    ints (else images are numbered from 1)
    captions    Sequence(Text) as in vlm_scenes, or Sequence({"text", ...}) as in coco_captions
    questions   Sequence({question_id, question, question_type, answer_type, answers,
                multiple_choice_answer}) as in vlm_scenes (optional)

TFDS datasets are read from `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`. Only vlm_scenes is
built here (offline, in seconds to minutes); any other dataset must be prepared first
(`tfds build coco_captions`, which downloads it): nothing here starts a download.
"""

import io
import json
import os
import pathlib
import shutil
import uuid

import tensorflow_datasets as tfds
from PIL import Image

from vlm_keras.data.formats.coco import write_coco_captions
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.formats.vqa import write_vqa_split_files
from vlm_keras.data.scenes.tfds import VlmScenes  # also registers "vlm_scenes" with TFDS
from vlm_keras.io import log

_SOURCE_FILE = "tfds_source.json"
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif"}
_QUESTION_KEYS = ("question_id", "question", "question_type", "answer_type", "answers",
                  "multiple_choice_answer")


def tfds_data_dir():
    """Where TFDS datasets are read from (and vlm_scenes built): $TFDS_DATA_DIR, else TFDS's default."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def tfds_dataset_dir(name, root, verbose=True):
    """Returns a folder in the COCO captions layout holding the TFDS dataset `name`.

    The folder is written on first use under `root` and reused afterwards.

    Args:
        name: a TFDS name: "vlm_scenes/tiny", "coco_captions", "coco_captions/2014:1.1.0".
        root: the folder that holds the written datasets.
        verbose: print a line to stderr per split written.

    Raises:
        DatasetError: naming the dataset, if TFDS does not know it, it is not prepared in
            `tfds_data_dir()`, or it has no image or caption features.
    """
    builder = _builder(name)
    config = [builder.builder_config.name] if builder.builder_config else []
    out_dir = pathlib.Path(root) / "-".join(["tfds", builder.name, *config, str(builder.version)])
    if (out_dir / _SOURCE_FILE).is_file():
        return out_dir
    if out_dir.exists():
        raise DatasetError(f"'{out_dir}' exists but holds no {_SOURCE_FILE}; remove it so that "
                           f"TFDS dataset '{name}' can be written there")
    _prepare(builder, name)
    layout = _layout(builder, name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written in a hidden sibling and renamed when complete: a crash leaves no half dataset.
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        counts, next_id = {}, 1
        for split in builder.info.splits:
            counts[split], next_id = _write_split(builder, layout, staging, split, next_id)
            if verbose:
                log(f"{name}: {split}: {counts[split]} images")
        (staging / _SOURCE_FILE).write_text(json.dumps(
            {"tfds": builder.info.full_name, "data_dir": tfds_data_dir(), "splits": counts},
            indent=2) + "\n")
        try:
            os.rename(staging, out_dir)
        except OSError:
            if not (out_dir / _SOURCE_FILE).is_file():
                raise
            # Another process wrote the same dataset first: use its folder.
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only the staging folder this call made
    return out_dir


def _builder(name):
    try:
        return tfds.builder(name, data_dir=tfds_data_dir())
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(f"TFDS has no dataset '{name}' (`tfds.list_builders()` lists those "
                           "it has)") from None
    except ValueError as error:  # an unknown config or version
        # TFDS: 'Failed to construct dataset "x", builder_kwargs "{...}": BuilderConfig y not
        # found with version 1.0.0. Here are 10 BuilderConfigs whose name closely match: ...'
        reason = str(error).splitlines()[0].split('": ')[-1].split(" Here are")[0]
        configs = [c.name for c in tfds.builder_cls(name.split("/")[0].split(":")[0]).BUILDER_CONFIGS]
        raise DatasetError(f"TFDS dataset '{name}' cannot be loaded: {reason}"
                           + (f" Its configs: {', '.join(configs)}." if configs else "")) from None


def _prepare(builder, name):
    if isinstance(builder, VlmScenes):
        builder.download_and_prepare()  # renders the scenes: no download
    elif not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset '{name}' is not prepared in '{tfds_data_dir()}'; it may need "
            f"downloading first, with internet access: `tfds build {name} --data_dir "
            f"{tfds_data_dir()}` (or set TFDS_DATA_DIR to the folder that already holds it)")
    if not builder.info.splits:
        raise DatasetError(f"TFDS dataset '{name}' in '{tfds_data_dir()}' has no splits")


def _layout(builder, name):
    """Which features hold the image id, the captions and the questions; checks they exist."""
    features = builder.info.features
    keys = set(features.keys())
    # The element of the "captions" Sequence: a string, or a dict with "text" (coco_captions).
    element = getattr(features["captions"], "feature", None) if "captions" in keys else None
    caption_text = isinstance(element, tfds.features.FeaturesDict) and "text" in element.keys()
    if not (isinstance(features["image"] if "image" in keys else None, tfds.features.Image)
            and (caption_text or isinstance(element, tfds.features.Text))):
        raise DatasetError(
            f"TFDS dataset '{name}' has features {sorted(keys)}; expected an 'image' and "
            "'captions' (a sequence of strings, or of {'text': ...} as in coco_captions)")
    questions = getattr(features["questions"], "feature", None) if "questions" in keys else None
    has_questions = (isinstance(questions, tfds.features.FeaturesDict)
                     and set(_QUESTION_KEYS) <= set(questions.keys()))
    id_key = next((key for key in ("image_id", "image/id") if key in keys), None)
    return {"id": id_key, "caption_text": caption_text, "questions": has_questions}


def _write_split(builder, layout, out_dir, split, next_id):
    """Writes one split's images, captions (and questions); returns (images, next free id).

    Ids come from the dataset's id feature, else they are numbered on from `next_id`.
    """
    wanted = {"image": True, "captions": {"text"} if layout["caption_text"] else True}
    if layout["id"]:
        wanted[layout["id"]] = True
    if layout["questions"]:
        wanted["questions"] = set(_QUESTION_KEYS)
    decoders = tfds.decode.PartialDecoding(wanted, decoders={"image": tfds.decode.SkipDecoding()})
    dataset = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)

    (out_dir / split).mkdir(parents=True)
    images, captions, questions = [], {}, []
    for example in tfds.as_numpy(dataset):
        if layout["id"]:
            image_id = int(example[layout["id"]])
        else:
            image_id, next_id = next_id, next_id + 1
        if image_id in captions:
            raise DatasetError(f"TFDS dataset '{builder.info.full_name}', split '{split}': "
                               f"image id {image_id} repeats")
        images.append(_write_image(example["image"], out_dir / split, image_id, builder, split))
        texts = example["captions"]["text"] if layout["caption_text"] else example["captions"]
        captions[image_id] = [_text(t) for t in _to_list(texts)]
        if layout["questions"]:
            questions.extend(_questions(example["questions"], image_id))
    if not images:  # nothing to train or evaluate on: no split at all
        (out_dir / split).rmdir()
        return 0, next_id
    # TFDS stores examples shuffled; the files list them by image id, as COCO's do.
    images.sort(key=lambda image: image["id"])
    questions.sort(key=lambda question: question["image_id"])  # stable: each image's in order
    write_coco_captions(out_dir / "annotations" / f"captions_{split}.json", images, captions,
                        {"description": f"TFDS {builder.info.full_name}", "split": split})
    if questions:
        write_vqa_split_files(out_dir, split, questions,
                              {"description": f"TFDS {builder.info.full_name}", "split": split},
                              builder.name)
    return len(images), next_id


def _write_image(encoded, folder, image_id, builder, split):
    """Writes the encoded bytes as they are; returns the COCO "images" entry."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image_format, (width, height) = image.format, image.size
    except OSError as error:
        raise DatasetError(f"TFDS dataset '{builder.info.full_name}', split '{split}': image "
                           f"{image_id} cannot be read ({error})") from None
    if image_format not in _EXTENSIONS:
        raise DatasetError(f"TFDS dataset '{builder.info.full_name}', split '{split}': image "
                           f"{image_id} is {image_format}; expected JPEG, PNG, BMP or GIF")
    file_name = f"{image_id:012d}{_EXTENSIONS[image_format]}"
    (folder / file_name).write_bytes(encoded)
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def _questions(fields, image_id):
    """The VQA entries of one image from its `questions` feature (a dict of per-question lists)."""
    columns = {key: _to_list(fields[key]) for key in _QUESTION_KEYS}
    return [{
        "question_id": int(columns["question_id"][i]), "image_id": image_id,
        "question": _text(columns["question"][i]),
        "question_type": _text(columns["question_type"][i]),
        "answer_type": _text(columns["answer_type"][i]),
        "multiple_choice_answer": _text(columns["multiple_choice_answer"][i]),
        "answers": [_text(a) for a in columns["answers"][i]],
    } for i in range(len(columns["question_id"]))]


def _to_list(value):
    """A numpy array or a tf.RaggedTensor (nested sequences) as nested Python lists."""
    return value.to_list() if hasattr(value, "to_list") else list(value)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

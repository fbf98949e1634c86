"""Turns a user's `data=` argument (or explicit annotation files) into a dataset layout.

`data` is, by the first rule that applies:

1. "scenes" (or its old name "shapes"): the synthetic scenes, written on first use;
2. "tfds:<name>[/<config>][:<version>]": a TFDS dataset ("tfds:coco_captions",
   "tfds:vlm_scenes/small"), written once as a folder (`data.tfds.tfds_dataset_dir`);
3. an existing folder in one of the published layouts, found from what it holds
   (`data.layouts`: Karpathy's splits, COCO 2014/2017, Flickr8k, VQA v2, this project's layout);
4. "<name>[/<config>][:<version>]" that is not a folder: the TFDS dataset of that name, as rule 2.

`annotations=` (and `questions=` for VQA) with `images=` name the files of anything else: a file
per split ("train=a.json,val=b.json", or a dict; a file alone is the train split) and the image
folder (or one per split). They take precedence over `data`.

Written datasets go to `data_root`, default `default_home()/datasets`.
"""

import os
import pathlib
import re

from vlm_keras.config import SCENES_NAMES
from vlm_keras.data.formats.coco import CaptionSplit
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.formats.vqa import VQASplit
from vlm_keras.data.layouts import ExplicitCaptions, ExplicitVQA, ProjectCaptions, ProjectVQA, detect_captions, detect_vqa
from vlm_keras.data.scenes.dataset import load_scenes, write_scenes_dataset, write_vqa_dataset

TFDS_PREFIX = "tfds:"
# "name", "name/config", "name:1.0.0", "name/config:1.*.*", as TFDS spells them.
TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[\w.\-]+)?(:[\d*]+\.[\d*]+\.[\d*]+)?")


def default_home():
    """Where generated datasets are kept: $VLM_KERAS_HOME, else ~/.cache/vlm_keras."""
    return pathlib.Path(os.environ.get("VLM_KERAS_HOME", "~/.cache/vlm_keras")).expanduser()


def resolve_data_dir(data, num_images=6000, seed=0, data_root=None, verbose=True):
    """Returns the folder that holds `annotations/captions_<split>.json` and the image folders.

    Args:
        data: "scenes", "tfds:<name>[/<config>]", a folder in the COCO captions layout, or a TFDS
            name that is not a folder (see the module docstring for the rule). TFDS datasets are
            read from $TFDS_DATA_DIR (else ~/tensorflow_datasets); "vlm_scenes" is built there
            offline, any other must have been prepared (`tfds build NAME`) beforehand.
        num_images, seed: passed to the scenes generator for "scenes" (a TFDS config fixes its own).
        data_root: where "scenes" and TFDS datasets are written (default: `default_home()/datasets`).

    Raises:
        DatasetError: naming `data`, when it is none of these, or the TFDS dataset is unknown,
            not prepared, or has no images and captions.
    """
    root = pathlib.Path(data_root) if data_root else default_home() / "datasets"
    tfds_name = _tfds_name(data)
    if str(data) in SCENES_NAMES:
        out = root / f"scenes-n{num_images}-seed{seed}"
        return write_scenes_dataset(out, num_images=num_images, seed=seed, progress=verbose)
    if tfds_name is not None:
        from vlm_keras.data.tfds import tfds_dataset_dir  # TFDS takes a second to import: only when asked

        try:
            return tfds_dataset_dir(tfds_name, root, verbose=verbose)
        except DatasetError as error:
            if str(data).startswith(TFDS_PREFIX):
                raise
            # Say how a bare name was read: it may have been meant as a folder.
            raise DatasetError(f"data '{data}' is not an existing folder, and {error}") from None
    path = pathlib.Path(data)
    if not path.is_dir():
        raise DatasetError(f"data '{data}' is neither 'scenes', 'tfds:<name>', a TFDS dataset "
                           "name nor an existing folder")
    return path


def split_mapping(value, what="annotations"):
    """{split: path} from a dict, "train=a.json,val=b.json", or one path (the train split)."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value)
    if "=" not in text:
        return {"train": text}
    mapping = {}
    for item in text.split(","):
        split, sep, path = item.partition("=")
        if not sep or not split.strip() or not path.strip():
            raise DatasetError(f"{what} {value!r}: expected FILE or SPLIT=FILE[,SPLIT=FILE...]")
        mapping[split.strip()] = path.strip()
    return mapping


def caption_source(data="scenes", annotations=None, images=None, **data_kwargs):
    """The captions dataset `data` names (see the module docstring): an object with `splits` and
    `split(name, check_images=True)` -> `CaptionSplit`.

    Args:
        data: "scenes", "tfds:<name>", a folder in a published layout, or a TFDS name.
        annotations, images: the files of a dataset in any other layout (see the module docstring).
        **data_kwargs: num_images, seed, data_root, verbose for `resolve_data_dir`.
    """
    if annotations is not None:
        images = images if images is None or isinstance(images, dict) or "=" not in str(images) \
            else split_mapping(images, "images")
        return ExplicitCaptions(split_mapping(annotations), images)
    folder = resolve_data_dir(data, **data_kwargs)
    return ProjectCaptions(folder) if _generated(data) else detect_captions(folder)


def vqa_source(data="scenes", questions=None, annotations=None, images=None, **data_kwargs):
    """Like `caption_source`, for VQA: "scenes" also gets its questions (VQA v2 format) written.

    Raises:
        DatasetError: also when a TFDS dataset has no questions.
    """
    if questions is not None:
        images = images if images is None or isinstance(images, dict) or "=" not in str(images) \
            else split_mapping(images, "images")
        return ExplicitVQA(split_mapping(questions, "questions"), split_mapping(annotations), images)
    folder = resolve_vqa_dir(data, **data_kwargs)
    return ProjectVQA(folder) if _generated(data) else detect_vqa(folder)


def caption_split_of(data, split, verbose=True, **data_kwargs):
    """`data` itself when it is a loaded `CaptionSplit`; else the split `split` of
    `caption_source(data, **data_kwargs)`."""
    if isinstance(data, CaptionSplit):
        return data
    return caption_source(data, verbose=verbose, **data_kwargs).split(split)


def vqa_split_of(data, split, verbose=True, **data_kwargs):
    """`data` itself when it is a loaded `VQASplit`; else the split `split` of
    `vqa_source(data, **data_kwargs)`."""
    if isinstance(data, VQASplit):
        return data
    return vqa_source(data, verbose=verbose, **data_kwargs).split(split)


def scenes_of(data, split, verbose=True, purpose="the pointing game", **data_kwargs):
    """{image_id: `Scene`} of a split of the synthetic scenes ("scenes", "tfds:vlm_scenes", their
    folder, or a `VQASplit` or `CaptionSplit` read from one): where every object is and what it is,
    for the pointing game, the scene-graph (oracle) VQA models and retrieval's true matches.

    Args:
        purpose: what needs the scenes, for the error messages.
        **data_kwargs: num_images, seed, data_root (as `resolve_data_dir`); files given
            explicitly (annotations=, images=, questions=) are refused: they record no scenes.

    Raises:
        DatasetError: naming the folder, when it is not a scenes dataset (no
            `annotations/scenes_<split>.json`), or files were given explicitly.
    """
    explicit = sorted(k for k in ("annotations", "images", "questions") if data_kwargs.pop(k, None) is not None)
    if explicit:
        raise DatasetError(f"{purpose} reads the synthetic scenes; it cannot use {', '.join(explicit)}= "
                           "files (they do not record where each object is)")
    if isinstance(data, (VQASplit, CaptionSplit)):
        annotations = _annotations_folder(data)
        if annotations is None:
            kind = "VQA" if isinstance(data, VQASplit) else "caption"
            raise DatasetError(f"{kind} split '{data.name}' was not read from a scenes dataset folder "
                               f"(its files: {', '.join(map(str, data.files)) or 'none'}); {purpose} needs "
                               "the synthetic scenes, which record where every object is")
        data, split = str(annotations.parent), data.name
    data_dir = resolve_data_dir(data, verbose=verbose, **data_kwargs)
    try:
        return load_scenes(data_dir, split)
    except DatasetError:
        if (pathlib.Path(data_dir) / "annotations" / f"scenes_{split}.json").is_file():
            raise
        raise DatasetError(f"data '{data}' has no scene annotations for split '{split}' "
                           f"(annotations/scenes_{split}.json): {purpose} needs the synthetic "
                           "scenes, which record where every object is") from None


def _annotations_folder(split):
    """The `<folder>/annotations` a loaded split's files all lie in (as a scenes folder's do), else None."""
    folders = {pathlib.Path(f).parent for f in split.files}
    folder = next(iter(folders)) if len(folders) == 1 else None
    return folder if folder is not None and folder.name == "annotations" else None


def is_scenes_split(split):
    """Whether a loaded `CaptionSplit` or `VQASplit` was read from a synthetic scenes folder (its
    files in `<folder>/annotations/`, beside `scenes_<split>.json`)."""
    annotations = _annotations_folder(split)
    return annotations is not None and (annotations / f"scenes_{split.name}.json").is_file()


def resolve_vqa_dir(data, num_images=6000, seed=0, data_root=None, verbose=True):
    """Like `resolve_data_dir`, for VQA: "scenes" also gets its questions (VQA v2 format) written.

    Raises:
        DatasetError: also when a TFDS dataset has no questions.
    """
    data_dir = resolve_data_dir(data, num_images=num_images, seed=seed, data_root=data_root, verbose=verbose)
    if str(data) in SCENES_NAMES:
        write_vqa_dataset(data_dir, seed=seed)
    elif _tfds_name(data) is not None:
        if not ProjectVQA(data_dir).splits:
            raise DatasetError(f"TFDS dataset '{_tfds_name(data)}' has no questions (a 'questions' "
                               "feature as vlm_scenes has); VQA needs questions and answers")
    return data_dir


def _generated(data):
    """True for the datasets vlm_keras writes itself (scenes, TFDS), always in its own layout."""
    return str(data) in SCENES_NAMES or _tfds_name(data) is not None


def _tfds_name(data):
    """The TFDS name `data` stands for (rules 2 and 4 of the module docstring), else None."""
    text = str(data)
    if text.startswith(TFDS_PREFIX):
        name = text[len(TFDS_PREFIX):]
        if not TFDS_NAME.fullmatch(name):
            raise DatasetError(f"data '{data}': '{name}' is not a TFDS name; expected "
                               "tfds:<name>[/<config>][:<version>], e.g. tfds:coco_captions")
        return name
    if text not in SCENES_NAMES and not pathlib.Path(text).exists() and TFDS_NAME.fullmatch(text):
        return text
    return None

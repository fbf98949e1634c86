"""Turns a user's `data=` argument into a folder in the COCO captions layout.

`data` is, by the first rule that applies:

1. "scenes" (or its old name "shapes"): the synthetic scenes, written on first use;
2. "tfds:<name>[/<config>][:<version>]": a TFDS dataset ("tfds:coco_captions",
   "tfds:vlm_scenes/small"), written once as a folder (`tfds_folders.tfds_dataset_dir`);
3. an existing folder in the COCO captions layout (and the VQA v2 layout for VQA);
4. "<name>[/<config>][:<version>]" that is not a folder: the TFDS dataset of that name, as rule 2.

Written datasets go to `data_root`, default `default_home()/datasets`.
"""

import os
import pathlib
import re

from vlm_keras.config import SCENES_NAMES
from vlm_keras.data.formats.coco import CaptionSplit, load_caption_split
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.formats.vqa import list_vqa_splits
from vlm_keras.data.scenes.dataset import write_scenes_dataset, write_vqa_dataset

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
    if not (path / "annotations").is_dir():
        raise DatasetError(
            f"data folder '{data}' has no annotations/ folder; expected "
            f"annotations/captions_<split>.json next to one image folder per split")
    return path


def caption_split_of(data, split, verbose=True, **data_kwargs):
    """`data` itself when it is a loaded `CaptionSplit`; else the split `split` of the dataset that
    `resolve_data_dir(data, **data_kwargs)` names."""
    if isinstance(data, CaptionSplit):
        return data
    return load_caption_split(resolve_data_dir(data, verbose=verbose, **data_kwargs), split)


def resolve_vqa_dir(data, num_images=6000, seed=0, data_root=None, verbose=True):
    """Like `resolve_data_dir`, for VQA: "scenes" also gets its questions (VQA v2 format) written.

    Raises:
        DatasetError: also when a TFDS dataset has no questions.
    """
    data_dir = resolve_data_dir(data, num_images=num_images, seed=seed, data_root=data_root, verbose=verbose)
    if str(data) in SCENES_NAMES:
        write_vqa_dataset(data_dir, seed=seed)
    elif _tfds_name(data) is not None:
        if not list_vqa_splits(data_dir):
            raise DatasetError(f"TFDS dataset '{_tfds_name(data)}' has no questions (a 'questions' "
                               "feature as vlm_scenes has); VQA needs questions and answers")
    return data_dir


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

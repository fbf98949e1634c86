"""Turns a user's `data=` argument into a folder in the COCO captions layout."""

import os
import pathlib

from vlm_keras.data.coco import CaptionSplit, DatasetError, load_caption_split


def default_home():
    """Where generated datasets are kept: $VLM_KERAS_HOME, else ~/.cache/vlm_keras."""
    return pathlib.Path(os.environ.get("VLM_KERAS_HOME", "~/.cache/vlm_keras")).expanduser()


def resolve_data_dir(data, num_images=6000, seed=0, data_root=None, verbose=True):
    """Returns the folder that holds `annotations/captions_<split>.json` and the image folders.

    Args:
        data: "shapes" (the synthetic scenes, written on first use) or the path of a folder in the
            COCO captions layout.
        num_images, seed: passed to the scenes generator for "shapes".
        data_root: where "shapes" is written (default: `default_home()/datasets`).
    """
    if str(data) == "shapes":
        from vlm_keras.data.shapes_dataset import write_shapes_dataset

        root = pathlib.Path(data_root) if data_root else default_home() / "datasets"
        out = root / f"shapes-n{num_images}-seed{seed}"
        return write_shapes_dataset(out, num_images=num_images, seed=seed, progress=verbose)
    path = pathlib.Path(data)
    if not path.is_dir():
        raise DatasetError(f"data '{data}' is neither 'shapes' nor an existing folder")
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
    """Like `resolve_data_dir`, for VQA: "shapes" also gets its questions (VQA v2 format) written."""
    data_dir = resolve_data_dir(data, num_images=num_images, seed=seed, data_root=data_root, verbose=verbose)
    if str(data) == "shapes":
        from vlm_keras.data.vqa_dataset import write_vqa_dataset

        write_vqa_dataset(data_dir, seed=seed)
    return data_dir

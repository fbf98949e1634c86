"""COCO captions format: writer, validated loader, and the results file for evaluation.

The annotation file follows COCO's `captions_<split>.json`:

    {"info": {...}, "licenses": [],
     "images": [{"id": 1, "file_name": "000000000001.png", "width": 128, "height": 128}, ...],
     "annotations": [{"id": 1, "image_id": 1, "caption": "a large red circle"}, ...]}

`load_coco_captions` checks every entry and reports problems as `DatasetError`s that name the
file and the offending entry, so that a bad dataset fails here rather than inside tf.data.
"""

import dataclasses
import json
import pathlib
import warnings

from vlm_keras.data.formats.reader import (MAX_LISTED, DatasetError, check_image_files, check_split_files,
                                           entry_name, has_words, is_int, json_kind, order_splits, parse_images,
                                           read_json_object, require_list, unique_entries)
from vlm_keras.io import write_json

@dataclasses.dataclass
class CaptionSplit:
    """One split of a captioning dataset: images and their reference captions.

    Args:
        name: split name, e.g. "train".
        image_ids: COCO image ids, in the order of the annotation file's "images".
        image_paths: absolute image paths, same order as `image_ids`.
        captions: reference captions per image, same order as `image_ids`.
        files: the annotation files it was read from (an output must never overwrite them).
    """

    name: str
    image_ids: list
    image_paths: list
    captions: list
    files: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.image_ids)


def write_coco_captions(path, images, captions_by_image, info=None):
    """Writes a COCO captions annotation file, atomically.

    Annotation ids are numbered from 1 in the order of `images`, then of each image's captions.

    Args:
        path: the JSON file to write; its folder is created if needed.
        images: list of image dicts, each with at least an int "id" and a str "file_name"
            (usually also "width" and "height"); written in this order.
        captions_by_image: dict from image id to its list of caption strings.
        info: optional dict stored under "info".

    Raises:
        ValueError: if an image lacks "id"/"file_name", or captions refer to an unknown image.
    """
    image_ids = set()
    for index, image in enumerate(images):
        if not isinstance(image.get("id"), int) or not isinstance(image.get("file_name"), str):
            raise ValueError(
                f"images[{index}] is {image!r}; expected a dict with an int 'id' and a str "
                "'file_name'"
            )
        image_ids.add(image["id"])
    unknown = sorted(set(captions_by_image) - image_ids)
    if unknown:
        raise ValueError(f"captions_by_image has image ids {unknown[:MAX_LISTED]} not in images")

    annotations = []
    for image in images:
        for caption in captions_by_image.get(image["id"], []):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image["id"], "caption": caption}
            )
    content = {
        "info": dict(info or {}),
        "licenses": [],
        "images": list(images),
        "annotations": annotations,
    }
    write_json(path, content)


def load_coco_captions(annotation_file, image_root, name=None, check_images=True):
    """Loads and validates a COCO captions annotation file.

    Images without any caption are skipped with a warning. Captions are stripped of leading and
    trailing whitespace.

    Args:
        annotation_file: path to the `captions_<split>.json` file.
        image_root: folder that the images' "file_name"s are relative to.
        name: split name; defaults to the file name without "captions_" and ".json".
        check_images: if True, every image file must exist and decode (see
            `images.check_image_file`); if False, image files are not touched (faster).

    Returns:
        A `CaptionSplit`, in the order of the file's "images".

    Raises:
        DatasetError: naming the file and the offending entry, for any malformed content, an
            image path outside `image_root`, or (with `check_images`) missing or bad images.
    """
    annotation_file = pathlib.Path(annotation_file)
    where = f"annotations '{annotation_file}'"
    content = read_json_object(annotation_file, where)
    root = pathlib.Path(image_root)
    if not root.is_dir():
        raise DatasetError(f"{where}: image folder '{image_root}' does not exist")

    image_list = require_list(content, "images", where)
    annotation_list = require_list(content, "annotations", where)
    paths_by_id = parse_images(image_list, root, where)
    captions_by_id = _parse_annotations(annotation_list, paths_by_id, where)

    kept_ids = [image_id for image_id in paths_by_id if captions_by_id[image_id]]
    if not kept_ids:
        raise DatasetError(f'{where}: none of the {len(paths_by_id)} images has a caption')
    skipped = len(paths_by_id) - len(kept_ids)
    if skipped:
        warnings.warn(f"{where}: skipped {skipped} images that have no caption", stacklevel=2)

    if name is None:
        name = annotation_file.stem.removeprefix("captions_")
    return make_caption_split(name, kept_ids, [paths_by_id[i] for i in kept_ids],
                              [captions_by_id[i] for i in kept_ids], [annotation_file], root, where, check_images)


def make_caption_split(name, image_ids, image_paths, captions, files, root, where, check_images=True):
    """A `CaptionSplit`, every image checked first (with `check_images`; see
    `reader.check_image_files`: the odd undecodable image is left out with a warning)."""
    image_paths = [str(path) for path in image_paths]
    bad = check_image_files(image_paths, pathlib.Path(root), where) if check_images else set()
    keep = [i for i, path in enumerate(image_paths) if path not in bad]
    return CaptionSplit(name=name, image_ids=[image_ids[i] for i in keep], image_paths=[image_paths[i] for i in keep],
                        captions=[captions[i] for i in keep], files=[str(f) for f in files])


def load_caption_split(data_dir, split, check_images=True):
    """Loads `data_dir/annotations/captions_<split>.json` with images under `data_dir/<split>/`.

    Args:
        data_dir: dataset folder, laid out like COCO (see `write_scenes_dataset`).
        split: split name, e.g. "train" or "val".
        check_images: see `load_coco_captions`.

    Returns:
        A `CaptionSplit`.

    Raises:
        DatasetError: if the split does not exist (the message lists those that do) or fails
            validation.
    """
    data_dir = pathlib.Path(data_dir)
    annotation_file = data_dir / "annotations" / f"captions_{split}.json"
    check_split_files(data_dir, split, [annotation_file], lambda: list_caption_splits(data_dir))
    return load_coco_captions(annotation_file, data_dir / split, split, check_images)


def list_caption_splits(data_dir):
    """Returns the split names that have `data_dir/annotations/captions_<split>.json`.

    Args:
        data_dir: dataset folder.

    Returns:
        "train", "val", "test" first when present, then the other splits in alphabetical order.
    """
    annotations = pathlib.Path(data_dir) / "annotations"
    if not annotations.is_dir():
        return []
    return order_splits(file.name[len("captions_"):-len(".json")]
                        for file in annotations.glob("captions_*.json") if file.is_file())


def write_coco_results(path, image_ids, captions):
    """Writes generated captions in COCO results format, atomically.

    The file is a list `[{"image_id": int, "caption": str}, ...]`, as read by the COCO caption
    evaluation tools.

    Args:
        path: the JSON file to write; its folder is created if needed.
        image_ids: image ids (ints, numpy ints accepted).
        captions: one generated caption string per image id.

    Raises:
        ValueError: if the lengths differ or an entry has the wrong type.
    """
    image_ids = list(image_ids)
    captions = list(captions)
    if len(image_ids) != len(captions):
        raise ValueError(
            f"got {len(image_ids)} image ids and {len(captions)} captions; expected one caption "
            "per image id"
        )
    results = []
    for index, (image_id, caption) in enumerate(zip(image_ids, captions)):
        if not isinstance(caption, str):
            raise ValueError(f"captions[{index}] is {caption!r}; expected a str")
        try:
            image_id = int(image_id)
        except (TypeError, ValueError) as error:
            raise ValueError(f"image_ids[{index}] is {image_id!r}; expected an int") from error
        results.append({"image_id": image_id, "caption": caption})
    write_json(path, results)


def read_caption_references(annotation_file):
    """{image_id: [reference captions]} from a COCO captions file, validated as `load_coco_captions`
    does, without the images (to score a results file). Images without a caption are left out."""
    annotation_file = pathlib.Path(annotation_file)
    where = f"annotations '{annotation_file}'"
    content = read_json_object(annotation_file, where)
    ids = {image_id: index for index, (_, _, image_id)
           in enumerate(unique_entries(require_list(content, "images", where), "image", "id", where))}
    captions = _parse_annotations(require_list(content, "annotations", where), ids, where)
    return {image_id: refs for image_id, refs in captions.items() if refs}


def read_coco_results(path, references):
    """{image_id: caption} from a COCO results file (`[{"image_id": int, "caption": str}, ...]`), in
    file order; DatasetError naming the entry for a malformed one, an image id that `references`
    lacks, or an image captioned twice."""
    path = pathlib.Path(path)
    where = f"results '{path}'"
    if not path.is_file():
        raise DatasetError(f"{where} does not exist")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{where} is not valid JSON ({error})") from None
    if not isinstance(content, list):
        raise DatasetError(f'{where}: top level is {json_kind(content)}; expected a list of '
                           '{"image_id": int, "caption": str}')
    results, index_by_id = {}, {}
    for index, result in enumerate(content):
        entry = entry_name("result", index, result, "image_id")
        if not isinstance(result, dict) or not is_int(result.get("image_id")):
            raise DatasetError(f'{where}: {entry} has no int "image_id"')
        if not isinstance(result.get("caption"), str):
            raise DatasetError(f'{where}: {entry} has no str "caption"')
        image_id = result["image_id"]
        if image_id not in references:
            raise DatasetError(f"{where}: {entry} is about image_id {image_id}, which has no reference "
                               "caption in the annotations")
        if image_id in results:
            raise DatasetError(f"{where}: {entry} captions image_id {image_id} again (result "
                               f"#{index_by_id[image_id]}); expected one caption per image")
        results[image_id], index_by_id[image_id] = result["caption"], index
    if not results:
        raise DatasetError(f"{where} holds no result")
    return results


def _parse_annotations(annotation_list, paths_by_id, where):
    """Returns {image_id: [caption, ...]} for every image, captions in file order."""
    captions_by_id = {image_id: [] for image_id in paths_by_id}
    for index, annotation in enumerate(annotation_list):
        entry = entry_name("annotation", index, annotation, "id")
        if not isinstance(annotation, dict):
            raise DatasetError(
                f"{where}: {entry} is {json_kind(annotation)}; expected an object"
            )
        for key in ("image_id", "caption"):
            if key not in annotation:
                raise DatasetError(f'{where}: {entry} has no "{key}"')
        caption = annotation["caption"]
        if not isinstance(caption, str):
            raise DatasetError(
                f"{where}: {entry} caption is {json_kind(caption)}; expected a str"
            )
        if not caption.strip():
            raise DatasetError(f"{where}: {entry} caption is empty")
        if not has_words(caption):
            raise DatasetError(f"{where}: {entry} caption {caption!r} has no words (punctuation only)")
        image_id = annotation["image_id"]
        if not is_int(image_id) or image_id not in captions_by_id:
            raise DatasetError(
                f'{where}: {entry} refers to image_id {image_id!r}, which is not in "images"'
            )
        captions_by_id[image_id].append(caption.strip())
    return captions_by_id



"""The validated JSON reader every annotation format shares (COCO captions, VQA v2, ...).

Readers built on it report every problem as a `DatasetError` naming the file and the offending
entry ("annotations 'x.json': annotation #3 (id 17) has no \"caption\""), so a bad dataset fails
when it is loaded, not inside tf.data.
"""

import json
import os
import pathlib
import warnings

from vlm_keras.data.images import ImageError, check_image_file
from vlm_keras.errors import VlmKerasError

# How many offending names an error message lists before "...".
MAX_LISTED = 5


class DatasetError(VlmKerasError, ValueError):
    """A dataset file is missing, malformed, or refers to images that are missing or bad."""


USUAL_SPLITS = ("train", "val", "test")


def order_splits(names):
    """Split names with "train", "val", "test" first when present, then the others alphabetically."""
    names = set(names)
    return [n for n in USUAL_SPLITS if n in names] + sorted(names - set(USUAL_SPLITS))


def check_split_files(data_dir, split, files, available, kind=""):
    """Raises a DatasetError when `data_dir` is missing or a file of split `split` is: the message
    names the first missing file and lists the `available` splits of that kind ("VQA ")."""
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"dataset folder '{data_dir}' does not exist")
    for file in files:
        if not file.is_file():
            raise DatasetError(f"{kind}split '{split}' not found: '{file}' does not exist; {kind}splits in "
                               f"'{data_dir}': {', '.join(available()) or 'none'}")


def read_json_object(path, where, keys=("images", "annotations")):
    """The JSON object in `path`, or a DatasetError naming `where` and the `keys` expected."""
    if not path.exists():
        raise DatasetError(f"{where} does not exist")
    if not path.is_file():
        raise DatasetError(f"{where} is not a file")
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{where} is not UTF-8 text: {error.reason}") from error
    if not isinstance(content, dict):
        raise DatasetError(
            f"{where}: top level is {json_kind(content)}; expected an object with "
            + " and ".join(f'"{key}"' for key in keys)
        )
    return content


def require_list(content, key, where):
    """`content[key]`, or a DatasetError naming `where` when it is missing or not a list."""
    if not isinstance(content.get(key), list):
        found = "missing" if key not in content else json_kind(content[key])
        raise DatasetError(f'{where}: "{key}" is {found}; expected a list')
    return content[key]


def entry_name(kind, index, entry, id_key):
    """Names an entry for error messages: 'annotation #3 (id 17)'."""
    if isinstance(entry, dict) and id_key in entry:
        return f"{kind} #{index} ({id_key} {entry[id_key]!r})"
    return f"{kind} #{index}"


def json_kind(value):
    """'a list', 'an int', 'null': how a JSON value reads in an error message."""
    if value is None:
        return "null"
    name = type(value).__name__
    return ("an " if name[0] in "aeiou" else "a ") + name


def has_words(text):
    """True when the tokenizer would find a word in `text`: a letter or a digit (punctuation
    alone becomes an empty caption, which would be trained on and scored as nothing)."""
    return any(ch.isalnum() for ch in text)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def unique_entries(entries, kind, id_key, where):
    """Yields (entry, its name for errors, its id) for each entry of a list of objects keyed by
    `id_key`; DatasetError for an entry that is not an object, has no int id, or repeats one."""
    index_by_id = {}
    for index, entry in enumerate(entries):
        name = entry_name(kind, index, entry, id_key)
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: {name} is {json_kind(entry)}; expected an object")
        entry_id = entry.get(id_key)
        if not is_int(entry_id):
            raise DatasetError(f'{where}: {name} has no int "{id_key}"')
        if entry_id in index_by_id:
            raise DatasetError(f"{where}: {name} repeats {id_key} {entry_id} of {kind} #{index_by_id[entry_id]}")
        index_by_id[entry_id] = index
        yield entry, name, entry_id


def parse_images(image_list, root, where):
    """Returns {image_id: absolute path} in file order, checking ids and paths."""
    paths_by_id = {}
    for image, entry, image_id in unique_entries(image_list, "image", "id", where):
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f'{where}: {entry} has no str "file_name"')
        # resolve() follows symlinks, so a link pointing outside the folder is caught too.
        paths_by_id[image_id] = confined_path(root, file_name, where, entry)
    return paths_by_id


# A download of 100,000 photos can hold the odd corrupt file: up to this share of a split's images
# may be unreadable, and are then left out with a warning that names them; more is an error.
TOLERATED_BAD_IMAGES = 0.01


def check_image_files(image_paths, root, where, tolerance=TOLERATED_BAD_IMAGES):
    """Checks that every image exists and decodes; returns the set of bad ones to leave out.

    Raises one DatasetError listing every missing file, or every undecodable one when there are
    more than `tolerance` x the number of images (rounded down: none for fewer than 100 images).
    Tolerated bad images are named in a warning.
    """
    missing = [path for path in image_paths if not os.path.exists(path)]
    if missing:
        names = [os.path.relpath(path, root.resolve()) for path in missing]
        raise DatasetError(
            f"{where}: {len(missing)} of {len(image_paths)} image files are missing from "
            f"'{root}': {listing(names)}"
        )
    bad = {}
    for path in image_paths:
        try:
            check_image_file(path)
        except ImageError as error:
            bad[path] = str(error)
    if len(bad) > int(tolerance * len(image_paths)):
        raise DatasetError(
            f"{where}: {len(bad)} of {len(image_paths)} image files are bad: {listing(list(bad.values()))}"
        )
    if bad:
        warnings.warn(f"{where}: left out {len(bad)} of {len(image_paths)} images that cannot be decoded: "
                      f"{listing(list(bad.values()))}", stacklevel=3)
    return set(bad)


def confined_path(root, relative, where, entry, field="file_name"):
    """`root / relative`, resolved; a DatasetError when it is absolute or escapes `root` (a symlink
    pointing outside it included)."""
    resolved_root = pathlib.Path(root).resolve()
    path = (resolved_root / relative).resolve()
    if pathlib.PurePath(relative).is_absolute() or not path.is_relative_to(resolved_root):
        raise DatasetError(f"{where}: {entry} {field} '{relative}' escapes the image folder '{root}'")
    return path


def listing(items):
    listed = "; ".join(str(item) for item in items[:MAX_LISTED])
    return listed + ("; ..." if len(items) > MAX_LISTED else "")

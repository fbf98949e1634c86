"""Files written safely, JSON, and progress messages: the one place for each.

Every file the package writes goes through `atomic_write`: the content goes to a hidden sibling
with a unique name, is flushed to disk, and is then renamed over the target (`os.replace` is
atomic), so a crash leaves the previous good file or none, never half of a new one. The
temporary file is created by an ordinary `open`, not `mkstemp` (mode 0600), so it gets the
user's umask. `replace_directory` does the same for a folder (a SavedModel export).

Progress and notes go to stderr through `log`; stdout is for results (JSON, captions).
"""

import json
import os
import pathlib
import shutil
import sys
import uuid


def log(message):
    """Prints a progress or status line to stderr (never stdout: that is for results)."""
    print(message, file=sys.stderr, flush=True)


def temporary_sibling(path, suffix=""):
    """A unique hidden name next to `path`: `.NAME.<12 hex>.tmp<suffix>`.

    `suffix` keeps a file type that a writer insists on (Keras wants ".keras" or ".weights.h5").
    """
    path = pathlib.Path(path)
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}"


def atomic_write(path, write, suffix=""):
    """Writes a file through a temporary sibling and an atomic rename.

    Args:
        path: the file to write; its folder is created if needed.
        write: `write(temporary_path)` creates the file's content at the path it is given.
        suffix: the temporary file's suffix (see `temporary_sibling`).

    Returns:
        `path` as a `pathlib.Path`. If `write` raises, `path` is left as it was.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, suffix)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path, content, indent=None):
    """Writes `content` as JSON, atomically (numpy scalars are written as numbers)."""
    def write(tmp):
        with open(tmp, "x", encoding="utf-8") as file:
            json.dump(content, file, indent=indent, default=_json_default)

    return atomic_write(path, write)


def write_text(path, text):
    """Writes a text file, atomically."""
    def write(tmp):
        with open(tmp, "x", encoding="utf-8") as file:
            file.write(text)

    return atomic_write(path, write)


def read_json(path, default=None):
    """The JSON content of `path`, or `default` when the file does not exist."""
    path = pathlib.Path(path)
    if not path.is_file():
        return default
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def replace_directory(path, write):
    """Writes a folder through a temporary sibling, then swaps it into place.

    `write(temporary_folder)` fills the (already created, empty) temporary folder. Only then is an
    existing `path` moved aside and the new folder renamed to `path`; if that rename fails the old
    folder is put back. An interrupted call never leaves a half-written folder at `path`.

    Returns:
        `path` as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.mkdir()  # mkdir, unlike mkdtemp's 0700, keeps the user's umask
    old = temporary_sibling(path, ".old")
    try:
        write(tmp)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists() and not path.exists():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _fsync(path):
    # A rename can reach the disk before the data it names: flush the data first.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a writer that made a folder, or a platform that cannot open files read-only
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pathlib.PurePath,)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

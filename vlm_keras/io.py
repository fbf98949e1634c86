"""Files written safely, JSON, and progress messages: the one place for each.

Every file the package writes goes through `atomic_write`: the content goes to a hidden sibling
with a unique name, is flushed to disk, and is then renamed over the target (`os.replace` is
atomic), so a crash leaves the previous good file or none, never half of a new one. The
temporary file is created by an ordinary `open`, not `mkstemp` (mode 0600), so it gets the
user's umask. `replace_directory` does the same for a folder (a SavedModel export).

Before a large write, `ensure_free_space` checks the disk: h5py, which writes the weights, does
not only fail on a full disk, it crashes the process afterwards (a segfault at exit). A run's
output folder is held with `folder_lock`, so a second writer is refused, and `check_output_file`
refuses an output path that is one of the run's inputs.

Progress and notes go to stderr through `log`; stdout is for results (JSON, captions).
"""

import contextlib
import json
import os
import pathlib
import shutil
import sys
import uuid

from vlm_keras.errors import DiskSpaceError, OutputPathError

LOCK_FILE = ".vlm_keras.lock"
# Left free after a write: the file system's own bookkeeping and the temporary file's rename.
FREE_SPACE_MARGIN = 4 << 20


def log(message):
    """Prints a progress or status line to stderr (never stdout: that is for results)."""
    print(message, file=sys.stderr, flush=True)


def live_progress():
    """True when a progress bar can redraw itself in place (a terminal or a notebook). Into a log
    file or a pipe, Keras' bar would write every redraw: there one line per epoch is printed."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


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


def ensure_free_space(path, needed_bytes, what):
    """Raises DiskSpaceError unless the file system that holds `path` has `needed_bytes` free
    (plus a small margin); `what` names the write in the message ("checkpoints")."""
    folder = _existing_ancestor(pathlib.Path(path))
    free = shutil.disk_usage(folder).free
    if free < needed_bytes + FREE_SPACE_MARGIN:
        raise DiskSpaceError(f"not enough free disk space in '{folder}' to write {what}: about "
                             f"{_megabytes(needed_bytes + FREE_SPACE_MARGIN)} needed, {_megabytes(free)} free")


def check_output_file(path, inputs=(), what="output file"):
    """Raises OutputPathError when `path` cannot take an output file: a folder, one of `inputs`
    (files the run reads), or under a folder the user cannot write to.

    Args:
        path: the file about to be written.
        inputs: paths of files the run reads (missing ones are ignored).
        what: how the message names the output, e.g. "--predictions".
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} '{path}' is a folder; expected a file name")
    if path.exists():
        for source in inputs:
            if pathlib.Path(source).exists() and os.path.samefile(path, source):
                raise OutputPathError(f"{what} '{path}' is '{source}', which this run reads; refusing to "
                                      "overwrite it (choose another file name)")
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {what} '{path}': '{folder}' is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise OutputPathError(f"cannot write {what} '{path}': '{folder}' is not writable")
    return path


@contextlib.contextmanager
def folder_lock(folder, what="this folder"):
    """Holds an exclusive lock on `folder` while the block runs: a second writer gets a clear error
    instead of interleaving its files with ours.

    The lock is `flock` on `folder/.vlm_keras.lock`: it dies with the process, so a run killed even
    with SIGKILL never leaves a stale lock. Where `fcntl` is missing (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise OutputPathError(f"{what} '{folder}' is being written by another vlm-keras run (process {holder}); "
                              "wait for it to finish or choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _existing_ancestor(path):
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _megabytes(size):
    return f"{size / 1e6:.1f} MB"


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

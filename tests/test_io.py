"""Safe writes: a failed write leaves the previous file or folder, files get the user's umask."""

import os
import stat

import numpy as np
import pytest

from vlm_keras.io import atomic_write, read_json, replace_directory, write_json


class Boom(RuntimeError):
    pass


def _fail_half_way(tmp):
    tmp.write_text("half a file")
    raise Boom("disk full")


def test_atomic_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    write_json(target, {"a": np.float32(1.5), "b": np.int64(2), "c": np.arange(2)})
    assert read_json(target) == {"a": 1.5, "b": 2, "c": [0, 1]}
    with pytest.raises(Boom):
        atomic_write(target, _fail_half_way)
    assert read_json(target) == {"a": 1.5, "b": 2, "c": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert read_json(tmp_path / "missing.json", default={}) == {}


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_and_folders_get_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "f.json", [])
        replace_directory(tmp_path / "export", lambda folder: (folder / "x").write_text("1"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == mode | 0o111 & ~umask


def test_replace_directory_swaps_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "export"
    replace_directory(target, lambda folder: (folder / "model.pb").write_text("old"))
    with pytest.raises(Boom):
        replace_directory(target, lambda folder: _fail_half_way(folder / "model.pb"))
    assert (target / "model.pb").read_text() == "old"
    replace_directory(target, lambda folder: (folder / "model.pb").write_text("new"))
    assert (target / "model.pb").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_check_output_file(tmp_path):
    from vlm_keras.errors import OutputPathError
    from vlm_keras.io import check_output_file

    source = tmp_path / "captions_test.json"
    source.write_text("{}")
    with pytest.raises(OutputPathError, match=r"captions_test\.json', which this run reads"):
        check_output_file(tmp_path / "." / "captions_test.json", [source], "--predictions")
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path, [source])
    assert check_output_file(tmp_path / "new" / "p.json", [source]) == tmp_path / "new" / "p.json"
    with pytest.raises(OutputPathError, match=r"captions_test\.json' is a file, not a folder"):
        check_output_file(source / "p.json")


def test_ensure_free_space(tmp_path, monkeypatch):
    import shutil

    from vlm_keras.errors import DiskSpaceError
    from vlm_keras.io import ensure_free_space

    ensure_free_space(tmp_path / "not" / "yet", 1000, "a file")  # the nearest existing folder is asked
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: type(usage)(usage.total, usage.total, 2_000_000))
    with pytest.raises(DiskSpaceError, match=r"to write a backup: about 6\.2 MB needed, 2\.0 MB free"):
        ensure_free_space(tmp_path, 2_000_000, "a backup")
    assert isinstance(DiskSpaceError("x"), OSError)

"""A model folder checks itself: manifest, config.json's shape, vocabularies against the model,
damaged archives and folders of another task are one-line ModelFolderErrors."""

import json
import shutil

import pytest

from vlm_keras import load_model
from vlm_keras.bundle import check_model_folder
from vlm_keras.captioning import Captioner
from vlm_keras.errors import ModelFolderError
from vlm_keras.vqa import VQAModel


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    """A copy of the tiny captioner's folder, to damage."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    return copy


def _edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    config = change(config) or config
    (folder / "config.json").write_text(json.dumps(config))


def test_a_saved_folder_has_a_manifest_and_loads(folder, tiny_captioner):
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["config.json", "history.json", "metrics.json", "model.keras"]
    loaded = load_model(folder)
    assert loaded.folder == folder and loaded.caption([]) == []


def test_an_edited_vocabulary_is_caught_by_the_manifest(folder):
    def swap(config):
        words = config["tokenizer"]["vocabulary"]
        words[0], words[1] = words[1], words[0]

    _edit_config(folder, swap)
    with pytest.raises(ModelFolderError, match=r"config\.json changed after the folder was saved"):
        load_model(folder)


def test_without_a_manifest_the_vocabulary_is_checked_against_the_layer_shapes(folder):
    (folder / "manifest.json").unlink()
    load_model(folder)  # an old folder (no manifest) that is consistent still loads
    _edit_config(folder, lambda c: c["tokenizer"].update(vocabulary=c["tokenizer"]["vocabulary"][:-3]))
    with pytest.raises(ModelFolderError, match=r"config\.json does not belong to model\.keras \(vocabulary size: "
                                               r"\d+ in config\.json, \d+ in model\.keras\)"):
        load_model(folder)


def test_an_interrupted_save_is_refused(folder, tiny_captioner):
    # The save renames model.keras first and writes the manifest last: a kill in between leaves
    # a new model.keras with the old manifest (and config).
    (folder / "model.keras").write_bytes((folder / "model.keras").read_bytes() + b"\0")
    with pytest.raises(ModelFolderError, match=r"model\.keras changed after the folder was saved .* run the "
                                               r"training command again"):
        load_model(folder)


@pytest.mark.parametrize("content,message", [
    ("[1, 2]", r"config\.json' holds list; expected a JSON object"),
    ("{not json", r"config\.json' is not readable JSON"),
])
def test_a_config_that_is_not_an_object(folder, content, message):
    (folder / "manifest.json").unlink()
    (folder / "config.json").write_text(content)
    with pytest.raises(ModelFolderError, match=message):
        load_model(folder)


def test_a_config_that_lacks_a_key(folder):
    (folder / "manifest.json").unlink()
    _edit_config(folder, lambda c: c.pop("tokenizer"))
    with pytest.raises(ModelFolderError, match=r"config\.json' lacks or mangles an entry .*tokenizer"):
        Captioner.load(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_model_archive(folder, damage):
    (folder / "manifest.json").unlink()
    data = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes({"garbage": b"not a zip file", "truncated": data[:len(data) // 2],
                                          "empty": b""}[damage])
    with pytest.raises(ModelFolderError, match=r"model\.keras' cannot be read .* the folder is damaged"):
        load_model(folder)


def test_a_folder_of_another_task(folder):
    with pytest.raises(ModelFolderError, match="holds a captioning model, not a vqa model"):
        VQAModel.load(folder)
    with pytest.raises(ModelFolderError, match="holds a captioning model; refusing to write a vqa model over it"):
        check_model_folder(folder, "vqa")
    check_model_folder(folder, "captioning")

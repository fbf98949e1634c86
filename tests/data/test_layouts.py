"""Datasets read as they are downloaded: COCO 2014/2017, Karpathy's splits (COCO, Flickr8k,
Flickr30k), Flickr8k's original files, VQA v2 with test-dev, explicit files; through train_* and
the CLI; and the images real downloads hold."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.data import published
from tests.helpers import assert_one_line_error, run_cli
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.layouts import CocoCaptions, Flickr8kCaptions, KarpathyCaptions, ProjectCaptions, VqaV2
from vlm_keras.data.sources import caption_source, vqa_source

TINY = dict(epochs=1, image_size=32, batch_size=16, seed=0, verbose=0)
SMALL_CAPTIONER = dict(units=16, embed_dim=8, num_layers=1)


@pytest.mark.parametrize("year", ["2014", "2017"])
def test_coco_as_distributed(tmp_path, year):
    root = published.coco(tmp_path / f"coco{year}", year)
    source = caption_source(str(root))
    assert isinstance(source, CocoCaptions) and source.splits == ["train", "val"]
    train = source.split("train")
    assert len(train) == 12 and train.image_paths[0].endswith(
        f"train{year}/COCO_train2014_000000000001.jpg" if year == "2014" else "train2017/000000000001.jpg")
    assert train.captions[0][0] == "a red block in the middle"


@pytest.mark.parametrize("year", ["2014", "2017"])
def test_coco_trains_with_the_api_and_evaluates_with_the_cli(capsys, tmp_path, year):
    from vlm_keras import train_captioner

    root = published.coco(tmp_path / "coco", year)
    result = train_captioner(data=str(root), eval_splits=("val",), out=tmp_path / "model", **TINY, **SMALL_CAPTIONER)
    assert 0 <= result.metrics["coco_bleu4_val"] <= 1 and result.metrics["num_images_val"] == 6
    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", tmp_path / "model", "--data", root,
                           "--split", "val")
    assert code == 0 and json.loads(out)["coco_cider_d"] == pytest.approx(result.metrics["coco_cider_d_val"])


@pytest.mark.parametrize("dataset", ["coco", "flickr30k"])
def test_karpathy_trains_and_evaluates(tmp_path, dataset):
    from vlm_keras import train_captioner

    root = published.karpathy(tmp_path / dataset, dataset)
    result = train_captioner(data=str(root), eval_splits=("test",), **TINY, **SMALL_CAPTIONER)
    assert result.metrics["num_images_test"] == 4


@pytest.mark.parametrize("dataset", ["coco", "flickr8k", "flickr30k"])
def test_karpathy_splits(tmp_path, dataset):
    root = published.karpathy(tmp_path / dataset, dataset)
    source = caption_source(str(root))
    assert isinstance(source, KarpathyCaptions)
    assert source.splits == ["train", "val", "test", "restval"]
    assert len(source.split("train")) == 12  # restval joins train, as the papers train
    assert len(source.split("restval")) == 3 and len(source.split("test")) == 4
    test = source.split("test")
    assert test.captions[0][0].endswith(".") and len(test.captions[0]) == 5
    alone = KarpathyCaptions(root, root / f"dataset_{dataset}.json", restval_to_train=False)
    assert len(alone.split("train")) == 9
    if dataset == "coco":
        assert test.image_ids[0] == 17 and "val2014/COCO_val2014_000000000017.jpg" in test.image_paths[0]


def test_karpathy_coco_images_under_images(tmp_path):
    root = published.karpathy(tmp_path / "coco", "coco")
    (root / "images").mkdir()
    for folder in ("train2014", "val2014"):
        (root / folder).rename(root / "images" / folder)
    test = caption_source(str(root)).split("test")
    assert "images/val2014/COCO_val2014_000000000017.jpg" in test.image_paths[0]


def test_karpathy_flickr8k_through_the_cli(capsys, tmp_path):
    root = published.karpathy(tmp_path / "flickr8k", "flickr8k")
    model = tmp_path / "model"
    code, out, _ = run_cli(capsys, "train", "captioner", "--data", root, "--out", model, "--epochs", "1",
                           "--image-size", "32", "--batch-size", "16", "--eval-splits", "test",
                           "--option", "units=16", "--option", "num_layers=1")
    assert code == 0 and json.loads(out)["num_images_test"] == 4
    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", model, "--data", root, "--split", "val",
                           "--predictions", tmp_path / "val_results.json")
    assert code == 0 and json.loads(out)["num_images"] == 4
    results = json.loads((tmp_path / "val_results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [12, 13, 14, 15]  # Karpathy's imgid


def test_flickr8k_original_files(tmp_path):
    from vlm_keras import train_retrieval

    root = published.flickr8k(tmp_path / "flickr8k")
    source = caption_source(str(root))
    assert isinstance(source, Flickr8kCaptions) and source.splits == ["train", "val", "test"]
    val = source.split("val")
    assert len(val) == 4 and val.captions[0][0] == "A blue block in the middle ."
    assert val.image_ids == [11, 12, 13, 14]  # positions in the token file
    result = train_retrieval(data=str(root), eval_splits=("test",), embed_dim=8, hidden_dim=16, attention_dim=8,
                             word_dim=8, units=8, out=tmp_path / "model", **TINY)
    assert result.metrics["num_images_test"] == 4


def test_flickr8k_evaluates_with_the_cli(capsys, tmp_path):
    from vlm_keras import train_retrieval

    root = published.flickr8k(tmp_path / "flickr8k")
    train_retrieval(data=str(root), eval_splits=(), embed_dim=8, hidden_dim=16, attention_dim=8, word_dim=8, units=8,
                    out=tmp_path / "model", **TINY)
    code, out, _ = run_cli(capsys, "evaluate", "retrieval", "--model", tmp_path / "model", "--data", root,
                           "--split", "val")
    assert code == 0 and json.loads(out)["num_images"] == 4 and json.loads(out)["num_captions"] == 20


def test_vqa_v2_with_test_dev(capsys, tmp_path):
    root = published.vqa_v2(tmp_path / "vqa")
    source = vqa_source(str(root))
    assert isinstance(source, VqaV2) and source.splits == ["train", "val", "test-dev"]
    test_dev = source.split("test-dev")
    assert not test_dev.has_answers and len(test_dev) == 8
    assert "test2015/COCO_test2015_000000000201.jpg" in test_dev.image_paths[0]

    model = tmp_path / "model"
    code, out, _ = run_cli(capsys, "train", "vqa", "--data", root, "--out", model, "--epochs", "1", "--image-size",
                           "32", "--eval-splits", "val", "--option", "units=16", "--option", "fusion_dim=16")
    assert code == 0 and 0 <= json.loads(out)["accuracy_val"] <= 1
    code, out, _ = run_cli(capsys, "evaluate", "vqa", "--model", model, "--data", root, "--split", "test-dev",
                           "--predictions", tmp_path / "test_dev_results.json")
    assert code == 0 and json.loads(out) == {"num_questions": 8, "scored": False, "split": "test-dev"}
    results = json.loads((tmp_path / "test_dev_results.json").read_text())
    assert sorted(r["question_id"] for r in results) == sorted(q["question_id"] for q in json.loads(
        (root / "v2_OpenEnded_mscoco_test-dev2015_questions.json").read_text())["questions"])


def test_images_under_images_split_and_explicit_files(tmp_path):
    # A COCO-format folder whose images sit under images/<split>/ (a common layout).
    root = published.coco(tmp_path / "coco")
    common = tmp_path / "common"
    (common / "annotations").mkdir(parents=True)
    (common / "images").mkdir()
    for subset, split in (("train2014", "train"), ("val2014", "val")):
        (root / subset).rename(common / "images" / split)
        (common / "annotations" / f"captions_{split}.json").write_text(
            (root / "annotations" / f"captions_{subset}.json").read_text())
    source = caption_source(str(common))
    assert isinstance(source, ProjectCaptions) and len(source.split("val")) == 6
    # Anything else, explicitly: a file per split and the image folder(s).
    explicit = caption_source(annotations=f"train={common / 'annotations' / 'captions_train.json'},"
                                          f"test={common / 'annotations' / 'captions_val.json'}",
                              images=f"train={common / 'images' / 'train'},test={common / 'images' / 'val'}")
    assert explicit.splits == ["train", "test"] and len(explicit.split("test")) == 6


def test_explicit_files_train_and_evaluate(capsys, tmp_path):
    from vlm_keras import train_captioner

    root = published.coco(tmp_path / "coco")
    annotations = (f"train={root / 'annotations' / 'captions_train2014.json'},"
                   f"val={root / 'annotations' / 'captions_val2014.json'}")
    images = f"train={root / 'train2014'},val={root / 'val2014'}"
    result = train_captioner(annotations=annotations, images=images, eval_splits=("val",), out=tmp_path / "model",
                             **TINY, **SMALL_CAPTIONER)
    assert result.metrics["num_images_val"] == 6
    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", tmp_path / "model", "--split", "test",
                           "--annotations", f"test={root / 'annotations' / 'captions_val2014.json'}",
                           "--images", root / "val2014")
    assert code == 0 and json.loads(out)["num_images"] == 6


def test_a_folder_in_no_known_layout_lists_what_was_looked_for(capsys, tmp_path):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "pictures").mkdir()
    (folder / "labels.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"matches none of the captions layouts looked for: Karpathy's splits .*"
                                           r"COCO 2014/2017 .*Flickr8k .*annotations/captions_<split>\.json .*It holds: "
                                           r"labels\.csv, pictures/"):
        caption_source(str(folder))
    code, _, err = run_cli(capsys, "train", "vqa", "--data", folder, "--out", tmp_path / "m")
    assert_one_line_error(code, err, "matches none of the VQA layouts", "VQA v2", "--questions")


def test_explicit_files_are_confined_and_checked(tmp_path):
    root = published.karpathy(tmp_path / "k", "flickr8k")
    content = json.loads((root / "dataset_flickr8k.json").read_text())
    content["images"][0]["filename"] = "../../../etc/passwd"
    (root / "dataset_flickr8k.json").write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=r"image #0 \(imgid 0\) filename '\.\./\.\./\.\./etc/passwd' escapes"):
        caption_source(str(root)).split("train")
    with pytest.raises(DatasetError, match=r"annotations '.*nope\.json' \(split 'train'\) does not exist"):
        caption_source(annotations=str(tmp_path / "nope.json"), images=str(tmp_path))
    (root / "Flicker8k_Dataset" / content["images"][1]["filename"]).unlink()
    content["images"][0]["filename"] = content["images"][2]["filename"]
    (root / "dataset_flickr8k.json").write_text(json.dumps(content))
    with pytest.raises(DatasetError, match=r"1 of 12 image files are missing .*1002_0002abcd\.jpg"):
        caption_source(str(root)).split("train")


# --- what real downloads hold ----------------------------------------------------------------------

def _kinds(folder):
    """One file of each kind real photo collections hold; returns {kind: path}."""
    paths = {"large": published.photo(folder / "large.jpg", "red", size=(3000, 2000), quality=80),
             "rotated": published.photo(folder / "rotated.jpg", "blue", exif_orientation=6),
             "grayscale": published.photo(folder / "grayscale.jpg", "green", mode="L"),
             "cmyk": published.photo(folder / "cmyk.jpg", "red", mode="CMYK")}
    rgba = Image.new("RGBA", (40, 32), (200, 30, 30, 128))
    rgba.save(folder / "alpha.png")
    paths["alpha"] = folder / "alpha.png"
    return paths


def test_every_kind_of_real_image_is_read(tmp_path):
    from vlm_keras.data.images import check_image_file
    from vlm_keras.encoders.features import load_images

    paths = _kinds(tmp_path)
    for kind, path in paths.items():
        check_image_file(path)
    pixels = load_images([str(p) for p in paths.values()], 32)
    assert pixels.shape == (5, 32, 32, 3) and np.isfinite(pixels).all()
    # Grayscale comes out as three equal channels, CMYK as RGB, the alpha channel is dropped.
    import tensorflow as tf

    from vlm_keras.data.images import decode_image

    gray = decode_image(tf.constant(paths["grayscale"].read_bytes()), 16).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-3)
    cmyk = decode_image(tf.constant(paths["cmyk"].read_bytes()), 40).numpy()
    assert cmyk[16, 20, 0] > 150 and cmyk[16, 20, 2] < 100  # the red block stays red
    rotated = decode_image(tf.constant(paths["rotated"].read_bytes()), 32).numpy()
    assert rotated.shape == (32, 32, 3)


def test_the_odd_corrupt_image_of_a_large_split_is_left_out_and_named(tmp_path):
    from vlm_keras.data.formats.coco import load_coco_captions

    images, annotations = [], []
    for i in range(1, 121):
        name = f"{i:04d}.jpg"
        published.photo(tmp_path / "train" / name, "red", seed=i, size=(8, 8))
        images.append({"id": i, "file_name": name})
        annotations.append({"id": i, "image_id": i, "caption": "a red block"})
    (tmp_path / "train" / "0007.jpg").write_bytes(b"\xff\xd8 a truncated download")
    (tmp_path / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = load_coco_captions(tmp_path / "captions.json", tmp_path / "train")
    assert len(split) == 119 and 7 not in split.image_ids
    assert any("left out 1 of 120 images" in str(w.message) and "0007.jpg" in str(w.message) for w in caught)
    (tmp_path / "train" / "0008.jpg").write_bytes(b"not an image either")
    with pytest.raises(DatasetError, match="2 of 120 image files are bad"):
        load_coco_captions(tmp_path / "captions.json", tmp_path / "train")

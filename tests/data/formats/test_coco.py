import json
import os

import numpy as np
import pytest
from PIL import Image

from vlm_keras.data.formats.coco import (
    CaptionSplit,
    DatasetError,
    list_caption_splits,
    load_caption_split,
    load_coco_captions,
    write_coco_captions,
    write_coco_results,
)


def _save_image(path, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _valid_content():
    """Three images listed out of id order; annotations interleaved across images."""
    return {
        "info": {},
        "images": [
            {"id": 30, "file_name": "c.png", "width": 8, "height": 8},
            {"id": 10, "file_name": "a.png", "width": 8, "height": 8},
            {"id": 20, "file_name": "sub/b.png", "width": 8, "height": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "caption": "a one"},
            {"id": 2, "image_id": 30, "caption": "c one"},
            {"id": 3, "image_id": 10, "caption": " a two \n"},
            {"id": 4, "image_id": 20, "caption": "b one"},
        ],
    }


@pytest.fixture
def dataset(tmp_path):
    """A valid dataset: data/annotations/captions_val.json + data/val/ images."""
    root = tmp_path / "data" / "val"
    for seed, name in enumerate(["a.png", "sub/b.png", "c.png"]):
        _save_image(root / name, seed)
    annotation_file = tmp_path / "data" / "annotations" / "captions_val.json"
    annotation_file.parent.mkdir(parents=True)
    annotation_file.write_text(json.dumps(_valid_content()))
    return annotation_file, root


def _write(annotation_file, content):
    annotation_file.write_text(content if isinstance(content, str) else json.dumps(content))


def test_loads_in_file_order(dataset):
    annotation_file, root = dataset
    split = load_coco_captions(annotation_file, root)
    assert isinstance(split, CaptionSplit)
    assert split.name == "val" and len(split) == 3
    assert split.image_ids == [30, 10, 20]
    assert split.image_paths == [str((root / n).resolve()) for n in ["c.png", "a.png", "sub/b.png"]]
    assert split.captions == [["c one"], ["a one", "a two"], ["b one"]]


def test_load_caption_split_and_list_splits(dataset, tmp_path):
    data_dir = tmp_path / "data"
    assert list_caption_splits(data_dir) == ["val"]
    assert load_caption_split(data_dir, "val").image_ids == [30, 10, 20]
    with pytest.raises(DatasetError, match=r"split 'train' not found.*captions_train\.json.*val"):
        load_caption_split(data_dir, "train")
    with pytest.raises(DatasetError, match="does not exist"):
        load_caption_split(tmp_path / "elsewhere", "val")


def _edit(change):
    content = _valid_content()
    change(content)
    return content


_IMAGE = 'image #{} \\(id {}\\)'
_ANNOTATION = 'annotation #{} \\(id {}\\)'


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", r"is not valid JSON: .* line 1 column 2"),
        ("[1, 2]", "top level is a list; expected an object"),
        (_edit(lambda c: c.pop("images")), '"images" is missing'),
        (_edit(lambda c: c.update(annotations={})), '"annotations" is a dict; expected a list'),
        (_edit(lambda c: c["images"][1].pop("id")), 'image #1 has no int "id"'),
        (_edit(lambda c: c["images"][1].update(id="10")), _IMAGE.format(1, "'10'") + " has no int"),
        (
            _edit(lambda c: c["images"][2].pop("file_name")),
            _IMAGE.format(2, 20) + ' has no str "file_name"',
        ),
        (
            _edit(lambda c: c["images"][2].update(id=30)),
            _IMAGE.format(2, 30) + " repeats id 30 of image #0",
        ),
        (
            _edit(lambda c: c["annotations"][3].pop("caption")),
            _ANNOTATION.format(3, 4) + ' has no "caption"',
        ),
        (
            _edit(lambda c: c["annotations"][3].pop("image_id")),
            _ANNOTATION.format(3, 4) + ' has no "image_id"',
        ),
        (
            _edit(lambda c: c["annotations"][1].update(caption=7)),
            _ANNOTATION.format(1, 2) + " caption is an int; expected a str",
        ),
        (
            _edit(lambda c: c["annotations"][1].update(caption="  ")),
            _ANNOTATION.format(1, 2) + " caption is empty",
        ),
        (
            _edit(lambda c: c["annotations"][1].update(caption=" ... !?")),
            _ANNOTATION.format(1, 2) + r" caption ' \.\.\. !\?' has no words \(punctuation only\)",
        ),
        (
            _edit(lambda c: c["annotations"][3].update(image_id=99)),
            _ANNOTATION.format(3, 4) + ' refers to image_id 99, which is not in "images"',
        ),
        (_edit(lambda c: c["images"][0].update(file_name="../c.png")), "escapes the image folder"),
        (_edit(lambda c: c["images"][0].update(file_name="/etc/hosts")), "escapes the image"),
    ],
)
def test_malformed_annotations_name_file_and_entry(dataset, content, fragment):
    annotation_file, root = dataset
    _write(annotation_file, content)
    with pytest.raises(DatasetError, match=fragment) as info:
        load_coco_captions(annotation_file, root)
    assert f"annotations '{annotation_file}'" in str(info.value)


def test_missing_annotation_file_and_image_root(dataset, tmp_path):
    annotation_file, root = dataset
    with pytest.raises(DatasetError, match="captions_nope.json' does not exist"):
        load_coco_captions(tmp_path / "captions_nope.json", root)
    with pytest.raises(DatasetError, match=f"image folder '{tmp_path / 'gone'}' does not exist"):
        load_coco_captions(annotation_file, tmp_path / "gone")


def test_symlink_out_of_the_image_folder_is_caught(dataset, tmp_path):
    annotation_file, root = dataset
    _save_image(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    _write(annotation_file, _edit(lambda c: c["images"][0].update(file_name="link.png")))
    with pytest.raises(DatasetError, match=r"image #0 \(id 30\) file_name 'link.png' escapes"):
        load_coco_captions(annotation_file, root)


def test_missing_images_are_counted_and_listed(dataset):
    annotation_file, root = dataset
    content = _valid_content()
    for index in range(7):
        content["images"].append({"id": 100 + index, "file_name": f"gone{index}.png"})
        content["annotations"].append({"id": 100 + index, "image_id": 100 + index, "caption": "x"})
    _write(annotation_file, content)
    with pytest.raises(DatasetError, match="7 of 10 image files are missing") as info:
        load_coco_captions(annotation_file, root)
    message = str(info.value)
    assert "gone0.png" in message and "gone4.png" in message and "gone5.png" not in message
    # check_images=False does not touch the files.
    assert len(load_coco_captions(annotation_file, root, check_images=False)) == 10


def test_corrupt_images_are_reported_by_name(dataset):
    annotation_file, root = dataset
    (root / "c.png").write_bytes(np.random.default_rng(0).bytes(300))
    data = (root / "a.png").read_bytes()
    (root / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="2 of 3 image files are bad") as info:
        load_coco_captions(annotation_file, root)
    assert "c.png" in str(info.value) and "a.png" in str(info.value)
    assert "sub/b.png" not in str(info.value)


def test_images_without_captions_are_skipped_with_a_warning(dataset):
    annotation_file, root = dataset
    content = _valid_content()
    content["annotations"] = [a for a in content["annotations"] if a["image_id"] != 20]
    _write(annotation_file, content)
    with pytest.warns(UserWarning, match="skipped 1 images that have no caption"):
        split = load_coco_captions(annotation_file, root)
    assert split.image_ids == [30, 10]

    content["annotations"] = []
    _write(annotation_file, content)
    with pytest.raises(DatasetError, match="none of the 3 images has a caption"):
        load_coco_captions(annotation_file, root)


def test_write_coco_captions_round_trip(tmp_path):
    for name in ["1.png", "2.png"]:
        _save_image(tmp_path / "split" / name)
    images = [{"id": 2, "file_name": "2.png"}, {"id": 1, "file_name": "1.png"}]
    path = tmp_path / "annotations" / "captions_split.json"
    write_coco_captions(path, images, {1: ["one a", "one b"], 2: ["two"]}, info={"seed": 3})
    content = json.loads(path.read_text())
    assert content["info"] == {"seed": 3}
    assert [a["id"] for a in content["annotations"]] == [1, 2, 3]
    split = load_caption_split(tmp_path, "split")
    assert split.image_ids == [2, 1] and split.captions == [["two"], ["one a", "one b"]]
    with pytest.raises(ValueError, match=r"image ids \[5\] not in images"):
        write_coco_captions(path, images, {5: ["x"]})


def test_write_coco_results_round_trip(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_coco_results(path, np.array([3, 1]), ["a cat", "a dog"])
    assert json.loads(path.read_text()) == [
        {"image_id": 3, "caption": "a cat"},
        {"image_id": 1, "caption": "a dog"},
    ]
    assert os.listdir(path.parent) == ["results.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="2 image ids and 1 captions"):
        write_coco_results(path, [1, 2], ["x"])

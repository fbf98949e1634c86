import collections
import json
import re

import numpy as np
import pytest

from vlm_keras.data.scenes import dataset as scenes_dataset
from vlm_keras.data.formats.coco import load_caption_split
from vlm_keras.data.scenes.scenes import (
    COLORS,
    HELDOUT_PAIRS,
    MAX_CAPTION_WORDS,
    SHAPES,
    SIZES,
    SPLITS,
    Scene,
    render_scene,
    sample_scene,
)
from vlm_keras.data.scenes.captions import describe_scene
from vlm_keras.data.scenes.dataset import write_scenes_dataset

_SIZE_WORDS = {"small": "small", "little": "small", "large": "large", "big": "large"}
_VARIANT_WORDS = {"big", "little", "upper", "lower", "middle", "corner", "side", "near"}


def _scenes(count, seed=0, compositional=False):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, compositional) for _ in range(count)]


def _described(count, seed=0):
    rng = np.random.default_rng(seed)
    scenes = _scenes(count, seed)
    return [(scene, describe_scene(scene, rng)) for scene in scenes]


def _mentions(caption):
    """Objects a caption names, in order: [(color, shape, size or None), ...]."""
    words = caption.split()
    found = []
    for index, word in enumerate(words[:-1]):
        if word in COLORS and words[index + 1] in SHAPES:
            size = _SIZE_WORDS.get(words[index - 1]) if index else None
            found.append((word, words[index + 1], size))
    return found


def _match(mention, scene):
    """The scene object a mention refers to (it must be exactly one)."""
    color, shape, size = mention
    matches = [o for o in scene.objects
               if (o.color, o.shape) == (color, shape) and size in (None, o.size)]
    assert len(matches) == 1, (mention, scene)
    return matches[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("scenes") / "data"
    return write_scenes_dataset(out_dir, num_images=40, seed=0, image_size=32, progress=False)


def _read_scenes(data_dir, split):
    content = json.loads((data_dir / "annotations" / f"scenes_{split}.json").read_text())
    return [Scene.from_dict(entry["scene"]) for entry in content["scenes"]]


def _all_files(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_write_is_deterministic_and_seed_dependent(tmp_path, dataset):
    again = write_scenes_dataset(tmp_path / "again", 40, seed=0, image_size=32, progress=False)
    assert _all_files(again) == _all_files(dataset)
    other = write_scenes_dataset(tmp_path / "other", 40, seed=1, image_size=32, progress=False)
    other_files = _all_files(other)
    assert other_files.keys() == _all_files(dataset).keys()
    assert other_files["train/000000000001.png"] != _all_files(dataset)["train/000000000001.png"]
    assert other_files["annotations/captions_train.json"] != _all_files(dataset)[
        "annotations/captions_train.json"]


def test_splits_load_with_sizes_ids_and_five_distinct_captions(dataset):
    splits = {name: load_caption_split(dataset, name) for name in SPLITS}
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 32, "val": 4, "test": 4, "compositional": 4}
    ids = [i for split in splits.values() for i in split.image_ids]
    assert sorted(ids) == list(range(1, 45))
    assert splits["val"].image_paths[0].endswith("val/000000000033.png")
    for split in splits.values():
        for captions in split.captions:
            assert len(captions) == 5 and len(set(captions)) == 5
    info = json.loads((dataset / "annotations" / "captions_val.json").read_text())["info"]
    assert info["seed"] == 0 and info["image_size"] == 32 and info["version"] == "1.0"
    assert [tuple(p) for p in info["heldout_pairs"]] == list(HELDOUT_PAIRS)


def test_small_datasets_have_every_split_non_empty(tmp_path):
    out = write_scenes_dataset(
        tmp_path / "d", 10, image_size=16, num_compositional=0, progress=False
    )
    counts = json.loads((out / "dataset_info.json").read_text())["splits"]
    assert counts == {"train": 8, "val": 1, "test": 1, "compositional": 0}
    assert not (out / "compositional").exists()
    with pytest.raises(ValueError, match="num_images is 9; expected an int >= 10"):
        write_scenes_dataset(tmp_path / "e", 9, progress=False)


def test_heldout_pairs_only_in_compositional_split(dataset):
    assert len({color for color, _ in HELDOUT_PAIRS}) == len(HELDOUT_PAIRS)
    assert sorted(shape for _, shape in HELDOUT_PAIRS) == sorted(SHAPES)
    for split in ("train", "val", "test"):
        for scene in _read_scenes(dataset, split):
            assert all((o.color, o.shape) not in HELDOUT_PAIRS for o in scene.objects)
    for scene in _read_scenes(dataset, "compositional"):
        assert any((o.color, o.shape) in HELDOUT_PAIRS for o in scene.objects)
    train = _read_scenes(dataset, "train")
    assert {o.color for s in train for o in s.objects} == set(COLORS)
    assert {o.shape for s in train for o in s.objects} == set(SHAPES)


def test_sampled_scenes_cover_allowed_pairs_and_fit_without_overlap():
    scenes = _scenes(400)
    pairs = {(o.color, o.shape) for s in scenes for o in s.objects}
    assert pairs == {(c, s) for c in COLORS for s in SHAPES} - set(HELDOUT_PAIRS)
    counts = collections.Counter(len(s.objects) for s in scenes)
    assert set(counts) == {1, 2, 3, 4} and counts[1] + counts[2] > counts[3] + counts[4]
    for scene in scenes:
        kinds = [(o.color, o.shape, o.size) for o in scene.objects]
        assert len(set(kinds)) == len(kinds)
        for i, a in enumerate(scene.objects):
            assert a.radius <= a.x <= 1 - a.radius and a.radius <= a.y <= 1 - a.radius
            assert 0.9 * SIZES[a.size] <= a.radius <= 1.1 * SIZES[a.size]
            for b in scene.objects[i + 1:]:
                assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius
        if len(scene.objects) == 2:  # the relation word is clear from the picture
            a, b = scene.objects
            dx, dy = abs(a.x - b.x), abs(a.y - b.y)
            assert max(dx, dy) >= 1.5 * min(dx, dy)
        background = np.array(scene.background)
        assert min(np.linalg.norm(background - np.array(c)) for c in COLORS.values()) > 100


def test_captions_are_true_of_the_scene():
    for scene, captions in _described(300):
        objects = scene.objects
        for caption in captions:
            mentions = _mentions(caption)
            assert len(mentions) == len(objects), (caption, scene)
            named = [_match(m, scene) for m in mentions]
            words = set(caption.split())
            if len(objects) == 1:
                row = 0 if words & {"top", "upper"} else 2 if words & {"bottom", "lower"} else 1
                col = 0 if "left" in words else 2 if "right" in words else 1
                assert (row, col) == (int(objects[0].y * 3), int(objects[0].x * 3)), caption
            elif len(objects) == 2:
                first, second = named
                dx, dy = second.x - first.x, second.y - first.y
                expected = {
                    "above": dy > 0 and abs(dy) > abs(dx), "below": dy < 0 and abs(dy) > abs(dx),
                    "left": dx > 0 and abs(dx) > abs(dy), "right": dx < 0 and abs(dx) > abs(dy),
                }
                relations = [r for r in expected if r in words]
                assert len(relations) == 1 and expected[relations[0]], (caption, scene)
            else:
                assert [o.x for o in named] == sorted(o.x for o in objects), caption
                assert {3: "three", 4: "four"}[len(objects)] in words or "from" in words


def test_captions_are_plain_short_and_mostly_canonical():
    vocabulary = collections.Counter()
    for scene, captions in _described(300):
        canonical = 0
        for caption in captions:
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", caption), caption
            assert len(caption.split()) <= MAX_CAPTION_WORDS
            vocabulary.update(caption.split())
            sizes = [m[2] for m in _mentions(caption) if m[2]]
            if not set(caption.split()) & _VARIANT_WORDS and len(sizes) == len(scene.objects):
                canonical += 1
        assert canonical >= 3, captions
    assert len(vocabulary) < 100


def test_captions_single_out_few_scenes():
    scenes_with = collections.Counter()
    described = _described(500)
    for _, captions in described:
        scenes_with.update(set(captions))
    counts = [scenes_with[c] for _, captions in described for c in captions]
    assert np.median(counts) <= 5


def test_captions_deterministic_given_rng():
    scene = _scenes(1)[0]
    first = describe_scene(scene, np.random.default_rng(5))
    assert first == describe_scene(scene, np.random.default_rng(5))
    assert len(describe_scene(scene, np.random.default_rng(5), num_captions=3)) == 3


def test_render_paints_each_object_colour_at_its_centre():
    rng = np.random.default_rng(1)
    for scene in _scenes(40, seed=1):
        image = render_scene(scene, 128, rng)
        assert image.mode == "RGB" and image.size == (128, 128)
        pixels = np.asarray(image).astype(int)
        for obj in scene.objects:
            centre = pixels[int(obj.y * 128), int(obj.x * 128)]
            assert np.abs(centre - COLORS[obj.color]).max() <= 12, (obj, centre)


def test_render_without_rng_is_deterministic_from_the_scene():
    scene = _scenes(1, seed=2)[0]
    first = np.asarray(render_scene(scene, 64))
    assert np.array_equal(first, np.asarray(render_scene(scene, 64)))
    assert first.std() > 0  # background varies: gradient and noise


def test_scene_dict_round_trip_and_validation():
    for scene in _scenes(20, compositional=True):
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
    bad = scene.to_dict()
    bad["objects"][0]["shape"] = "hexagon"
    with pytest.raises(ValueError, match="shape is 'hexagon'; expected one of"):
        Scene.from_dict(bad)


def test_existing_dataset_is_reused_and_mismatches_refused(dataset, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*")}
    assert write_scenes_dataset(dataset, 40, seed=0, image_size=32, progress=True) == dataset
    assert "reusing" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*")} == before
    with pytest.raises(ValueError, match=r"different settings \(seed is 0 there, 1 requested"):
        write_scenes_dataset(dataset, 40, seed=1, image_size=32, progress=False)

    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=f"'{user_folder}' exists and is not a scenes dataset"):
        write_scenes_dataset(user_folder, 10, progress=False)
    assert (user_folder / "notes.txt").read_text() == "keep me"


def test_empty_folder_is_filled_and_progress_printed(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_scenes_dataset(tmp_path / "empty", 10, image_size=16, progress=True)
    assert "scenes: 11/11 images" in capsys.readouterr().err
    assert len(load_caption_split(tmp_path / "empty", "train")) == 8


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    real_render = scenes_dataset.render_example

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(scenes_dataset, "render_example", failing_render)
    with pytest.raises(KeyboardInterrupt):
        write_scenes_dataset(tmp_path / "data", 10, image_size=16, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_rendering_in_worker_processes_writes_the_same_bytes(tmp_path, monkeypatch):
    import functools

    serial = write_scenes_dataset(tmp_path / "serial", num_images=20, seed=4, progress=False)
    monkeypatch.setattr(scenes_dataset, "_render", functools.partial(scenes_dataset._render, parallel_from=1))
    parallel = write_scenes_dataset(tmp_path / "parallel", num_images=20, seed=4, progress=False)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    for name in files:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name

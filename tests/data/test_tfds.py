"""TFDS: the vlm_scenes builder offline, TFDS names as `data=`, coco_captions through mock_data."""

import io
import re

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

import vlm_keras.data.scenes.tfds  # noqa: E402,F401  (registers "vlm_scenes" with TFDS)
from tests.helpers import run_python  # noqa: E402
from vlm_keras.data.formats import coco, vqa  # noqa: E402
from vlm_keras.data.formats.reader import DatasetError  # noqa: E402
from vlm_keras.data.scenes.dataset import write_scenes_dataset, write_vqa_dataset  # noqa: E402
from vlm_keras.data.scenes.scenes import SPLITS  # noqa: E402
from vlm_keras.data.sources import resolve_data_dir, resolve_vqa_dir  # noqa: E402

TINY = "vlm_scenes/tiny"  # 32/4/4 images + 4 compositional, 32 px, seed 0


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A TFDS data dir holding vlm_scenes/tiny, built offline once for the module."""
    data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
    tfds.builder(TINY, data_dir=str(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    """The same scenes written by write_scenes_dataset + write_vqa_dataset (the "scenes" path)."""
    out = write_scenes_dataset(tmp_path_factory.mktemp("scenes") / "scenes", num_images=40, seed=0,
                               image_size=32, progress=False)
    return write_vqa_dataset(out, seed=0)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def tfds_env(tfds_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    return tfds_dir


def test_vlm_scenes_is_registered_by_importing_its_module_and_vlm_keras_stays_light():
    after = run_python("""
        import json, sys
        import vlm_keras, vlm_keras.config
        light = "tensorflow_datasets" not in sys.modules
        import vlm_keras.data.scenes.tfds
        import tensorflow_datasets as tfds
        print(json.dumps({"light": light, "builder": tfds.builder_cls("vlm_scenes").__name__}))
    """)
    assert after == {"light": True, "builder": "VlmScenes"}
    before = run_python("""
        import json
        import tensorflow_datasets as tfds
        import vlm_keras.data.scenes.tfds
        print(json.dumps({"builder": tfds.builder_cls("vlm_scenes").__name__}))
    """)
    assert before == {"builder": "VlmScenes"}


def test_vlm_scenes_builds_offline_with_every_split_and_feature(tfds_dir):
    datasets, info = tfds.load(TINY, data_dir=str(tfds_dir), with_info=True)
    assert {split: info.splits[split].num_examples for split in SPLITS} == {
        "train": 32, "val": 4, "test": 4, "compositional": 4}
    assert set(datasets) == set(SPLITS)
    assert set(info.features) == {"image", "image_id", "captions", "questions"}
    assert set(info.features["questions"].feature) == {
        "question_id", "question", "question_type", "answer_type", "answers", "multiple_choice_answer"}
    example = next(iter(datasets["train"]))
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype.name == "uint8"
    assert example["captions"].shape == (5,)
    assert [len(answers) for answers in example["questions"]["answers"].to_list()] == [10] * 6
    assert [c.name for c in tfds.builder_cls("vlm_scenes").BUILDER_CONFIGS] == [
        "tiny", "small", "6k_64", "6k_128"]


def test_vlm_scenes_holds_what_write_scenes_dataset_writes(tfds_dir, scenes_dir):
    for split in SPLITS:
        captions = coco.load_caption_split(scenes_dir, split)
        questions = vqa.load_vqa_split(scenes_dir, split)
        examples = {int(ex["image_id"]): ex for ex in tfds.as_numpy(
            tfds.load(TINY, split=split, data_dir=str(tfds_dir), shuffle_files=False))}
        assert sorted(examples) == sorted(captions.image_ids)
        for image_id, path, references in zip(captions.image_ids, captions.image_paths,
                                              captions.captions):
            example = examples[image_id]
            assert [c.decode() for c in example["captions"]] == references
            np.testing.assert_array_equal(example["image"], np.asarray(Image.open(path)))
            mine = [i for i, q in enumerate(questions.image_ids) if q == image_id]
            assert example["questions"]["question_id"].tolist() == [questions.question_ids[i] for i in mine]
            assert [q.decode() for q in example["questions"]["question"]] == [
                questions.questions[i] for i in mine]
            assert [[a.decode() for a in answers] for answers in example["questions"]["answers"].to_list()] == [
                questions.answers[i] for i in mine]


def test_tfds_name_becomes_a_folder_in_both_layouts(tfds_env, scenes_dir, data_root):
    data_dir = resolve_vqa_dir("tfds:" + TINY, data_root=data_root, verbose=False)
    assert data_dir == data_root / "tfds-vlm_scenes-tiny-1.0.0"
    for split in SPLITS:
        written, expected = coco.load_caption_split(data_dir, split), coco.load_caption_split(scenes_dir, split)
        assert (written.image_ids, written.captions) == (expected.image_ids, expected.captions)
        # The PNG bytes pass through TFDS untouched.
        assert [open(p, "rb").read() for p in written.image_paths] == [
            open(p, "rb").read() for p in expected.image_paths]
        written, expected = vqa.load_vqa_split(data_dir, split), vqa.load_vqa_split(scenes_dir, split)
        assert (written.questions, written.annotations) == (expected.questions, expected.annotations)
    # A bare TFDS name that is not a folder means the same dataset; it is written once.
    assert resolve_data_dir(TINY, data_root=data_root, verbose=False) == data_dir


def test_an_existing_folder_wins_over_a_tfds_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist" / "annotations").mkdir(parents=True)
    assert str(resolve_data_dir("mnist")) == "mnist"


@pytest.mark.parametrize("data, message", [
    ("tfds:no_such_dataset", "TFDS has no dataset 'no_such_dataset'"),
    ("no_such_dataset", "data 'no_such_dataset' is not an existing folder, and TFDS has no dataset"),
    ("tfds:vlm_scenes/huge", "TFDS dataset 'vlm_scenes/huge' cannot be loaded: BuilderConfig huge "
                             "not found with version 1.0.0. Its configs: tiny, small, 6k_64, 6k_128."),
    ("tfds:Not A Name", "data 'tfds:Not A Name': 'Not A Name' is not a TFDS name"),
    ("tfds:coco_captions", "TFDS dataset 'coco_captions' is not prepared in"),
])
def test_bad_tfds_sources_raise_dataset_errors(data, message, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="^" + re.escape(message)) as error:
        resolve_data_dir(data, data_root=tmp_path)
    if "coco_captions" in data:  # never a download attempt
        assert "may need downloading" in str(error.value) and "tfds build coco_captions" in str(error.value)


def _jpeg(seed):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


# coco_captions examples with known content, for the mocked dataset to serve.
COCO_EXAMPLES = {
    split: [{"image": _jpeg(i), "image/filename": f"COCO_val2014_{i:012d}.jpg", "image/id": 100 + i,
             "captions": [{"id": 10 * i + k, "text": f"caption {k} of image {i}"} for k in range(2)],
             "objects": {"area": [5], "bbox": [tfds.features.BBox(0.1, 0.1, 0.5, 0.5)], "id": [i],
                         "is_crowd": [False], "label": [3]}}
            for i in indices]
    for split, indices in {"train": range(0, 4), "val": range(4, 6)}.items()}


def _as_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False):
    """COCO_EXAMPLES stored and read back as TFDS does: encoded, serialized, parsed, decoded."""
    from tensorflow_datasets.core import example_parser, example_serializer
    import tensorflow as tf

    features = builder.info.features
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    records = [serializer.serialize_example(features.encode_example(ex)) for ex in COCO_EXAMPLES[split]]
    if isinstance(decoders, tfds.decode.PartialDecoding):  # as FileReaderBuilder._as_dataset
        features, decoders = decoders.extract_features(features), decoders.decoders
    parser = example_parser.ExampleParser(features.get_serialized_info())
    return tf.data.Dataset.from_tensor_slices(records).map(parser.parse_example).map(
        lambda example: features.decode_example(example, decoders=decoders))


def _write_metadata(name, split_sizes, data_dir):
    """The metadata files of a prepared dataset (no examples), for MockPolicy.USE_FILES."""
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(splits_lib.SplitDict([
        splits_lib.SplitInfo(name=split, shard_lengths=[size], num_bytes=0, filename_template=None)
        for split, size in split_sizes.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


def test_coco_captions_through_mock_data_becomes_a_coco_folder(tmp_path):
    metadata = tmp_path / "metadata"
    _write_metadata("coco_captions", {split: len(ex) for split, ex in COCO_EXAMPLES.items()}, metadata)
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(metadata),
                                as_dataset_fn=_as_dataset):
        data_dir = resolve_data_dir("tfds:coco_captions", data_root=tmp_path, verbose=False)
        with pytest.raises(DatasetError, match="'coco_captions' has no questions"):
            resolve_vqa_dir("tfds:coco_captions", data_root=tmp_path)
    assert data_dir == tmp_path / "tfds-coco_captions-2014-1.1.0"
    assert coco.list_caption_splits(data_dir) == ["train", "val"]
    for split, examples in COCO_EXAMPLES.items():
        loaded = coco.load_caption_split(data_dir, split)  # checks every image decodes
        assert loaded.image_ids == [ex["image/id"] for ex in examples]
        assert loaded.captions == [[c["text"] for c in ex["captions"]] for ex in examples]
        assert [open(p, "rb").read() for p in loaded.image_paths] == [ex["image"] for ex in examples]


def test_train_captioner_on_a_tfds_dataset(tfds_env, data_root):
    from vlm_keras import train_captioner

    result = train_captioner(data="tfds:" + TINY, data_root=data_root, epochs=1, image_size=32,
                             units=16, embed_dim=8, num_layers=1, batch_size=16, verbose=0,
                             eval_splits=("test",))
    assert np.isfinite(result.history["loss"]).all()
    assert 0.0 <= result.metrics["coco_bleu4_test"] <= 1.0
    assert result.config["data"] == "tfds:" + TINY


def test_train_vqa_on_a_tfds_dataset(tfds_env, data_root):
    from vlm_keras import train_vqa

    result = train_vqa(data=TINY, data_root=data_root, model="concat", epochs=1, image_size=32,
                       batch_size=32, verbose=0, eval_splits=("test",), embed_dim=8, units=16,
                       fusion_dim=16)
    assert np.isfinite(result.history["loss"]).all()
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0


def test_train_retrieval_on_a_tfds_dataset(tfds_env, data_root):
    from vlm_keras import train_retrieval

    result = train_retrieval(data=TINY, data_root=data_root, epochs=1, image_size=32, batch_size=16,
                             verbose=0, eval_splits=("test",), embed_dim=8, hidden_dim=16,
                             attention_dim=8, word_dim=8, units=8)
    assert np.isfinite(result.history["loss"]).all()
    assert 0.0 <= result.metrics["text_to_image_r10_test"] <= 1.0
    assert result.metrics["num_images_test"] > 0


def test_a_tfds_dataset_without_captions_is_refused(tmp_path):
    _write_metadata("mnist", {"train": 3}, tmp_path / "metadata")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path / "metadata")):
        with pytest.raises(DatasetError, match=re.escape(
                "TFDS dataset 'mnist' has features ['image', 'label']; expected an 'image' and "
                "'captions'")):
            resolve_data_dir("tfds:mnist", data_root=tmp_path)

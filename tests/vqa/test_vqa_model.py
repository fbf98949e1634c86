"""VQA: the three heads, the answer vocabulary, train_vqa, round trips, the SavedModel, the CLI."""

import json

import numpy as np
import pytest

import keras
from vlm_keras.cli import main
from vlm_keras.data import pipeline
from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.vqa.grouped_trainer import build_grouped_trainer
from vlm_keras.vqa.models import build_vqa_head, question_attention_model
from vlm_keras.vqa import VQAModel, build_answer_vocabulary

from tests.helpers import serve_vqa_export

GRID = (2, 2, 6)


def _head(model_type, vocab=12, answers=4, **kw):
    keras.utils.set_random_seed(0)
    kw = {"embed_dim": 8, "units": 16, "fusion_dim": 32, "attention_dim": 16, "region_filters": 8,
          "dropout": 0.0, **kw}
    head = build_vqa_head(model_type, vocab, answers, GRID, **kw)
    adapt_region_encoder(head, np.random.rand(8, *GRID).astype("float32"))
    return head


@pytest.mark.parametrize("model_type", ["concat", "attention", "graph", "question_only"])
def test_heads_give_answer_logits(model_type):
    head = _head(model_type)
    out = head([np.random.rand(3, *GRID).astype("float32"), np.array([[2, 5, 6, 3], [2, 7, 3, 0], [2, 3, 0, 0]])])
    assert tuple(out.shape) == (3, 4) and out.dtype == "float32"


def test_question_only_ignores_the_image_and_the_others_do_not():
    tokens = np.array([[2, 5, 6, 3]])
    a, b = np.zeros((1, *GRID), "float32"), np.ones((1, *GRID), "float32")
    blind = _head("question_only")
    np.testing.assert_allclose(blind([a, tokens]), blind([b, tokens]))
    for model_type in ("concat", "attention", "graph"):
        head = _head(model_type)
        assert not np.allclose(head([a, tokens]), head([b, tokens]))


def test_attention_weights_sum_to_one_over_regions():
    weights = question_attention_model(_head("attention"))(
        [np.random.rand(2, *GRID).astype("float32"), np.array([[2, 5, 3], [2, 6, 3]])])
    assert tuple(weights.shape) == (2, 2, 2)
    np.testing.assert_allclose(np.asarray(weights).sum((1, 2)), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="no attention"):
        question_attention_model(_head("concat"))


@pytest.mark.parametrize("grid, regions", [((16, 16, 5), 64), ((4, 4, 5), 16), ((2, 2, 6), 4)])
def test_region_convolutions_stride_down_to_the_region_grid(grid, regions):
    head = build_vqa_head("attention", 12, 4, grid, units=16, attention_dim=16, region_filters=8)
    assert head.get_layer("image_branch").output_shape[1] == (None, regions, 16)
    no_convs = build_vqa_head("attention", 12, 4, grid, units=16, attention_dim=16, region_layers=0)
    assert no_convs.get_layer("image_branch").output_shape[1] == (None, grid[0] * grid[1], 16)


def test_head_options_shape_the_pooled_image():
    head = build_vqa_head("concat", 12, 4, (16, 16, 5), units=16, region_filters=8, cell_channels=3,
                          image_dropout=0.5)
    image_branch = head.get_layer("image_branch")
    assert image_branch.get_layer("pooled_image").output.shape[1:] == (8 * 8 * 3,)
    assert image_branch.get_layer("pooled_dropout").rate == 0.5
    plain = build_vqa_head("concat", 12, 4, (16, 16, 5), units=16, region_filters=8)
    assert "pooled_dropout" not in [layer.name for layer in plain.get_layer("image_branch").layers]


def test_the_appearance_stream_reads_each_frozen_cell_alone(tmp_path):
    keras.utils.set_random_seed(0)
    head = build_vqa_head("graph", 12, 4, (16, 16, 5), units=16, attention_dim=16, region_filters=8,
                          region_appearance=8)
    image_branch = head.get_layer("image_branch")
    joined = keras.Model(image_branch.input, image_branch.get_layer("regions_with_appearance").output)
    features = np.random.default_rng(0).random((1, 16, 16, 5), dtype=np.float32)
    changed = features.copy()
    changed[0, 5, 9] += 3.0                      # one frozen cell: region (2, 4) of the 8x8 grid covers it
    a, b = np.asarray(joined(features)), np.asarray(joined(changed))
    assert a.shape == (1, 8, 8, 8 + 8 + 2)
    appearance_moved = np.abs(a[..., :8] - b[..., :8]).max(-1) > 1e-6
    assert appearance_moved[0, 2, 4] and appearance_moved.sum() == 1
    # The row and column stay the last two channels (the graph head's positions read them).
    positions = keras.Model(image_branch.input, image_branch.get_layer("region_positions").output)(features)
    np.testing.assert_allclose(np.asarray(positions)[0].reshape(8, 8, 2), a[0, :, :, -2:])
    head.save(tmp_path / "head.keras")
    tokens = np.array([[2, 5, 6, 3]])
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "head.keras")([features, tokens]),
                               head([features, tokens]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="region_appearance"):
        build_vqa_head("attention", 12, 4, (16, 16, 5), region_appearance=-1)


def test_group_questions_hand_computed():
    image_index = np.array([2, 0, 2, 1, 2, 1])
    tokens = np.arange(12).reshape(6, 2) + 1
    answers = np.array([1, -1, 3, 4, 5, -1])
    images, grouped, grouped_answers = pipeline.group_questions(image_index, tokens, answers)
    # image 0 has no question with a known answer; image 2 has the most questions (3)
    np.testing.assert_array_equal(images, [1, 2])
    np.testing.assert_array_equal(grouped_answers, [[4, -1, -1], [1, 3, 5]])
    np.testing.assert_array_equal(grouped[0], [[7, 8], [11, 12], [0, 0]])
    np.testing.assert_array_equal(grouped[1], [[1, 2], [5, 6], [9, 10]])
    _, wider, wider_answers = pipeline.group_questions(image_index, tokens, answers, questions_per_image=4)
    np.testing.assert_array_equal(wider[:, :3], grouped)
    np.testing.assert_array_equal(wider[:, 3], 0)
    np.testing.assert_array_equal(wider_answers[:, 3], -1)
    with pytest.raises(ValueError, match="an image has 3 questions; questions_per_image is 2"):
        pipeline.group_questions(image_index, tokens, answers, questions_per_image=2)
    with pytest.raises(ValueError, match="one of each per question"):
        pipeline.group_questions(image_index[:2], tokens, answers)
    with pytest.raises(ValueError, match="no question has an answer"):
        pipeline.group_questions(image_index, tokens, np.full(6, -1))


@pytest.mark.parametrize("model_type", ["concat", "attention", "graph", "question_only"])
def test_grouped_trainer_gives_the_heads_logits_for_every_question(model_type):
    head = _head(model_type)
    features = np.random.default_rng(0).normal(size=(3, *GRID)).astype("float32")
    tokens = np.random.default_rng(1).integers(2, 12, size=(3, 2, 5)).astype("int32")   # (G, Q, T)
    grouped = build_grouped_trainer(head, questions_per_image=2, question_length=5)([features, tokens])
    pairs = head([np.repeat(features, 2, axis=0), tokens.reshape(6, 5)])
    np.testing.assert_allclose(grouped, pairs, atol=1e-5)


def test_answer_vocabulary_uses_the_official_normalisation():
    answers = [["Two", "2", "2."], ["yes", "Yes", "yes"], ["a circle", "circle", "red"]]
    vocab = build_answer_vocabulary(answers)
    assert vocab == ["2", "yes", "circle", "red"]
    assert build_answer_vocabulary(answers, top_k=2) == ["2", "yes"]
    with pytest.raises(ValueError, match="no non-empty answers"):
        build_answer_vocabulary([[""]])


def _one_channel_on(n, seed):
    """(n,) channel ids in 0..3 and (n, *GRID) noisy features with that channel on everywhere."""
    rng = np.random.default_rng(seed)
    channel = rng.integers(0, 4, size=n)
    features = np.zeros((n, *GRID), "float32")
    features[np.arange(n), :, :, channel] = 1.0
    return channel, features + rng.normal(scale=0.1, size=features.shape).astype("float32")


def test_a_tiny_concat_model_learns_an_answer_that_depends_on_the_image():
    # The answer ("which channel is on") is only in the image; the question is always the same.
    labels, features = _one_channel_on(256, seed=0)
    tokens = np.tile([[2, 5, 6, 3]], (256, 1))
    head = _head("concat")
    adapt_region_encoder(head, features)
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    head.fit([features, tokens], labels, epochs=30, batch_size=64, verbose=0)
    assert head.evaluate([features, tokens], labels, verbose=0)[1] > 0.95
    blind = _head("question_only")
    blind.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    blind.fit([features, tokens], labels, epochs=30, batch_size=64, verbose=0)
    assert blind.evaluate([features, tokens], labels, verbose=0)[1] < 0.45  # chance is 0.25-0.3


def test_grouped_training_learns_answers_that_depend_on_image_and_question():
    # Two questions per image: "which channel is on" (answers 0-3) and "is it one of the first
    # two" (answers 4 / 5). Trained through the grouped trainer, scored through the head.
    channel, features = _one_channel_on(128, seed=1)
    questions = np.array([[2, 5, 6, 3], [2, 7, 8, 3]], "int32")
    answers = np.stack([channel, np.where(channel < 2, 4, 5)], axis=1)          # (G, 2)
    tokens = np.broadcast_to(questions, (128, 2, 4)).copy()
    head = _head("attention", answers=6)
    adapt_region_encoder(head, features)
    trainer = build_grouped_trainer(head, questions_per_image=2, question_length=4)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(pipeline.grouped_vqa_dataset(features, np.arange(128), tokens, answers, 16, seed=0),
                epochs=25, verbose=0)
    logits = head([np.repeat(features, 2, axis=0), tokens.reshape(256, 4)], training=False)
    accuracy = np.mean(np.argmax(logits, -1) == answers.reshape(-1))
    assert accuracy > 0.95


def test_train_vqa_reports_the_official_accuracy(trained_vqa):
    result, out = trained_vqa
    for split in ("test", "compositional"):
        assert 0.0 <= result.metrics[f"accuracy_{split}"] <= 1.0
        assert set(result.metrics[f"per_answer_type_{split}"]) <= {"yes/no", "number", "other"}
    assert json.loads((out / "config.json").read_text())["task"] == "vqa"


def test_vqa_round_trip_answers_and_errors(trained_vqa, vqa_dir):
    from vlm_keras.data.formats.vqa import load_vqa_split

    result, out = trained_vqa
    test = load_vqa_split(vqa_dir, "test")
    loaded = VQAModel.load(out)
    expected = result.answer(test.image_paths[:4], test.questions[:4], top_k=3)
    got = loaded.answer(test.image_paths[:4], test.questions[:4], top_k=3)
    assert [g["answer"] for g in got] == [e["answer"] for e in expected]
    for g, e in zip(got, expected):
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-5)
        assert len(g["top_k"]) == 3 and g["top_k"][0][0] == g["answer"]
    maps = loaded.attention(test.image_paths[:3], test.questions[:3])
    assert maps.shape == (3, 8, 8)
    # From features: the split's images encoded once, each question pointing at its row.
    features = loaded.encode_images([test.image_paths[0], test.image_paths[2]])
    np.testing.assert_allclose(loaded.attention_features(features, [test.questions[0], test.questions[2]]),
                               maps[[0, 2]], atol=1e-5)
    np.testing.assert_allclose(loaded.attention_features(features, test.questions[:3][::2], image_index=[0, 1]),
                               maps[[0, 2]], atol=1e-5)
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        loaded.answer(test.image_paths[:2], test.questions[:1])
    with pytest.raises(ValueError, match="question #0"):
        loaded.answer(test.image_paths[:1], ["  "])
    from vlm_keras.bundle import ModelFolderError
    from vlm_keras.captioning import Captioner

    with pytest.raises(ModelFolderError, match="holds a vqa model, not a captioning model"):
        Captioner.load(out)


def test_vqa_saved_model_in_a_fresh_process(trained_vqa, vqa_dir, tmp_path):
    from vlm_keras.data.formats.vqa import load_vqa_split

    result, _ = trained_vqa
    test = load_vqa_split(vqa_dir, "test")
    export = result.export(tmp_path / "vqa_export")
    got = serve_vqa_export(export, test.image_paths[:3], test.questions[:3], cwd=tmp_path)
    expected = result.answer(test.image_paths[:3], test.questions[:3])
    assert got["answers"] == [e["answer"] for e in expected]
    np.testing.assert_allclose(got["p"], [e["probability"] for e in expected], atol=1e-5)
    assert not got["vlm_keras"]


def test_vqa_cli(trained_vqa, vqa_dir, tmp_path, capsys):
    from vlm_keras.data.formats.vqa import load_vqa_split

    result, out = trained_vqa
    test = load_vqa_split(vqa_dir, "test")
    image, question = test.image_paths[0], test.questions[0]
    expected = result.answer([image], [question])[0]["answer"]
    png = tmp_path / "map.png"
    assert main(["ask", "--model", str(out), image, question, "--attention-map", str(png)]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == expected and png.is_file()
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "sm")]) == 0
    capsys.readouterr()
    assert main(["ask", "--model", str(tmp_path / "sm"), image, question]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == expected
    assert main(["evaluate", "vqa", "--model", str(out), "--data", str(vqa_dir), "--split", "test",
                 "--predictions", str(tmp_path / "p.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_questions"] == len(json.loads((tmp_path / "p.json").read_text()))
    assert main(["ask", "--model", str(out), image, "   "]) == 2
    assert "the question is empty" in capsys.readouterr().err


def test_pointing_game_on_questions_about_one_object(trained_vqa, vqa_dir, capsys):
    from vlm_keras.data.formats.vqa import load_vqa_split
    from vlm_keras.data.scenes.dataset import load_scenes
    from vlm_keras.metrics.pointing import PointingScore, question_pointing

    result, out = trained_vqa
    report = result.pointing(str(vqa_dir), split="test", verbose=0)
    test, scenes = load_vqa_split(vqa_dir, "test"), load_scenes(vqa_dir, "test")
    maps = result.attention(test.image_paths, test.questions)
    expected = PointingScore()
    for image_id, question, weights in zip(test.image_ids, test.questions, maps):
        question_pointing(question, weights, scenes[image_id], expected)
    assert report["pointing_count"] == expected.count > 0
    assert report["pointing"] == pytest.approx(expected.report()["pointing"], abs=1e-6)
    assert main(["evaluate", "vqa", "--model", str(out), "--data", str(vqa_dir), "--pointing"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pointing_count"] == report["pointing_count"] and "overall" in printed

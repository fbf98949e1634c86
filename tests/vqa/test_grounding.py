"""Grounding the word glimpses (`grounding_loss`): the objects a question names, their maps over the
regions or nodes, the loss by hand, a trainer that learns to look where it is told, and train_vqa
with the SavedModel and the CLI."""

import json

import keras
import numpy as np
import pytest

from vlm_keras.data.scenes.questions import RELATIONS, generate_questions, named_objects, relation
from vlm_keras.data.scenes.scenes import Scene, SceneObject, sample_scene
from vlm_keras.layers import GroundingLoss
from vlm_keras.vqa.grouped_trainer import build_grouped_trainer
from vlm_keras.vqa.models import build_vqa_head
from vlm_keras.vqa.scene_graphs import MAX_NODES, referent_maps

from tests.helpers import serve_vqa_export, side_loss_before_and_after

RED_CIRCLE = SceneObject("red", "circle", "large", 0.5, 0.5, 0.2)       # holds the 4 central cells of 4x4
BLUE_SQUARE = SceneObject("blue", "square", "small", 0.1, 0.9, 0.01)    # holds only its own cell (3, 0)
RED_SQUARE = SceneObject("red", "square", "small", 0.9, 0.1, 0.01)      # its own cell (0, 3)
SCENE = Scene((RED_CIRCLE, BLUE_SQUARE, RED_SQUARE), (80, 80, 80))


@pytest.mark.parametrize("question, named", [
    ("is the red circle to the left of the blue object", [RED_CIRCLE, BLUE_SQUARE]),
    ("is the small blue square above the circle", [BLUE_SQUARE, RED_CIRCLE]),
    ("what color is the large object", [RED_CIRCLE]),
    ("what is the shape of the blue object", [BLUE_SQUARE]),
    ("what is below the red square", [RED_SQUARE]),
    ("what color is the square", []),                     # two squares: names none
    ("what size is the red object", []),                  # two red objects
    ("is there a red circle", []),                        # "a", not "the"
    ("how many squares are there", []),
    ("what is the color of the green triangle", []),      # fits nothing
])
def test_the_objects_a_question_names(question, named):
    assert named_objects(question, SCENE.objects) == named


def test_generated_questions_name_their_objects_and_the_relation_holds_between_them():
    rng = np.random.default_rng(0)
    counts = {}
    for _ in range(300):
        scene = sample_scene(rng)
        for qa in generate_questions(scene, rng):
            named = named_objects(qa["question"], scene.objects)
            form = "is A rel B" if qa["question"].startswith("is the ") else qa["question_type"]
            counts.setdefault(form, set()).add(len(named))
            if form == "is A rel B":
                asked = next(r for r in RELATIONS if f" {r} " in qa["question"])
                assert (relation(*named) == asked) == (qa["answer"] == "yes"), qa
            if form in ("what color", "what shape", "what size"):
                assert getattr(named[0], form.split()[1]) == qa["answer"], qa
    assert counts == {"is A rel B": {2}, "spatial": {1}, "what color": {1}, "what shape": {1}, "what size": {1},
                      "how many": {0}, "is there": {0}}


def test_referent_maps_by_hand():
    questions = ["is the small blue square above the circle", "how many squares are there"]
    grid = referent_maps([SCENE, SCENE.to_dict()], questions, glimpses=3, grid_shape=(4, 4))
    assert grid.shape == (2, 3, 16) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid[0, 0], np.eye(16)[12])              # cell (3, 0)
    circle = np.zeros((4, 4))
    circle[1:3, 1:3] = 0.25
    np.testing.assert_array_equal(grid[0, 1], circle.reshape(-1))
    assert not grid[0, 2].any() and not grid[1].any()                     # a third glimpse, no names
    nodes = referent_maps([SCENE, SCENE], questions, glimpses=2)
    assert nodes.shape == (2, 2, MAX_NODES)
    np.testing.assert_array_equal(nodes[0], np.eye(MAX_NODES)[[1, 0]])
    with pytest.raises(ValueError, match="one scene per question"):
        referent_maps([SCENE], questions, glimpses=2)


def test_grounding_loss_by_hand():
    logits = np.ones((2, 3), np.float32)
    weights = np.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]]], np.float32)
    targets = np.array([[[1, 0, 0], [0, 0, 0]], [[0, 0.5, 0.5], [0, 0, 1]]], np.float32)  # one glimpse without
    layer = GroundingLoss(2.0)
    np.testing.assert_array_equal(layer(logits, weights, targets), logits)
    assert not layer.losses                                               # not training: nothing added
    np.testing.assert_array_equal(layer(logits, weights, targets, training=True), logits)
    expected = 2.0 * (-np.log(0.5) - np.log(1 / 3) - np.log(0.6)) / 3
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)
    layer(logits, weights, np.zeros_like(targets), training=True)       # no target at all: 0, not NaN
    assert float(layer.losses[0]) == 0.0
    assert GroundingLoss.from_config(layer.get_config()).weight == 2.0


def test_the_trainer_learns_to_look_where_the_named_object_is():
    keras.utils.set_random_seed(0)
    head = build_vqa_head("attention", question_vocab_size=12, num_answers=5, feature_shape=(4, 4, 3),
                          region_layers=0, units=16, attention_dim=16, fusion_dim=16, embed_dim=8,
                          graph_units=8, word_glimpses=2)
    trainer = build_grouped_trainer(head, 2, 4, grounding_loss=1.0)
    assert "grounding_loss" in [layer.name for layer in trainer.layers]
    assert "grounding_loss" not in [layer.name for layer in head._flatten_layers()]
    rng = np.random.default_rng(0)
    # Token t (1..3) names the object drawn in channel t - 1; glimpse 0's target is the first named.
    features = np.zeros((32, 4, 4, 3), np.float32)
    tokens = rng.integers(1, 4, (32, 2, 4)).astype(np.int32)
    targets = np.zeros((32, 2, 2, 16), np.float32)
    for g in range(32):
        cells = rng.choice(16, 3, replace=False)
        features[g].reshape(16, 3)[cells, [0, 1, 2]] = 1.0
        for q in range(2):
            for k in range(2):
                targets[g, q, k, cells[tokens[g, q, k] - 1]] = 1.0
    answers = rng.integers(0, 5, 64)
    inputs = (features, tokens, targets)
    plain = build_grouped_trainer(head, 2, 4)
    np.testing.assert_allclose(trainer(inputs), plain((features, tokens)), rtol=1e-5)

    before, after = side_loss_before_and_after(trainer, inputs, answers, "grounding_loss", steps=150)
    assert after < 0.2 * before, (before, after)
    with pytest.raises(ValueError, match="word glimpses"):
        build_grouped_trainer(build_vqa_head("attention", 12, 5, (4, 4, 3)), 2, 4, grounding_loss=1.0)


@pytest.mark.parametrize("visual_input", ["image", "scene_graph"])
def test_train_vqa_with_grounded_word_glimpses(vqa_dir, tmp_path, capsys, visual_input):
    from vlm_keras import train_vqa
    from vlm_keras.vqa import VQAModel

    result = train_vqa(data=str(vqa_dir), model="graph", visual_input=visual_input, epochs=1, batch_size=32,
                       word_glimpses=2, grounding_loss=1.0, out=tmp_path / "model", eval_splits=("test",),
                       verbose=0, embed_dim=8, units=16, fusion_dim=32, attention_dim=16, graph_units=8)
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0
    loaded = VQAModel.load(tmp_path / "model")
    assert "word_glimpses" in [layer.name for layer in loaded.model._flatten_layers()]
    assert '"grounding_loss": 1.0' in (tmp_path / "model" / "config.json").read_text()
    if visual_input == "image":
        # The head that meets the graph fusion's targets serves as the others do: the map, the
        # SavedModel in a fresh process without vlm_keras, and the CLI.
        from vlm_keras.cli import main
        from vlm_keras.data.formats.vqa import load_vqa_split

        test = load_vqa_split(vqa_dir, "test")
        images, questions = test.image_paths[:3], test.questions[:3]
        expected = [a["answer"] for a in result.answer(images, questions)]
        assert [a["answer"] for a in loaded.answer(images, questions)] == expected
        np.testing.assert_allclose(loaded.attention(images, questions).sum((1, 2)), 1.0, atol=1e-5)
        export = result.export(tmp_path / "export")
        served = serve_vqa_export(export, images, questions, cwd=tmp_path)
        assert served["answers"] == expected and not served["vlm_keras"]
        assert main(["ask", "--model", str(tmp_path / "model"), images[0], questions[0]]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == expected[0]


@pytest.mark.parametrize("options", [dict(), dict(word_glimpses=0), dict(word_glimpses=2, grounding_loss=-1.0)])
def test_grounding_loss_without_word_glimpses_fails_before_any_work(options):
    from vlm_keras.config import VQAConfig

    with pytest.raises(ValueError, match="grounding_loss"):
        VQAConfig.from_options(**{"grounding_loss": 1.0, **options})

"""The graph-fusion VQA head (document section 2.3): a relation it learns where a bag of regions
cannot, node order, and the whole path through train_vqa, the model folder, the SavedModel and the
CLI."""

import json

import keras
import numpy as np
import pytest

from vlm_keras.cli import main
from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.layers import QuestionGraphAttention
from vlm_keras.visualize import plot_graph_edges
from vlm_keras.vqa import VQAModel
from vlm_keras.vqa.models import build_vqa_head, question_attention_model

from tests.helpers import serve_vqa_export

GRID = (4, 4, 2)          # channel 0: a red object in the cell; channel 1: a blue one


def _relation_scenes(n, seed):
    """One red and one blue object in two different cells of a 4x4 grid; the answer to "is the red
    object left of the blue one" is 1 (yes) or 0 (no); same columns are not drawn."""
    rng = np.random.default_rng(seed)
    features = np.zeros((n, *GRID), "float32")
    answers = np.zeros(n, "int32")
    for k in range(n):
        while True:
            red, blue = rng.choice(16, size=2, replace=False)
            if red % 4 != blue % 4:
                break
        features[k, red // 4, red % 4, 0] = 1.0
        features[k, blue // 4, blue % 4, 1] = 1.0
        answers[k] = int(red % 4 < blue % 4)
    return features, answers


def _bag_of_regions(vocab, answers):
    """The regions pooled without their places: what a model without positions sees."""
    features = keras.Input(GRID)
    tokens = keras.Input((None,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Dense(32, activation="relu")(features))
    question = keras.layers.LSTM(8)(keras.layers.Embedding(vocab, 8, mask_zero=True)(tokens))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Concatenate()([pooled, question]))
    return keras.Model([features, tokens], keras.layers.Dense(answers)(hidden))


def _fit(model, features, tokens, answers, epochs):
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit([features, tokens], answers, epochs=epochs, batch_size=32, verbose=0)


def test_a_tiny_graph_model_learns_left_of_that_a_bag_of_regions_cannot():
    features, answers = _relation_scenes(512, seed=0)
    test_features, test_answers = _relation_scenes(256, seed=1)
    tokens = np.tile([[2, 5, 6, 7, 3]], (512, 1))          # "is the red object left of the blue one"
    test_tokens = tokens[:256]
    keras.utils.set_random_seed(0)
    # The grid as it is (no region convolutions), so only the graph can relate the two cells.
    graph = build_vqa_head("graph", 10, 2, GRID, embed_dim=8, units=16, fusion_dim=32, attention_dim=16,
                           glimpses=2, region_layers=0, cell_channels=1, graph_units=16, dropout=0.0)
    # Without the flattened image vector, which keeps each cell's place by itself.
    graph.get_layer("image_branch").get_layer("image_projection").trainable = False
    graph.get_layer("image_branch").get_layer("image_projection").kernel.assign(
        np.zeros_like(graph.get_layer("image_branch").get_layer("image_projection").kernel))
    adapt_region_encoder(graph, features)
    _fit(graph, features, tokens, answers, epochs=40)
    graph_accuracy = graph.evaluate([test_features, test_tokens], test_answers, verbose=0)[1]
    keras.utils.set_random_seed(0)
    bag = _bag_of_regions(10, 2)
    _fit(bag, features, tokens, answers, epochs=40)
    bag_accuracy = bag.evaluate([test_features, test_tokens], test_answers, verbose=0)[1]
    assert graph_accuracy > 0.9, graph_accuracy
    assert bag_accuracy < 0.65, bag_accuracy                 # chance is 0.5


def test_the_graph_head_does_not_depend_on_the_order_of_its_regions():
    """Shuffling the regions together with their positions leaves the answer unchanged: every
    round is permutation-equivariant and the readout attention sums over the regions."""
    keras.utils.set_random_seed(0)
    head = build_vqa_head("graph", 10, 3, GRID, embed_dim=8, units=16, fusion_dim=16, attention_dim=16,
                          region_layers=0, graph_units=8)
    answer_branch = head.get_layer("answer_branch")
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 10, size=(3, 5)).astype("int32")
    image_vector = rng.normal(size=(3, 16)).astype("float32")
    regions = rng.normal(size=(3, 16, 16)).astype("float32")
    positions = rng.uniform(-1, 1, size=(3, 16, 2)).astype("float32")
    order = rng.permutation(16)
    logits = answer_branch([tokens, image_vector, regions, positions])
    shuffled = answer_branch([tokens, image_vector, regions[:, order], positions[:, order]])
    np.testing.assert_allclose(shuffled, logits, atol=1e-5)
    assert [layer.name for layer in answer_branch.layers if isinstance(layer, QuestionGraphAttention)] == [
        "graph_round_0", "graph_round_1"]


def test_the_graph_heads_readout_is_a_map_over_the_regions():
    keras.utils.set_random_seed(0)
    head = build_vqa_head("graph", 10, 3, (8, 8, 4), embed_dim=8, units=16, fusion_dim=16, attention_dim=16,
                          region_layers=0, graph_units=8)
    weights = question_attention_model(head)([np.random.rand(2, 8, 8, 4).astype("float32"),
                                              np.array([[2, 5, 3], [2, 6, 3]])])
    assert tuple(weights.shape) == (2, 8, 8)
    np.testing.assert_allclose(np.asarray(weights).sum((1, 2)), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def trained_graph(vqa_dir, tmp_path_factory):
    from vlm_keras import train_vqa

    out = tmp_path_factory.mktemp("graph") / "model"
    result = train_vqa(data=str(vqa_dir), model="graph", epochs=1, batch_size=32, seed=0, verbose=0, out=out,
                       embed_dim=8, units=16, fusion_dim=16, attention_dim=16, graph_units=8, region_filters=8)
    return result, out


def test_train_vqa_graph_round_trips_exports_and_answers(trained_graph, vqa_dir, tmp_path, capsys):
    from vlm_keras.data.formats.vqa import load_vqa_split

    result, out = trained_graph
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0
    # train_vqa's default head reads the outlines by default: the encoder gives the pixels' and the
    # outlines' block2_pool features, and config.json records it.
    encoder = result.model.get_layer("image_encoder")
    assert "outline_image" in [layer.name for layer in encoder.layers] and encoder.output_shape[-1] == 2 * 128
    assert '"outline": true' in (out / "config.json").read_text()
    test = load_vqa_split(vqa_dir, "test")
    images, questions = test.image_paths[:3], test.questions[:3]
    expected = result.answer(images, questions)
    loaded = VQAModel.load(out)                                   # the .keras file in the folder
    got = loaded.answer(images, questions)
    assert [g["answer"] for g in got] == [e["answer"] for e in expected]
    np.testing.assert_allclose([g["probability"] for g in got], [e["probability"] for e in expected], atol=1e-5)
    assert loaded.attention(images, questions).shape == (3, 8, 8)
    edges = loaded.graph_edges(images, questions)                 # (N, rounds, R, R)
    assert edges.shape == (3, 2, 64, 64)
    np.testing.assert_allclose(edges.sum(-1), 1.0, atol=1e-4)
    png = plot_graph_edges(images[0], edges[0, -1], (8, 8), tmp_path / "edges.png", title=questions[0])
    assert png.stat().st_size > 1000
    png = plot_graph_edges(images[0], edges[0, -1], (8, 8), tmp_path / "one_row.png", top_k=3, rows=[12])
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"rows \[64\] are not all region indices in 0..63"):
        plot_graph_edges(images[0], edges[0, -1], (8, 8), tmp_path / "bad.png", rows=[64])
    with pytest.raises(ValueError, match=r"edges must be \(h\*w, h\*w\) = \(16, 16\)"):
        plot_graph_edges(images[0], edges[0, -1], (4, 4), tmp_path / "bad.png")
    export = result.export(tmp_path / "graph_export")
    served = serve_vqa_export(export, images, questions, cwd=tmp_path)
    assert served["answers"] == [e["answer"] for e in expected] and not served["vlm_keras"]
    assert main(["ask", "--model", str(out), images[0], questions[0]]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == expected[0]["answer"]

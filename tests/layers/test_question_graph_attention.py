"""QuestionGraphAttention: a two-node case by hand, a numpy reference, node order, masking,
serialisation and mixed precision."""

import numpy as np
import pytest

import keras
from vlm_keras.layers import QuestionGraphAttention


def _layer(channels, question_size, units, seed=0):
    keras.utils.set_random_seed(seed)
    layer = QuestionGraphAttention(units)
    layer.build((None, None, channels), (None, None, 2), (None, question_size))
    return layer


def _set(layer, **weights):
    """_set(layer, query_kernel=...) assigns the weight at path ".../query/kernel"."""
    by_path = {v.path.split("/", 1)[1]: v for v in layer.weights}
    for name, values in weights.items():
        dense, part = name.rsplit("_", 1)
        by_path[f"{dense}/{part}"].assign(np.asarray(values, "float32"))


def _reference(layer, nodes, positions, question, mask=None):
    """The round in numpy, from the layer's own weights."""
    w = {v.path.split("/", 1)[1]: v.numpy() for v in layer.weights}
    units = layer.units
    count = nodes.shape[1]
    queries = np.concatenate([nodes, np.repeat(question[:, None], count, 1)], -1) @ w["query/kernel"]
    keys = nodes @ w["key/kernel"]
    offsets = positions[:, None, :, :] - positions[:, :, None, :]
    edges = np.concatenate([offsets, np.abs(offsets)], -1)                       # (B, N, N, 4)
    placement = question @ w["position_score/kernel"] + w["position_score/bias"]
    scores = queries @ keys.transpose(0, 2, 1) / np.sqrt(units) + np.einsum("bijf,bf->bij", edges, placement)
    if mask is not None:
        scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    messages = weights @ (nodes @ w["value/kernel"])
    messages += np.einsum("bij,bijf->bif", weights, edges) @ w["position_message/kernel"]
    hidden = np.maximum(messages + (question @ w["question_message/kernel"] + w["question_message/bias"])[:, None], 0)
    update = hidden @ w["output/kernel"]
    if mask is not None:
        update *= mask[:, :, None]
    return nodes + update, weights


def test_two_nodes_by_hand():
    # x1 = (1, 0) at (0, 0), x2 = (0, 1) at (1, 0); the question (one zero) only sets the bias
    # r = (1, 0, 0, 0): a score bonus of dx, "prefer what lies to the right".
    layer = _layer(2, 1, 2)
    _set(layer, query_kernel=[[1, 0], [0, 1], [0, 0]], key_kernel=np.eye(2), value_kernel=np.eye(2),
         position_score_kernel=np.zeros((1, 4)), position_score_bias=[1, 0, 0, 0],
         position_message_kernel=np.zeros((4, 2)), question_message_kernel=np.zeros((1, 2)),
         question_message_bias=[0, 0], output_kernel=np.eye(2))
    nodes = np.array([[[1, 0], [0, 1]]], "float32")
    positions = np.array([[[0, 0], [1, 0]]], "float32")
    out, edges = layer(nodes, positions, np.zeros((1, 1), "float32"), return_edge_weights=True)
    # scores: node 1 -> (1/sqrt2 + 0, 0 + 1); node 2 -> (0 - 1, 1/sqrt2 + 0)
    e = np.exp
    a1 = e(1 / np.sqrt(2)) / (e(1 / np.sqrt(2)) + e(1.0))                       # 0.4273
    a2 = e(-1.0) / (e(-1.0) + e(1 / np.sqrt(2)))                                 # 0.1535
    np.testing.assert_allclose(edges[0], [[a1, 1 - a1], [a2, 1 - a2]], atol=1e-6)
    np.testing.assert_allclose(out[0], [[1 + a1, 1 - a1], [a2, 2 - a2]], atol=1e-6)
    np.testing.assert_allclose(edges[0], [[0.4273, 0.5727], [0.1535, 0.8465]], atol=1e-4)


def test_matches_numpy_with_random_weights_and_a_mask():
    rng = np.random.default_rng(0)
    layer = _layer(6, 5, 4)
    for v in layer.weights:
        v.assign(rng.normal(size=v.shape).astype("float32") * 0.5)
    nodes = rng.normal(size=(3, 7, 6)).astype("float32")
    positions = rng.uniform(-1, 1, size=(3, 7, 2)).astype("float32")
    question = rng.normal(size=(3, 5)).astype("float32")
    mask = np.ones((3, 7), bool)
    mask[1, 4:] = False
    mask[2, 0] = False
    out, edges = layer(nodes, positions, question, node_mask=mask, return_edge_weights=True)
    want_out, want_edges = _reference(layer, nodes, positions, question, mask)
    np.testing.assert_allclose(edges, want_edges, atol=1e-5)
    np.testing.assert_allclose(out, want_out, atol=1e-4)


def _graph(rng, batch, count, channels, question_size):
    """Random (nodes, positions in -1..1, question) drawn from `rng`."""
    return (rng.normal(size=(batch, count, channels)).astype("float32"),
            rng.uniform(-1, 1, size=(batch, count, 2)).astype("float32"),
            rng.normal(size=(batch, question_size)).astype("float32"))


def test_absent_nodes_send_nothing_and_stay_as_they_are():
    layer = _layer(4, 3, 4)
    nodes, positions, question = _graph(np.random.default_rng(1), 2, 5, 4, 3)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    out, edges = layer(nodes, positions, question, node_mask=mask, return_edge_weights=True)
    np.testing.assert_array_equal(np.asarray(edges)[0, :, 3:], 0.0)
    np.testing.assert_allclose(np.asarray(edges).sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out)[0, 3:], nodes[0, 3:])
    # What padding holds never reaches the present nodes.
    noisy = nodes.copy()
    noisy[0, 3:] = 100.0
    np.testing.assert_allclose(layer(noisy, positions, question, node_mask=mask)[0, :3], np.asarray(out)[0, :3],
                               atol=1e-5)


def test_shuffling_the_nodes_shuffles_the_output():
    rng = np.random.default_rng(2)
    layer = _layer(4, 3, 8)
    nodes, positions, question = _graph(rng, 2, 6, 4, 3)
    order = rng.permutation(6)
    out, edges = layer(nodes, positions, question, return_edge_weights=True)
    shuffled, shuffled_edges = layer(nodes[:, order], positions[:, order], question, return_edge_weights=True)
    np.testing.assert_allclose(shuffled, np.asarray(out)[:, order], atol=1e-5)
    np.testing.assert_allclose(shuffled_edges, np.asarray(edges)[:, order][:, :, order], atol=1e-6)


def test_saved_in_a_model_and_loaded(tmp_path):
    nodes, positions, question = keras.Input((5, 4)), keras.Input((5, 2)), keras.Input((3,))
    out = QuestionGraphAttention(8, name="graph")(nodes, positions, question)
    model = keras.Model([nodes, positions, question], out)
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(2, 5, 4)).astype("float32"), rng.uniform(-1, 1, size=(2, 5, 2)).astype("float32"),
         rng.normal(size=(2, 3)).astype("float32")]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.get_layer("graph").units == 8


def test_mixed_precision_keeps_the_weights_float32():
    layer = QuestionGraphAttention(8, dtype="mixed_bfloat16")
    rng = np.random.default_rng(4)
    out, edges = layer(rng.normal(size=(2, 5, 4)).astype("float32"), rng.uniform(-1, 1, size=(2, 5, 2)).astype("float32"),
                       rng.normal(size=(2, 3)).astype("float32"), return_edge_weights=True)
    assert out.dtype == "bfloat16" and edges.dtype == "float32"
    assert all(v.dtype == "float32" for v in layer.weights)
    np.testing.assert_allclose(np.asarray(edges).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("units", [0, -2, 1.5])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units must be a positive integer"):
        QuestionGraphAttention(units)

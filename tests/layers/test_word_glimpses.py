"""WordGlimpses: a case computed by hand, masking of words and regions, region order, serialisation
and mixed precision."""

import math

import keras
import numpy as np
import pytest

from vlm_keras.layers import WordGlimpses

LN3 = math.log(3.0)


def _layer(glimpses=2, units=2, question=2, states=2, embeddings=2, regions=2, seed=0):
    keras.utils.set_random_seed(seed)
    layer = WordGlimpses(glimpses, units)
    layer.build((None, None, regions), (None, None, 2), (None, question), (None, None, states),
                (None, None, embeddings))
    return layer


def _hand_case():
    """Two glimpses, two words and a padding word, two regions and an absent one.

    Glimpse 1's control scores word 1 ln 3 above word 2, glimpse 2's the other way round
    (c . s / sqrt(2) with c = sqrt(2) ln 3 e_k and s_t = e_t): word weights (3/4, 1/4) and
    (1/4, 3/4). The words' embeddings are e_1 and e_2, so the queries are (3/4, 1/4) and (1/4, 3/4);
    the regions are k e_1 and k e_2 with k = 2 sqrt(2) ln 3, scores q . x / sqrt(2) differ by ln 3
    again: region weights (3/4, 1/4) and (1/4, 3/4). Region 1 lies at (0, -1), region 2 at (0, 1).
    """
    layer = _layer()
    control = np.zeros((2, 4), "float32")
    control[0] = [math.sqrt(2) * LN3, 0, 0, math.sqrt(2) * LN3]
    layer.control_dense.kernel.assign(control)
    layer.word_key_dense.kernel.assign(np.eye(2, dtype="float32"))
    layer.query_dense.kernel.assign(np.eye(2, dtype="float32"))
    k = 2 * math.sqrt(2) * LN3
    inputs = dict(
        regions=np.array([[[k, 0], [0, k], [100, 100]]], "float32"),
        positions=np.array([[[0, -1], [0, 1], [5, 5]]], "float32"),
        question=np.array([[1, 0]], "float32"),
        word_states=np.array([[[1, 0], [0, 1], [50, 50]]], "float32"),
        word_embeddings=np.array([[[1, 0], [0, 1], [5, 5]]], "float32"),
        word_mask=np.array([[True, True, False]]),
        region_mask=np.array([[1, 1, 0]], "float32"))
    return layer, inputs, k


def test_a_case_computed_by_hand():
    layer, inputs, k = _hand_case()
    attended, where, word_weights, region_weights = layer(**inputs, return_weights=True)
    np.testing.assert_allclose(word_weights, [[[0.75, 0.25, 0], [0.25, 0.75, 0]]], atol=1e-6)
    np.testing.assert_allclose(region_weights, [[[0.75, 0.25, 0], [0.25, 0.75, 0]]], atol=1e-6)
    np.testing.assert_allclose(attended, [[[0.75 * k, 0.25 * k], [0.25 * k, 0.75 * k]]], rtol=1e-5)
    np.testing.assert_allclose(where, [[[0, -0.5], [0, 0.5]]], atol=1e-6)


def test_padding_words_and_absent_regions_change_nothing():
    layer, inputs, _ = _hand_case()
    expected = [np.asarray(x) for x in layer(**inputs)]
    changed = dict(inputs, word_states=inputs["word_states"] * [[[1], [1], [-7]]],
                   word_embeddings=inputs["word_embeddings"] * [[[1], [1], [9]]],
                   regions=inputs["regions"] * [[[1], [1], [-3]]],
                   positions=inputs["positions"] * [[[1], [1], [4]]])
    for got, want in zip(layer(**changed), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # Without the region mask the absent region (scores of 100s) takes every glimpse.
    unmasked = dict(inputs, region_mask=None)
    _, where = layer(**unmasked)
    np.testing.assert_allclose(where, [[[5, 5], [5, 5]]], atol=1e-4)


def test_the_order_of_the_regions_does_not_matter():
    rng = np.random.default_rng(0)
    layer = _layer(glimpses=3, units=8, question=6, states=5, embeddings=4, regions=7)
    inputs = dict(regions=rng.normal(size=(2, 9, 7)).astype("float32"),
                  positions=rng.uniform(-1, 1, size=(2, 9, 2)).astype("float32"),
                  question=rng.normal(size=(2, 6)).astype("float32"),
                  word_states=rng.normal(size=(2, 5, 5)).astype("float32"),
                  word_embeddings=rng.normal(size=(2, 5, 4)).astype("float32"),
                  word_mask=np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32"))
    order = rng.permutation(9)
    shuffled = dict(inputs, regions=inputs["regions"][:, order], positions=inputs["positions"][:, order])
    for got, want in zip(layer(**shuffled), layer(**inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_serialises_and_runs_under_mixed_precision(tmp_path):
    regions, positions = keras.Input((6, 8)), keras.Input((6, 2))
    question, states, embeddings = keras.Input((5,)), keras.Input((4, 5)), keras.Input((4, 3))
    word_mask = keras.Input((4,), dtype="bool")
    attended, where = WordGlimpses(2, 4, name="glimpses")(regions, positions, question, states, embeddings,
                                                          word_mask)
    model = keras.Model([regions, positions, question, states, embeddings, word_mask], [attended, where])
    rng = np.random.default_rng(1)
    batch = [rng.normal(size=(3, *shape)).astype("float32") for shape in ((6, 8), (6, 2), (5,), (4, 5), (4, 3))]
    batch.append(np.array([[1, 1, 0, 0]] * 3, bool))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.get_layer("glimpses").get_config()["glimpses"] == 2
    for got, want in zip(reloaded(batch), model(batch)):
        np.testing.assert_allclose(got, want, rtol=1e-6)

    layer = WordGlimpses(2, 4, dtype="mixed_float16")
    attended, where, word_weights, region_weights = layer(*batch[:5], batch[5], return_weights=True)
    assert attended.dtype == "float16" and where.dtype == "float16"
    assert word_weights.dtype == "float32" and region_weights.dtype == "float32"
    np.testing.assert_allclose(np.sum(region_weights, axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("glimpses, units", [(0, 4), (2, 1.5), (-1, 4)])
def test_bad_sizes_are_named(glimpses, units):
    with pytest.raises(ValueError, match="glimpses|units"):
        WordGlimpses(glimpses, units)

"""`GroundedWordLogits`: the factorised distribution by hand, the visual words read from the
region alone, its errors, masks and config (the decoder that uses it: tests/captioning/test_grounded_words.py)."""

import keras
import numpy as np
import pytest
from keras import ops

from vlm_keras.layers import GroundedWordLogits

VOCAB, GROUPS = 7, [[3, 4], [5, 6]]      # words 0-2 are the language's; two groups of visual words


def _layer(seed=0):
    layer = GroundedWordLogits(VOCAB, GROUPS)
    layer.build([(None, 2), (None, 3)])
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return layer


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_probabilities_are_the_group_s_times_the_region_s_choice_within_it():
    layer = _layer()
    state = np.array([[0.5, -1.0], [2.0, 0.3]], "float32")
    region = np.array([[1.0, 0.0, -0.5], [0.2, 0.4, 0.1]], "float32")
    got = _softmax(ops.convert_to_numpy(layer([state, region])))
    language = state @ layer.language.kernel.numpy() + layer.language.bias.numpy()    # (2, V + G)
    visual = region @ layer.visual.kernel.numpy() + layer.visual.bias.numpy()         # (2, V)
    expected = np.zeros((2, VOCAB))
    for b in range(2):
        # The language softmax over the three ungrouped words and the two groups.
        mass = np.exp(np.concatenate([language[b, :3], language[b, VOCAB:]]))
        mass /= mass.sum()
        expected[b, :3] = mass[:3]
        for g, group in enumerate(GROUPS):
            within = np.exp(visual[b, group]) / np.exp(visual[b, group]).sum()
            expected[b, group] = mass[3 + g] * within
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-6)


def test_which_word_of_a_group_is_read_from_the_region_alone():
    layer = _layer(1)
    rng = np.random.default_rng(2)
    states, regions = rng.normal(size=(2, 5, 2)).astype("float32"), rng.normal(size=(2, 5, 3)).astype("float32")
    p = _softmax(ops.convert_to_numpy(layer([states[0], regions[0]])))
    # Another state, the same region: the group masses move, the choice within each group does not.
    other_state = _softmax(ops.convert_to_numpy(layer([states[1], regions[0]])))
    # The same state, another region: the words outside the groups and each group's mass stay.
    other_region = _softmax(ops.convert_to_numpy(layer([states[0], regions[1]])))
    for group in GROUPS:
        within = p[:, group] / p[:, group].sum(-1, keepdims=True)
        np.testing.assert_allclose(other_state[:, group] / other_state[:, group].sum(-1, keepdims=True), within,
                                   rtol=1e-5)
        np.testing.assert_allclose(other_region[:, group].sum(-1), p[:, group].sum(-1), rtol=1e-5)
        assert not np.allclose(other_region[:, group] / other_region[:, group].sum(-1, keepdims=True), within)
    np.testing.assert_allclose(other_region[:, :3], p[:, :3], rtol=1e-5)


def test_sequences_keep_the_state_s_mask_and_the_config_round_trips():
    layer = _layer(3)
    state = keras.layers.Masking()(np.array([[[1.0, 2.0], [0.0, 0.0]]], "float32"))   # position 1 padded
    region = np.ones((1, 2, 3), "float32")
    logits = layer([state, region])
    assert tuple(logits.shape) == (1, 2, VOCAB)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.compute_mask([state, region], [state._keras_mask, None])),
                                  [[True, False]])
    clone = GroundedWordLogits.from_config(layer.get_config())
    clone.build([(None, 2), (None, 3)])
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(clone([state, region])), ops.convert_to_numpy(logits), rtol=1e-6)
    assert clone.word_groups == GROUPS


@pytest.mark.parametrize("groups, message", [
    ([[3, 4], [4, 5]], "token id 4 is in more than one of word_groups"),
    ([[3, 7]], r"word_groups\[0\] holds token id 7; expected ids in 1..6"),
    ([[0, 3]], r"word_groups\[0\] holds token id 0"),
    ([[3], []], r"word_groups\[1\] is empty"),
    ([], "word_groups is empty"),
])
def test_bad_groups_are_named(groups, message):
    with pytest.raises(ValueError, match=message):
        GroundedWordLogits(VOCAB, groups)

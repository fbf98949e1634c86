"""`GroupedTokens` and `RoleFillerBinding` by hand, their errors and config round trips, and the
text tower built with them: the LSTM never reads which attribute word it is."""

import numpy as np
import pytest

import keras
from vlm_keras.layers import GroupedTokens, RoleFillerBinding
from vlm_keras.retrieval.models import build_text_tower


def test_grouped_tokens_replace_each_group_word_by_its_group_id():
    layer = GroupedTokens(8, word_groups=[[4, 5], [6]])
    tokens = np.array([[2, 4, 6, 7, 3, 0], [2, 5, 5, 1, 3, 0]])
    np.testing.assert_array_equal(layer(tokens), [[2, 8, 9, 7, 3, 0], [2, 8, 8, 1, 3, 0]])
    again = GroupedTokens.from_config(layer.get_config())
    np.testing.assert_array_equal(again(tokens), layer(tokens))


def test_role_filler_binding_by_hand():
    layer = RoleFillerBinding(6, word_groups=[[4], [5]], units=2)
    layer.build([(1, 4), (1, 4, 2)])
    layer.fillers.assign(np.array([[9, 9], [9, 9], [9, 9], [9, 9], [1, 2], [3, -1]], "float32"))
    tokens = np.array([[2, 4, 5, 3], [2, 3, 0, 0]])
    roles = np.array([[[7, 7], [10, 20], [0.5, 2], [7, 7]],
                      [[7, 7], [7, 7], [7, 7], [7, 7]]], "float32")
    # Caption 0: role_1 * filler(4) + role_2 * filler(5) = [10, 40] + [1.5, -2]; the words in no
    # group (2, 3) and padding add nothing. Caption 1 has no attribute word: zero.
    np.testing.assert_allclose(layer([tokens, roles]), [[11.5, 38.0], [0.0, 0.0]])
    again = RoleFillerBinding.from_config(layer.get_config())
    assert again.get_config()["word_groups"] == [[4], [5]] and again.units == 2


@pytest.mark.parametrize("layer_class, extra", [(GroupedTokens, {}), (RoleFillerBinding, {"units": 2})])
def test_group_errors_name_the_problem(layer_class, extra):
    with pytest.raises(ValueError, match="word_groups is empty"):
        layer_class(8, word_groups=[], **extra)
    with pytest.raises(ValueError, match=r"word_groups\[1\] is empty"):
        layer_class(8, word_groups=[[4], []], **extra)
    with pytest.raises(ValueError, match=r"word_groups\[0\] holds token id 8; expected ids in 1..7"):
        layer_class(8, word_groups=[[8]], **extra)
    with pytest.raises(ValueError, match="token id 4 is in more than one"):
        layer_class(8, word_groups=[[4], [4, 5]], **extra)


def test_the_text_tower_reads_attributes_only_through_their_fillers():
    keras.utils.set_random_seed(0)
    tower = build_text_tower(12, embed_dim=6, word_dim=4, units=5, word_groups=[[4, 5], [6, 7]])
    red_circle, blue_square = np.array([[2, 8, 4, 6, 3, 0]]), np.array([[2, 8, 5, 7, 3, 0]])
    # The LSTM reads "a COLOUR SHAPE" either way: the two captions differ only in the binding.
    lstm_part = keras.Model(tower.input, tower.get_layer("text_projection").output)
    np.testing.assert_allclose(lstm_part(red_circle), lstm_part(blue_square), atol=1e-6)
    roles = keras.Model(tower.input, tower.get_layer("word_roles").output)(red_circle).numpy()   # the same for both
    fillers = tower.get_layer("bound_words").fillers.numpy()
    for tokens in (red_circle, blue_square):
        total = lstm_part(tokens).numpy() + roles[0, 2] * fillers[tokens[0, 2]] + roles[0, 3] * fillers[tokens[0, 3]]
        np.testing.assert_allclose(tower(tokens), total / np.linalg.norm(total), atol=1e-5)
    np.testing.assert_allclose(tower(red_circle[:, :5]), tower(red_circle), atol=1e-5)   # padding changes nothing
    assert not np.allclose(tower(red_circle), tower(blue_square))
    reloaded = keras.Model.from_config(tower.get_config())
    reloaded.set_weights(tower.get_weights())
    np.testing.assert_allclose(reloaded(blue_square), tower(blue_square), atol=1e-6)

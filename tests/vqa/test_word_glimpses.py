"""Word glimpses in the VQA heads: a tiny head must learn to bind two named objects to their roles
("is the <colour A> object left of the <colour B> one"), and the heads with them round-trip."""

import keras
import numpy as np
import pytest

from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.vqa.models import answer_branch_output, build_vqa_head, question_attention_model

COLOURS = 4
GRID = (4, 4, COLOURS)    # channel c: an object of colour c in the cell
IS, THE, LEFT, OF, RIGHT, FIRST_COLOUR = 1, 2, 3, 4, 5, 6


def _binding_task(n, seed, both_directions=False):
    """Three objects of three different colours in three different columns; the question names two
    of them in either order, so which colour is "A" changes from question to question. With
    `both_directions`, half the questions ask "right of" instead of "left of"."""
    rng = np.random.default_rng(seed)
    features = np.zeros((n, *GRID), "float32")
    tokens = np.zeros((n, 7), "int32")
    answers = np.zeros(n, "int32")
    for k in range(n):
        colours = rng.choice(COLOURS, size=3, replace=False)
        columns = rng.choice(4, size=3, replace=False)
        rows = rng.integers(0, 4, size=3)
        for colour, row, column in zip(colours, rows, columns):
            features[k, row, column, colour] = 1.0
        a, b = rng.choice(3, size=2, replace=False)
        right = both_directions and rng.random() < 0.5
        tokens[k] = [IS, THE, FIRST_COLOUR + colours[a], RIGHT if right else LEFT, OF, THE,
                     FIRST_COLOUR + colours[b]]
        answers[k] = int(columns[a] > columns[b]) if right else int(columns[a] < columns[b])
    return features, tokens, answers


def _head(word_glimpses):
    keras.utils.set_random_seed(0)
    head = build_vqa_head("attention", FIRST_COLOUR + COLOURS, 2, GRID, embed_dim=16, units=32, fusion_dim=64,
                          attention_dim=16, glimpses=2, region_layers=0, cell_channels=1, graph_units=16,
                          dropout=0.0, word_glimpses=word_glimpses)
    # Without the flattened image vector, which keeps each cell's place by itself.
    projection = head.get_layer("image_branch").get_layer("image_projection")
    projection.trainable = False
    projection.kernel.assign(np.zeros_like(projection.kernel))
    return head


def _accuracy(head, train, test, epochs=30):
    adapt_region_encoder(head, train[0])
    head.compile(optimizer=keras.optimizers.Adam(3e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    head.fit([train[0], train[1]], train[2], epochs=epochs, batch_size=32, verbose=0)
    return head.evaluate([test[0], test[1]], test[2], verbose=0)[1]


def test_a_tiny_head_with_word_glimpses_binds_two_named_objects_to_their_roles():
    train, test = _binding_task(1024, seed=0), _binding_task(512, seed=1)
    assert _accuracy(_head(word_glimpses=2), train, test) > 0.9


def test_a_tiny_head_with_word_glimpses_reads_which_relation_is_asked():
    # "left of" and "right of" about the same two objects have opposite answers.
    train, test = _binding_task(1024, seed=0, both_directions=True), _binding_task(512, seed=1, both_directions=True)
    assert _accuracy(_head(word_glimpses=2), train, test) > 0.9


@pytest.mark.parametrize("model_type, feature_shape", [("attention", (8, 8, 16)), ("graph", (8, 8, 16)),
                                                       ("attention", (10, 15)), ("graph", (10, 15))])
def test_heads_with_word_glimpses_round_trip(model_type, feature_shape, tmp_path):
    head = build_vqa_head(model_type, 12, 5, feature_shape, units=16, fusion_dim=16, attention_dim=16,
                          glimpses=2, region_filters=8, region_layers=1, region_cells=4, cell_channels=2,
                          graph_units=8, graph_rounds=1, word_glimpses=2)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, *feature_shape)).astype("float32")
    if len(feature_shape) == 2:
        features[..., -1] = [[1] * 4 + [0] * 6] * 3          # four present nodes of ten
    tokens = np.array([[3, 4, 5, 0], [6, 7, 0, 0], [8, 9, 10, 11]], "int32")
    head.save(tmp_path / "head.keras")
    reloaded = keras.saving.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(reloaded([features, tokens]), head([features, tokens]), rtol=1e-5, atol=1e-6)
    # Padding is not a word: more of it changes no answer.
    padded = np.pad(tokens, ((0, 0), (0, 3)))
    np.testing.assert_allclose(head([features, padded]), head([features, tokens]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", ["attention", "graph"])
def test_heads_with_word_glimpses_run_in_mixed_precision(model_type):
    from vlm_keras.precision import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        head = build_vqa_head(model_type, 12, 5, (8, 8, 16), units=16, fusion_dim=16, attention_dim=16,
                              region_filters=8, region_layers=1, region_cells=4, graph_units=8, graph_rounds=1,
                              word_glimpses=2)
    glimpses = head.get_layer("answer_branch").get_layer("word_glimpses")
    assert glimpses.compute_dtype == "bfloat16"
    logits = head([np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32"),
                   np.array([[3, 4, 5, 0], [6, 7, 8, 9]], "int32")])
    assert logits.dtype == "float32" and np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("model_type", ["concat", "question_only"])
def test_word_glimpses_need_a_head_with_regions(model_type):
    with pytest.raises(ValueError, match=f"word_glimpses look over image regions; the '{model_type}' head"):
        build_vqa_head(model_type, 12, 5, (8, 8, 16), word_glimpses=2)


@pytest.mark.parametrize("glimpses", [2, 0])
def test_the_attention_map_of_a_head_with_word_glimpses_averages_every_glimpse(glimpses):
    head = build_vqa_head("graph", 12, 5, (8, 8, 16), units=16, fusion_dim=16, attention_dim=16,
                          glimpses=glimpses, region_filters=8, region_layers=1, region_cells=4, graph_units=8,
                          graph_rounds=1, word_glimpses=2)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(3, 8, 8, 16)).astype("float32"), np.array([[3, 4, 5, 0], [6, 7, 0, 0], [8, 9, 10, 11]])]
    maps = np.asarray(question_attention_model(head)(inputs))                     # (3, h', w')
    branch = head.get_layer("answer_branch")
    names = ["word_glimpses"] + (["question_attention"] if glimpses else [])
    region_weights = [branch.get_layer(n).output[3 if n == "word_glimpses" else 1] for n in names]
    per_glimpse = [np.asarray(keras.Model(head.inputs, answer_branch_output(head, w))(inputs)) for w in region_weights]
    expected = np.concatenate(per_glimpse, axis=1).mean(axis=1)                   # (3, R)
    assert maps.shape[0] == 3 and np.concatenate(per_glimpse, axis=1).shape[1] == 2 + glimpses
    np.testing.assert_allclose(maps.reshape(3, -1), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps.sum((1, 2)), 1.0, atol=1e-5)

"""ScaledDotProductAttention and MultiHeadAttention: numbers checked on paper, against numpy and
against Keras' own attention layers; masks, gradients, dropout, mixed precision, saving."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from vlm_keras.layers import MultiHeadAttention, ScaledDotProductAttention
from tests.helpers import keras_round_trip

B, TQ, TK, D, DV = 2, 3, 5, 4, 6


def reference_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d)) V in float64 numpy; rows with every key masked give zeros."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])         # (..., Tq, Tk)
    mask = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    scores = np.where(mask, scores, -np.inf)
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.where(mask, np.exp(scores - row_max), 0.0)
    total = exp.sum(-1, keepdims=True)
    weights = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return weights @ v, weights


def causal_reference(q_len, k_len):
    """j <= i + (Tk - Tq): queries aligned with the last keys."""
    return np.arange(k_len)[None, :] <= np.arange(q_len)[:, None] + (k_len - q_len)


@pytest.fixture
def qkv():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(B, TQ, D)).astype("float32"),
            rng.normal(size=(B, TK, D)).astype("float32"),
            rng.normal(size=(B, TK, DV)).astype("float32"))


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


KEY_PADDING = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)                     # (B, Tk)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "full", "causal", "padding+causal"])
def test_matches_numpy_reference(qkv, mask_kind):
    q, k, v = qkv
    kwargs, mask = {}, None
    if "padding" in mask_kind:
        kwargs["attention_mask"] = KEY_PADDING
        mask = KEY_PADDING[:, None, :]
    if mask_kind == "full":
        mask = np.random.default_rng(1).random((B, TQ, TK)) > 0.4
        kwargs["attention_mask"] = mask
    if "causal" in mask_kind:
        kwargs["use_causal_mask"] = True
        mask = causal_reference(TQ, TK) if mask is None else mask & causal_reference(TQ, TK)

    output, weights = ScaledDotProductAttention()(q, k, v, return_attention_scores=True, **kwargs)
    expected_output, expected_weights = reference_attention(q, k, v, mask)
    assert output.shape == (B, TQ, DV) and weights.shape == (B, TQ, TK)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(output, expected_output, atol=1e-5)


def test_hand_computed_case():
    q = np.array([[[1.0, 0.0]]], "float32")                      # (1, 1, 2)
    k = np.array([[[1.0, 0.0], [0.0, 1.0]]], "float32")          # (1, 2, 2)
    v = np.array([[[1.0, 2.0], [3.0, 4.0]]], "float32")
    output, weights = ScaledDotProductAttention()(q, k, v, return_attention_scores=True)
    # scores = [1/sqrt(2), 0]; softmax = [e^0.7071 / (e^0.7071 + 1), 1 / (e^0.7071 + 1)]
    np.testing.assert_allclose(weights, [[[0.6697615493, 0.3302384507]]], atol=1e-6)
    np.testing.assert_allclose(output, [[[0.6697615 * 1 + 0.3302385 * 3,
                                          0.6697615 * 2 + 0.3302385 * 4]]], atol=1e-6)


def test_matches_keras_mha_with_identity_projections(qkv):
    q, k, _ = qkv
    v = np.random.default_rng(2).normal(size=(B, TK, D)).astype("float32")
    keras_mha = keras.layers.MultiHeadAttention(num_heads=1, key_dim=D, use_bias=False)
    keras_mha(q, v, key=k)
    assert [w.shape for w in keras_mha.get_weights()] == [(D, 1, D)] * 3 + [(1, D, D)]
    keras_mha.set_weights([np.eye(D).reshape(D, 1, D)] * 3 + [np.eye(D).reshape(1, D, D)])

    mask = np.random.default_rng(3).random((B, TQ, TK)) > 0.3
    mask[:, :, 0] = True  # keras' softmax averages a fully masked row; keep every row non-empty
    expected, expected_scores = keras_mha(q, v, key=k, attention_mask=mask,
                                          return_attention_scores=True)
    output, weights = ScaledDotProductAttention()(q, k, v, attention_mask=mask,
                                                  return_attention_scores=True)
    np.testing.assert_allclose(output, expected, atol=1e-5)
    np.testing.assert_allclose(weights, np.asarray(expected_scores)[:, 0], atol=1e-6)

    # Causal, Tq == Tk (keras aligns Tq != Tk differently, see the layer's docstring).
    expected, expected_scores = keras_mha(q, q, key=q, use_causal_mask=True,
                                          return_attention_scores=True)
    output, weights = ScaledDotProductAttention(causal=True)(q, q, q, return_attention_scores=True)
    np.testing.assert_allclose(output, expected, atol=1e-5)
    np.testing.assert_allclose(weights, np.asarray(expected_scores)[:, 0], atol=1e-6)


def test_matches_keras_attention_with_prescaled_queries(qkv):
    q, k, v = qkv
    keras_attention = keras.layers.Attention()  # softmax(Q K^T) V, no scaling
    expected, expected_weights = keras_attention(
        [q / np.sqrt(D), v, k], mask=[None, KEY_PADDING], return_attention_scores=True)
    output, weights = ScaledDotProductAttention()(q, k, v, attention_mask=KEY_PADDING,
                                                  return_attention_scores=True)
    np.testing.assert_allclose(output, expected, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)


def test_causal_mask_hides_the_future_also_when_scores_are_returned(qkv):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, 6, D)).astype("float32")
    for layer, kwargs in ((ScaledDotProductAttention(causal=True), {}),
                          (ScaledDotProductAttention(), {"use_causal_mask": True})):
        output_only = layer(x, x, x, **kwargs)
        output, weights = layer(x, x, x, return_attention_scores=True, **kwargs)
        weights = np.asarray(weights)
        assert np.all(np.triu(weights, k=1) == 0.0)           # exactly zero above the diagonal
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
        np.testing.assert_allclose(output_only, output, atol=0)

    # Changing keys and values after position i leaves outputs 0..i unchanged.
    layer = ScaledDotProductAttention(causal=True)
    q = x
    k, v = x.copy(), rng.normal(size=(B, 6, DV)).astype("float32")
    base = np.asarray(layer(q, k, v))
    for i in range(5):
        k2, v2 = k.copy(), v.copy()
        k2[:, i + 1:] = rng.normal(size=k2[:, i + 1:].shape) * 10
        v2[:, i + 1:] = rng.normal(size=v2[:, i + 1:].shape) * 10
        changed = np.asarray(layer(q, k2, v2))
        np.testing.assert_allclose(changed[:, :i + 1], base[:, :i + 1], atol=1e-6)
        assert not np.allclose(changed[:, i + 1:], base[:, i + 1:])


def test_causal_mask_aligns_queries_with_the_last_keys():
    q = np.ones((1, 2, D), "float32")
    k = np.ones((1, 4, D), "float32")
    _, weights = ScaledDotProductAttention(causal=True)(q, k, k, return_attention_scores=True)
    np.testing.assert_allclose(weights[0], [[1 / 3, 1 / 3, 1 / 3, 0], [0.25, 0.25, 0.25, 0.25]],
                               atol=1e-6)


def test_padding_mask_zero_weight_and_fully_masked_row_gives_zeros(qkv):
    q, k, v = qkv
    mask = np.ones((B, TQ, TK), bool)
    mask[0, :, 3:] = False          # padded keys
    mask[1, 1, :] = False           # a query row with nothing to attend to
    layer = ScaledDotProductAttention()
    output, weights = layer(q, k, v, attention_mask=mask, return_attention_scores=True)
    weights, output = np.asarray(weights), np.asarray(output)
    assert np.all(weights[0, :, 3:] == 0.0)
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[1, 1] == 0.0) and np.all(output[1, 1] == 0.0)
    assert np.all(np.isfinite(output))

    inputs = [tf.constant(t) for t in (q, k, v)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(layer(*inputs, attention_mask=mask) ** 2)
    grads = tape.gradient(loss, inputs)
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))
    assert np.all(grads[0].numpy()[1, 1] == 0.0)  # the empty row sends back nothing


def test_keras_mask_from_embedding_is_honoured_in_functional_model():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, D, mask_zero=True)(tokens)           # (B, T, D) + mask (B, T)
    output, weights = ScaledDotProductAttention()(x, x, x, return_attention_scores=True)
    assert output._keras_mask is not None                               # the query mask carries on
    model = keras.Model(tokens, [output, weights])

    ids = np.array([[3, 5, 2, 0, 0], [4, 1, 7, 9, 6]])
    output, weights = (np.asarray(t) for t in model(ids))
    padding = ids != 0
    assert np.all(weights[0, :, 3:] == 0.0)                             # padded keys: no weight
    assert np.all(weights[0, 3:] == 0.0)                                # padded queries: zero rows
    np.testing.assert_allclose(weights[padding].sum(-1), 1.0, atol=1e-6)
    assert np.all(np.isfinite(output))

    vectors = np.asarray(model.layers[1](ids))                           # the embedding
    mask = padding[:, :, None] & padding[:, None, :]
    expected_output, expected_weights = reference_attention(vectors, vectors, vectors, mask)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(output, expected_output, atol=1e-5)


def test_rank4_inputs_broadcast_a_rank3_mask_over_heads():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(B, 2, TQ, D)).astype("float32")                 # (B, H, Tq, d)
    k = rng.normal(size=(B, 2, TK, D)).astype("float32")
    v = rng.normal(size=(B, 2, TK, DV)).astype("float32")
    mask = rng.random((B, TQ, TK)) > 0.3                                 # (B, Tq, Tk)
    output, weights = ScaledDotProductAttention()(q, k, v, attention_mask=mask,
                                                  return_attention_scores=True)
    expected_output, expected_weights = reference_attention(q, k, v, mask[:, None])
    assert output.shape == (B, 2, TQ, DV) and weights.shape == (B, 2, TQ, TK)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(output, expected_output, atol=1e-5)
    # A (B, Tk) key padding mask works at rank 4 too.
    _, weights = ScaledDotProductAttention()(q, k, v, attention_mask=KEY_PADDING,
                                             return_attention_scores=True)
    assert np.all(np.asarray(weights)[0, :, :, 3:] == 0.0)


def test_mask_with_too_many_axes_is_an_error(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="more axes than the attention scores"):
        ScaledDotProductAttention()(q, k, v, attention_mask=np.ones((B, 1, TQ, TK), bool))


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    q, k, v = (rng.normal(size=(1, 2, 3)) for _ in range(3))
    mask = np.array([[[True, True], [True, False]]])
    layer = ScaledDotProductAttention(dtype="float64")
    args = [tf.constant(q), tf.constant(k), tf.constant(v)]
    for i in range(3):
        def f(x, i=i):
            inputs = list(args)
            inputs[i] = x
            return layer(*inputs, attention_mask=mask, use_causal_mask=True)
        theoretical, numerical = tf.test.compute_gradient(f, [args[i]])
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_dropout_is_off_at_inference_and_rescales_in_training(qkv):
    q, k, v = qkv
    layer = ScaledDotProductAttention(dropout=0.5, seed=1)
    plain = ScaledDotProductAttention()
    expected_output, expected_weights = plain(q, k, v, return_attention_scores=True)
    for _ in range(2):
        output, weights = layer(q, k, v, return_attention_scores=True, training=False)
        np.testing.assert_allclose(weights, expected_weights, atol=0)
        np.testing.assert_allclose(output, expected_output, atol=0)

    output, weights = layer(q, k, v, return_attention_scores=True, training=True)
    weights, expected_weights = np.asarray(weights), np.asarray(expected_weights)
    dropped = weights == 0.0
    assert 0 < dropped.sum() < weights.size
    np.testing.assert_allclose(weights[~dropped], expected_weights[~dropped] / 0.5, rtol=1e-6)
    np.testing.assert_allclose(output, weights @ v, atol=1e-5)   # the returned weights were used


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_softmax_in_float32(policy, restore_policy):
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.split("_")[1]
    rng = np.random.default_rng(7)
    # Logits of order 1e4 * 1e4 overflow float16 (max 65504) unless computed in float32.
    q = (rng.normal(size=(B, TQ, D)) * 1e4).astype("float32")
    k = (rng.normal(size=(B, TK, D)) * 1e4).astype("float32")
    v = rng.normal(size=(B, TK, DV)).astype("float32")
    layer = ScaledDotProductAttention()
    assert layer.compute_dtype == compute_dtype
    output, weights = layer(q, k, v, attention_mask=KEY_PADDING, return_attention_scores=True)
    assert keras.backend.standardize_dtype(output.dtype) == compute_dtype
    assert keras.backend.standardize_dtype(weights.dtype) == "float32"
    weights = np.asarray(weights)
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(np.asarray(output, "float32")))
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-3)

    # Same weights as float64 numpy on the inputs as the layer saw them (rounded to compute dtype).
    rounded = [np.asarray(keras.ops.cast(t, compute_dtype), "float64") for t in (q, k, v)]
    _, expected_weights = reference_attention(*rounded, KEY_PADDING[:, None, :])
    np.testing.assert_allclose(weights, expected_weights, atol=1e-3)

    # Moderate inputs: output matches the reference to half-precision accuracy.
    q, k = q / 1e4, k / 1e4
    output = layer(q, k, v)
    expected_output, _ = reference_attention(q, k, v)
    np.testing.assert_allclose(np.asarray(output, "float32"), expected_output, atol=3e-2)


def test_sdpa_config_round_trip_and_output_spec():
    layer = ScaledDotProductAttention(dropout=0.25, causal=True, seed=3, name="sdpa")
    config = layer.get_config()
    assert config["dropout"] == 0.25 and config["causal"] is True and config["seed"] == 3
    clone = ScaledDotProductAttention.from_config(config)
    assert clone.get_config() == config

    q, k, v = keras.Input((TQ, D)), keras.Input((TK, D)), keras.Input((TK, DV))
    output, weights = layer(q, k, v, return_attention_scores=True)
    assert output.shape == (None, TQ, DV) and weights.shape == (None, TQ, TK)
    assert layer.compute_output_shape((None, TQ, D), (None, TK, D), (None, TK, DV)) == \
        (None, TQ, DV)


def test_sdpa_keras_file_round_trip(qkv, tmp_path):
    q, k, v = qkv
    inputs = [keras.Input((None, D)), keras.Input((None, D)), keras.Input((None, DV))]
    output, weights = ScaledDotProductAttention(dropout=0.1, causal=True)(
        *inputs, return_attention_scores=True)
    model = keras.Model(inputs, [keras.layers.Dense(3)(output), weights])
    reloaded = keras_round_trip(model, tmp_path)
    assert isinstance(reloaded.layers[3], ScaledDotProductAttention)
    for expected, actual in zip(model([q, k, v]), reloaded([q, k, v])):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(actual))


# --- MultiHeadAttention -------------------------------------------------------------------------

def test_mha_shapes(qkv):
    q, _, v = qkv
    layer = MultiHeadAttention(num_heads=3, key_dim=5)
    output, scores = layer(q, v, return_attention_scores=True)
    assert output.shape == (B, TQ, D) and scores.shape == (B, 3, TQ, TK)
    assert MultiHeadAttention(2, 5, value_dim=7, output_dim=9)(q, v).shape == (B, TQ, 9)

    query, value = keras.Input((TQ, D)), keras.Input((TK, DV))
    output, scores = MultiHeadAttention(3, 5)(query, value, return_attention_scores=True)
    assert output.shape == (None, TQ, D) and scores.shape == (None, 3, TQ, TK)


def test_mha_weights_exist_after_build():
    layer = MultiHeadAttention(num_heads=2, key_dim=3)
    layer.build((None, TQ, D), (None, TK, DV))
    assert [tuple(w.shape) for w in layer.weights] == [
        (D, 2, 3), (2, 3), (DV, 2, 3), (2, 3), (DV, 2, 3), (2, 3), (2, 3, D), (D,)]


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_keras_mha_with_copied_weights(causal):
    rng = np.random.default_rng(8)
    query = rng.normal(size=(B, 4, 6)).astype("float32")
    value = query if causal else rng.normal(size=(B, 5, 7)).astype("float32")
    mask = rng.random((B, 4, value.shape[1])) > 0.3
    mask[:, :, 0] = True  # no empty rows: keras averages them, we give zeros
    keras_mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3,
                                                kernel_initializer="random_normal",
                                                bias_initializer="random_normal")
    expected, expected_scores = keras_mha(query, value, attention_mask=mask,
                                          use_causal_mask=causal, return_attention_scores=True)
    layer = MultiHeadAttention(num_heads=2, key_dim=3)
    layer(query, value)
    layer.set_weights(keras_mha.get_weights())
    output, scores = layer(query, value, attention_mask=mask, use_causal_mask=causal,
                           return_attention_scores=True)
    np.testing.assert_allclose(output, expected, atol=1e-5)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_mha_single_head_with_identity_projections_equals_sdpa(qkv):
    q, k, _ = qkv
    v = np.random.default_rng(9).normal(size=(B, TK, D)).astype("float32")
    layer = MultiHeadAttention(num_heads=1, key_dim=D, use_bias=False)
    layer(q, v, key=k)
    layer.set_weights([np.eye(D).reshape(D, 1, D)] * 3 + [np.eye(D).reshape(1, D, D)])
    output, scores = layer(q, v, key=k, attention_mask=KEY_PADDING, return_attention_scores=True)
    expected, expected_weights = ScaledDotProductAttention()(
        q, k, v, attention_mask=KEY_PADDING, return_attention_scores=True)
    np.testing.assert_allclose(output, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scores)[:, 0], expected_weights, atol=1e-7)


def test_mha_causal_mask_with_scores():
    x = np.random.default_rng(10).normal(size=(B, 6, 8)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    output, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    scores = np.asarray(scores)
    assert np.all(np.triu(scores, k=1) == 0.0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(output, layer(x, x, use_causal_mask=True), atol=0)


def test_mha_keras_masks_hide_padded_keys_and_queries():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    output, scores = MultiHeadAttention(2, 4)(x, x, return_attention_scores=True)
    assert output._keras_mask is not None
    model = keras.Model(tokens, [output, scores])
    ids = np.array([[3, 5, 2, 0, 0], [4, 1, 7, 9, 6]])
    _, scores = model(ids)
    scores = np.asarray(scores)
    assert np.all(scores[0, :, :, 3:] == 0.0) and np.all(scores[0, :, 3:] == 0.0)
    np.testing.assert_allclose(scores[0, :, :3].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(scores[1].sum(-1), 1.0, atol=1e-6)


def test_mha_rejects_inputs_without_a_sequence_axis():
    with pytest.raises(ValueError, match=r"expects query of shape \(B, T, D\)"):
        MultiHeadAttention(2, 4)(np.ones((2, 8), "float32"), np.ones((2, 3, 8), "float32"))


def test_mha_config_and_keras_file_round_trip(tmp_path):
    layer = MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, output_dim=5, dropout=0.1,
                               use_bias=False, kernel_initializer="he_normal", name="mha")
    config = layer.get_config()
    assert MultiHeadAttention.from_config(config).get_config() == config

    tokens = keras.Input((None,), dtype="int32")
    regions = keras.Input((4, 6))
    x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    x = MultiHeadAttention(2, 4, dropout=0.1)(x, x, use_causal_mask=True)
    x, scores = MultiHeadAttention(2, 4)(x, regions, return_attention_scores=True)
    model = keras.Model([tokens, regions], [keras.layers.Dense(3)(x), scores])
    reloaded = keras_round_trip(model, tmp_path)

    rng = np.random.default_rng(11)
    inputs = [np.array([[1, 2, 3, 0], [4, 5, 6, 7]]), rng.normal(size=(2, 4, 6)).astype("float32")]
    for expected, actual in zip(model(inputs), reloaded(inputs)):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(actual))
    assert any(isinstance(lay, MultiHeadAttention) for lay in reloaded.layers)

"""PositionalEmbedding and TransformerDecoderBlock: shapes, masks, causality, saving, learning."""

import numpy as np
import pytest
import keras

from vlm_keras.layers import PositionalEmbedding, TransformerDecoderBlock
from tests.helpers import keras_round_trip

VOCAB, SEQ_LEN, EMBED, REGIONS, CONTEXT_DIM = 12, 8, 16, 4, 10


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def context_batch(batch, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, REGIONS, CONTEXT_DIM)).astype("float32")


def build_decoder(num_blocks=2, dropout=0.0, normalize_first=True):
    """tokens (B, T) + image regions (B, R, C) -> next-token logits (B, T, V)."""
    tokens = keras.Input((None,), dtype="int32", name="caption_tokens")
    regions = keras.Input((REGIONS, CONTEXT_DIM), name="image_regions")
    x = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)(tokens)
    context = keras.layers.Dense(EMBED)(regions)
    for _ in range(num_blocks):
        x = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32, dropout=dropout,
                                    normalize_first=normalize_first)(x, context)
    if normalize_first:
        x = keras.layers.LayerNormalization()(x)
    logits = keras.layers.Dense(VOCAB, name="next_token_logits")(x)
    return keras.Model([tokens, regions], logits)


# --- PositionalEmbedding ------------------------------------------------------------------------

def test_positional_embedding_shapes_mask_and_positions():
    layer = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)
    tokens = np.array([[1, 5, 5, 0, 0], [2, 3, 4, 6, 7]])
    x = layer(tokens)
    assert x.shape == (2, 5, EMBED)
    np.testing.assert_array_equal(layer.compute_mask(tokens), tokens != 0)
    np.testing.assert_array_equal(x._keras_mask, tokens != 0)

    # token vector + position vector, positions 0..T-1, no scaling
    token_table = np.asarray(layer.token_embedding.embeddings)
    position_table = np.asarray(layer.position_embeddings)
    np.testing.assert_allclose(x, token_table[tokens] + position_table[None, :5], atol=1e-7)
    assert not np.allclose(x[0, 1], x[0, 2])                  # same token, different positions

    assert PositionalEmbedding(VOCAB, SEQ_LEN, EMBED, mask_zero=False).compute_mask(tokens) is None


def test_positional_embedding_dynamic_length_and_too_long_sequences():
    tokens = keras.Input((None,), dtype="int32")
    model = keras.Model(tokens, PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)(tokens))
    assert model(np.ones((1, 3), "int32")).shape == (1, 3, EMBED)
    assert model(np.ones((2, SEQ_LEN), "int32")).shape == (2, SEQ_LEN, EMBED)
    with pytest.raises(ValueError, match="at most sequence_length=8"):
        PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)(np.ones((1, SEQ_LEN + 1), "int32"))
    with pytest.raises(ValueError, match="at most sequence_length=8"):
        PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)(keras.Input((SEQ_LEN + 1,), dtype="int32"))
    with pytest.raises(ValueError, match="embed_dim must be a positive integer"):
        PositionalEmbedding(VOCAB, SEQ_LEN, 0)


def test_positional_embedding_config_round_trip():
    layer = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED, mask_zero=False, name="embedding")
    config = layer.get_config()
    assert config["sequence_length"] == SEQ_LEN and config["mask_zero"] is False
    assert PositionalEmbedding.from_config(config).get_config() == config


# --- TransformerDecoderBlock --------------------------------------------------------------------

@pytest.mark.parametrize("normalize_first", [True, False])
def test_block_output_shape_and_mask_propagation(normalize_first):
    embedding = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)
    block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32,
                                    normalize_first=normalize_first)
    tokens = np.array([[1, 5, 6, 0, 0], [2, 3, 4, 6, 7]])
    y = block(embedding(tokens), context_batch(2))
    assert y.shape == (2, 5, EMBED)
    np.testing.assert_array_equal(y._keras_mask, tokens != 0)
    assert np.all(np.isfinite(np.asarray(y)))

    # symbolic: the mask travels through the functional graph
    token_input = keras.Input((None,), dtype="int32")
    y = block(embedding(token_input), keras.Input((REGIONS, CONTEXT_DIM)))
    assert y.shape == (None, None, EMBED) and y._keras_mask is not None
    # a context whose width differs from D is projected by the cross-attention
    assert block.cross_attention.key_dense.kernel.shape == (CONTEXT_DIM, 2, 8)


@pytest.mark.parametrize("normalize_first", [True, False])
def test_block_is_causal(normalize_first):
    model = build_decoder(normalize_first=normalize_first)
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, VOCAB, size=(2, SEQ_LEN))
    context = context_batch(2)
    base = np.asarray(model([tokens, context]))
    for t in range(SEQ_LEN - 1):
        changed_tokens = tokens.copy()
        changed_tokens[:, t + 1:] = rng.integers(1, VOCAB, size=(2, SEQ_LEN - t - 1))
        changed = np.asarray(model([changed_tokens, context]))
        np.testing.assert_allclose(changed[:, :t + 1], base[:, :t + 1], atol=1e-5)
    # ... while the context matters everywhere
    moved = np.asarray(model([tokens, context_batch(2, seed=5)]))
    assert np.all(np.abs(moved - base).max(-1) > 1e-4)


def test_cross_attention_weights_shape_rows_and_context_mask():
    embedding = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)
    block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32)
    tokens = np.array([[1, 5, 6, 0, 0], [2, 3, 4, 6, 7]])
    x, context = embedding(tokens), context_batch(2)
    y, weights = block(x, context, return_attention_scores=True)
    weights = np.asarray(weights)
    assert y.shape == (2, 5, EMBED) and weights.shape == (2, 2, 5, REGIONS)    # (B, H, T, R)
    real = tokens != 0
    np.testing.assert_allclose(weights.transpose(0, 2, 1, 3)[real].sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[0, :, 3:] == 0.0)      # padded tokens do not attend

    # Masked regions get no weight, so their content cannot change the output.
    region_mask = np.array([[True, True, False, False], [True, True, True, True]])
    y, weights = block(x, context, context_mask=region_mask, return_attention_scores=True)
    assert np.all(np.asarray(weights)[0, :, :, 2:] == 0.0)
    other_context = context.copy()
    other_context[0, 2:] += 100.0
    y2 = block(x, other_context, context_mask=region_mask)
    np.testing.assert_allclose(y2, y, atol=1e-5)

    symbolic = block(keras.Input((None, EMBED)), keras.Input((REGIONS, CONTEXT_DIM)),
                     return_attention_scores=True)
    assert symbolic[1].shape == (None, 2, None, REGIONS)


def test_block_dropout_only_in_training():
    block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32, dropout=0.3)
    x = np.random.default_rng(2).normal(size=(2, 5, EMBED)).astype("float32")
    context = context_batch(2)
    np.testing.assert_array_equal(block(x, context), block(x, context, training=False))
    assert not np.allclose(block(x, context, training=True), block(x, context))


def test_block_under_mixed_precision(restore_policy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    embedding = PositionalEmbedding(VOCAB, SEQ_LEN, EMBED)
    block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32)
    y, weights = block(embedding(np.array([[1, 2, 3, 0]])), context_batch(1),
                       return_attention_scores=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(weights.dtype) == "float32"
    assert np.all(np.isfinite(np.asarray(y, "float32")))


def test_block_config_and_keras_file_round_trip(tmp_path):
    block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32, dropout=0.1,
                                    activation="gelu", normalize_first=False, name="block")
    config = block.get_config()
    assert config["activation"] == "gelu" and config["normalize_first"] is False
    assert TransformerDecoderBlock.from_config(config).get_config() == config

    model = build_decoder(dropout=0.1)
    reloaded = keras_round_trip(model, tmp_path)
    tokens = np.array([[1, 4, 5, 2, 0, 0], [1, 7, 3, 3, 9, 2]])
    np.testing.assert_array_equal(np.asarray(model([tokens, context_batch(2)])),
                                  np.asarray(reloaded([tokens, context_batch(2)])))
    # another batch size and length through the reloaded model
    assert reloaded([tokens[:1, :3], context_batch(1)]).shape == (1, 3, VOCAB)


def test_tiny_decoder_learns_to_copy_image_regions():
    """Each 'image' is REGIONS region vectors, each encoding one token; the caption is those tokens
    in region order. The decoder must read the regions through cross-attention."""
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    num_examples, start_id = 16, 1
    captions = rng.integers(2, VOCAB, size=(num_examples, REGIONS))            # (N, R)
    token_codes = rng.normal(size=(VOCAB, CONTEXT_DIM)).astype("float32")
    regions = token_codes[captions]                                              # (N, R, C)
    inputs = np.concatenate([np.full((num_examples, 1), start_id), captions[:, :-1]], axis=1)

    model = build_decoder()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial_loss = model.evaluate([inputs, regions], captions, verbose=0)
    steps = 200  # one epoch of 200 full batches: per-epoch overhead would dominate otherwise
    model.fit([np.tile(inputs, (steps, 1)), np.tile(regions, (steps, 1, 1))],
              np.tile(captions, (steps, 1)), batch_size=num_examples, epochs=1, shuffle=False,
              verbose=0)
    final_loss = model.evaluate([inputs, regions], captions, verbose=0)
    print(f"loss {initial_loss:.3f} -> {final_loss:.4f}")
    assert final_loss < initial_loss / 5, (initial_loss, final_loss)
    predictions = np.argmax(model.predict([inputs, regions], verbose=0), axis=-1)
    assert np.mean(predictions == captions) > 0.9

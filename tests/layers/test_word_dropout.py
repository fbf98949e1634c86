"""WordDropout: which ids it replaces, how often, only in training; errors, saving."""

import keras
import numpy as np
import pytest

from vlm_keras.data.text import END_ID, PAD_ID, START_ID, UNK_ID
from vlm_keras.layers import WordDropout
from tests.helpers import keras_round_trip


def _captions(rows=400):
    """Start, eight words (ids 4..11), end, two padding positions."""
    words = np.tile(np.arange(4, 12, dtype="int32"), (rows, 1))
    column = np.ones((rows, 1), "int32")
    return np.concatenate([column * START_ID, words, column * END_ID, column * 0, column * PAD_ID], axis=1)


def test_words_become_unknown_at_the_rate_and_nothing_else_changes():
    tokens = _captions()
    out = np.asarray(WordDropout(0.3, seed=0)(tokens, training=True))
    replaced = out != tokens
    assert np.all(out[replaced] == UNK_ID)
    assert not replaced[:, [0, 9, 10, 11]].any()             # start, end and padding stay
    # 3,200 words, each replaced with probability 0.3: 960 expected, sd 26.
    assert 880 < replaced.sum() < 1040
    np.testing.assert_array_equal(out[~replaced], tokens[~replaced])


def test_outside_training_the_tokens_pass_unchanged():
    tokens = _captions(8)
    np.testing.assert_array_equal(np.asarray(WordDropout(0.9, seed=0)(tokens)), tokens)
    np.testing.assert_array_equal(np.asarray(WordDropout(0.0)(tokens, training=True)), tokens)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2])
def test_word_dropout_rejects_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match="rate must be in"):
        WordDropout(rate)


def test_word_dropout_round_trip_through_a_keras_file(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    model = keras.Model(tokens, keras.layers.Embedding(20, 4)(WordDropout(0.5, seed=3, name="drop")(tokens)))
    reloaded = keras_round_trip(model, tmp_path)
    assert reloaded.get_layer("drop").get_config()["rate"] == 0.5
    inputs = _captions(2)
    np.testing.assert_allclose(reloaded(inputs), model(inputs), atol=1e-6)


def test_a_tiny_captioner_with_word_dropout_still_learns_from_the_image():
    """Four "images" (one-hot features), each with one caption of two words that only the image
    tells apart: with half of the fed words unknown, the LSTM decoder must read them from the image."""
    from vlm_keras.captioning.models import build_lstm_decoder

    keras.utils.set_random_seed(0)
    decoder = build_lstm_decoder(12, (1, 1, 4), embed_dim=8, units=16, num_layers=1, dropout=0.0, region_layers=0,
                                 word_dropout=0.5)
    images = np.repeat(np.eye(4, dtype="float32").reshape(4, 1, 1, 4), 32, axis=0)       # (128, 1, 1, 4)
    kinds = np.repeat(np.arange(4), 32)
    captions = np.stack([np.full(128, START_ID), 4 + kinds, 8 + kinds % 2 * 2 + kinds // 2, np.full(128, END_ID)],
                        axis=1).astype("int32")                                          # start, w1, w2, end
    decoder.get_layer("region_encoder").get_layer("feature_normalization").adapt(images)
    decoder.compile(keras.optimizers.Adam(0.02),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    decoder.fit([images, captions[:, :-1]], captions[:, 1:], epochs=60, batch_size=32, verbose=0)
    predicted = np.asarray(decoder([images, captions[:, :-1]])).argmax(-1)               # teacher forced
    assert (predicted == captions[:, 1:]).mean() > 0.95

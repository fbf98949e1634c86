"""Decoding a step at a time reproduces the teacher-forced pass (keras-hub's cache-correctness
test): at every position, the stepper's logits equal the full forward pass's."""

import numpy as np
import pytest
import tensorflow as tf

from vlm_keras.captioning.decoding import beam_search, beam_search_prefix, greedy_decode, greedy_decode_prefix
from vlm_keras.captioning.models import build_caption_decoder, build_lstm_decoder
from vlm_keras.captioning.steppers import AttentionStepper, LSTMStepper, TransformerStepper, stepper_for
from vlm_keras.encoders.regions import adapt_region_encoder

VOCAB, LENGTH, GRID = 23, 9, (3, 3, 8)
OPTIONS = {"lstm": dict(units=16, embed_dim=8, num_layers=2),
           "attention": dict(units=16, embed_dim=8, attention_dim=12),
           # the visual words read from the attended region, the region stage reading the outline half
           "attention+grounded": dict(units=16, embed_dim=8, attention_dim=12, word_groups=[[4, 5, 6], [7, 8]],
                                      outline_stream=True, region_appearance=4),
           "transformer": dict(embed_dim=16, num_heads=2, ff_dim=32, num_layers=2)}


def _decoder(model_type):
    decoder = build_caption_decoder(model_type.split("+")[0], VOCAB, GRID, LENGTH, **OPTIONS[model_type])
    rng = np.random.default_rng(0)
    adapt_region_encoder(decoder, rng.normal(size=(16, *GRID)).astype("float32"))
    # Larger weights than the initialisation: differences the stepping could hide would show.
    for weight in decoder.weights:
        if weight.dtype == "float32" and len(weight.shape) >= 1 and "normalization" not in weight.path:
            weight.assign(weight.numpy() + rng.normal(scale=0.2, size=weight.shape).astype("float32"))
    return decoder


@pytest.mark.parametrize("model_type", sorted(OPTIONS))
def test_every_step_gives_the_teacher_forced_logits(model_type):
    decoder = _decoder(model_type)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(4, *GRID)).astype("float32")
    tokens = rng.integers(1, VOCAB, size=(4, LENGTH + 1)).astype("int32")
    tokens[:, 0] = 2
    full = decoder([features, tokens], training=False).numpy()                     # (B, T, V)
    stepper = stepper_for(decoder)
    context, state = stepper.start(tf.constant(features), LENGTH + 1)
    for t in range(LENGTH + 1):
        logits, state = stepper.step(tf.constant(tokens[:, t]), tf.constant(t), context, state)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=1e-5, err_msg=f"position {t}")


@pytest.mark.parametrize("model_type", sorted(OPTIONS))
def test_graph_loops_match_the_prefix_re_run(model_type):
    decoder = _decoder(model_type)
    features = tf.constant(np.random.default_rng(2).normal(size=(5, *GRID)).astype("float32"))
    steps = LENGTH + 1
    pairs = [(lambda f: greedy_decode(decoder, f, steps), lambda f: greedy_decode_prefix(decoder, f, steps)),
             (lambda f: beam_search(decoder, f, steps, beam_size=3),
              lambda f: beam_search_prefix(decoder, f, steps, beam_size=3)),
             (lambda f: beam_search(decoder, f, steps, beam_size=1), lambda f: greedy_decode(decoder, f, steps))]
    for fast, reference in pairs:
        tokens, log_probs = tf.function(fast)(features)
        expected_tokens, expected_log_probs = reference(features)
        np.testing.assert_array_equal(tokens, expected_tokens)
        np.testing.assert_allclose(log_probs, expected_log_probs, atol=1e-4)


def test_the_stepper_is_chosen_by_the_decoder_s_layers():
    assert isinstance(stepper_for(_decoder("lstm")), LSTMStepper)
    assert isinstance(stepper_for(_decoder("attention")), AttentionStepper)
    assert isinstance(stepper_for(_decoder("transformer")), TransformerStepper)
    assert stepper_for(build_lstm_decoder(VOCAB, GRID, num_layers=3)).num_layers == 3
    import keras

    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="other")
    with pytest.raises(ValueError, match="decoder 'other' is none of the lstm, attention and transformer"):
        stepper_for(other)


def test_the_steppers_hold_no_weights_of_their_own():
    for model_type in OPTIONS:
        stepper = stepper_for(_decoder(model_type))
        decoder_weights = {id(w) for w in stepper.decoder.weights}
        # What a stepper holds (the decoder, the part of it computed once per image) shares the
        # decoder's variables: nothing new to save, nothing to keep in sync.
        for value in vars(stepper).values():
            for weight in getattr(value, "weights", []):
                assert id(weight) in decoder_weights, (model_type, weight.path)


def test_the_transformer_reorders_beams_by_its_ancestry_table_not_its_cache():
    """Beam search gathers each row's (N, S) ancestry; the cache stays where the rows wrote it,
    one slot per beam, and a row that continues another row's caption reads that row's slot."""
    stepper = stepper_for(_decoder("transformer"))
    features = tf.constant(np.random.default_rng(3).normal(size=(2, *GRID)).astype("float32"))
    context, state = stepper.start(features, LENGTH + 1, beams=3)
    assert state[0].shape == (6, LENGTH + 1) and state[1].shape[0] == 2   # rows, then images
    _, state = stepper.step(tf.constant([2] * 6), tf.constant(0), context, state)
    rows = tf.constant([2, 2, 0, 4, 5, 3])
    reordered = stepper.reorder(state, rows)
    for before, after in zip(state[1:], reordered[1:]):
        assert after is before
    np.testing.assert_array_equal(reordered[0][:, 0], [2, 2, 0, 1, 2, 0])  # the slot each row's position 0 is in

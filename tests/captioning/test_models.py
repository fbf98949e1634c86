"""The decoder on its own: shapes, masking, the loss, a tiny model that must learn, greedy decoding."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from vlm_keras.captioning.decoding import beam_search, greedy_decode, tokens_to_text
from vlm_keras.captioning.losses import caption_loss
from vlm_keras.captioning.models import build_captioner, build_lstm_decoder
from vlm_keras.data.text import END_ID, PAD_ID, START_ID, Tokenizer
from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.encoders.vgg16 import WeightsUnavailableError, build_image_encoder

FEATURES = (2, 2, 8)


def _decoder(vocab_size=12, seed_weights=0, **kw):
    keras.utils.set_random_seed(seed_weights)
    kw = dict(dict(embed_dim=16, units=32, num_layers=2, dropout=0.0), **kw)
    dec = build_lstm_decoder(vocab_size, FEATURES, **kw)
    adapt_region_encoder(dec, np.random.rand(8, *FEATURES).astype("float32"))
    return dec


def test_output_shape_and_dtype():
    dec = _decoder()
    logits = dec([np.random.rand(3, *FEATURES).astype("float32"), np.ones((3, 7), "int32")])
    assert tuple(logits.shape) == (3, 7, 12) and logits.dtype == "float32"


def test_padding_does_not_change_real_positions():
    dec = _decoder()
    feats = np.random.rand(2, *FEATURES).astype("float32")
    short = np.array([[START_ID, 5, 6], [START_ID, 7, 4]], "int32")
    padded = np.concatenate([short, np.zeros((2, 4), "int32")], axis=1)
    a = dec([feats, short]).numpy()
    b = dec([feats, padded]).numpy()[:, :3]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_decoder_is_causal():
    dec = _decoder()
    feats = np.random.rand(1, *FEATURES).astype("float32")
    a = dec([feats, np.array([[START_ID, 5, 6, 7]], "int32")]).numpy()
    b = dec([feats, np.array([[START_ID, 5, 9, 4]], "int32")]).numpy()
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-6)
    assert not np.allclose(a[:, 2:], b[:, 2:])


def test_image_features_reach_the_decoder():
    dec = _decoder()
    tokens = np.array([[START_ID, 5]], "int32")
    a = dec([np.zeros((1, *FEATURES), "float32"), tokens]).numpy()
    b = dec([np.ones((1, *FEATURES), "float32"), tokens]).numpy()
    assert not np.allclose(a, b)


def test_loss_ignores_padding_targets():
    loss = caption_loss()
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]], "float32"))
    # target 1 at step 0 (p = 0.25), padding at step 1: the mean is over the one real token.
    assert float(loss(np.array([[1, PAD_ID]]), logits)) == pytest.approx(-np.log(0.25), rel=1e-5)


def _tiny_task():
    """8 'images' (random feature maps), each with its own caption."""
    rng = np.random.default_rng(0)
    captions = ["a red circle", "a blue square", "a red square above a blue circle", "two green stars",
                "a blue circle", "a green square left of a red star", "three red circles", "a star"]
    tok = Tokenizer.from_texts(captions)
    feats = rng.normal(size=(len(captions), *FEATURES)).astype("float32")
    return tok, feats, captions


def test_tiny_captioner_learns_its_captions_and_greedy_matches_teacher_forcing():
    tok, feats, captions = _tiny_task()
    dec = _decoder(tok.vocab_size)
    adapt_region_encoder(dec, feats)
    ids = tok.encode(captions).numpy()
    x = {"image_features": feats, "caption_tokens": ids[:, :-1]}
    dec.compile(optimizer=keras.optimizers.Adam(1e-2), loss=caption_loss())
    first = dec.evaluate(x, ids[:, 1:], verbose=0)
    dec.fit(x, ids[:, 1:], epochs=150, batch_size=8, verbose=0)
    last = dec.evaluate(x, ids[:, 1:], verbose=0)
    assert last < 0.05 * first

    steps = tok.max_length + 1
    tokens, log_probs = greedy_decode(dec, tf.constant(feats), steps)
    assert tokens.shape == (len(captions), steps)
    assert tok.decode(tokens.numpy()) == captions
    assert [s.decode() for s in tokens_to_text(tokens, tok.id_to_token).numpy()] == captions
    assert np.all(log_probs.numpy() <= 0)

    # Teacher forcing on the generated prefix gives the same argmax at every step.
    prefix = np.concatenate([np.full((len(captions), 1), START_ID), tokens.numpy()], axis=1)
    teacher = np.argmax(dec([feats, prefix[:, :-1]]).numpy(), axis=-1)
    for row, gen in zip(teacher, tokens.numpy()):
        n = int(np.argmax(gen == END_ID)) + 1  # up to and including <end>
        np.testing.assert_array_equal(row[:n], gen[:n])

    # The same loop compiled into one graph function gives the same tokens.
    compiled = tf.function(lambda f: greedy_decode(dec, f, steps))
    np.testing.assert_array_equal(compiled(tf.constant(feats))[0].numpy(), tokens.numpy())


def test_greedy_never_emits_padding_or_start_and_pads_after_end():
    dec = _decoder()
    tokens, _ = greedy_decode(dec, tf.constant(np.random.rand(4, *FEATURES).astype("float32")), 9)
    tokens = tokens.numpy()
    for row in tokens:
        ended = np.where(row == END_ID)[0]
        body = row[: ended[0]] if len(ended) else row
        assert not np.isin(body, [PAD_ID, START_ID]).any()
        if len(ended):
            assert (row[ended[0] + 1:] == PAD_ID).all()


def test_tokens_to_text_stops_at_end():
    vocab = ["", "[UNK]", "<start>", "<end>", "a", "red", "circle"]
    out = tokens_to_text([[4, 5, 6, END_ID, 4, 4], [END_ID, 4, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0]], vocab)
    assert [s.decode() for s in out.numpy()] == ["a red circle", "", "a"]


def test_encoder_grid_shape_and_frozen():
    assert build_image_encoder(64).output_shape == (None, 4, 4, 512)  # block5_conv3: S / 16
    enc = build_image_encoder(64, feature_layer="block5_pool")
    assert enc.output_shape == (None, 2, 2, 512)                      # include_top=False: S / 32
    assert not enc.trainable_weights
    assert build_image_encoder(64, trainable=True).trainable_weights


def test_encoder_weight_errors(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_image_encoder(64, weights=tmp_path / "missing.h5")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(WeightsUnavailableError, match="not an .h5"):
        build_image_encoder(64, weights=tmp_path / "w.txt")
    with pytest.raises(ValueError, match="at least 32"):
        build_image_encoder(16)
    with pytest.raises(ValueError, match="feature_layer"):
        build_image_encoder(64, feature_layer="block1_pool")


def test_encoder_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(5)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    vgg.save_weights(tmp_path / "vgg16_notop.weights.h5")
    enc = build_image_encoder(64, weights=tmp_path / "vgg16_notop.weights.h5", feature_layer="block5_pool")
    x = np.random.rand(1, 64, 64, 3).astype("float32")
    np.testing.assert_allclose(enc.predict(x, verbose=0), vgg.predict(x, verbose=0), atol=1e-5)


def test_end_to_end_model_wiring():
    enc = build_image_encoder(64)
    dec = build_lstm_decoder(10, enc.output_shape[1:], units=8, embed_dim=4, num_layers=1)
    model = build_captioner(enc, dec)
    assert [i.name for i in model.inputs] == ["image", "caption_tokens"]
    out = model([np.random.rand(2, 64, 64, 3).astype("float32"), np.ones((2, 5), "int32")])
    assert tuple(out.shape) == (2, 5, 10)


def test_beam_width_one_equals_greedy():
    dec = _decoder()
    feats = tf.constant(np.random.default_rng(1).normal(size=(6, *FEATURES)).astype("float32"))
    greedy_tokens, greedy_lp = greedy_decode(dec, feats, 9)
    beam_tokens, beam_lp = beam_search(dec, feats, 9, beam_size=1)
    np.testing.assert_array_equal(beam_tokens.numpy(), greedy_tokens.numpy())
    np.testing.assert_allclose(beam_lp.numpy(), greedy_lp.numpy(), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_log_probability_is_at_least_greedy(seed):
    dec = _decoder(seed_weights=seed)
    feats = tf.constant(np.random.default_rng(seed).normal(size=(16, *FEATURES)).astype("float32"))
    _, greedy_lp = greedy_decode(dec, feats, 9)
    tokens, beam_lp = beam_search(dec, feats, 9, beam_size=4, length_penalty=0.0)
    assert np.all(beam_lp.numpy() >= greedy_lp.numpy() - 1e-4)
    # The returned log-probability is the one the decoder gives the returned caption.
    prefix = np.concatenate([np.full((16, 1), START_ID), tokens.numpy()], axis=1)
    logits = dec([feats, tf.constant(prefix[:, :-1], tf.int32)]).numpy()
    logits[..., [PAD_ID, START_ID]] = -1e9  # decoding never chooses these; it renormalises without them
    log_softmax = tf.nn.log_softmax(logits).numpy()
    for i, row in enumerate(tokens.numpy()):
        n = int(np.argmax(row == END_ID)) + 1 if (row == END_ID).any() else len(row)
        expected = sum(log_softmax[i, t, row[t]] for t in range(n))
        assert beam_lp.numpy()[i] == pytest.approx(expected, abs=2e-3)


def test_beam_search_compiles_with_a_tensor_beam_size():
    dec = _decoder()
    feats = np.random.rand(3, *FEATURES).astype("float32")
    fn = tf.function(lambda f, k: beam_search(dec, f, 9, beam_size=k),
                     input_signature=[tf.TensorSpec([None, *FEATURES], tf.float32), tf.TensorSpec([], tf.int32)])
    for k in (1, 3):
        tokens, lp = fn(tf.constant(feats), tf.constant(k))
        assert tokens.shape == (3, 9) and lp.shape == (3,)
    eager, _ = beam_search(dec, tf.constant(feats), 9, beam_size=3)
    np.testing.assert_array_equal(fn(tf.constant(feats), tf.constant(3))[0].numpy(), eager.numpy())

"""Caption generation (greedy and beam search) as graph code: eager, `tf.function`, SavedModel.

`greedy_decode` and `beam_search` run the decoder one word at a time through its stepper
(`steppers.py`): each step carries the LSTM states or the Transformer's key/value cache, so a
T-word caption costs T steps, and a whole batch is captioned by one `tf.while_loop`.

`greedy_decode_prefix` and `beam_search_prefix` are the reference they are tested against: each
step re-runs the decoder's full teacher-forcing pass on the prefix generated so far (O(T^2) work);
they accept any causal decoder `decoder([image_features, tokens]) -> (B, T, V)` logits.
"""

import tensorflow as tf

from vlm_keras.captioning.steppers import stepper_for
from vlm_keras.data.text import END_ID, PAD_ID, START_ID


def greedy_decode(decoder, image_features, max_steps):
    """Greedy decoding of a batch, a step at a time.

    Args:
        decoder: the caption decoder (a model from `captioning.models`).
        image_features: (B, h, w, c) encoder features.
        max_steps: the most tokens generated per caption, the end token included.

    Returns:
        (tokens, log_probs): tokens (B, max_steps) int32 generated ids, the end token included,
        padding (0) after it; log_probs (B,) float32, the sum of the chosen tokens' log-probabilities.
    """
    stepper = stepper_for(decoder)
    context, state = stepper.start(image_features, max_steps)
    batch = tf.shape(image_features)[0]

    def step(t, previous, tokens, finished, log_probs, state):
        logits, state = stepper.step(previous, t, context, state)                      # (B, V)
        next_id, chosen = _greedy_choice(logits)
        next_id = tf.where(finished, PAD_ID, next_id)
        log_probs += tf.where(finished, 0.0, chosen)
        tokens += tf.one_hot(t, max_steps, dtype=tf.int32)[None, :] * next_id[:, None]
        return t + 1, next_id, tokens, tf.logical_or(finished, tf.equal(next_id, END_ID)), log_probs, state

    _, _, tokens, _, log_probs, _ = tf.while_loop(
        lambda t, _p, _t, finished, _l, _s: tf.logical_and(t < max_steps, tf.logical_not(tf.reduce_all(finished))),
        step, (tf.constant(0), tf.fill([batch], START_ID), tf.zeros([batch, max_steps], tf.int32),
               tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32), state))
    return tokens, log_probs


def beam_search(decoder, image_features, max_steps, beam_size=3, length_penalty=0.7):
    """Batched beam search in graph code, a step at a time.

    Each image keeps `beam_size` partial captions; at every step each is extended by every word,
    and the `beam_size` best by summed log-probability survive, their carried states reordered
    with them. A caption that has produced the end token stays in its beam unchanged (extended by
    padding at no cost). At the end the beam with the best length-normalised score,
    log_prob / length ** length_penalty (Wu et al. 2016), is returned; length_penalty=0 ranks by
    log-probability alone. With beam_size=1 this is exactly `greedy_decode`.

    Args:
        decoder: the caption decoder, as in `greedy_decode`.
        image_features: (B, h, w, c) encoder features.
        max_steps: the most tokens generated per caption, the end token included.
        beam_size: int or scalar int tensor, >= 1.
        length_penalty: float >= 0, the exponent of the length normalisation.

    Returns:
        (tokens (B, max_steps) int32, log_probs (B,) float32): the chosen caption per image and its
        summed token log-probability (not normalised).
    """
    beam_size = tf.convert_to_tensor(beam_size, tf.int32)
    tf.debugging.assert_positive(beam_size, message="beam_size must be >= 1")
    stepper = stepper_for(decoder)
    # The per-image work is done once; the context (the regions) stays one per image, read for all
    # of an image's beams at once, and the state holds a row per beam.
    context, state = stepper.start(image_features, max_steps, beams=beam_size)
    batch = tf.shape(image_features)[0]
    flat = batch * beam_size

    def step(t, previous, tokens, scores, finished, lengths, state):
        logits, state = stepper.step(previous, t, context, state)                      # (B*K, V)
        return _extend_beams(t, logits, tokens, scores, finished, lengths, state, batch, beam_size, max_steps,
                             stepper.reorder)

    loop = tf.while_loop(
        lambda t, _p, _t, _s, finished, _l, _st: tf.logical_and(t < max_steps, tf.logical_not(tf.reduce_all(finished))),
        step, (tf.constant(0), tf.fill([flat], START_ID), tf.zeros([flat, max_steps], tf.int32),
               _first_beam_scores(batch, beam_size), tf.zeros([batch, beam_size], tf.bool),
               tf.zeros([batch, beam_size], tf.float32), state),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None, None]),
                          tf.TensorShape([None, None]), tf.TensorShape([None, None]), tf.TensorShape([None, None]),
                          tf.nest.map_structure(_batch_free_shape, state)))
    _, _, tokens, scores, _, lengths, _ = loop
    return _best_beam(tokens, scores, lengths, batch, beam_size, max_steps, length_penalty)


def greedy_decode_prefix(decoder, image_features, max_steps):
    """`greedy_decode` by re-running the decoder on the whole prefix at every step (the reference)."""
    batch = tf.shape(image_features)[0]
    tokens = tf.concat([tf.fill([batch, 1], START_ID), tf.zeros([batch, max_steps], tf.int32)], 1)

    def step(t, tokens, finished, log_probs):
        logits = decoder([image_features, tokens[:, : t + 1]], training=False)[:, -1]  # (B, V)
        next_id, chosen = _greedy_choice(logits)
        next_id = tf.where(finished, PAD_ID, next_id)
        log_probs += tf.where(finished, 0.0, chosen)
        tokens += tf.one_hot(t + 1, max_steps + 1, dtype=tf.int32)[None, :] * next_id[:, None]
        return t + 1, tokens, tf.logical_or(finished, tf.equal(next_id, END_ID)), log_probs

    _, tokens, _, log_probs = tf.while_loop(
        lambda t, _t, finished, _l: tf.logical_and(t < max_steps, tf.logical_not(tf.reduce_all(finished))),
        step, (tf.constant(0), tokens, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32)))
    return tokens[:, 1:], log_probs


def beam_search_prefix(decoder, image_features, max_steps, beam_size=3, length_penalty=0.7):
    """`beam_search` by re-running the decoder on every beam's whole prefix at every step (the
    reference)."""
    beam_size = tf.convert_to_tensor(beam_size, tf.int32)
    tf.debugging.assert_positive(beam_size, message="beam_size must be >= 1")
    batch = tf.shape(image_features)[0]
    flat = batch * beam_size
    features = tf.repeat(image_features, beam_size, axis=0)                            # (B*K, ...)
    prefix = tf.concat([tf.fill([flat, 1], START_ID), tf.zeros([flat, max_steps], tf.int32)], 1)

    def step(t, prefix, tokens, scores, finished, lengths):
        logits = decoder([features, prefix[:, : t + 1]], training=False)[:, -1]         # (B*K, V)
        t, word, tokens, scores, finished, lengths, (prefix,) = _extend_beams(
            t, logits, tokens, scores, finished, lengths, (prefix,), batch, beam_size, max_steps)
        prefix += tf.one_hot(t, max_steps + 1, dtype=tf.int32)[None, :] * word[:, None]
        return t, prefix, tokens, scores, finished, lengths

    _, _, tokens, scores, _, lengths = tf.while_loop(
        lambda t, _p, _t, _s, finished, _l: tf.logical_and(t < max_steps, tf.logical_not(tf.reduce_all(finished))),
        step, (tf.constant(0), prefix, tf.zeros([flat, max_steps], tf.int32), _first_beam_scores(batch, beam_size),
               tf.zeros([batch, beam_size], tf.bool), tf.zeros([batch, beam_size], tf.float32)),
        shape_invariants=(tf.TensorShape([]),) + (tf.TensorShape([None, None]),) * 5)
    return _best_beam(tokens, scores, lengths, batch, beam_size, max_steps, length_penalty)


def tokens_to_text(tokens, id_to_token):
    """Generated ids (B, T) -> (B,) strings, in graph code: stops at <end>, drops padding."""
    tokens = tf.convert_to_tensor(tokens, tf.int32)
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, END_ID), tf.int32), axis=1), 0)
    keep = tf.logical_and(before_end, tf.not_equal(tokens, PAD_ID))
    keep = tf.logical_and(keep, tf.not_equal(tokens, START_ID))
    words = tf.gather(tf.constant(id_to_token, tf.string), tokens)                   # (B, T)
    return tf.strings.reduce_join(tf.ragged.boolean_mask(words, keep), axis=-1, separator=" ")


def _greedy_choice(logits):
    """(B, V) logits -> (the argmax ids (B,), their log-probabilities (B,)); padding and <start>
    are never chosen."""
    logits = _forbid_special(tf.cast(logits, tf.float32))
    next_id = tf.argmax(logits, axis=-1, output_type=tf.int32)                          # (B,)
    return next_id, tf.gather(tf.nn.log_softmax(logits), next_id, batch_dims=1)


def _forbid_special(logits):
    """Padding and <start> are never generated: their logits become -inf (B, V)."""
    vocab_size = tf.shape(logits)[-1]
    forbidden = tf.reduce_sum(tf.one_hot([PAD_ID, START_ID], vocab_size), axis=0)  # (V,)
    return tf.where(forbidden[None, :] > 0, tf.cast(-1e9, logits.dtype), logits)


def _first_beam_scores(batch, beam_size):
    # Only the first beam is alive at the start, so the K beams do not all pick the same word.
    return tf.one_hot(tf.zeros([batch], tf.int32), beam_size, on_value=0.0, off_value=-1e9)  # (B, K)


def _extend_beams(t, logits, tokens, scores, finished, lengths, state, batch, beam_size, max_steps, reorder=None):
    """One beam-search step from (B*K, V) logits: keeps the K best extensions of each image's
    beams; `tokens` (B*K, max_steps) and `state` follow their beams (`reorder(state, rows)`;
    by default every tensor of it is gathered)."""
    log_probs = tf.nn.log_softmax(_forbid_special(tf.cast(logits, tf.float32)))
    vocab_size = tf.shape(log_probs)[-1]
    log_probs = tf.reshape(log_probs, [batch, beam_size, vocab_size])                  # (B, K, V)
    # A finished beam can only be extended by padding, at no cost.
    pad_only = tf.where(tf.equal(tf.range(vocab_size), PAD_ID), 0.0, -1e9)              # (V,)
    log_probs = tf.where(finished[:, :, None], pad_only[None, None, :], log_probs)
    candidates = tf.reshape(scores[:, :, None] + log_probs, [batch, -1])              # (B, K*V)
    scores, best = tf.math.top_k(candidates, k=beam_size)                             # (B, K)
    parent, word = best // vocab_size, best % vocab_size
    rows = tf.reshape(parent + tf.range(batch)[:, None] * beam_size, [-1])            # (B*K,)
    tokens = tf.gather(tokens, rows)
    tokens += tf.one_hot(t, max_steps, dtype=tf.int32)[None, :] * tf.reshape(word, [-1, 1])
    state = (reorder(state, rows) if reorder is not None
             else tf.nest.map_structure(lambda x: tf.gather(x, rows), state))
    was_finished = tf.gather(finished, parent, batch_dims=1)
    lengths = tf.gather(lengths, parent, batch_dims=1) + tf.cast(~was_finished, tf.float32)
    finished = tf.logical_or(was_finished, tf.equal(word, END_ID))
    return t + 1, tf.reshape(word, [-1]), tokens, scores, finished, lengths, state


def _best_beam(tokens, scores, lengths, batch, beam_size, max_steps, length_penalty):
    normalised = scores / tf.pow(tf.maximum(lengths, 1.0), length_penalty)
    choice = tf.argmax(normalised, axis=1, output_type=tf.int32)                       # (B,)
    chosen = tf.gather(tf.reshape(tokens, [batch, beam_size, -1]), choice, batch_dims=1)  # (B, max_steps)
    return tf.ensure_shape(chosen, [None, max_steps]), tf.gather(scores, choice, batch_dims=1)


def _batch_free_shape(tensor):
    return tf.TensorShape([None]).concatenate(tensor.shape[1:])

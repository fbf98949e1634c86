"""One decoding step at a time: the captioners' decoders run word by word with a carried state.

A captioner is trained as one parallel pass over the caption (`decoder([features, tokens])` ->
logits at every position). Generating word by word with that pass re-runs the whole prefix at
every step: O(T^2) work for a T-word caption. A stepper runs the same trained layers (it holds no
weights of its own, so nothing is saved twice and old model folders decode too) one position at a
time and carries what the next step needs:

- `lstm` (the document's captioner): each LSTM layer's `[h, c]`;
- `attention`: the LSTM's `[h, c]`; the image's regions (its keys and values) are computed once;
- `transformer`: a key/value cache of every block's causal self-attention; the regions and every
  block's cross-attention keys and values are computed once, and positions follow the step.

`stepper_for(decoder)` picks the stepper from the decoder's layer names. What is computed once per
image (the context) is kept one per image, and an image's beams read it together; the state has a
row per beam, and beam search reorders it with `stepper.reorder` (a `tf.gather` per tensor; the
Transformer gathers a small table of which cache slot each row reads and leaves its cache in place).
`tests/captioning/test_steppers.py` checks that stepping reproduces the teacher-forced logits at
every position.
"""

import keras
import tensorflow as tf
from keras import ops

from vlm_keras.layers import GroundedWordLogits
from vlm_keras.layers.scaled_dot_product_attention import _MASKED_SCORE


def image_side(decoder, layer_name):
    """The part of a decoder from its image features to the output of `layer_name`, sharing its
    layers: what a step function computes once per image (the region encoder and what follows
    it, or the normalisation of models saved before the region encoder existed)."""
    return keras.Model(decoder.inputs[0], decoder.get_layer(layer_name).output,
                       name=f"{decoder.name}_{layer_name}")


class _Stepper:
    """What every stepper shares: the state of `beams` rows per image, reordered with the beams.

    `start(features, max_steps, beams)` -> (context, state): the context is one per image (an
    image's rows read it together), the state has `beams` rows per image, image-major.
    `reorder(state, rows)` makes row i of the new state row `rows[i]` of the old one, as beam
    search keeps the best extensions.
    """

    def start(self, features, max_steps, beams=1):
        context, state = self._start(features, max_steps)
        return context, tf.nest.map_structure(lambda x: tf.repeat(x, beams, axis=0), state)

    def reorder(self, state, rows):
        return tf.nest.map_structure(lambda x: tf.gather(x, rows), state)


class LSTMStepper(_Stepper):
    """The document's LSTM captioner, a step at a time: `image_projection` initialises every
    layer's `[h, c]`; each step embeds a word and runs every `lstm_i` cell once."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.num_layers = sum(1 for layer in decoder.layers if layer.name.startswith("lstm_")
                              and not layer.name.startswith("lstm_dropout"))
        self.image_vector = image_side(decoder, "image_projection")

    def _start(self, features, max_steps):
        """Per-image work done once: (context, initial state)."""
        get = self.decoder.get_layer
        image_vector = self.image_vector(features, training=False)                   # (B, U)
        state = []
        for i in range(self.num_layers):
            state += [get(f"initial_h_{i}")(image_vector), get(f"initial_c_{i}")(image_vector)]
        return (), tuple(state)

    def step(self, tokens, t, context, state):
        """tokens (B,) at position t -> (logits (B, V) float32, new state)."""
        get = self.decoder.get_layer
        # The lookup without Keras' padding mask: the cell takes none (a fed-back word is no padding).
        x = get("token_embedding").call(tokens)                                      # (B, E)
        new_state = []
        for i in range(self.num_layers):
            x, (h, c) = get(f"lstm_{i}").cell(x, [state[2 * i], state[2 * i + 1]], training=False)
            new_state += [h, c]
        return get("next_token_logits")(x), tuple(new_state)


class AttentionStepper(_Stepper):
    """The attention captioner, a step at a time: the LSTM cell advances one word, its state
    queries the regions (computed once per image), and the attended context joins it."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.regions = image_side(decoder, "regions")

    def _start(self, features, max_steps):
        get = self.decoder.get_layer
        regions = self.regions(features, training=False)                             # (B, R, A)
        summary = get("mean_region")(regions)                                        # (B, A)
        return (regions,), (get("initial_h")(summary), get("initial_c")(summary))

    def step(self, tokens, t, context, state):
        get = self.decoder.get_layer
        (regions,) = context
        # The lookup without Keras' padding mask: the cell takes none (a fed-back word is no padding).
        x = get("token_embedding").call(tokens)                                      # (B, E)
        h, (h, c) = get("lstm").cell(x, list(state), training=False)                  # (B, U)
        # The rows of an image (its beams) are one query each against its regions: (B, G, A).
        query = get("attention_query")(h)                                            # (N, A)
        query = ops.reshape(query, (ops.shape(regions)[0], -1, ops.shape(query)[-1]))
        attended = get("region_attention")(query, regions, regions)                  # (B, G, A)
        attended = ops.reshape(attended, (-1, ops.shape(attended)[-1]))             # (N, A)
        x = get("attentional_state")(get("state_and_context")([h, attended]))        # (N, U)
        output = get("next_token_logits")
        if isinstance(output, GroundedWordLogits):   # the visual words read from the region alone
            return output([x, attended]), (h, c)                                     # (N, V)
        return output(x), (h, c)                                                     # (N, V)


class TransformerStepper(_Stepper):
    """The Transformer captioner, a step at a time, with a key/value cache.

    The cache of each block's causal self-attention holds, per image, one slot of `max_steps`
    positions for each of its `beams` rows, keys and values (B, H, beams S, k) each; step t writes every row's key and value at position t of the row's own
    slot. Beam search never moves the cache: each row's `ancestry` (N, S) says which slot of its
    image holds the key and value of each of its positions (a row that continues another row's
    caption reads that row's slot up to the step where they parted), and the attention masks
    every other one. Reordering the beams gathers that (N, S) table, not the cache (gathering the
    cache, 4.5 MB per tensor and step at the demo's sizes, ran at a quarter of a copy's speed on a
    CPU). With one row per image this is the plain key/value cache. The cross-attention keys and
    values of the regions never change and are computed once per image.

    A step works on (N, D) vectors with each block's projection kernels gathered once per call
    (query, key and value as one (D, 3 H k) matrix): the same arithmetic as the layers' own calls
    on (N, 1, D), with a third of the graph operations, which is what a step costs on a CPU.
    """

    def __init__(self, decoder):
        self.decoder = decoder
        self.blocks = sorted((layer for layer in decoder.layers if layer.name.startswith("decoder_block_")),
                             key=lambda layer: int(layer.name.rsplit("_", 1)[1]))
        self.regions = image_side(decoder, "regions")
        self._kernels = None

    def start(self, features, max_steps, beams=1):
        regions = self.regions(features, training=False)                             # (B, R, D)
        batch = ops.shape(features)[0]
        context, state = [], [tf.zeros(tf.stack([batch * beams, max_steps]), tf.int32)]  # ancestry (N, S)
        for block in self.blocks:
            attention = block.cross_attention
            # Keys transposed (B, H, k, R), values (B, H, R, k): both products of the step are then
            # plain (not transposed) matrix products, which read each image's keys and values once
            # for all of its rows (beams).
            context += [ops.transpose(attention.key_dense(regions), (0, 2, 3, 1)),
                        ops.transpose(attention.value_dense(regions), (0, 2, 1, 3))]
            heads, head_dim = block.num_heads, block.self_attention.key_dim
            state += [tf.zeros(tf.stack([batch, heads, beams * max_steps, head_dim]), block.compute_dtype),
                      tf.zeros(tf.stack([batch, heads, beams * max_steps, head_dim]), block.compute_dtype)]
        # Read once per call, outside the generation loop (loop-invariant tensors).
        self._kernels = [_block_kernels(block) for block in self.blocks]
        return tuple(context), tuple(state)

    def reorder(self, state, rows):
        return (tf.gather(state[0], rows),) + tuple(state[1:])

    def step(self, tokens, t, context, state):
        if self._kernels is None:
            raise RuntimeError("TransformerStepper.step before start()")
        embedding = self.decoder.get_layer("token_embedding")
        x = embedding.token_embedding(tokens)                                        # (N, D)
        position = ops.take(embedding.position_embeddings, t, axis=0)               # (D,)
        x = x + ops.cast(position, x.dtype)
        ancestry, caches = state[0], state[1:]
        rows, max_steps = ops.shape(ancestry)[0], ops.shape(ancestry)[1]
        batch = ops.shape(context[0])[0]
        beams = rows // batch
        # Position t of every row is written in its own slot.
        ancestry = ops.where(ops.arange(max_steps)[None, :] == t, (ops.arange(rows) % beams)[:, None], ancestry)
        slot_of = ops.reshape(ancestry, (batch, beams, 1, max_steps))             # (B, K rows, 1, S)
        visible = ops.logical_and(slot_of == ops.reshape(ops.arange(beams), (1, 1, -1, 1)),
                                  ops.arange(max_steps) <= t)                        # (B, K rows, K slots, S)
        visible = ops.reshape(visible, (batch, 1, beams, beams * max_steps))        # (B, 1, K, K S)
        written = ops.arange(beams * max_steps) % max_steps == t                     # (K S,)
        new_state = [ancestry]
        for i, (block, kernels) in enumerate(zip(self.blocks, self._kernels)):
            x, keys, values = _block_step(block, kernels, x, caches[2 * i], caches[2 * i + 1], beams, written,
                                          visible, context[2 * i], context[2 * i + 1])
            new_state += [keys, values]
        x = self.decoder.get_layer("final_norm")(x)
        return self.decoder.get_layer("next_token_logits")(x), tuple(new_state)


def _block_kernels(block):
    """A block's attention projections as (D, H k) matrices and (H k,) biases, in its compute
    dtype: self-attention's query, key and value concatenated into one."""
    dtype = block.compute_dtype

    def matrix(dense):
        kernel = ops.cast(dense.kernel, dtype)
        return ops.reshape(kernel, (kernel.shape[0], -1))

    def bias(dense, width):
        return ops.zeros((width,), dtype) if dense.bias is None else ops.reshape(ops.cast(dense.bias, dtype), (-1,))

    def output(attention):
        kernel = ops.cast(attention.output_dense.kernel, dtype)                      # (H, v, D)
        width = kernel.shape[-1]
        return ops.reshape(kernel, (-1, width)), bias(attention.output_dense, width)

    own, cross = block.self_attention, block.cross_attention
    width = block.num_heads * own.key_dim
    qkv = ops.concatenate([matrix(own.query_dense), matrix(own.key_dense), matrix(own.value_dense)], axis=1)
    qkv_bias = ops.concatenate([bias(own.query_dense, width), bias(own.key_dense, width),
                                bias(own.value_dense, width)], axis=0)
    return {"qkv": (qkv, qkv_bias), "self_output": output(own),
            "cross_query": (matrix(cross.query_dense), bias(cross.query_dense, width)),
            "cross_output": output(cross)}


def _attend(q, keys, values, mask=None, keys_transposed=True):
    """Attention of (N, H k) queries, N = B G rows (G rows per image, image-major: beam search's
    beams), to an image's (B, H, k, L) transposed keys (or (B, H, L, k) with
    `keys_transposed=False`) and (B, H, L, k) values, with
    `ScaledDotProductAttention`'s arithmetic (float32 scores; masked scores at -1e9, `mask`
    broadcastable to (B, H, G, L)) -> (N, H k). An image's rows are one matrix of queries, so its
    keys and values, what the step is bound by reading on a CPU, are read once for all of them."""
    batch, heads, head_dim = ops.shape(keys)[0], keys.shape[1], keys.shape[2 if keys_transposed else 3]
    q = ops.transpose(ops.reshape(q, (batch, -1, heads, head_dim)), (0, 2, 1, 3))   # (B, H, G, k)
    score_dtype = "float64" if q.dtype == "float64" else "float32"
    keys = keys if keys_transposed else ops.swapaxes(keys, 2, 3)
    scores = ops.matmul(ops.cast(q, score_dtype), ops.cast(keys, score_dtype))       # (B, H, G, L)
    scores = scores / ops.sqrt(ops.cast(head_dim, score_dtype))
    if mask is not None:
        scores = ops.where(mask, scores, ops.cast(_MASKED_SCORE, score_dtype))
    weights = ops.softmax(scores, axis=-1)
    attended = ops.matmul(ops.cast(weights, values.dtype), values)                 # (B, H, G, k)
    return ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, heads * head_dim))


def _block_step(block, kernels, x, keys, values, beams, written, visible, region_keys, region_values):
    """`TransformerDecoderBlock.call` for one position of every row (N, D): writes the rows' keys
    and values at that position of their own slots (`written`, (K S,)), attends over what `visible`
    (B, 1, K, K S) shows each row, then over the regions."""
    norm = block._sublayer_input
    heads, head_dim = block.num_heads, block.self_attention.key_dim
    batch, width = ops.shape(keys)[0], ops.shape(written)[0]                        # B, K S
    h = norm(x, block.self_attention_norm)
    q, new_k, new_v = ops.split(ops.matmul(h, kernels["qkv"][0]) + kernels["qkv"][1], 3, axis=-1)
    new_k = ops.transpose(ops.reshape(new_k, (batch, beams, heads, head_dim)), (0, 2, 1, 3))   # (B, H, K, k)
    new_v = ops.transpose(ops.reshape(new_v, (batch, beams, heads, head_dim)), (0, 2, 1, 3))   # (B, H, K, k)
    # Each slot's new key spread over the slot's S positions; `written` keeps position t only.
    # Keys as they are: the self-attention cache is small, and its product is faster so under XLA
    # than writing into transposed keys.
    keys = ops.where(written[:, None], ops.repeat(new_k, width // beams, axis=2), keys)  # (B, H, K S, k)
    values = ops.where(written[:, None], ops.repeat(new_v, width // beams, axis=2), values)  # (B, H, K S, k)
    attended = _attend(q, keys, values, visible, keys_transposed=False)            # (N, H k)
    h = ops.matmul(attended, kernels["self_output"][0]) + kernels["self_output"][1]
    x = block._add_residual(x, h, block.self_attention_norm, block.self_attention_dropout, False)

    h = norm(x, block.cross_attention_norm)
    q = ops.matmul(h, kernels["cross_query"][0]) + kernels["cross_query"][1]
    attended = _attend(q, region_keys, region_values)
    h = ops.matmul(attended, kernels["cross_output"][0]) + kernels["cross_output"][1]
    x = block._add_residual(x, h, block.cross_attention_norm, block.cross_attention_dropout, False)

    h = block.ffn_output(block.ffn_hidden(norm(x, block.ffn_norm)))
    x = block._add_residual(x, h, block.ffn_norm, block.ffn_dropout, False)
    return x, keys, values


def stepper_for(decoder):
    """The stepper of a captioner's decoder, by its layer names; ValueError for an unknown one."""
    names = {layer.name for layer in decoder.layers}
    if "lstm_0" in names:
        return LSTMStepper(decoder)
    if "region_attention" in names:
        return AttentionStepper(decoder)
    if "decoder_block_0" in names:
        return TransformerStepper(decoder)
    raise ValueError(f"decoder '{decoder.name}' is none of the lstm, attention and transformer captioners "
                     "(no lstm_0, region_attention or decoder_block_0 layer)")

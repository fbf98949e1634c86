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

`stepper_for(decoder)` picks the stepper from the decoder's layer names. A stepper's state is a
tuple of batch-major tensors, so beam search reorders it with one `tf.gather` per tensor.
`tests/captioning/test_steppers.py` checks that stepping reproduces the teacher-forced logits at
every position.
"""

import keras
import tensorflow as tf
from keras import ops

from vlm_keras.layers.scaled_dot_product_attention import _MASKED_SCORE


def image_side(decoder, layer_name):
    """The part of a decoder from its image features to the output of `layer_name`, sharing its
    layers: what a step function computes once per image (the region encoder and what follows
    it, or the normalisation of models saved before the region encoder existed)."""
    return keras.Model(decoder.inputs[0], decoder.get_layer(layer_name).output,
                       name=f"{decoder.name}_{layer_name}")


class LSTMStepper:
    """The document's LSTM captioner, a step at a time: `image_projection` initialises every
    layer's `[h, c]`; each step embeds a word and runs every `lstm_i` cell once."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.num_layers = sum(1 for layer in decoder.layers if layer.name.startswith("lstm_")
                              and not layer.name.startswith("lstm_dropout"))
        self.image_vector = image_side(decoder, "image_projection")

    def start(self, features, max_steps):
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


class AttentionStepper:
    """The attention captioner, a step at a time: the LSTM cell advances one word, its state
    queries the regions (computed once per image), and the attended context joins it."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.regions = image_side(decoder, "regions")

    def start(self, features, max_steps):
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
        return get("next_token_logits")(x), (h, c)                                   # (B, V)


class TransformerStepper:
    """The Transformer captioner, a step at a time, with a key/value cache.

    The state holds, for every block, the self-attention keys and values of the positions decoded
    so far, (B, H, max_steps, key_dim) each, written at position t by step t; the attention of step
    t reads positions 0..t. The cross-attention keys and values of the regions never change and
    are computed once.

    A step works on (B, D) vectors with each block's projection kernels gathered once per call
    (query, key and value as one (D, 3 H k) matrix): the same arithmetic as the layers' own calls
    on (B, 1, D), with a third of the graph operations, which is what a step costs on a CPU.
    """

    def __init__(self, decoder):
        self.decoder = decoder
        self.blocks = sorted((layer for layer in decoder.layers if layer.name.startswith("decoder_block_")),
                             key=lambda layer: int(layer.name.rsplit("_", 1)[1]))
        self.regions = image_side(decoder, "regions")
        self._kernels = None

    def start(self, features, max_steps):
        regions = self.regions(features, training=False)                             # (B, R, D)
        context, state = [], []
        batch = ops.shape(features)[0]
        for block in self.blocks:
            attention = block.cross_attention
            # Keys transposed (B, H, k, R), values (B, H, R, k): both products of the step are then
            # plain (not transposed) matrix products, which read each image's keys and values once
            # for all of its rows (beams).
            context += [ops.transpose(attention.key_dense(regions), (0, 2, 3, 1)),
                        ops.transpose(attention.value_dense(regions), (0, 2, 1, 3))]
            head_dim = block.self_attention.key_dim
            zeros = tf.zeros(tf.stack([batch, block.num_heads, max_steps, head_dim]), block.compute_dtype)
            state += [zeros, zeros]
        # Read once per call, outside the generation loop (loop-invariant tensors).
        self._kernels = [_block_kernels(block) for block in self.blocks]
        return tuple(context), tuple(state)

    def step(self, tokens, t, context, state):
        if self._kernels is None:
            raise RuntimeError("TransformerStepper.step before start()")
        embedding = self.decoder.get_layer("token_embedding")
        x = embedding.token_embedding(tokens)                                        # (B, D)
        position = ops.take(embedding.position_embeddings, t, axis=0)               # (D,)
        x = x + ops.cast(position, x.dtype)
        max_steps = ops.shape(state[0])[2]
        written = ops.reshape(ops.arange(max_steps) == t, (1, 1, -1, 1))            # (1, 1, S, 1)
        visible = ops.reshape(ops.arange(max_steps) <= t, (1, 1, -1))               # (1, 1, S)
        new_state = []
        for i, (block, kernels) in enumerate(zip(self.blocks, self._kernels)):
            x, keys, values = _block_step(block, kernels, x, state[2 * i], state[2 * i + 1], written, visible,
                                          context[2 * i], context[2 * i + 1])
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


def _heads(x, num_heads):
    return ops.reshape(x, (ops.shape(x)[0], num_heads, -1))                         # (B, H, k)


def _attend(q, keys, values, mask=None):
    """One query per head against (B, H, S, k) keys: `ScaledDotProductAttention`'s arithmetic
    (float32 scores, masked scores at -1e9) -> (B, H k)."""
    score_dtype = "float64" if q.dtype == "float64" else "float32"
    scores = tf.linalg.matvec(ops.cast(keys, score_dtype), ops.cast(q, score_dtype))   # (B, H, S)
    scores = scores / ops.sqrt(ops.cast(ops.shape(q)[-1], score_dtype))
    if mask is not None:
        scores = ops.where(mask, scores, ops.cast(_MASKED_SCORE, score_dtype))
    weights = ops.softmax(scores, axis=-1)
    heads = tf.linalg.matvec(values, ops.cast(weights, values.dtype), transpose_a=True)   # (B, H, k)
    return ops.reshape(heads, (ops.shape(heads)[0], -1))


def _attend_regions(q, keys, values):
    """Cross-attention of (N, H k) queries, N = B G rows (G rows per image, image-major: beam
    search's beams), to an image's (B, H, k, R) transposed keys and (B, H, R, k) values, with
    `ScaledDotProductAttention`'s arithmetic -> (N, H k). An image's rows are one matrix of queries,
    so its keys and values, what the step is bound by reading on a CPU, are read once for all."""
    batch, heads, head_dim = ops.shape(keys)[0], keys.shape[1], keys.shape[2]
    q = ops.transpose(ops.reshape(q, (batch, -1, heads, head_dim)), (0, 2, 1, 3))   # (B, H, G, k)
    score_dtype = "float64" if q.dtype == "float64" else "float32"
    scores = ops.matmul(ops.cast(q, score_dtype), ops.cast(keys, score_dtype))       # (B, H, G, R)
    weights = ops.softmax(scores / ops.sqrt(ops.cast(head_dim, score_dtype)), axis=-1)
    attended = ops.matmul(ops.cast(weights, values.dtype), values)                 # (B, H, G, k)
    return ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, heads * head_dim))


def _block_step(block, kernels, x, keys, values, written, visible, region_keys, region_values):
    """`TransformerDecoderBlock.call` for one position (B, D), reading and extending the cache."""
    norm = block._sublayer_input
    heads = block.num_heads
    h = norm(x, block.self_attention_norm)
    q, new_k, new_v = ops.split(ops.matmul(h, kernels["qkv"][0]) + kernels["qkv"][1], 3, axis=-1)
    keys = ops.where(written, ops.expand_dims(_heads(new_k, heads), 2), keys)      # (B, H, S, k)
    values = ops.where(written, ops.expand_dims(_heads(new_v, heads), 2), values)
    attended = _attend(_heads(q, heads), keys, values, visible)                    # (B, H k)
    h = ops.matmul(attended, kernels["self_output"][0]) + kernels["self_output"][1]
    x = block._add_residual(x, h, block.self_attention_norm, block.self_attention_dropout, False)

    h = norm(x, block.cross_attention_norm)
    q = ops.matmul(h, kernels["cross_query"][0]) + kernels["cross_query"][1]
    attended = _attend_regions(q, region_keys, region_values)
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

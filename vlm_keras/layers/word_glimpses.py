"""Glimpses over the regions whose queries are made of the question words each glimpse picks."""

import math

import keras
from keras import ops

from vlm_keras.layers.scaled_dot_product_attention import _MASKED_SCORE


@keras.saving.register_keras_serializable(package="vlm_keras")
class WordGlimpses(keras.layers.Layer):
    """Each glimpse picks words of the question, then looks for the region those words describe.

    A question such as "is the red circle to the left of the small square" names two objects, and
    the answer needs both where they lie and which is which. One question vector has to carry both
    objects and their roles; here each glimpse g reads the question word by word instead:

        c_g  = W_c,g u                                   (the question vector u: which words)
        b_gt = softmax_t(c_g . W_s s_t / sqrt(D))        (over the question's words, padding masked)
        w_g  = sum_t b_gt e_t                            (the picked words' own embeddings)
        a_gr = softmax_r(W_q w_g . x_r / sqrt(A))        (over the regions, absent ones masked)
        v_g  = sum_r a_gr x_r,    p_g = sum_r a_gr p_r   (what the glimpse saw, and where)

    with s_t the question encoder's state at word t (it knows a word's place: "red" after "is the"
    names the first object, after "left of the" the second), e_t the word's embedding and x_r, p_r
    the regions and their positions. The query is made of the picked words alone, so "red circle"
    asks for red plus circle, as the region embeddings hold them; the returned positions let the
    classifier compare where two glimpses landed. Scores and softmaxes run in float32.

    Args:
        glimpses: int, how many glimpses `G`.
        units: int, size `D` of the word-picking controls and keys.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        regions: `(B, R, A)` region (or node) vectors.
        positions: `(B, R, 2)` their positions (row and column in -1..1).
        question: `(B, U)` question vector.
        word_states: `(B, T, H)` the question encoder's state at each word.
        word_embeddings: `(B, T, E)` the words' embeddings.
        word_mask: `(B, T)` boolean or 0/1: which words exist (padding is 0).
        region_mask: optional `(B, R)` boolean or 0/1: which regions exist.
        return_weights: bool; if True, also return the float32 `(B, G, T)` word weights `b` and
            `(B, G, R)` region weights `a`.

    Returns:
        `(attended (B, G, A), glimpse_positions (B, G, 2))`, then the weights if asked for.

    Example:
    ```python
    attended, where = WordGlimpses(glimpses=2, units=64)(
        keras.Input((64, 256)), keras.Input((64, 2)), keras.Input((256,)), keras.Input((12, 256)),
        keras.Input((12, 128)), keras.Input((12,), dtype="bool"))
    ```
    """

    def __init__(self, glimpses, units, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("glimpses", glimpses), ("units", units)):
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer; received {value!r}")
        self.glimpses = int(glimpses)
        self.units = int(units)

    def build(self, regions_shape, positions_shape=None, question_shape=None, word_states_shape=None,
              word_embeddings_shape=None, word_mask_shape=None, region_mask_shape=None):
        for what, shape, rank in (("regions", regions_shape, 3), ("question", question_shape, 2),
                                  ("word_states", word_states_shape, 3),
                                  ("word_embeddings", word_embeddings_shape, 3)):
            if shape is None or len(shape) != rank:
                raise ValueError(f"WordGlimpses expects {what} of rank {rank}; received shape {shape}")

        def dense(name, units, inputs):
            layer = keras.layers.Dense(units, use_bias=False, dtype=self.dtype_policy, name=name)
            layer.build((None, inputs))
            return layer

        self.control_dense = dense("control", self.glimpses * self.units, question_shape[-1])
        self.word_key_dense = dense("word_key", self.units, word_states_shape[-1])
        self.query_dense = dense("query", regions_shape[-1], word_embeddings_shape[-1])
        self.built = True

    def call(self, regions, positions, question, word_states, word_embeddings, word_mask, region_mask=None,
             return_weights=False):
        controls = ops.reshape(self.control_dense(question), (-1, self.glimpses, self.units))  # (B, G, D)
        word_keys = self.word_key_dense(word_states)                                 # (B, T, D)
        word_scores = ops.matmul(ops.cast(controls, "float32"),
                                 ops.transpose(ops.cast(word_keys, "float32"), (0, 2, 1)))   # (B, G, T)
        word_scores = word_scores / math.sqrt(self.units)
        word_scores = ops.where(ops.cast(word_mask, "bool")[:, None, :], word_scores, _MASKED_SCORE)
        word_weights = ops.softmax(word_scores, axis=-1)                             # (B, G, T)
        picked = ops.matmul(ops.cast(word_weights, self.compute_dtype), word_embeddings)   # (B, G, E)
        queries = self.query_dense(picked)                                           # (B, G, A)
        region_scores = ops.matmul(ops.cast(queries, "float32"),
                                   ops.transpose(ops.cast(regions, "float32"), (0, 2, 1)))   # (B, G, R)
        region_scores = region_scores / math.sqrt(ops.shape(regions)[-1])
        if region_mask is not None:
            present = ops.cast(region_mask, "bool")[:, None, :]                       # (B, 1, R)
            region_scores = ops.where(present, region_scores, _MASKED_SCORE)
        region_weights = ops.softmax(region_scores, axis=-1)                         # (B, G, R)
        attended = ops.matmul(ops.cast(region_weights, self.compute_dtype), regions)  # (B, G, A)
        where = ops.matmul(region_weights, ops.cast(positions, "float32"))          # (B, G, 2)
        outputs = (attended, ops.cast(where, self.compute_dtype))
        return outputs + (word_weights, region_weights) if return_weights else outputs

    def get_config(self):
        config = super().get_config()
        config.update({"glimpses": self.glimpses, "units": self.units})
        return config

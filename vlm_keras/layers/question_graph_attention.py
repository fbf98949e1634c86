"""One round of message passing over a graph of visual elements, conditioned on the question."""

import math

import keras
from keras import ops

from vlm_keras.layers.scaled_dot_product_attention import _MASKED_SCORE

# What an edge knows of where its two ends are: the other node's offset (dx, dy) and its size.
_POSITION_FEATURES = 4


def relative_positions(positions):
    """(B, N, 2) node positions -> (B, N, N, 4) edge features (dx, dy, |dx|, |dy|) of p_j - p_i."""
    offsets = positions[:, None, :, :] - positions[:, :, None, :]                  # (B, N, N, 2)
    return ops.concatenate([offsets, ops.abs(offsets)], axis=-1)                  # (B, N, N, 4)


@keras.saving.register_keras_serializable(package="vlm_keras")
class QuestionGraphAttention(keras.layers.Layer):
    """Graph attention over visual elements whose edges and messages depend on the question.

    The nodes are a scene's visual elements (image regions, or annotated objects) with their
    positions; every node may send to every node (itself included). One round:

        s_ij = (W_q [x_i; u]) . (W_k x_j) / sqrt(D)  +  r(u) . phi(p_j - p_i)
        a_ij = softmax_j(s_ij)                   (absent nodes j masked out)
        m_i  = sum_j a_ij W_v x_j  +  W_p sum_j a_ij phi(p_j - p_i)
        x_i' = x_i + W_o relu(m_i + W_m u)       (absent nodes i keep x_i)

    with x the (B, N, D) nodes, u the question vector, phi(d) = (dx, dy, |dx|, |dy|) and
    r(u) = W_r u + b_r. The question picks which pairs of elements talk (the query term) and
    which relative placement matters ("left of": a negative dx); the message also carries where
    the attended elements lie. Every term is a sum over j weighted by a_ij, so the round is
    equivariant to the order of the nodes: shuffling them shuffles the output the same way.
    Scores and softmax run in float32 under mixed precision.

    Args:
        units: int, size `D` of the queries, keys and values (the nodes keep their own size).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        nodes: `(B, N, C)` node features.
        positions: `(B, N, 2)` node positions (e.g. row and column in -1..1).
        question: `(B, Q)` question vector.
        node_mask: optional `(B, N)` boolean or 0/1: which nodes exist.
        return_edge_weights: bool; if True, also return the `(B, N, N)` float32 weights `a_ij`.

    Returns:
        `(B, N, C)` updated nodes, or `(nodes, edge_weights)`.

    Example:
    ```python
    nodes, edges = QuestionGraphAttention(units=64)(
        keras.Input((64, 128)), keras.Input((64, 2)), keras.Input((256,)), return_edge_weights=True)
    ```
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if int(units) != units or units <= 0:
            raise ValueError(f"units must be a positive integer; received {units!r}")
        self.units = int(units)

    def build(self, nodes_shape, positions_shape=None, question_shape=None, node_mask_shape=None):
        if len(nodes_shape) != 3:
            raise ValueError(f"QuestionGraphAttention expects (B, N, C) nodes; received shape {nodes_shape}")
        if question_shape is None or len(question_shape) != 2:
            raise ValueError(f"QuestionGraphAttention expects a (B, Q) question; received shape {question_shape}")
        channels, question_size = nodes_shape[-1], question_shape[-1]

        def dense(name, units, inputs, use_bias=False):
            layer = keras.layers.Dense(units, use_bias=use_bias, dtype=self.dtype_policy, name=name)
            layer.build((None, inputs))
            return layer

        self.query_dense = dense("query", self.units, channels + question_size)
        self.key_dense = dense("key", self.units, channels)
        self.value_dense = dense("value", self.units, channels)
        self.position_score = dense("position_score", _POSITION_FEATURES, question_size, use_bias=True)
        self.position_message = dense("position_message", self.units, _POSITION_FEATURES)
        self.question_message = dense("question_message", self.units, question_size, use_bias=True)
        self.output_dense = dense("output", channels, self.units)
        self.built = True

    def call(self, nodes, positions, question, node_mask=None, return_edge_weights=False):
        count = ops.shape(nodes)[1]
        question_per_node = ops.repeat(question[:, None, :], count, axis=1)          # (B, N, Q)
        queries = self.query_dense(ops.concatenate([nodes, question_per_node], axis=-1))   # (B, N, D)
        keys = self.key_dense(nodes)                                                 # (B, N, D)
        edges = relative_positions(ops.cast(positions, "float32"))                  # (B, N, N, 4)
        scores = ops.matmul(ops.cast(queries, "float32"),
                            ops.transpose(ops.cast(keys, "float32"), (0, 2, 1))) / math.sqrt(self.units)
        placement = ops.cast(self.position_score(question), "float32")              # (B, 4)
        scores = scores + ops.einsum("bijf,bf->bij", edges, placement)              # (B, N, N)
        if node_mask is not None:
            present = ops.cast(node_mask, "bool")                                    # (B, N)
            scores = ops.where(present[:, None, :], scores, _MASKED_SCORE)
        weights = ops.softmax(scores, axis=-1)                                       # (B, N, N)
        if node_mask is not None:
            weights = weights * ops.cast(present[:, None, :], weights.dtype)       # none to absent j
        messages = ops.matmul(ops.cast(weights, self.compute_dtype), self.value_dense(nodes))   # (B, N, D)
        where = ops.einsum("bij,bijf->bif", weights, edges)                          # (B, N, 4)
        messages = messages + self.position_message(ops.cast(where, self.compute_dtype))
        update = self.output_dense(ops.relu(messages + self.question_message(question)[:, None, :]))
        if node_mask is not None:
            update = update * ops.cast(present[:, :, None], update.dtype)           # absent i: unchanged
        outputs = nodes + update
        return (outputs, weights) if return_edge_weights else outputs

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config

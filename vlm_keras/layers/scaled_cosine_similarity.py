"""Cosine similarity with a learnable temperature: the scores a dual encoder ranks by."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vlm_keras")
class ScaledCosineSimilarity(keras.layers.Layer):
    """Every image against every text: `exp(logit_scale) * cos(image_i, text_j)`.

    The scale is CLIP's learnable inverse temperature, stored as a log so that it stays positive
    and is learned on a multiplicative scale; it is clipped at `max_scale` (CLIP uses 100) so a
    runaway scale cannot make the softmax of the contrastive loss one-hot. The temperature does not
    change a ranking; it sets how peaked the training softmax is.

    Args:
        temperature: float > 0, the initial temperature (CLIP: 0.07, i.e. a scale of 14.3).
        max_scale: float, the largest scale `exp(logit_scale)` may reach.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        image_embeddings: `(B_i, D)` image vectors.
        text_embeddings: `(B_t, D)` text vectors.

    Both are L2-normalised here (the towers already output unit vectors; normalising again is
    exact and keeps the layer correct on its own).

    Returns:
        `(B_i, B_t)` float32 logits; row i scores image i against every text.

    Example:
    ```python
    similarity = ScaledCosineSimilarity(temperature=0.07)
    logits = similarity(np.eye(2, 4), np.eye(3, 4))      # (2, 3): 14.29 where i == j, else 0
    ```
    """

    def __init__(self, temperature=0.07, max_scale=100.0, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; received {temperature!r}")
        if not max_scale >= 1.0 / temperature:
            raise ValueError(f"max_scale ({max_scale!r}) must be >= 1 / temperature ({1.0 / temperature:.4g})")
        self.temperature = float(temperature)
        self.max_scale = float(max_scale)

    def build(self, image_embeddings_shape, text_embeddings_shape):
        if image_embeddings_shape[-1] != text_embeddings_shape[-1]:
            raise ValueError(f"image embeddings have {image_embeddings_shape[-1]} dimensions but text "
                             f"embeddings have {text_embeddings_shape[-1]}; expected the same size")
        self.logit_scale = self.add_weight(
            name="logit_scale", shape=(), dtype="float32",
            initializer=keras.initializers.Constant(math.log(1.0 / self.temperature)))
        self.built = True

    def scale(self):
        """The current inverse temperature, `min(exp(logit_scale), max_scale)`."""
        return ops.exp(ops.minimum(self.logit_scale, math.log(self.max_scale)))

    def call(self, image_embeddings, text_embeddings):
        images = ops.normalize(ops.cast(image_embeddings, "float32"), axis=-1)      # (B_i, D)
        texts = ops.normalize(ops.cast(text_embeddings, "float32"), axis=-1)        # (B_t, D)
        return self.scale() * ops.matmul(images, ops.transpose(texts))             # (B_i, B_t)

    def compute_output_shape(self, image_embeddings_shape, text_embeddings_shape):
        return (image_embeddings_shape[0], text_embeddings_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "max_scale": self.max_scale})
        return config

"""`OutlineImage`: an image's outlines, whatever their colours, as a grey VGG16 input."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vlm_keras")
class OutlineImage(keras.layers.Layer):
    """A preprocessed image -> its outline map, preprocessed the same way.

    The outline is how fast the colour changes at each pixel: the length of the central
    differences along the rows and the columns, over the three channels, divided by `scale` and
    clipped at 1, then drawn in grey (0..255 in all three channels). A red triangle and a blue
    triangle on the same ground draw the same outline, so the features a frozen VGG16 makes of it
    carry the shape and not the colour: a linear probe on block2_pool cells read the shape of
    objects whose colour-shape pair was never seen in training 0.99 of the time from the outline
    and 0.37 from the pixels (README, "Keeping colour and shape apart").

    Args:
        channel_offsets: what the encoder's preprocessing subtracts from each channel (VGG16's:
            the ImageNet means, `vlm_keras.encoders.vgg16.VGG16_BGR_MEAN`); the grey outline is
            offset the same way.
        scale: the colour change (RGB distance between a pixel's two neighbours) drawn white; the
            synthetic scenes keep every shape at least 120 from its background.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        image: `(B, S, S, C)` float, preprocessed (for VGG16: BGR minus the ImageNet means).

    Returns:
        `(B, S, S, C)`: the outline map, preprocessed the same way. At the
        border, the difference across it counts as 0.

    Example:
    ```python
    OutlineImage(channel_offsets=(103.939, 116.779, 123.68))(keras.Input((64, 64, 3)))   # (None, 64, 64, 3)
    ```
    """

    def __init__(self, channel_offsets, scale=100.0, **kwargs):
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f"scale must be > 0; received {scale!r}")
        self.channel_offsets = tuple(float(c) for c in channel_offsets)
        self.scale = float(scale)

    def build(self, image_shape):
        if len(image_shape) != 4 or image_shape[-1] != len(self.channel_offsets):
            raise ValueError(f"OutlineImage expects (B, S, S, {len(self.channel_offsets)}) images (one offset per "
                             f"channel); received shape {image_shape}")
        self.built = True

    def call(self, image):
        # The offsets cancel in the differences, and their length does not depend on the channel order.
        rows = ops.pad(image[:, 2:, :, :] - image[:, :-2, :, :], ((0, 0), (1, 1), (0, 0), (0, 0)))
        columns = ops.pad(image[:, :, 2:, :] - image[:, :, :-2, :], ((0, 0), (0, 0), (1, 1), (0, 0)))
        change = ops.sqrt(ops.sum(ops.square(rows) + ops.square(columns), axis=-1, keepdims=True))  # (B, S, S, 1)
        grey = ops.minimum(change / self.scale, 1.0) * 255.0
        offsets = ops.cast(ops.convert_to_tensor(self.channel_offsets), image.dtype)
        return grey - offsets                                                        # (B, S, S, C)

    def compute_output_shape(self, image_shape):
        return tuple(image_shape)

    def get_config(self):
        return {**super().get_config(), "channel_offsets": list(self.channel_offsets), "scale": self.scale}

"""The document's image encoder: VGG16 without its classifier, giving a grid of region features.

The encoder owns its preprocessing: `image_inputs` turns encoded image bytes into what
`build_image_encoder`'s model takes, and training, evaluation, the CLI and the exported
SavedModels all call it, so a served model sees exactly the pixels it was trained on.
"""

import os

import keras
import tensorflow as tf

from vlm_keras.config import FEATURE_LAYERS
from vlm_keras.data.images import decode_image
from vlm_keras.errors import VlmKerasError
from vlm_keras.layers import OutlineImage

# keras.applications.vgg16.preprocess_input ("caffe" mode): BGR order, ImageNet channel means.
VGG16_BGR_MEAN = (103.939, 116.779, 123.68)
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


class WeightsUnavailableError(VlmKerasError, RuntimeError):
    """Raised when the requested encoder weights cannot be found or downloaded."""


def _resolve_weights(weights):
    if weights is None or weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"encoder weights file '{path}' does not exist; pass weights='imagenet' (needs the "
            f"internet), None (random initialisation) or the path of {VGG16_NOTOP_FILE}"
        )
    if not path.endswith(".h5"):
        raise WeightsUnavailableError(
            f"encoder weights file '{path}' is not an .h5 file; expected the Keras VGG16 no-top "
            f"weights ({VGG16_NOTOP_FILE})"
        )
    return path


def build_image_encoder(image_size=64, weights=None, trainable=False, feature_layer="block5_conv3",
                        outline=False, name="image_encoder"):
    """VGG16 (include_top=False) as a functional model: image -> feature grid.

    Args:
        image_size: side of the square input, at least 32.
        weights: "imagenet" (downloaded once by Keras; needs the internet), None (random
            initialisation, the offline default) or the path of a local VGG16 no-top `.h5` file.
        trainable: False freezes the encoder (features can then be cached); True fine-tunes it.
        feature_layer: "block5_conv3", VGG16's last convolution (the grid Show, Attend and Tell
            attends over: image_size // 16 cells a side, 4x4 at 64 px, 14x14 at 224), or
            "block5_pool", the output of `VGG16(include_top=False)` after the last max-pool
            (image_size // 32 a side: 2x2 at 64 px). Each cell is a 512-d feature. Earlier
            blocks keep finer detail: "block4_pool" (image_size // 16 a side, 512-d),
            "block3_pool" (image_size // 8 a side, 256-d: 8x8 at 64 px) and "block2_pool"
            (image_size // 4 a side, 128-d: 16x16 at 64 px). With random weights
            (`weights=None`) each block loses some of the shapes' outlines: a linear probe of
            the shape of lone objects read 61% from block3, 43% from block4, 37% from block5
            (4 shapes; chance 25%).
        outline: False: the image's features alone; True: the same VGG16 also reads the image's
            outline map (`OutlineImage`: where the colour changes, drawn in grey), and its features
            follow the image's, channel by channel: (B, h, w, 2c), the first c from the pixels
            (colour and shape together), the last c from the outlines (shape without colour).
        name: the model's name.

    Call arguments:
        image: (B, S, S, 3) float32, already VGG16-preprocessed (see `image_inputs`).

    Returns:
        A `keras.Model` mapping (B, S, S, 3) images to (B, h, w, c) features ((B, h, w, 2c) with
        `outline`).

    Example:
    ```python
    encoder = build_image_encoder(image_size=64, weights=None)
    encoder.output_shape  # (None, 4, 4, 512)
    ```
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 for VGG16, got {image_size}")
    if feature_layer not in FEATURE_LAYERS:
        raise ValueError(f"feature_layer must be one of {FEATURE_LAYERS}, got {feature_layer!r}")
    resolved = _resolve_weights(weights)
    try:
        vgg = keras.applications.VGG16(
            include_top=False, weights=resolved, input_shape=(image_size, image_size, 3)
        )
    except Exception as err:  # Keras raises a bare Exception when the download fails
        if resolved != "imagenet":
            raise
        raise WeightsUnavailableError(
            "could not download the ImageNet weights for VGG16 "
            f"({type(err).__name__}: {str(err)[:200]}). Without the internet, pass weights=None "
            f"(--weights none) to start from random weights, or the path of a local copy of "
            f"{VGG16_NOTOP_FILE} (--weights PATH); Keras also looks in ~/.keras/models/."
        ) from err
    vgg.trainable = trainable
    if feature_layer != "block5_pool":
        vgg = keras.Model(vgg.input, vgg.get_layer(feature_layer).output, name="vgg16")
    image = keras.Input((image_size, image_size, 3), name="image")
    features = vgg(image, training=False if not trainable else None)  # (B, h, w, c)
    if outline:
        outlines = OutlineImage(VGG16_BGR_MEAN, name="outline_image")(image)
        features = keras.layers.Concatenate(name="with_outline_features")(
            [features, vgg(outlines, training=False if not trainable else None)])     # (B, h, w, 2c)
    return keras.Model(image, features, name=name)


def preprocess(pixels):
    """RGB values in [0, 255] (..., 3) -> BGR with the ImageNet means subtracted (VGG16's input)."""
    return tf.reverse(pixels, axis=[-1]) - tf.constant(VGG16_BGR_MEAN, tf.float32)


def image_input(image_bytes, image_size):
    """One encoded image (scalar string) -> (S, S, 3) float32, ready for the encoder."""
    return preprocess(decode_image(image_bytes, image_size))


def image_inputs(image_bytes, image_size):
    """A batch of encoded images (B,) -> (B, S, S, 3) float32, ready for the encoder."""
    return tf.map_fn(lambda b: image_input(b, image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))

"""The encoder's own preprocessing: encoded bytes -> the one image decoder -> VGG16's input."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vlm_keras.data.images import ImageError, decode_image
from vlm_keras.encoders.features import load_images
from vlm_keras.encoders.vgg16 import image_input, image_inputs, preprocess


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_vgg16_preprocessing_by_hand():
    rgb = np.zeros((1, 1, 3), np.float32)
    rgb[0, 0] = [10, 20, 30]
    out = preprocess(tf.constant(rgb)).numpy()
    np.testing.assert_allclose(out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_decode_gives_rgb_for_gray_rgba_and_jpeg():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    expected = preprocess(tf.constant(red, tf.float32)).numpy()
    rgba = np.concatenate([red, np.full((8, 8, 1), 77, np.uint8)], axis=-1)
    gray = np.full((8, 8), 90, np.uint8)
    for data, want in [(_png(red), expected), (_png(rgba, "RGBA"), expected),
                       (_png(gray, "L"), preprocess(tf.fill([8, 8, 3], 90.0)).numpy())]:
        out = image_input(tf.constant(data), 8).numpy()
        assert out.shape == (8, 8, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, want, atol=1e-3)
    buf = io.BytesIO()
    Image.fromarray(red).save(buf, format="JPEG", quality=95)
    jpeg = image_input(tf.constant(buf.getvalue()), 4).numpy()
    assert jpeg.shape == (4, 4, 3)
    np.testing.assert_allclose(jpeg, expected[:4, :4], atol=6)


def test_resize_to_the_requested_square():
    wide = np.zeros((10, 30, 3), np.uint8)
    assert image_input(tf.constant(_png(wide)), 16).shape == (16, 16, 3)


def test_load_images_names_a_bad_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageError, match="bad.png"):
        load_images([str(bad)], 32)


def test_image_input_is_the_decoder_then_vgg16_preprocessing_and_batches_agree():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    data = _png(pixels)
    decoded = decode_image(tf.constant(data), 8)
    assert decoded.dtype == tf.float32 and float(tf.reduce_min(decoded)) >= 0.0
    np.testing.assert_array_equal(image_input(tf.constant(data), 8).numpy(), preprocess(decoded).numpy())
    batch = image_inputs(tf.constant([data, data]), 8).numpy()
    np.testing.assert_array_equal(batch[1], image_input(tf.constant(data), 8).numpy())

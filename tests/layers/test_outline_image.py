"""OutlineImage: an edge by hand, colour blindness, the encoder's outline features (a shape read from
them across colours never seen with it), errors, saving."""

import keras
import numpy as np
import pytest

from vlm_keras.encoders.vgg16 import VGG16_BGR_MEAN, build_image_encoder, preprocess
from vlm_keras.layers import OutlineImage
from tests.helpers import keras_round_trip

RED, BLUE = (230.0, 30.0, 30.0), (30.0, 30.0, 230.0)


def _outline(pixels, scale=100.0):
    """RGB pixels (B, S, S, 3) in 0..255 -> the outline map in 0..255 (one channel, the offsets undone)."""
    out = np.asarray(OutlineImage(VGG16_BGR_MEAN, scale=scale)(preprocess(np.asarray(pixels, np.float32))))
    grey = out + np.asarray(VGG16_BGR_MEAN)
    np.testing.assert_allclose(grey, np.broadcast_to(grey[..., :1], grey.shape), atol=1e-3)   # the same in each
    return grey[..., 0]


def test_an_edge_by_hand():
    pixels = np.zeros((1, 5, 6, 3), np.float32)
    pixels[..., :3, :] = (10.0, 20.0, 30.0)
    pixels[..., 3:, :] = (40.0, 60.0, 30.0)          # columns 3.. differ by (30, 40, 0): length 50
    outline = _outline(pixels)
    # Columns 2 and 3 straddle the edge (central differences), in every row; no row changes.
    expected = np.zeros((5, 6))
    expected[:, 2:4] = 50.0 / 100.0 * 255.0
    np.testing.assert_allclose(outline[0], expected, atol=1e-3)
    np.testing.assert_allclose(_outline(pixels, scale=25.0)[0], np.where(expected > 0, 255.0, 0.0), atol=1e-3)


def test_two_colours_far_from_the_ground_draw_the_same_outline():
    pixels = np.full((2, 12, 12, 3), 128.0, np.float32)
    pixels[0, 3:8, 4:9] = RED
    pixels[1, 3:8, 4:9] = BLUE
    outline = _outline(pixels)
    np.testing.assert_allclose(outline[0], outline[1], atol=1e-3)
    assert outline[0, 3, 5] == pytest.approx(255.0) and abs(outline[0, 5, 6]) < 1e-3   # an edge, inside


def _draw(rng, shape, colour, size=32):
    """A square or a circle of `colour` on a grey ground of random brightness, at a random place."""
    pixels = np.full((size, size, 3), rng.integers(100, 160), np.float32)
    radius = rng.uniform(5, 8)
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    y, x = np.mgrid[:size, :size] + 0.5
    if shape == "square":
        inside = (np.abs(y - cy) < radius) & (np.abs(x - cx) < radius)
    else:
        inside = (y - cy) ** 2 + (x - cx) ** 2 < radius ** 2
    pixels[inside] = colour
    return pixels


def test_the_outline_features_tell_shapes_apart_in_colours_never_seen_with_them():
    # Trained on red squares and blue circles only, tested on blue squares and red circles: a
    # nearest-centroid reader of the pixels' features answers with the colour (every answer wrong);
    # of the outlines' features, with the shape.
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    train = [(_draw(rng, s, c), s == "square") for s, c in (("square", RED), ("circle", BLUE)) for _ in range(40)]
    test = [(_draw(rng, s, c), s == "square") for s, c in (("square", BLUE), ("circle", RED)) for _ in range(40)]
    encoder = build_image_encoder(32, feature_layer="block2_pool", outline=True)
    assert encoder.output_shape == (None, 8, 8, 256)

    def pooled(items):
        features = encoder.predict(np.asarray(preprocess(np.stack([p for p, _ in items]))), verbose=0)
        return features.max(axis=(1, 2)), np.array([square for _, square in items])

    (train_x, train_y), (test_x, test_y) = pooled(train), pooled(test)
    accuracy = {}
    for name, channels in (("pixels", slice(0, 128)), ("outline", slice(128, 256))):
        a, b = train_x[:, channels], test_x[:, channels]
        mean, sd = a.mean(0), a.std(0) + 1e-6
        a, b = (a - mean) / sd, (b - mean) / sd
        squares, circles = a[train_y].mean(0), a[~train_y].mean(0)
        said_square = ((b - squares) ** 2).sum(1) < ((b - circles) ** 2).sum(1)
        accuracy[name] = float(np.mean(said_square == test_y))
    assert accuracy["outline"] >= 0.95 and accuracy["pixels"] <= 0.2, accuracy


def test_the_encoder_s_features_are_the_pixels_then_the_outlines():
    keras.utils.set_random_seed(0)
    encoder = build_image_encoder(32, feature_layer="block2_pool", outline=True)
    vgg = encoder.get_layer("vgg16")
    image = np.asarray(preprocess(np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)))
    features = np.asarray(encoder(image))
    np.testing.assert_allclose(features[..., :128], vgg(image), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features[..., 128:], vgg(encoder.get_layer("outline_image")(image)),
                               rtol=1e-5, atol=1e-5)
    assert build_image_encoder(32, feature_layer="block2_pool").output_shape == (None, 8, 8, 128)


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="scale must be > 0"):
        OutlineImage(VGG16_BGR_MEAN, scale=0)
    with pytest.raises(ValueError, match=r"\(B, S, S, 3\) images"):
        OutlineImage(VGG16_BGR_MEAN)(keras.Input((8, 8, 4)))


def test_round_trip_through_a_keras_file(tmp_path):
    image = keras.Input((8, 8, 3))
    model = keras.Model(image, OutlineImage(VGG16_BGR_MEAN, scale=40.0)(image))
    pixels = np.random.default_rng(0).uniform(-100, 100, (2, 8, 8, 3)).astype("float32")
    reloaded = keras_round_trip(model, tmp_path)
    np.testing.assert_allclose(reloaded(pixels), model(pixels), atol=1e-4)
    assert reloaded.layers[-1].get_config()["scale"] == 40.0

"""The feature cache: computed once per process for the same images and encoder, never reused
when the weights, the image size or a file change."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from vlm_keras.encoders import features as features_module
from vlm_keras.encoders.features import cached_features, forget_features
from vlm_keras.encoders.vgg16 import build_image_encoder


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def counted(monkeypatch):
    """Counts the images run through the encoder."""
    calls = []
    real = features_module.extract_features

    def extract(encoder, image_paths, *args, **kwargs):
        calls.append(len(image_paths))
        return real(encoder, image_paths, *args, **kwargs)

    monkeypatch.setattr(features_module, "extract_features", extract)
    forget_features()
    yield calls
    forget_features()


def _encoder(seed, size=32):
    keras.utils.set_random_seed(seed)
    return build_image_encoder(size, feature_layer="block2_pool")


def test_the_same_images_and_weights_are_encoded_once(images, counted):
    first = cached_features(_encoder(0), images, 32, verbose=0)
    again = cached_features(_encoder(0), images, 32, verbose=0)         # another model, same weights
    assert counted == [3]
    np.testing.assert_array_equal(first.numpy(), again.numpy())


def test_other_weights_sizes_or_files_are_encoded_again(images, counted):
    reference = cached_features(_encoder(0), images, 32, verbose=0).numpy()
    other_weights = cached_features(_encoder(1), images, 32, verbose=0).numpy()
    assert not np.allclose(other_weights, reference)
    cached_features(_encoder(0, size=48), images, 48, verbose=0)         # another image size
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images[1])     # a file rewritten
    stat = os.stat(images[1])
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    changed = cached_features(_encoder(0), images, 32, verbose=0).numpy()
    assert counted == [3, 3, 3, 3]
    np.testing.assert_allclose(changed[[0, 2]], reference[[0, 2]], rtol=1e-5)
    assert not np.allclose(changed[1], reference[1])


def test_the_memory_is_bounded_and_can_be_turned_off(images, counted, monkeypatch):
    monkeypatch.setenv("VLM_KERAS_FEATURE_MEMORY_MB", "0")
    cached_features(_encoder(0), images, 32, verbose=0)
    cached_features(_encoder(0), images, 32, verbose=0)
    assert counted == [3, 3]

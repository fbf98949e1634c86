"""CoordinateChannels: numbers checked on paper, errors, saving."""

import numpy as np
import pytest
import keras

from vlm_keras.layers import CoordinateChannels
from tests.helpers import keras_round_trip


def test_coordinate_channels_hand_computed():
    out = np.asarray(CoordinateChannels()(np.zeros((2, 2, 3, 1), "float32")))
    assert out.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(out[1, :, :, 1], [[-1, -1, -1], [1, 1, 1]])       # row
    np.testing.assert_allclose(out[1, :, :, 2], [[-1, 0, 1], [-1, 0, 1]])        # column
    np.testing.assert_allclose(out[..., 0], 0.0)


def test_coordinate_channels_rejects_an_unknown_grid_size():
    with pytest.raises(ValueError, match="known h and w"):
        CoordinateChannels()(keras.Input((None, None, 4)))


def test_coordinate_channels_round_trip_through_a_keras_file(tmp_path):
    grid = keras.Input((4, 4, 3))
    out = keras.layers.Conv2D(6, 3, padding="same")(CoordinateChannels()(grid))
    model = keras.Model(grid, out)
    inputs = np.random.rand(2, 4, 4, 3).astype("float32")
    reloaded = keras_round_trip(model, tmp_path)
    np.testing.assert_allclose(reloaded(inputs), model(inputs), atol=1e-6)

"""CoordConv: two channels holding each cell's (row, column) position."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="vlm_keras")
class CoordinateChannels(keras.layers.Layer):
    """Appends each cell's position as two channels, row and column, each running -1..1.

    Convolutions are translation-equivariant: without these channels a red square has the same
    features in every corner, and "is the circle to the left of the square" must be answered
    from where features sit, which later pooling destroys. With them, every cell says where it
    is (Liu et al. 2018, "CoordConv").

    Args:
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        grid: `(B, h, w, C)` features (h and w known when the layer is built).

    Returns:
        `(B, h, w, C + 2)`: the grid, then the row and the column coordinate.

    Example:
    ```python
    CoordinateChannels()(keras.Input((8, 8, 64)))   # (None, 8, 8, 66)
    ```
    """

    def build(self, grid_shape):
        if len(grid_shape) != 4 or grid_shape[1] is None or grid_shape[2] is None:
            raise ValueError(f"CoordinateChannels expects a (B, h, w, C) grid with known h and w; "
                             f"received shape {grid_shape}")
        height, width = grid_shape[1], grid_shape[2]
        rows, cols = np.meshgrid(np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij")
        self.coordinates = np.stack([rows, cols], axis=-1).astype("float32")      # (h, w, 2)
        self.built = True

    def call(self, grid):
        coordinates = ops.cast(ops.convert_to_tensor(self.coordinates), grid.dtype)[None]  # (1, h, w, 2)
        coordinates = ops.zeros_like(grid[..., :1]) + coordinates                  # (B, h, w, 2)
        return ops.concatenate([grid, coordinates], axis=-1)

    def compute_output_shape(self, grid_shape):
        return (*grid_shape[:3], grid_shape[3] + 2)

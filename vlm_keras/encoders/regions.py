"""The region encoder every task reads: the frozen VGG16 grid -> a learned grid of regions with
their positions.

The image side of every model is the same two stages:

    image (B, S, S, 3) -> frozen VGG16 up to `feature_layer` (cached once per image)
                       -> `build_region_encoder`: normalisation, optional learned 3x3
                          convolutions, each cell's (row, column)        -> (B, h', w', d + 2)

and each task reads the region grid its own way (the LSTM captioner flattens it, the attention
and Transformer captioners and the attention VQA head attend over its cells, the retrieval tower
pools it). The frozen part is what `extract_features` caches; the learned part trains with the
task.

Which grid localises depends on the weights. With the offline random weights every cell of
block5 sees the whole 64-px image (its receptive field is 196 px), so its 16 "regions" are not
regions: the attention captioner's maximum lands on the object its word names for 0.58 of the
words at block5_conv3 and 0.97 at block3_pool (8x8 cells of 8 px; README, "Where the captioners
look"). With ImageNet weights at 224 px, block5_conv3 (14x14 cells of 16 px) is the grid Show,
Attend and Tell attends over.
"""

import math

import keras

from vlm_keras.layers import CoordinateChannels


def build_region_encoder(feature_shape, region_layers=0, region_filters=64, region_cells=8,
                         normalization_axis=-1, channels=None, name="region_encoder"):
    """Frozen encoder features -> a grid of region vectors that know where they are.

    Args:
        feature_shape: one image's frozen grid, e.g. (8, 8, 256) for VGG16 block3_pool at 64 px.
        region_layers: learned 3x3 convolutions, each with batch normalisation and ReLU (0: the
            frozen grid, normalised, is the region grid).
        region_filters: channels of those convolutions.
        region_cells: the convolutions stride down to at most this many cells a side (the first
            reads the full grid; one stride-2 layer per halving after it: a 16x16 grid becomes
            8x8 with region_cells=8), as far as `region_layers` allow.
        normalization_axis: -1: statistics per channel (a cell's features stay comparable with
            every other cell's, as attention needs); (1, 2, 3): per cell and channel (a reader that
            flattens the grid, like the document's LSTM captioner).
        channels: (start, stop), the channels of the normalised grid the rest reads (None: all):
            the VQA head's outline stream reads only the outline features' half of the grid.
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32 frozen features.

    Returns:
        A `keras.Model` giving (B, h', w', d + 2) regions: d channels of features (`region_filters`,
        or c without learned layers), then each cell's row and column in -1..1
        (`CoordinateChannels`). Its "feature_normalization" layer is adapted on the training
        features before training (`adapt_region_encoder`).

    Example:
    ```python
    regions = build_region_encoder((16, 16, 128), region_layers=4, region_filters=64)
    regions.output_shape   # (None, 8, 8, 66)
    ```
    """
    height, width, _ = (int(n) for n in feature_shape)
    if int(region_layers) != region_layers or region_layers < 0:
        raise ValueError(f"region_layers must be an integer >= 0; received {region_layers!r}")
    region_layers = int(region_layers)            # 2.0 from a JSON option is 2
    if region_cells < 1:
        raise ValueError(f"region_cells must be at least 1; received {region_cells!r}")
    # Stride-2 layers after the first, as many as it takes to reach region_cells (or as there are).
    halvings = max(0, math.ceil(math.log2(max(height, width) / region_cells)))
    halvings = min(halvings, max(0, region_layers - 1))
    image_features = keras.Input(tuple(feature_shape), name="image_features")       # (B, h, w, c)
    grid = keras.layers.Normalization(axis=normalization_axis, name="feature_normalization")(image_features)
    if channels is not None:
        start, stop = (int(n) for n in channels)
        if not 0 <= start < stop <= feature_shape[-1]:
            raise ValueError(f"channels {tuple(channels)}: expected (start, stop) within the grid's "
                             f"{feature_shape[-1]} channels")
        grid = grid[..., start:stop]                                               # (B, h, w, stop - start)
    for i in range(region_layers):
        stride = 2 if 1 <= i <= halvings else 1          # the first layer reads the full grid
        grid = keras.layers.Conv2D(region_filters, 3, strides=stride, padding="same", use_bias=False,
                                   name=f"region_conv_{i}")(grid)
        # synchronized: under tf.distribute the statistics are those of the global batch
        grid = keras.layers.BatchNormalization(synchronized=True, name=f"region_norm_{i}")(grid)
        grid = keras.layers.ReLU(name=f"region_relu_{i}")(grid)                    # (B, h', w', F)
    regions = CoordinateChannels(name="region_coordinates")(grid)                  # (B, h', w', d + 2)
    return keras.Model(image_features, regions, name=name)


def region_grid(image_features, feature_shape, region_layers=0, region_filters=64, region_cells=8,
                normalization_axis=-1, appearance=0, outline_stream=False):
    """The region encoder applied to `image_features`, with an appearance stream and the outline
    split when asked: what every task's image side reads.

    Args:
        image_features: a (B, h, w, c) tensor of a functional model.
        feature_shape: its shape without the batch, (h, w, c).
        region_layers, region_filters, region_cells, normalization_axis: `build_region_encoder`'s.
        appearance: channels of each region's appearance stream (0: none): a 1x1 convolution over
            the frozen cells, averaged over the cells each region covers, joined to the region's
            channels. It reads a cell's own colour and texture, which the 3x3 convolutions mix
            with its neighbours' (the object's outline).
        outline_stream: the grid holds the pixels' features, then as many of the outlines'
            (`build_image_encoder(outline=True)`): the convolutions read the outlines (shape
            without colour), the appearance stream the pixels (colour); needs `appearance`.

    Returns:
        (B, h', w', appearance + d + 2): the appearance channels first (if any), each cell's row
        and column last.
    """
    channels = int(feature_shape[-1])
    if int(appearance) != appearance or appearance < 0:
        raise ValueError(f"region_appearance must be an integer >= 0; received {appearance!r}")
    if outline_stream and (channels % 2 or not appearance):
        raise ValueError(f"outline_stream reads a grid of the pixels' and the outlines' features, as many channels "
                         f"each (build_image_encoder(outline=True)), the colours through the appearance stream: "
                         f"give region_appearance > 0; received {channels} channels, region_appearance "
                         f"{appearance!r}")
    half = channels // 2
    grid = build_region_encoder(feature_shape, region_layers, region_filters, region_cells, normalization_axis,
                                channels=(half, channels) if outline_stream else None)(image_features)
    if not appearance:
        return grid                                                                # (B, h', w', d + 2)
    pixels = image_features[..., :half] if outline_stream else image_features
    stride = (-(-int(feature_shape[0]) // grid.shape[1]), -(-int(feature_shape[1]) // grid.shape[2]))
    x = keras.layers.BatchNormalization(synchronized=True, name="appearance_norm")(pixels)
    x = keras.layers.Conv2D(int(appearance), 1, activation="relu", name="appearance_conv")(x)   # (B, h, w, C)
    x = keras.layers.AveragePooling2D(stride, strides=stride, padding="same", name="appearance_pool")(x)
    return keras.layers.Concatenate(name="regions_with_appearance")([x, grid])  # (B, h', w', C + d + 2)


def region_encoder_of(model):
    """The region encoder inside a task's model (searched through its sub-models; the model
    itself if it is one), or None for models saved before it existed and heads without an image
    side."""
    if model.name == "region_encoder":
        return model
    for layer in model.layers:
        if layer.name == "region_encoder":
            return layer
        if isinstance(layer, keras.Model):
            found = region_encoder_of(layer)
            if found is not None:
                return found
    return None


def region_grid_shape(model):
    """(h', w'): the grid of the regions `model` attends over, read from the input of its "regions"
    layer (`RegionEmbedding`, which flattens them), searched through its sub-models; the same for
    models saved before the region encoder existed."""
    for layer in model.layers:
        if layer.name == "regions" and not isinstance(layer, keras.Model):
            return tuple(int(n) for n in layer.input.shape[1:3])
        if isinstance(layer, keras.Model):
            try:
                return region_grid_shape(layer)
            except ValueError:
                continue
    raise ValueError(f"model '{model.name}' has no 'regions' layer (no attention over image regions)")


def adapt_region_encoder(model, features):
    """Sets the normalisation of `model`'s region encoder to the statistics of training features
    (M, h, w, c): every task's trainer calls it before training. Returns False when `model` has no
    region encoder (the blind VQA baseline)."""
    encoder = region_encoder_of(model)
    if encoder is None:
        return False
    encoder.get_layer("feature_normalization").adapt(features)
    return True

"""The region encoder: shapes, numbers checked by hand, and that every task's model reads it."""

import numpy as np
import pytest

import keras
from vlm_keras.captioning.models import build_caption_decoder
from vlm_keras.encoders.regions import (adapt_region_encoder, build_region_encoder, region_encoder_of,
                                        region_grid_shape)
from vlm_keras.retrieval.models import adapt_image_tower, build_image_tower
from vlm_keras.vqa.models import build_vqa_head


@pytest.mark.parametrize("grid, layers, cells, expected", [
    ((8, 8, 256), 0, 8, (8, 8, 258)),      # the frozen grid, normalised, with positions
    ((16, 16, 128), 4, 8, (8, 8, 66)),     # the VQA heads': one stride-2 layer
    ((8, 8, 256), 2, 4, (4, 4, 66)),       # the LSTM captioner's
    ((16, 16, 128), 2, 4, (8, 8, 66)),     # strides as far as the layers allow
    ((4, 4, 512), 2, 8, (4, 4, 66)),       # never up
])
def test_region_grid_shapes(grid, layers, cells, expected):
    encoder = build_region_encoder(grid, region_layers=layers, region_filters=64, region_cells=cells)
    assert encoder.output_shape == (None, *expected)
    strided = [layer.strides for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(strided) == layers
    if strided:
        assert strided[0] == (1, 1)                      # the first layer reads the full grid


def test_without_learned_layers_the_regions_are_the_normalised_grid_and_its_positions():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, size=(16, 2, 3, 4)).astype("float32")
    encoder = build_region_encoder((2, 3, 4))
    assert adapt_region_encoder(encoder, features)
    regions = encoder.predict(features, verbose=0)                                  # (16, 2, 3, 6)
    mean, std = features.mean(axis=(0, 1, 2)), features.std(axis=(0, 1, 2))      # per channel
    np.testing.assert_allclose(regions[..., :4], (features - mean) / std, atol=1e-4)
    np.testing.assert_allclose(regions[0, :, :, 4], [[-1, -1, -1], [1, 1, 1]])       # row
    np.testing.assert_allclose(regions[0, :, :, 5], [[-1, 0, 1], [-1, 0, 1]])        # column


def test_per_cell_statistics_for_readers_that_flatten():
    features = np.arange(2 * 2 * 2 * 1, dtype="float32").reshape(2, 2, 2, 1)
    encoder = build_region_encoder((2, 2, 1), normalization_axis=(1, 2, 3))
    adapt_region_encoder(encoder, features)
    normalization = encoder.get_layer("feature_normalization")
    np.testing.assert_allclose(np.squeeze(normalization.mean.numpy()), [[2, 3], [4, 5]])   # per cell


def test_a_whole_float_counts_as_its_integer():
    assert build_region_encoder((8, 8, 4), region_layers=2.0, region_cells=4).output_shape == (None, 4, 4, 66)


@pytest.mark.parametrize("layers, cells", [(-1, 8), (1.5, 8), (2, 0)])
def test_bad_sizes_are_named(layers, cells):
    with pytest.raises(ValueError, match="region_layers|region_cells"):
        build_region_encoder((8, 8, 4), region_layers=layers, region_cells=cells)


def _task_models():
    grid = (8, 8, 16)
    small = dict(region_filters=8)
    yield "lstm", build_caption_decoder("lstm", 20, grid, 6, embed_dim=8, units=8, **small)
    yield "attention", build_caption_decoder("attention", 20, grid, 6, embed_dim=8, units=8, attention_dim=8)
    yield "transformer", build_caption_decoder("transformer", 20, grid, 6, embed_dim=8, num_heads=2, ff_dim=8,
                                               num_layers=1)
    for model_type in ("concat", "attention"):
        yield f"vqa {model_type}", build_vqa_head(model_type, 12, 4, grid, units=8, fusion_dim=8, attention_dim=8,
                                                  **small)
    for pooling in ("attention", "flatten", "mean"):
        yield f"retrieval {pooling}", build_image_tower(grid, embed_dim=8, pooling=pooling, hidden_dim=8,
                                                        attention_dim=8)


@pytest.mark.parametrize("name, model", list(_task_models()), ids=[name for name, _ in _task_models()])
def test_every_task_reads_the_one_region_encoder(name, model):
    encoder = region_encoder_of(model)
    assert encoder is not None, name
    assert isinstance(encoder.layers[-1], keras.layers.Layer) and encoder.layers[-1].name == "region_coordinates"
    features = np.random.default_rng(1).normal(size=(4, 8, 8, 16)).astype("float32")
    if name.startswith("retrieval"):
        adapt_image_tower(model, features)
    else:
        assert adapt_region_encoder(model, features)
    mean = encoder.get_layer("feature_normalization").mean.numpy()
    assert not np.allclose(mean, 0.0)                    # adapted: the statistics are the features'


def test_the_attention_grid_is_the_region_encoder_output():
    decoder = build_caption_decoder("attention", 20, (8, 8, 16), 6, embed_dim=8, units=8, attention_dim=8)
    assert region_grid_shape(decoder) == (8, 8)
    head = build_vqa_head("attention", 12, 4, (16, 16, 16), units=8, fusion_dim=8, attention_dim=8,
                          region_filters=8)
    assert region_grid_shape(head) == (8, 8)             # after the stride-2 region convolution
    with pytest.raises(ValueError, match="no 'regions' layer"):
        region_grid_shape(build_caption_decoder("lstm", 20, (8, 8, 16), 6, embed_dim=8, units=8))


def test_the_blind_baseline_has_no_region_encoder():
    head = build_vqa_head("question_only", 12, 4, (8, 8, 16), units=8, fusion_dim=8)
    assert region_encoder_of(head) is None
    assert adapt_region_encoder(head, np.zeros((2, 8, 8, 16), "float32")) is False

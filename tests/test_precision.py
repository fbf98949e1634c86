"""Mixed precision: layers compute in bfloat16 / float16, logits and losses stay float32."""

import keras
import numpy as np
import pytest

from vlm_keras.precision import PRECISIONS, adam, dtype_policy


def test_policy_is_scoped_and_checked():
    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_bfloat16"):
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        with dtype_policy("float8"):
            pass
    assert PRECISIONS == ("float32", "mixed_float16", "mixed_bfloat16")


def test_float16_scales_the_loss():
    assert isinstance(adam(1e-3, "mixed_float16"), keras.optimizers.LossScaleOptimizer)
    assert not isinstance(adam(1e-3, "mixed_bfloat16"), keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_train_captioner_in_mixed_precision(shapes_dir, precision):
    from vlm_keras import train_captioner

    result = train_captioner(data=str(shapes_dir), model="attention", epochs=2, image_size=32, units=16,
                             embed_dim=8, batch_size=16, seed=0, verbose=0, eval_splits=(),
                             precision=precision)
    compute = "bfloat16" if precision == "mixed_bfloat16" else "float16"
    decoder = result.decoder
    assert decoder.get_layer("token_embedding").compute_dtype == compute
    assert decoder.get_layer("next_token_logits").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    losses = result.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    features = np.random.default_rng(0).normal(size=(2, *decoder.input_shape[0][1:])).astype("float32")
    logits = decoder([features, np.array([[2, 5]], "int32").repeat(2, 0)])
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    captions = result.caption(np.zeros((2, 32, 32, 3), "float32"))
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert result.config["precision"] == precision

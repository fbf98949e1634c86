"""Mixed precision for training: the Keras dtype policy models are built under, and the optimizer.

Every model family keeps its logits layer in float32 (`dtype="float32"`), and the attention
layers compute scores and softmax in float32, so losses and probabilities are float32 whatever
the policy; under "mixed_float16" the optimizer scales the loss so small float16 gradients do
not flush to zero.
"""

import contextlib

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def cpu_supports_bfloat16():
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16, which oneDNN
    uses); elsewhere TensorFlow emulates it, slower than float32. Always False off Linux/x86,
    where it is not checked."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            flags = file.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def dtype_policy(precision):
    """Layers created inside take the policy `precision`; the global policy is restored after."""
    import keras

    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def adam(learning_rate, precision):
    """Adam, wrapped in a dynamic `LossScaleOptimizer` under "mixed_float16"."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate)
    if check_precision(precision) == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

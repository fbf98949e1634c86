"""The captioners' training loss and metric, written for `tf.distribute`."""

import keras
import tensorflow as tf

from vlm_keras.data.text import PAD_ID


@keras.saving.register_keras_serializable(package="vlm_keras")
class CaptionLoss(keras.losses.Loss):
    """Next-token cross-entropy on logits, averaged over the real (non-padding) tokens of the
    *global* batch.

    Under `tf.distribute` each replica sees part of the batch, and captions differ in length, so
    averaging per replica and then over replicas weights tokens unequally. Here each replica
    divides its token-loss sum by the token count of all replicas (one all-reduce), and the
    "sum" reduction leaves that alone; summing the replicas' gradients then gives the gradient
    of the whole batch's token mean, on one device or many.
    """

    def __init__(self, name="caption_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, "int32")                                      # (B, T)
        real = keras.ops.cast(keras.ops.not_equal(y_true, PAD_ID), "float32")         # (B, T)
        token_loss = keras.losses.sparse_categorical_crossentropy(
            keras.ops.where(y_true == PAD_ID, 0, y_true), y_pred, from_logits=True)  # (B, T)
        count = keras.ops.sum(real)
        context = tf.distribute.get_replica_context()
        if tf.distribute.get_strategy().num_replicas_in_sync > 1 and context is not None:
            count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        return token_loss * real / keras.ops.maximum(count, 1.0)

    def get_config(self):
        return {"name": self.name}


def caption_loss():
    """The captioners' training loss (see `CaptionLoss`)."""
    return CaptionLoss()


@keras.saving.register_keras_serializable(package="vlm_keras")
class MaskedTokenAccuracy(keras.metrics.Mean):
    """Next-token accuracy over real tokens: targets equal to the padding id are not counted.

    Keras' own mask (padding *inputs*) is a subset of padding targets, so it is not needed here.
    """

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")                                    # (B, T)
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")      # (B, T)
        correct = keras.ops.cast(keras.ops.equal(predicted, y_true), "float32")
        real = keras.ops.cast(keras.ops.not_equal(y_true, PAD_ID), "float32")
        return super().update_state(correct, sample_weight=real)

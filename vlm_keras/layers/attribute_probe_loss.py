"""`AttributeProbeLoss`: probes' cross-entropy added to a model's loss while training, the model's
output passed through (the VQA trainer's attribute probes, `vlm_keras.vqa.grouped_trainer.build_grouped_trainer`)."""

import keras

from vlm_keras.layers.training_loss import TrainingLoss


@keras.saving.register_keras_serializable(package="vlm_keras")
class AttributeProbeLoss(TrainingLoss):
    """Adds, while training, `weight` times the probes' cross-entropy to the model's loss and
    passes the answer logits through unchanged.

    Each probe gives logits over one attribute's values for every region, (B, R, values); its
    targets are (B, R) ids, 0 for a region without an object (not scored) and i + 1 for value i.
    The loss of a probe is its mean cross-entropy over the regions with an object; the probes' losses
    are summed.

    Args:
        weight: the loss weight.

    Call arguments:
        logits: (B', answers), returned as they are.
        probe_logits: list of (B, R, values_k).
        targets: list of (B, R) int.
        training: Keras' flag; outside training nothing is added.
    """

    def side_loss(self, probe_logits, targets):
        total = 0.0
        for probe, target in zip(probe_logits, targets):
            target = keras.ops.cast(target, "int32")
            scored = keras.ops.cast(target > 0, "float32")
            loss = keras.losses.sparse_categorical_crossentropy(keras.ops.maximum(target - 1, 0),
                                                                keras.ops.cast(probe, "float32"), from_logits=True)
            total = total + keras.ops.sum(loss * scored) / keras.ops.maximum(keras.ops.sum(scored), 1.0)
        return total

"""`GroundingLoss`: glimpses sent to the objects a question names, while training (the VQA trainer's
word glimpses, `vlm_keras.vqa.grouped_trainer.build_grouped_trainer`)."""

import keras

from vlm_keras.layers.training_loss import TrainingLoss

# Keeps log(0) out of the loss where a glimpse gives a target region no weight at all.
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="vlm_keras")
class GroundingLoss(TrainingLoss):
    """Adds, while training, `weight` times the glimpses' grounding cross-entropy to the model's loss
    and passes the answer logits through unchanged.

    A glimpse's target is a distribution over the regions (the cells of the object the question
    names, `scene_graphs.referent_maps`), all zero where it has none. Its loss is the
    cross-entropy `-sum_r t_r log a_r` of its weights `a` against the target `t`; the loss is the
    mean over the glimpses that have a target (0 when none has). It is how attention is supervised
    with human or annotated grounding in VQA: it teaches the glimpses where the named objects are,
    so that the answer only has to learn what to do with them.

    Args:
        weight: the loss weight.

    Call arguments:
        logits: (B, answers), returned as they are.
        glimpse_weights: (B, W, R) each glimpse's weights over the regions (rows sum to 1).
        targets: (B, W, R) target distributions, or zero rows.
        training: Keras' flag; outside training nothing is added.
    """

    def side_loss(self, glimpse_weights, targets):
        targets = keras.ops.cast(targets, "float32")
        weights = keras.ops.cast(glimpse_weights, "float32")
        has_target = keras.ops.cast(keras.ops.sum(targets, axis=-1) > 0, "float32")              # (B, W)
        cross_entropy = -keras.ops.sum(targets * keras.ops.log(weights + _EPSILON), axis=-1)    # (B, W)
        return keras.ops.sum(cross_entropy * has_target) / keras.ops.maximum(keras.ops.sum(has_target), 1.0)

"""`TrainingLoss`: the base of the layers that add a side loss while training and pass the answer
logits through (`AttributeProbeLoss`, `GroundingLoss`)."""

import keras


class TrainingLoss(keras.layers.Layer):
    """Adds, while training, `weight` times `side_loss(*args)` to the model's loss; returns the
    logits unchanged. Subclasses define `side_loss`.

    Args:
        weight: the loss weight.

    Call arguments:
        logits: (B, answers), returned as they are.
        *args: what the subclass's `side_loss` reads.
        training: Keras' flag; outside training nothing is added.
    """

    def __init__(self, weight, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, logits, *args, training=False):
        if training:
            self.add_loss(self.weight * self.side_loss(*args))
        return logits

    def side_loss(self, *args):
        raise NotImplementedError

    def compute_output_spec(self, logits, *args, **kwargs):
        return keras.KerasTensor(logits.shape, logits.dtype)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}

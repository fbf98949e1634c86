"""`RoleFillerBinding`: a caption's attribute words bound to the roles a sequence model gives them
(after `GroupedTokens`), so that the sequence model never reads which colour or shape it is (bar what
an article betrays: "an" comes before "orange", "a" before "red")."""

import keras
from keras import ops

from vlm_keras.layers.grounded_word_logits import check_word_groups


@keras.saving.register_keras_serializable(package="vlm_keras")
class RoleFillerBinding(keras.layers.Layer):
    """Sum over a caption's attribute words of role (from context) times filler (the word itself).

        binding = sum_t  role_t * filler(w_t)      over the positions t whose word w_t is in a group,

    a tensor-product representation (Smolensky, 1990) with elementwise binding. `role_t` comes from
    a sequence model that read the caption with its attribute words hidden (`GroupedTokens`): it
    knows that position t names "the colour of the object above", not which colour. `filler(w)` is
    one learned vector per attribute word, which sees no context. A colour-shape pair that training
    never held is then the sum of two terms training did hold: the role of the colour slot times
    "green", plus the role of the shape slot times "circle".

    Args:
        vocab_size: number of token ids V.
        word_groups: sequence of groups of token ids (disjoint, in 1..V-1): the attribute words.
        units: size of the roles and fillers, D.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: [caption_tokens (B, T) int, roles (B, T, D)].

    Returns:
        (B, D): the binding; zero for a caption without attribute words.

    Example:
    ```python
    layer = RoleFillerBinding(8, word_groups=[[4, 5]], units=16)
    layer([np.array([[2, 4, 7, 3]]), np.ones((1, 4, 16))])   # filler(4): (1, 16)
    ```
    """

    def __init__(self, vocab_size, word_groups, units, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.vocab_size = int(vocab_size)
        self.word_groups = check_word_groups(self.vocab_size, word_groups)
        self.units = int(units)
        if self.units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        in_group = [0.0] * self.vocab_size
        for group in self.word_groups:
            for i in group:
                in_group[i] = 1.0
        self._in_group = in_group

    def build(self, input_shape):
        self.fillers = self.add_weight(shape=(self.vocab_size, self.units), initializer="glorot_uniform",
                                       name="fillers")

    def call(self, inputs, mask=None):
        caption_tokens, roles = inputs
        tokens = ops.cast(caption_tokens, "int32")                                    # (B, T)
        weights = ops.take(ops.convert_to_tensor(self._in_group, dtype=roles.dtype), tokens, axis=0)   # (B, T)
        fillers = ops.take(ops.cast(self.fillers, roles.dtype), tokens, axis=0)       # (B, T, D)
        return ops.sum(roles * fillers * weights[..., None], axis=1)                   # (B, D)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], self.units)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "word_groups": self.word_groups,
                "units": self.units}

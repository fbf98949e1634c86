"""`GroupedTokens`: each attribute word of a caption replaced by its group's id."""

import keras
from keras import ops

from vlm_keras.layers.grounded_word_logits import check_word_groups


@keras.saving.register_keras_serializable(package="vlm_keras")
class GroupedTokens(keras.layers.Layer):
    """Token ids with every word of a group replaced by that group's own id, `V + g`.

    "a red circle above a blue square" reads, to a model after this layer, as "a COLOUR SHAPE above
    a COLOUR SHAPE": the sentence's structure, none of its attributes (`RoleFillerBinding` adds
    them back). Ids outside the groups, padding included, pass unchanged.

    Args:
        vocab_size: number of token ids V (the output ids run to V + len(word_groups) - 1).
        word_groups: sequence of groups of token ids (disjoint, in 1..V-1).
        **kwargs: base layer arguments.

    Call arguments:
        caption_tokens: (B, T) int token ids.

    Returns:
        (B, T) int32 ids.

    Example:
    ```python
    layer = GroupedTokens(8, word_groups=[[4, 5], [6]])
    layer(np.array([[2, 4, 6, 7, 3, 0]]))      # [[2, 8, 9, 7, 3, 0]]
    ```
    """

    def __init__(self, vocab_size, word_groups, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.word_groups = check_word_groups(self.vocab_size, word_groups)
        table = list(range(self.vocab_size))
        for g, group in enumerate(self.word_groups):
            for i in group:
                table[i] = self.vocab_size + g
        self._table = table

    def call(self, caption_tokens):
        table = ops.convert_to_tensor(self._table, dtype="int32")
        return ops.take(table, ops.cast(caption_tokens, "int32"), axis=0)             # (B, T)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "word_groups": self.word_groups}

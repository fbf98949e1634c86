"""`GroundedWordLogits`: next-word logits whose visual words are read from the attended region only."""

import keras
from keras import ops


def check_word_groups(vocab_size, word_groups):
    """`word_groups` as lists of ints, each group non-empty, disjoint, in 1..V-1; a ValueError names
    what is wrong."""
    groups = [[int(i) for i in group] for group in word_groups]
    if not groups:
        raise ValueError("word_groups is empty; give at least one group of words")
    seen = set()
    for g, group in enumerate(groups):
        if not group:
            raise ValueError(f"word_groups[{g}] is empty; every group needs at least one token id")
        for i in group:
            if not 0 < i < vocab_size:
                raise ValueError(f"word_groups[{g}] holds token id {i}; expected ids in 1..{vocab_size - 1}")
            if i in seen:
                raise ValueError(f"token id {i} is in more than one of word_groups; groups must be disjoint")
            seen.add(i)
    return groups


@keras.saving.register_keras_serializable(package="vlm_keras")
class GroundedWordLogits(keras.layers.Layer):
    """The decoder's state and the attended region -> next-word logits, with the visual words grounded.

    A captioner trained by maximum likelihood on captions in which "red" is never followed by
    "triangle" learns exactly that: its next word is read from the sentence so far as much as from
    the image, and for an object whose colour-shape pair training never held it writes the colour
    with a shape seen with it (README, the captioners' results). This layer takes that choice away
    from the language state for the words that name what is seen. The vocabulary is split into
    groups of visual words (e.g. the colours, the shapes, the sizes) and the other words, and

        p(w) = softmax(language(state))[w]                             for a word in no group,
        p(w) = softmax(language(state))[g] * softmax_g(visual(region))[w]   for a word of group g:

    the state (which knows the words written so far) chooses *whether* a colour or a shape comes
    next, and where the decoder looks; *which* colour or shape is read from the attended region's
    vector alone, by one linear readout per group. After "red", the state attends to the red
    object and asks for a shape; the shape is whatever the region holds, whether or not training
    ever wrote it after "red". Neural Baby Talk (Lu et al., 2018) fills its caption's visual slots
    from detected regions in the same spirit; here the slot is a word group and the region is the
    attended context.

    The output is logits of the exact factorised distribution: for a word of group g,
    `language[g] + visual[w] - logsumexp(visual over g)`; a softmax over the vocabulary gives the
    probabilities above, so the usual sparse cross-entropy trains it.

    Args:
        vocab_size: number of token ids V.
        word_groups: sequence of groups, each a sequence of token ids (disjoint, in 0..V-1, none
            of them padding 0).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: [state (..., U), region (..., A)]: the decoder's state and the attended region's
            vector at each position.

    Returns:
        (..., V) logits, in float32 unless the layer's dtype says otherwise.

    Example:
    ```python
    layer = GroundedWordLogits(10, word_groups=[[4, 5], [6, 7, 8]])
    logits = layer([ops.ones((2, 3, 16)), ops.ones((2, 3, 8))])   # (2, 3, 10)
    ```
    """

    def __init__(self, vocab_size, word_groups, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True      # the state's padding mask passes on, as through a Dense
        self.vocab_size = int(vocab_size)
        self.word_groups = check_word_groups(self.vocab_size, word_groups)
        # membership (G, V): 1 where word w is in group g.
        membership = [[0.0] * self.vocab_size for _ in self.word_groups]
        for g, group in enumerate(self.word_groups):
            for i in group:
                membership[g][i] = 1.0
        self._membership = membership
        num_groups = len(self.word_groups)
        # One logit per word (those of grouped words unused) and one per group.
        self.language = keras.layers.Dense(self.vocab_size + num_groups, dtype=self.dtype_policy,
                                           name="language_logits")
        self.visual = keras.layers.Dense(self.vocab_size, dtype=self.dtype_policy, name="visual_logits")

    def build(self, input_shape):
        state_shape, region_shape = input_shape
        self.language.build(state_shape)
        self.visual.build(region_shape)

    def call(self, inputs):
        state, region = inputs
        membership = ops.convert_to_tensor(self._membership, dtype=self.compute_dtype)   # (G, V)
        grouped = ops.sum(membership, axis=0) > 0                                       # (V,)
        language = self.language(state)                                                 # (..., V + G)
        word_logits, group_logits = language[..., :self.vocab_size], language[..., self.vocab_size:]
        visual = self.visual(region)                                                    # (..., V)
        # Within each group a log-softmax of the visual logits: log p(w | g, region).
        masked = ops.where(membership > 0, ops.expand_dims(visual, -2), -1e9)  # (..., G, V)
        group_norm = ops.logsumexp(masked, axis=-1)                                     # (..., G)
        # Each grouped word gets its group's language logit and normaliser: (..., G) @ (G, V).
        per_word = ops.matmul(group_logits - group_norm, membership)                    # (..., V)
        return ops.where(grouped, per_word + visual, word_logits)

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.vocab_size,)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "word_groups": self.word_groups}

"""Hard negative captions: each training caption with one of its words swapped, so that it is no
longer true of its image.

In-batch negatives are mostly easy: another image of the batch rarely shares a caption's objects.
NegCLIP (Yuksekgonul et al., "When and why vision-language models behave like bags-of-words",
ICLR 2023) adds, for each caption, a copy with words exchanged, which only a model that binds each
attribute to its own object can tell from the true caption. Here a negative is made by one of:

- exchanging two different words of one group ("a red circle above a blue square" ->
  "a blue circle above a red square": the same words, bound the other way round);
- replacing one word by another of its group ("... above a blue square" -> "... above a blue
  triangle", "above" -> "below", "top left" -> "bottom left").

A negative may only pair attributes that some training caption pairs: every two neighbouring
attribute words of the negative ("red circle", "large red") occur side by side in the training
captions. A colour-shape pair that training never shows is therefore never written, not even as a
negative (issue 20 forbids training on a held-out pair in any form).
"""

import numpy as np

from vlm_keras.data.scenes.captions import VISUAL_WORD_GROUPS

# The synthetic scenes' swappable words: colours, shapes, sizes (a size's synonym is another size
# word only where it means the other size: "small" <-> "big" is a swap, "small" <-> "little" is
# not), and the words of where things are.
SCENES_SWAP_GROUPS = (
    VISUAL_WORD_GROUPS[0], VISUAL_WORD_GROUPS[1],
    ("small", "large"), ("little", "big"), ("small", "big"), ("little", "large"),
    ("above", "below"), ("left", "right"), ("top", "bottom"), ("upper", "lower"),
)


def _token_index(tokenizer):
    return {word: i for i, word in enumerate(tokenizer.id_to_token)}


def _groups_in(index, groups):
    """The groups as token ids (`index`: word -> id), those with fewer than two words left out."""
    found = [sorted({index[word] for word in group if word in index}) for group in groups]
    return [group for group in found if len(group) > 1]


def can_swap(tokenizer, groups=SCENES_SWAP_GROUPS):
    """Whether `tokenizer`'s vocabulary holds two words of one of `groups` (hard negatives can be made)."""
    return bool(_groups_in(_token_index(tokenizer), groups))


class NegativeCaptions:
    """Draws one hard negative per caption by swapping words of a group.

    Args:
        tokenizer: the `Tokenizer` that encoded the captions.
        train_ids: (N, T) the training captions' token ids: which neighbouring words may stand
            side by side in a negative.
        groups: lists of interchangeable words (default: `SCENES_SWAP_GROUPS`); words missing from
            the vocabulary are left out.
        attributes: lists of attribute words (default: the scenes' colours, shapes and sizes,
            `VISUAL_WORD_GROUPS`): two of them side by side in a negative must stand side by side in
            some training caption.

    Example:
    ```python
    negatives = NegativeCaptions(tokenizer, train_ids)
    negative_ids, has_negative = negatives.sample(train_ids, np.random.default_rng(0))
    ```
    """

    def __init__(self, tokenizer, train_ids, groups=SCENES_SWAP_GROUPS, attributes=VISUAL_WORD_GROUPS):
        index = _token_index(tokenizer)
        self.groups = _groups_in(index, groups)
        if not self.groups:
            raise ValueError("hard negatives need two words of one swap group in the vocabulary (colours, "
                             "shapes, sizes or where things are, as in the synthetic scenes' captions); "
                             "none of the groups has two")
        self.alternatives = {}                                   # token id -> the ids it may become
        for group in self.groups:
            for token in group:
                self.alternatives.setdefault(token, set()).update(t for t in group if t != token)
        self.group_words = np.zeros(len(tokenizer.id_to_token), bool)
        self.group_words[list(self.alternatives)] = True
        self.attribute_words = np.zeros(len(tokenizer.id_to_token), bool)
        self.attribute_words[[index[word] for group in attributes for word in group if word in index]] = True
        self.seen_pairs = set()
        train_ids = np.asarray(train_ids)
        both = self.attribute_words[train_ids[:, :-1]] & self.attribute_words[train_ids[:, 1:]]   # (N, T-1)
        for row, col in zip(*np.nonzero(both)):
            self.seen_pairs.add((int(train_ids[row, col]), int(train_ids[row, col + 1])))
        self._candidates = {}                     # caption bytes -> its candidates, the same every epoch

    def _allowed(self, tokens, positions):
        """Whether every neighbouring pair of attribute words around the changed positions was seen."""
        for p in positions:
            for a, b in ((p - 1, p), (p, p + 1)):
                if (0 <= a and b < len(tokens) and self.attribute_words[tokens[a]] and self.attribute_words[tokens[b]]
                        and (int(tokens[a]), int(tokens[b])) not in self.seen_pairs):
                    return False
        return True

    def candidates(self, tokens):
        """Every allowed negative of one caption: (exchanges, replacements), each a list of token
        arrays."""
        tokens = np.asarray(tokens)
        places = [p for p in range(len(tokens)) if self.group_words[tokens[p]]]      # never padding
        exchanges, replacements = [], []
        for i, p in enumerate(places):
            for q in places[i + 1:]:
                if tokens[q] != tokens[p] and tokens[q] in self.alternatives[int(tokens[p])]:
                    swapped = tokens.copy()
                    swapped[p], swapped[q] = tokens[q], tokens[p]
                    if self._allowed(swapped, (p, q)):
                        exchanges.append(swapped)
            for other in sorted(self.alternatives[int(tokens[p])]):
                replaced = tokens.copy()
                replaced[p] = other
                if self._allowed(replaced, (p,)):
                    replacements.append(replaced)
        return exchanges, replacements

    def sample(self, caption_ids, rng):
        """One negative per caption: an exchange half the time where the caption has one, else a
        replacement.

        Args:
            caption_ids: (N, T) token ids.
            rng: a `numpy.random.Generator` (the same seed gives the same negatives).

        Returns:
            (negative_ids (N, T) int32, has_negative (N,) bool): a caption with no allowed swap
            gets its own ids and False.
        """
        caption_ids = np.asarray(caption_ids)
        negatives = caption_ids.astype(np.int32, copy=True)
        has_negative = np.zeros(len(caption_ids), bool)
        for n, tokens in enumerate(caption_ids):
            key = tokens.tobytes()
            if key not in self._candidates:
                self._candidates[key] = self.candidates(tokens)
            exchanges, replacements = self._candidates[key]
            pool = exchanges if exchanges and (not replacements or rng.random() < 0.5) else replacements
            if pool:
                negatives[n] = pool[rng.integers(len(pool))]
                has_negative[n] = True
        return negatives, has_negative

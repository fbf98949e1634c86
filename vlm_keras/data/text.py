"""The project's one tokenizer: caption and question text <-> token ids.

Normalisation (applied identically when building the vocabulary, when encoding training captions,
when scoring BLEU and inside exported SavedModels):

1. lower-case (ASCII and Unicode, via `tf.strings.lower(..., encoding="utf-8")`);
2. every character that is not a letter, a digit, an apostrophe or whitespace becomes a space
   (so "circle." -> "circle", "top-left" -> "top left");
3. split on runs of whitespace; empty strings give no tokens.

Ids: 0 is padding (""), 1 is the unknown token ("[UNK]"), 2 is "<start>", 3 is "<end>", and the
words follow by descending frequency (ties alphabetical), so a vocabulary built from the same text
is always the same.
"""

import collections
import fractions
import json
import math

import numpy as np
import tensorflow as tf

from vlm_keras.config import parse_word_groups
from vlm_keras.data.scenes.captions import VISUAL_WORD_GROUPS

PAD_TOKEN = ""
UNK_TOKEN = "[UNK]"
START_TOKEN = "<start>"
END_TOKEN = "<end>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, START_TOKEN, END_TOKEN)
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3

_STRIP_PATTERN = r"[^\pL\pN'\s]"
# The default caption length covers this share of the training texts: one 5,000-word outlier must
# not set the length (and the cost) of every batch.
LENGTH_PERCENTILE = 99.9


def normalize_text(texts):
    """Normalises a string tensor (any shape) as described in the module docstring."""
    texts = tf.strings.lower(tf.convert_to_tensor(texts, tf.string), encoding="utf-8")
    texts = tf.strings.regex_replace(texts, _STRIP_PATTERN, " ")
    texts = tf.strings.regex_replace(texts, r"\s+", " ")
    return tf.strings.strip(texts)


def split_words(texts):
    """Normalises a 1-D batch of strings and splits it into a ragged (B, None) word tensor."""
    return tf.strings.split(normalize_text(texts))


def tokenize(texts):
    """Python lists of words for a list of strings (the form BLEU is scored on)."""
    texts = list(texts)
    if not texts:
        return []
    words = split_words(tf.constant(texts, tf.string)).to_list()
    return [[w.decode("utf-8") for w in row] for row in words]


class Tokenizer:
    """Vocabulary with start, end, padding and unknown tokens.

    Args:
        vocabulary: the words, without the four special tokens (they are prepended).
        max_length: the caption length in words that `encode` pads or truncates to (the encoded
            sequence has `max_length + 2` ids: start and end are added).

    Example:
    ```python
    tok = Tokenizer.from_texts(["A red circle.", "a blue square"], max_length=8)
    ids = tok.encode(["a red square"])       # (1, 10) int32
    tok.decode(ids[:, 1:])                   # ["a red square"]
    ```
    """

    def __init__(self, vocabulary, max_length):
        vocabulary = list(vocabulary)
        clashes = sorted(set(vocabulary) & set(SPECIAL_TOKENS))
        if clashes:
            raise ValueError(f"vocabulary contains reserved tokens {clashes}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary contains duplicate words")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.vocabulary = vocabulary
        self.max_length = int(max_length)
        self.length_stats = None  # set by `from_texts`
        self.id_to_token = list(SPECIAL_TOKENS) + vocabulary
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.id_to_token[1:], tf.string),
                tf.range(1, len(self.id_to_token), dtype=tf.int64),
            ),
            default_value=UNK_ID,
        )

    @classmethod
    def from_texts(cls, texts, max_length=None, max_vocab_size=None, min_count=1,
                   length_percentile=LENGTH_PERCENTILE):
        """Builds the vocabulary from training text.

        Args:
            texts: iterable of strings.
            max_length: words kept per text; None: the `length_percentile`-th percentile of the
                texts' lengths (nearest rank, so a length some text has).
            max_vocab_size: keep at most this many words (most frequent first).
            min_count: drop words seen fewer times than this (they map to "[UNK]").
            length_percentile: see `max_length`.

        Returns:
            A `Tokenizer`; its `length_stats` say how many texts `max_length` cuts:
            {"texts", "longest", "max_length", "cut"}.
        """
        token_lists = tokenize(texts)
        if not any(token_lists):
            raise ValueError("cannot build a vocabulary: every text is empty after normalisation")
        counts = collections.Counter(w for words in token_lists for w in words)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        words = [w for w in words if w not in SPECIAL_TOKENS]
        if max_vocab_size is not None:
            words = words[:max_vocab_size]
        lengths = sorted(len(t) for t in token_lists)
        if max_length is None:
            # Nearest rank, in exact arithmetic (0.999 * 1000 is 999.0000000000001 in floats).
            rank = max(1, math.ceil(fractions.Fraction(str(length_percentile)) * len(lengths) / 100))
            max_length = max(1, lengths[rank - 1])
        tokenizer = cls(words, max_length)
        tokenizer.length_stats = {"texts": len(lengths), "longest": lengths[-1], "max_length": max_length,
                                  "cut": sum(length > max_length for length in lengths)}
        return tokenizer

    def describe_lengths(self, what="captions"):
        """"captions up to 22 words (3 of 24,000 training captions cut)", from `length_stats`."""
        stats = self.length_stats
        if stats is None:
            return f"{what} up to {self.max_length} words"
        return (f"{what} up to {self.max_length} words ({stats['cut']:,} of {stats['texts']:,} training {what} "
                f"cut; the longest has {stats['longest']})")

    @property
    def lookup_table(self):
        """The word -> id table `encode` uses (a TF resource: an export must track it)."""
        return self._table

    @property
    def vocab_size(self):
        return len(self.id_to_token)

    def encode(self, texts, max_length=None):
        """Strings (B,) -> int32 ids (B, max_length + 2): <start> words <end>, then padding.

        Texts longer than `max_length` words are truncated (the end token is kept).
        """
        max_length = self.max_length if max_length is None else max_length
        words = split_words(texts)[:, :max_length]
        ids = tf.cast(self._table.lookup(words), tf.int32)
        column = tf.ones([ids.nrows(), 1], tf.int32)                      # (B, 1)
        ids = tf.concat([column * START_ID, ids, column * END_ID], axis=1)  # ragged (B, None)
        return ids.to_tensor(default_value=PAD_ID, shape=[None, max_length + 2])

    def decode(self, ids):
        """Token ids (B, T) -> strings: stops at the end token, drops padding and start tokens."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"decode expects ids of shape (batch, time), got shape {ids.shape}")
        out = []
        for row in ids:
            words = []
            for i in row:
                if i == END_ID:
                    break
                if i in (PAD_ID, START_ID):
                    continue
                words.append(self.id_to_token[i] if 0 <= i < self.vocab_size else UNK_TOKEN)
            out.append(" ".join(words))
        return out

    def get_config(self):
        return {"vocabulary": self.vocabulary, "max_length": self.max_length}

    @classmethod
    def from_config(cls, config):
        return cls(config["vocabulary"], config["max_length"])

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.get_config(), f, indent=1)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_config(json.load(f))


def word_groups(spec, tokenizer, what="grounded_words"):
    """A spec of word groups (`CaptionerConfig.grounded_words`, `RetrievalConfig.bound_words`) as
    groups of token ids of `tokenizer`; `what` names the option in the errors.

    "scenes": the synthetic scenes' colours, shapes and sizes (`VISUAL_WORD_GROUPS`), each word the
    vocabulary holds (a small training set may lack a synonym). Named groups: every word must be
    in the vocabulary; a ValueError names those that are not.
    """
    vocabulary = {word: i for i, word in enumerate(tokenizer.id_to_token)}
    groups = parse_word_groups(spec)
    if groups == "scenes":
        groups = [[word for word in group if word in vocabulary] for group in VISUAL_WORD_GROUPS]
        if not any(groups):
            raise ValueError(f"{what}='scenes': the training captions hold none of the scenes' colour, shape "
                             "and size words; name this dataset's visual words, e.g. 'red,blue;circle,square'")
        return [[vocabulary[word] for word in group] for group in groups if group]
    missing = [word for group in groups for word in group if word not in vocabulary]
    if missing:
        raise ValueError(f"{what} names {', '.join(repr(w) for w in missing)}, not in the training "
                         f"captions' vocabulary ({tokenizer.vocab_size} tokens)")
    return [[vocabulary[word] for word in group] for group in groups]

"""Pure-Python re-implementation of the tokenisation used by COCO caption evaluation.

pycocoevalcap's ``PTBTokenizer`` wrapper joins all captions with newlines, runs
Stanford CoreNLP 3.4.1's ``edu.stanford.nlp.process.PTBTokenizer -preserveLines
-lowerCase`` on them, and drops the tokens in a fixed punctuation list.  This
module reproduces that pipeline without Java:

* the lexer is a longest-match scanner over an ordered rule table that mirrors
  the JFlex specification of CoreNLP 3.4.1 with its default options
  (``tokenizeNLs`` on because of ``-preserveLines``; ``americanize`` and
  slash/asterisk escaping off; PTB3 brackets, quotes, dashes, ellipses,
  currency and fraction normalisation on; ``splitAssimilations`` on);
* like JFlex, a rule's trailing context counts towards the match length and
  ties go to the earlier rule;
* like Java, the text is scanned as UTF-16 code units, so characters outside
  the Basic Multilingual Plane are never letters (they are deleted).

The behaviour was checked against the real jar; see NOTES.md for the probes.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, List, Sequence, Tuple

from vlm_keras.metrics.ptb_rules import FAST_WORD, RULE_ACTIONS, RULES, SPACE_RUN, match_rule

# Tokens pycocoevalcap drops after tokenising.  The bracket escapes are listed
# upper-case but ``-lowerCase`` has already turned them into ``-lrb-`` etc., so
# in practice only the quote/period/comma/colon/dash/ellipsis tokens go.
PUNCTUATION_TOKENS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
     ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Line breaks of the JFlex NEWLINE macro other than "\n".  The wrapper only
# replaces "\n" inside a caption; any of these would make the Java tokenizer
# emit an extra output line and shift every later caption onto the wrong image,
# so they are turned into spaces instead (a documented deviation).  U+0085 is
# not listed: the lexer reads it as an ellipsis, never as a line break.
_CAPTION_LINE_BREAKS = re.compile("[\r\n\u000b\u000c\u2028\u2029]")

# Words that splitAssimilations cuts even though they look like plain words.
_ASSIMILATIONS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])

NEWLINE = object()  # sentinel token for a line break (``-preserveLines``)


def _latex_quotes(text: str, probably_left: bool) -> str:
    """CoreNLP latexQuotes: ASCII quotes by guessed side, curly quotes by shape."""
    single, double = ("`", "``") if probably_left else ("'", "''")
    text = re.sub("&apos;|'", single, text)
    text = re.sub("\"|&quot;", double, text)
    text = re.sub("[\u0091\u2018\u201b\u2039]", "`", text)
    text = re.sub("[\u0092\u2019\u203a]", "'", text)
    text = re.sub("[\u0093\u201c\u00ab]", "``", text)
    return re.sub("[\u0094\u201d\u00bb]", "''", text)


def _remove_soft_hyphens(text: str) -> str:
    """Drop U+00AD (a line-breaking hint); never leave an empty token."""
    return text.replace("\u00ad", "") or "-"


_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_CURRENCY = {"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$",
             "\u20ac": "$"}
_PARENS = str.maketrans({"(": "-LRB-", ")": "-RRB-"})


def _acronym(token: str) -> Tuple[str, int]:
    """An acronym before a likely sentence start: the period is also a token.

    A one-letter "I." gives "I" + "."; longer ones give "U.S." + ".".
    """
    if len(token) == 2:
        return token[0], 1
    return token, len(token) - 1


def _constant(token: str) -> Callable[[str], Tuple[str, int]]:
    """Action emitting a fixed token (PTB escapes of brackets, dashes, ...)."""
    return lambda text: (token, len(text))


# Action name -> function(token text) -> (token, or None to drop it, or the
# NEWLINE sentinel; number of code units consumed, less than the text's length
# where JFlex pushes characters back to be lexed again).
_ACTIONS = {
    "plain": lambda t: (t, len(t)),
    "soft": lambda t: (_remove_soft_hyphens(t), len(t)),
    "cut1": lambda t: (t, len(t) - 1),  # the final period is lexed again
    "cut2": lambda t: (t[:-2], len(t) - 2),
    "cut3": lambda t: (t[:-3], len(t) - 3),
    "dash": _constant("--"),
    "ellipsis": _constant("..."),
    "less": _constant("<"),
    "greater": _constant(">"),
    "lcb": _constant("-LCB-"),
    "rcb": _constant("-RCB-"),
    "lsb": _constant("-LSB-"),
    "rsb": _constant("-RSB-"),
    "lrb": _constant("-LRB-"),
    "rrb": _constant("-RRB-"),
    "amp": lambda t: (re.sub("(?i)&amp;", "&", t), len(t)),
    "quote_left": lambda t: (_latex_quotes(t, True), len(t)),
    "quote_right": lambda t: (_latex_quotes(t, False), len(t)),
    "spaces_to_nbsp": lambda t: (t.replace(" ", "\u00a0"), len(t)),
    "url": lambda t: (t, len(t)),
    "phone": lambda t: (t.replace(" ", "\u00a0").translate(_PARENS), len(t)),
    "parens": lambda t: (t.translate(_PARENS), len(t)),
    "fraction": lambda t: (_FRACTIONS.get(t, t), len(t)),
    "currency": lambda t: (_CURRENCY.get(t, t), len(t)),
    "hyphens": lambda t: ("--" if 3 <= len(t) <= 4 else t, len(t)),
    "acronym": _acronym,
    "skip": lambda t: (None, len(t)),
    "newline": lambda t: (NEWLINE, len(t)),
}


def _to_utf16_units(text: str) -> str:
    """Spell characters above U+FFFF as surrogate pairs, as Java strings do.

    Args:
        text: any Python string.

    Returns:
        A string of the same text in which every astral character is replaced
        by its two UTF-16 surrogate code units (length >= len(text)).
    """
    if all(ord(ch) <= 0xFFFF for ch in text):
        return text
    units = []
    for ch in text:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            units.append(chr(0xD800 + (cp >> 10)))
            units.append(chr(0xDC00 + (cp & 0x3FF)))
        else:
            units.append(ch)
    return "".join(units)


def _from_utf16_units(token: str) -> str:
    """Re-join surrogate pairs that ended up inside one token (URLs, e-mails)."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in token):
        return token
    return token.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _longest_rule(units: str, pos: int):
    """Pick the JFlex winner at ``pos``: longest total match, earliest rule on ties.

    Returns:
        (rule index, regex match) of the winning rule.
    """
    best_index, best_match, best_len = -1, None, 0
    for index in range(len(RULES)):
        match = match_rule(index, units, pos)
        if match is not None and match.end() - pos > best_len:
            best_index, best_match, best_len = index, match, match.end() - pos
    return best_index, best_match


def _scan(units: str) -> Iterable[object]:
    """Run the lexer over a whole text.

    Args:
        units: text as UTF-16 code units (see ``_to_utf16_units``).

    Yields:
        Token strings (original case, PTB-normalised) and ``NEWLINE``
        sentinels, in text order.
    """
    pos, end = 0, len(units)
    while pos < end:
        # Fast path: a run of ASCII letters followed by a space, a newline or
        # the end of the text is always exactly one token (proved against the
        # rule table in NOTES.md), except for the assimilations.
        match = FAST_WORD.match(units, pos)
        if match is not None and match.group(1).lower() not in _ASSIMILATIONS:
            yield match.group(1)
            pos = match.end(1)
            continue
        if units[pos] == " ":
            # JFlex skips the whole run of SPACE characters at once; stepping
            # one blank at a time would let a token start at, e.g., an NBSP.
            pos = SPACE_RUN.match(units, pos).end()
            continue
        index, match = _longest_rule(units, pos)
        token, consumed = _ACTIONS[RULE_ACTIONS[index]](match.group("m"))
        if token is not None:
            yield token
        pos += consumed


def tokenize_lines(text: str) -> List[List[str]]:
    """Tokenise a newline-separated text the way the Java PTBTokenizer does.

    Args:
        text: the text (several lines allowed); tokens may look across line
            ends, exactly as in the Java run over the joined captions.

    Returns:
        One list of tokens per line (len == number of line breaks + 1), in
        original case and before punctuation removal.
    """
    lines: List[List[str]] = [[]]
    for token in _scan(_to_utf16_units(text)):
        if token is NEWLINE:
            lines.append([])
        else:
            lines[-1].append(_from_utf16_units(token))
    return lines


def _finish_line(tokens: Sequence[str]) -> List[str]:
    """Lower-case like Java's ``toLowerCase(Locale.ENGLISH)`` and drop punctuation."""
    lowered = (token.lower() for token in tokens)
    return [token for token in lowered if token not in PUNCTUATION_TOKENS]


def clean_caption(caption: str) -> str:
    """Replace line breaks inside one caption by spaces (see ``_CAPTION_LINE_BREAKS``)."""
    return _CAPTION_LINE_BREAKS.sub(" ", caption)


def tokenize_caption_list(captions: Sequence[str]) -> List[List[str]]:
    """Tokenise captions in one run, as pycocoevalcap's wrapper does.

    Args:
        captions: N caption strings, in the order the wrapper would join them.

    Returns:
        N token lists (lower-cased, punctuation removed).  A caption that has
        no tokens left gives an empty list.
    """
    text = "\n".join(clean_caption(caption) for caption in captions)
    lines = tokenize_lines(text)
    if len(lines) != len(captions):  # cannot happen once line breaks are cleaned
        raise AssertionError("tokenizer produced %d lines for %d captions"
                             % (len(lines), len(captions)))
    return [_finish_line(tokens) for tokens in lines]


def ptb_tokenize(text: str) -> List[str]:
    """Tokenise one caption as pycocoevalcap's PTBTokenizer would on its own.

    Args:
        text: one caption.  Line breaks inside it count as spaces.

    Returns:
        The tokens (lower-cased, PTB-escaped, punctuation tokens removed).
    """
    return tokenize_caption_list([text])[0]


__all__ = ["PUNCTUATION_TOKENS", "clean_caption", "ptb_tokenize",
           "tokenize_caption_list", "tokenize_lines"]

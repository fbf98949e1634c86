"""Corpus BLEU as nltk computes it, on the project's own tokens.

This is not the BLEU that captioning papers report: nltk counts n-grams of a hypothesis shorter
than n differently and has no smoothing, and the tokens are not the PTB tokenizer's. The COCO
caption evaluation (`coco_caption.evaluate_captions`) gives the comparable numbers; this one is
kept, under its own name, for continuity with earlier figures.
"""

import warnings

from nltk.translate.bleu_score import corpus_bleu

BLEU_WEIGHTS = {
    "bleu1": (1.0,),
    "bleu2": (0.5, 0.5),
    "bleu3": (1 / 3, 1 / 3, 1 / 3),
    "bleu4": (0.25, 0.25, 0.25, 0.25),
}


def nltk_bleu_scores(references, hypotheses):
    """Corpus BLEU-1..4 (Papineni et al. 2002) against every reference, as nltk's corpus_bleu.

    Args:
        references: per example, a list of reference captions, each a list of words.
        hypotheses: per example, the generated caption as a list of words.

    Returns:
        {"bleu1": .., "bleu2": .., "bleu3": .., "bleu4": ..} in [0, 1]. No smoothing: a corpus with
        no matching 4-gram at all scores 0 BLEU-4, as in the standard definition.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis")
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"example {i} has no reference captions")
    with warnings.catch_warnings():
        # nltk warns when an n-gram order has no match; the score is then 0 by definition.
        warnings.simplefilter("ignore", UserWarning)
        return {name: float(corpus_bleu(references, hypotheses, weights=w))
                for name, w in BLEU_WEIGHTS.items()}

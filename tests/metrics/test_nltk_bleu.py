import math

import pytest
from nltk.translate.bleu_score import corpus_bleu

from vlm_keras.metrics import nltk_bleu_scores


def test_perfect_match_scores_one():
    refs = [[["a", "red", "circle", "above", "a", "square"]], [["two", "blue", "squares", "side", "by"]]]
    hyps = [r[0] for r in refs]
    assert nltk_bleu_scores(refs, hyps) == pytest.approx({"bleu1": 1, "bleu2": 1, "bleu3": 1, "bleu4": 1})


def test_hand_computed_bleu1_and_bleu2():
    # hypothesis "a red square" vs reference "a red circle": unigram precision 2/3, bigram 1/2;
    # equal lengths so no brevity penalty.
    scores = nltk_bleu_scores([[["a", "red", "circle"]]], [["a", "red", "square"]])
    assert scores["bleu1"] == pytest.approx(2 / 3)
    assert scores["bleu2"] == pytest.approx(math.sqrt(2 / 3 * 1 / 2))
    assert scores["bleu4"] == pytest.approx(0.0, abs=1e-9)  # no 4-gram can match


def test_clipping_and_multiple_references():
    # "the the the": unigram counts clipped by the max count in any single reference (2).
    refs = [[["the", "cat", "the"], ["the", "dog", "ran"]]]
    assert nltk_bleu_scores(refs, [["the", "the", "the"]])["bleu1"] == pytest.approx(2 / 3)


def test_brevity_penalty_uses_closest_reference_length():
    refs = [[["a", "b", "c", "d"]]]
    expected = math.exp(1 - 4 / 2)  # precision 1, c=2, r=4
    assert nltk_bleu_scores(refs, [["a", "b"]])["bleu1"] == pytest.approx(expected)


def test_matches_nltk_reference():
    refs = [[["a", "small", "red", "circle", "in", "the", "top", "left"],
             ["a", "little", "red", "circle", "top", "left"]],
            [["a", "blue", "square", "below", "a", "green", "star"]]]
    hyps = [["a", "small", "red", "circle", "top", "left"], ["a", "blue", "square", "above", "a", "green", "star"]]
    ours = nltk_bleu_scores(refs, hyps)
    assert ours["bleu4"] == pytest.approx(corpus_bleu(refs, hyps))
    assert 0 < ours["bleu4"] < ours["bleu3"] < ours["bleu2"] < ours["bleu1"] <= 1


def test_errors():
    with pytest.raises(ValueError, match="2 reference sets but 1"):
        nltk_bleu_scores([[["a"]], [["b"]]], [["a"]])
    with pytest.raises(ValueError, match="at least one"):
        nltk_bleu_scores([], [])
    with pytest.raises(ValueError, match="example 0 has no reference"):
        nltk_bleu_scores([[]], [["a"]])

"""COCO caption evaluation (BLEU-1..4, CIDEr-D, ROUGE-L) in pure Python.

Re-implements what pycocoevalcap computes, without Java: the PTB tokenisation
(``ptb_tokenizer``), BLEU with the "closest" reference length, CIDEr-D and
ROUGE-L.  METEOR and SPICE exist only as Java programs; they are run through
pycocoevalcap when it is installed and ``java`` is on PATH, and are otherwise
reported as unavailable (``coco_caption_java``).

Scores match pycocoevalcap 1.2 to ~1e-12 on identical tokenised input,
including its small-constant and empty-caption behaviour; see NOTES.md.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Dict, Hashable, List, Mapping, Sequence, Tuple

from vlm_keras.metrics.coco_caption_java import run_java_metric
from vlm_keras.metrics.ptb_tokenizer import ptb_tokenize, tokenize_caption_list

# pycocoevalcap's BLEU adds these to every n-gram ratio so that a zero count
# gives a tiny (not undefined) precision; they also guard the length ratio.
BLEU_TINY = 1e-15
BLEU_SMALL = 1e-9
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0
MAX_NGRAM = 4
ALL_METRICS = ("bleu", "cider", "rouge", "meteor", "spice")

__all__ = ["ALL_METRICS", "bleu", "cider_d", "evaluate_captions", "ptb_tokenize",
           "rouge_l", "tokenize_captions"]


def tokenize_captions(
        captions_by_id: Mapping[Hashable, Sequence[str]]) -> Dict[Hashable, List[str]]:
    """Tokenise captions like pycocoevalcap's ``PTBTokenizer().tokenize``.

    All captions are tokenised in one run, in dict order, because the Java
    tokenizer sees them as one newline-joined text (a token may look at the
    start of the next caption, e.g. "B." before "The ...").

    Args:
        captions_by_id: image id -> list of K_i caption strings.

    Returns:
        image id -> list of K_i space-joined token strings (lower-cased,
        punctuation removed; "" for a caption with no tokens left).
    """
    flat = [caption for captions in captions_by_id.values() for caption in captions]
    token_lists = iter(tokenize_caption_list(flat))
    return {image_id: [" ".join(next(token_lists)) for _ in captions]
            for image_id, captions in captions_by_id.items()}


# ----------------------------------------------------------------------- BLEU
def _ngram_counts(words: Sequence[str], max_n: int) -> Counter:
    """Counts of all 1..max_n-grams (as tuples) of a word sequence."""
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            counts[tuple(words[start:start + n])] += 1
    return counts


def _bleu_image_stats(refs: Sequence[str], hyp: str,
                      max_n: int) -> Tuple[int, int, List[int], List[int]]:
    """Sufficient statistics of one image for BLEU.

    Returns:
        (hypothesis length, closest reference length, guessed n-grams per n,
        clipped matching n-grams per n); the lists have length max_n.
    """
    hyp_words = hyp.split()
    test_len = len(hyp_words)
    # An n-gram is credited at most as often as the single reference that
    # uses it most (clipping), not as often as all references together.
    max_ref_counts: Counter = Counter()
    ref_lens = []
    for ref in refs:
        ref_words = ref.split()
        ref_lens.append(len(ref_words))
        for gram, count in _ngram_counts(ref_words, max_n).items():
            max_ref_counts[gram] = max(max_ref_counts[gram], count)
    # "closest" reference length; a tie goes to the shorter reference.
    ref_len = min(ref_lens, key=lambda length: (abs(length - test_len), length))
    guess = [max(0, test_len - k) for k in range(max_n)]
    correct = [0] * max_n
    for gram, count in _ngram_counts(hyp_words, max_n).items():
        correct[len(gram) - 1] += min(count, max_ref_counts.get(gram, 0))
    return test_len, ref_len, guess, correct


def _bleu_from_stats(test_len: float, ref_len: float, guess: Sequence[float],
                     correct: Sequence[float]) -> List[float]:
    """BLEU-1..N from (summed) statistics, with pycocoevalcap's constants.

    BLEU-n is the geometric mean of the first n modified precisions, each
    (correct + 1e-15) / (guess + 1e-9), times the brevity penalty
    exp(1 - r/c) when c < r (with c, r shifted by the same constants).
    """
    scores, product = [], 1.0
    for k, (num, den) in enumerate(zip(correct, guess)):
        product *= (num + BLEU_TINY) / (den + BLEU_SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + BLEU_TINY) / (ref_len + BLEU_SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [score * penalty for score in scores]
    return scores


def bleu(refs: Sequence[Sequence[str]], hyps: Sequence[str],
         max_n: int = MAX_NGRAM) -> Tuple[List[float], List[List[float]]]:
    """BLEU-1..max_n as pycocoevalcap's ``Bleu(4)`` (option "closest").

    Args:
        refs: N lists of tokenised reference strings (words split on whitespace).
        hyps: N tokenised hypothesis strings.
        max_n: highest n-gram order.

    Returns:
        (corpus, per_image): corpus is a list of max_n floats computed from
        statistics summed over the N images; per_image is N lists of max_n.
    """
    stats = [_bleu_image_stats(r, h, max_n) for r, h in zip(refs, hyps)]
    per_image = [_bleu_from_stats(*s) for s in stats]
    total_test = sum(s[0] for s in stats)
    total_ref = sum(s[1] for s in stats)
    total_guess = [sum(s[2][k] for s in stats) for k in range(max_n)]
    total_correct = [sum(s[3][k] for s in stats) for k in range(max_n)]
    corpus = _bleu_from_stats(total_test, total_ref, total_guess, total_correct)
    return corpus, per_image


# ---------------------------------------------------------------------- CIDEr
def _tfidf(counts: Counter, doc_freq: Mapping[tuple, float], log_n_images: float,
           max_n: int) -> Tuple[List[Dict[tuple, float]], List[float]]:
    """TF-IDF vector (one dict per n) and its L2 norm per n.

    An n-gram no reference set contains gets document frequency 1 (idf =
    log(number of images)) so that it still weighs on the hypothesis norm.
    """
    vectors: List[Dict[tuple, float]] = [{} for _ in range(max_n)]
    squares = [0.0] * max_n
    for gram, term_freq in counts.items():
        weight = term_freq * (log_n_images - math.log(max(1.0, doc_freq.get(gram, 0.0))))
        vectors[len(gram) - 1][gram] = weight
        squares[len(gram) - 1] += weight * weight
    return vectors, [math.sqrt(s) for s in squares]


def _cider_similarity(hyp: Tuple[list, list, int], ref: Tuple[list, list, int],
                      sigma: float) -> List[float]:
    """Per-n clipped cosine similarity times the Gaussian length penalty.

    Args:
        hyp, ref: (vectors, norms, length in words) from ``_tfidf``.

    Returns:
        max_n similarities.  pycocoevalcap measures the length as the number
        of bigrams; the difference of lengths is the same whenever both
        captions have a word, and otherwise the similarity is 0 anyway.
    """
    (hyp_vec, hyp_norm, hyp_len), (ref_vec, ref_norm, ref_len) = hyp, ref
    penalty = math.exp(-float(hyp_len - ref_len) ** 2 / (2 * sigma ** 2))
    sims = []
    for n, hyp_grams in enumerate(hyp_vec):
        ref_grams = ref_vec[n]
        # CIDEr-D clipping: a hypothesis weight counts at most as the reference's.
        dot = sum(min(w, ref_grams.get(g, 0.0)) * ref_grams.get(g, 0.0)
                  for g, w in hyp_grams.items())
        if hyp_norm[n] != 0 and ref_norm[n] != 0:
            dot /= hyp_norm[n] * ref_norm[n]
        sims.append(dot * penalty)
    return sims


def cider_d(refs: Sequence[Sequence[str]], hyps: Sequence[str], max_n: int = MAX_NGRAM,
            sigma: float = CIDER_SIGMA) -> Tuple[float, List[float]]:
    """CIDEr-D as pycocoevalcap's ``Cider()``.

    Document frequencies come from the references of these N images only, so
    the score of an image depends on the whole evaluated set.

    Args:
        refs: N lists of tokenised reference strings.
        hyps: N tokenised hypothesis strings.
        max_n: highest n-gram order (averaged uniformly over 1..max_n).
        sigma: standard deviation of the length penalty, in words.

    Returns:
        (corpus, per_image): the mean over images, and N floats, each
        10 * mean_n mean_refs similarity.
    """
    ref_counts = [[_ngram_counts(r.split(), max_n) for r in image_refs] for image_refs in refs]
    doc_freq: Counter = Counter()
    for image_counts in ref_counts:
        doc_freq.update(set(gram for counts in image_counts for gram in counts))
    log_n_images = math.log(float(len(refs)))

    def features(counts: Counter, text: str):
        return _tfidf(counts, doc_freq, log_n_images, max_n) + (len(text.split()),)

    per_image = []
    for hyp, image_refs, image_counts in zip(hyps, refs, ref_counts):
        hyp_features = features(_ngram_counts(hyp.split(), max_n), hyp)
        totals = [0.0] * max_n
        for ref, counts in zip(image_refs, image_counts):
            sims = _cider_similarity(hyp_features, features(counts, ref), sigma)
            totals = [t + s for t, s in zip(totals, sims)]
        per_image.append(10.0 * (sum(totals) / max_n) / len(image_refs))
    return sum(per_image) / len(per_image), per_image


# -------------------------------------------------------------------- ROUGE-L
def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) DP)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _rouge_image(refs: Sequence[str], hyp: str, beta: float) -> float:
    """ROUGE-L F-measure of one hypothesis, pycocoevalcap style.

    Precision and recall are maximised over the references separately (they
    may come from different references).  Words are split on single spaces,
    so "" is one empty word: an empty hypothesis against an empty reference
    scores 1, as in pycocoevalcap.
    """
    hyp_words = hyp.split(" ")
    precision = recall = 0.0
    for ref in refs:
        ref_words = ref.split(" ")
        lcs = _lcs_length(ref_words, hyp_words)
        precision = max(precision, lcs / float(len(hyp_words)))
        recall = max(recall, lcs / float(len(ref_words)))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta ** 2) * precision * recall / float(recall + beta ** 2 * precision)


def rouge_l(refs: Sequence[Sequence[str]], hyps: Sequence[str],
            beta: float = ROUGE_BETA) -> Tuple[float, List[float]]:
    """ROUGE-L as pycocoevalcap's ``Rouge()``.

    Args:
        refs: N lists of tokenised reference strings.
        hyps: N tokenised hypothesis strings.
        beta: recall weight of the F-measure.

    Returns:
        (corpus, per_image): the mean over images and the N scores.
    """
    per_image = [_rouge_image(r, h, beta) for r, h in zip(refs, hyps)]
    return sum(per_image) / len(per_image), per_image


# ----------------------------------------------------------------- entry point
def _validate(references: Mapping, hypotheses: Mapping, metrics: Sequence[str]) -> None:
    """Raise ValueError, naming the offending image id, for unusable input."""
    if not isinstance(references, Mapping) or not isinstance(hypotheses, Mapping):
        raise ValueError("references and hypotheses must be dicts keyed by image id")
    if not references:
        raise ValueError("references is empty: nothing to evaluate")
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or isinstance(metrics, str):
        raise ValueError("unknown metrics %r; choose from %r" % (unknown or metrics, ALL_METRICS))
    for image_id, hyp in hypotheses.items():
        if image_id not in references:
            raise ValueError("hypothesis for image id %r has no references" % (image_id,))
        if not isinstance(hyp, str):
            raise ValueError("hypothesis for image id %r must be a str, got %s"
                             % (image_id, type(hyp).__name__))
    for image_id, refs in references.items():
        if image_id not in hypotheses:
            raise ValueError("image id %r has references but no hypothesis" % (image_id,))
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValueError("references for image id %r must be a list of str" % (image_id,))
        if len(refs) == 0:
            raise ValueError("image id %r has an empty reference list" % (image_id,))
        for ref in refs:
            if not isinstance(ref, str):
                raise ValueError("a reference for image id %r is a %s, not a str"
                                 % (image_id, type(ref).__name__))


def evaluate_captions(references: Mapping[Hashable, Sequence[str]],
                      hypotheses: Mapping[Hashable, str], tokenize: bool = True,
                      metrics: Sequence[str] = ALL_METRICS, *,
                      java_timeout_s: float = 1800.0) -> dict:
    """COCO caption metrics for one hypothesis per image.

    Args:
        references: image id -> non-empty list of reference captions.
        hypotheses: image id -> one generated caption ("" allowed); the ids
            must be exactly those of ``references`` (CIDEr-D's IDF depends on
            the set of images, so a silent subset would change every score).
        tokenize: apply the PTB tokenisation first (as COCOEvalCap does);
            False scores the strings as given.
        metrics: any of "bleu", "cider", "rouge", "meteor", "spice".
        java_timeout_s: time limit for each of METEOR and SPICE (Java).

    Returns:
        {"corpus": {"bleu1".."bleu4", "cider_d", "rouge_l", "meteor", "spice"},
         "per_image": {image id: same keys}, "unavailable": {metric: reason}};
        only requested and available metrics appear in corpus/per_image.

    Raises:
        ValueError: malformed input (the message names the image id).
    """
    _validate(references, hypotheses, metrics)
    ids = list(references)
    if tokenize:
        ref_map = tokenize_captions(references)
        hyp_map = tokenize_captions({i: [hypotheses[i]] for i in ids})
        refs, hyps = [ref_map[i] for i in ids], [hyp_map[i][0] for i in ids]
    else:
        refs, hyps = [list(references[i]) for i in ids], [hypotheses[i] for i in ids]

    corpus: Dict[str, float] = {}
    per_image: Dict[Hashable, Dict[str, float]] = {i: {} for i in ids}
    unavailable: Dict[str, str] = {}

    def record(name: str, total: float, scores: Sequence[float]) -> None:
        corpus[name] = float(total)
        for image_id, score in zip(ids, scores):
            per_image[image_id][name] = float(score)

    if "bleu" in metrics:
        totals, scores = bleu(refs, hyps)
        for k in range(MAX_NGRAM):
            record("bleu%d" % (k + 1), totals[k], [s[k] for s in scores])
    if "cider" in metrics:
        record("cider_d", *cider_d(refs, hyps))
    if "rouge" in metrics:
        record("rouge_l", *rouge_l(refs, hyps))
    for name in ("meteor", "spice"):
        if name in metrics:
            result = run_java_metric(name, refs, hyps, java_timeout_s)
            if isinstance(result, str):
                unavailable[name] = result
            else:
                record(name, *result)
    return {"corpus": corpus, "per_image": per_image, "unavailable": unavailable}

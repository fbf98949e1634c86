"""Tests of coco_caption: hand-computed scores, and equality with pycocoevalcap.

pycocoevalcap (and Java, for its tokenizer and METEOR) are test-only
dependencies; the tests that need them are skipped with a reason otherwise.
"""

import math
import random
import shutil

import pytest

import vlm_keras.metrics.coco_caption as cc

# ------------------------------------------------------------------ helpers
WORDS = ("a", "A", "the", "dog", "Dog", "dogs", "man", "red", "dark-red", "top-left", "isn't",
         "can't", "it's", "cannot", "3.5", "1,000", "two", "café", "naïve", "on", "on", "a",
         "U.S.", "etc.", "(big)", "\"quoted\"", "'s", "--", "...", ",", ".", "!", "?!", "x-ray",
         "5¢", "½", "Mr.", "<unk>", "B.", "The", "colour")


def random_caption(rng: random.Random, max_words: int) -> str:
    """A short caption over a small vocabulary (lots of shared and repeated n-grams)."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, max_words))]
    return " ".join(words) + rng.choice(["", ".", " .", "!", ""])


def random_corpus(rng: random.Random, n_images: int):
    """References (1..5 per image, some punctuation-only) and hypotheses (some empty)."""
    refs = {("img", i): [random_caption(rng, rng.choice([3, 8, 12])) or "..."
                         for _ in range(rng.randint(1, 5))] for i in range(n_images)}
    hyps = {key: "" if rng.random() < 0.08 else random_caption(rng, rng.choice([1, 3, 10]))
            for key in refs}
    return refs, hyps


def tokenized(refs, hyps):
    """Same tokenised strings for both implementations (pycocoevalcap's dict shapes)."""
    gts = cc.tokenize_captions(refs)
    res = {k: v for k, v in cc.tokenize_captions({k: [h] for k, h in hyps.items()}).items()}
    return gts, res


def scores(refs, hyps, metrics=("bleu", "cider", "rouge")):
    """evaluate_captions on already tokenised strings."""
    return cc.evaluate_captions(refs, hyps, tokenize=False, metrics=metrics)


# ------------------------------------------------------- hand-computed cases
def test_hypothesis_equal_to_reference_scores_one():
    out = scores({1: ["a man rides a brown horse"]}, {1: "a man rides a brown horse"})
    for name in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"):
        # BLEU is 1 up to the 1e-9 smoothing constant in each denominator.
        assert out["corpus"][name] == pytest.approx(1.0, abs=1e-8)
    # With one image every n-gram has idf log(1/1) = 0, so CIDEr-D is 0.
    assert out["corpus"]["cider_d"] == 0.0


def test_bleu_brevity_penalty_by_hand():
    out = scores({1: ["a black cat sits on the mat"]}, {1: "a black cat"})
    # 1-, 2-, 3-gram precisions are 3/3, 2/2, 1/1; there is no 4-gram, which
    # pycocoevalcap scores (0 + 1e-15) / (0 + 1e-9) = 1e-6 rather than 0.
    # Brevity penalty: c = 3, r = 7 -> exp(1 - 7/3).
    penalty = math.exp(1 - 7 / 3)
    expected = [penalty, penalty, penalty, (1 * 1 * 1 * 1e-6) ** 0.25 * penalty]
    got = [out["corpus"]["bleu%d" % n] for n in (1, 2, 3, 4)]
    assert got == pytest.approx(expected, rel=1e-8)
    assert [out["per_image"][1]["bleu%d" % n] for n in (1, 2, 3, 4)] == pytest.approx(got)


def test_bleu_clipping_and_closest_reference_length():
    # "the the the" matches "the" at most twice (the most any one reference
    # has); the closest reference length to 3 is 2 (tie 2/4 goes to shorter).
    corpus, _ = cc.bleu([["the the", "the cat sat down"]], ["the the the"])
    assert corpus[0] == pytest.approx(2 / 3, rel=1e-8)


def test_cider_two_images_by_hand():
    refs = {"A": ["a b"], "B": ["c d"]}
    hyps = {"A": "a b", "B": "c e"}
    out = scores(refs, hyps, metrics=("cider",))
    # Every reference n-gram occurs in one of 2 images: idf = log 2 = L for
    # all of them, and for "e", "c e" (df 0 is treated as 1) as well.
    # A: unigram and bigram cosines are 1; no 3- or 4-grams: 10 * (1+1+0+0)/4.
    assert out["per_image"]["A"]["cider_d"] == pytest.approx(5.0, rel=1e-12)
    # B: unigram cosine L^2 / (sqrt2 L * sqrt2 L) = 1/2; bigram 0: 10 * 0.5/4.
    assert out["per_image"]["B"]["cider_d"] == pytest.approx(1.25, rel=1e-12)
    assert out["corpus"]["cider_d"] == pytest.approx((5.0 + 1.25) / 2, rel=1e-12)


def test_cider_length_penalty_and_idf_by_hand():
    refs = {"A": ["a b"], "B": ["c d"], "C": ["a f"]}
    hyps = {"A": "a b c", "B": "c d", "C": "a"}
    out = scores(refs, hyps, metrics=("cider",))
    # A (idf: a -> log3 - log2, all others log3): unigrams {a:w, b:L, c:L} vs
    # {a:w, b:L}; bigrams {ab:L, bc:L} vs {ab:L}; 3 words vs 2.
    big, small = math.log(3), math.log(3) - math.log(2)
    uni = (small ** 2 + big ** 2) / (math.sqrt(small ** 2 + 2 * big ** 2)
                                      * math.sqrt(small ** 2 + big ** 2))
    bi = big ** 2 / (math.sqrt(2) * big * big)
    expected_a = 10 * (uni + bi) / 4 * math.exp(-1 / (2 * 6.0 ** 2))
    assert out["per_image"]["A"]["cider_d"] == pytest.approx(expected_a, rel=1e-12)
    # C: "a" alone, compared with "a f" (1 word vs 2): unigram cosine
    # small^2 / (small * sqrt(small^2 + L^2)), penalty exp(-1/72).
    expected_c = 10 * (small / math.sqrt(small ** 2 + big ** 2)) / 4 * math.exp(-1 / 72)
    assert out["per_image"]["C"]["cider_d"] == pytest.approx(expected_c, rel=1e-12)


def test_rouge_l_by_hand():
    # LCS("a b c d", "a c e d f") = "a c d": P = 3/4, R = 3/5, beta = 1.2.
    p, r = 3 / 4, 3 / 5
    expected = (1 + 1.44) * p * r / (r + 1.44 * p)
    out = scores({1: ["a c e d f"]}, {1: "a b c d"}, metrics=("rouge",))
    assert out["corpus"]["rouge_l"] == pytest.approx(expected, rel=1e-12)
    # Precision and recall are maximised over references separately: P = 1
    # from the long reference, R = 1 from the short one, so F = 1.
    corpus, _ = cc.rouge_l([["a b", "a x y z b c d e"]], ["a b c"])
    assert corpus == pytest.approx(1.0)


def test_empty_hypothesis():
    out = cc.evaluate_captions({1: ["A dog runs."], 2: ["A cat.", "..."]}, {1: "", 2: ""},
                               metrics=("bleu", "cider", "rouge"))
    for name in ("bleu1", "bleu2", "bleu3", "bleu4", "cider_d"):
        assert out["per_image"][1][name] == 0.0 and out["per_image"][2][name] == 0.0
    assert out["per_image"][1]["rouge_l"] == 0.0
    # "..." tokenises to "", and pycocoevalcap's ROUGE-L splits "" into one
    # empty word, so an empty hypothesis matches an empty reference fully.
    assert out["per_image"][2]["rouge_l"] == 1.0


# ------------------------------------------------------------ tokenizer rules
# (caption, tokens) pairs; expected values are the real jar's output.
RULE_CASES = [
    ("A Man Riding A Horse.", "a man riding a horse"),
    ("isn't can't cannot gonna", "is n't ca n't can not gon na"),
    ("it's they're we'll I've he'd I'm", "it 's they 're we 'll i 've he 'd i 'm"),
    ("dark-red top-left x-ray", "dark-red top-left x-ray"),
    ("3.5 1,000 10:30 5-1/2 12/25/2014", "3.5 1,000 10:30 5-1/2 12/25/2014"),
    ("2 1/2 cups", "2\u00a01/2 cups"),  # a mixed fraction is one token with an NBSP
    ("( ) [ ] { } < >", "-lrb- -rrb- -lsb- -rsb- -lcb- -rcb- < >"),
    ("\"q\" 'r' `s` “t” ‘u’ … -- – ... ; : ! ?", "q r s t u"),
    ("?! !! ----- a/b & &amp; * 100%", "?! !! ----- a/b & & * 100 %"),
    ("colour 5¢ £3 €4 ½ ⅕", "colour 5 cents # 3 $ 4 1/2 ⅕"),
    ("café naïve İstanbul 日本 x😀y", "café naïve i\u0307stanbul 日本 x y"),
    ("U.S. The Mr. Smith I. The etc.", "u.s. the mr. smith i the etc."),
    ("<unk> :) AT&T at&t", "<unk> :-rrb- at&t at & t"),
    ("two\nlines", "two lines"), ("", ""), (" . ", ""),
]


@pytest.mark.parametrize("caption, expected", RULE_CASES)
def test_ptb_tokenize_rules(caption, expected):
    assert " ".join(cc.ptb_tokenize(caption)) == expected


def test_tokenize_captions_reads_across_captions_like_the_wrapper():
    # The Java tokenizer sees the captions as one text: "B." before a line
    # starting with "The" loses its period; before "the" it keeps it.
    out = cc.tokenize_captions({1: ["area B.", "The end"], 2: ["area B.", "the end"]})
    assert out == {1: ["area b", "the end"], 2: ["area b.", "the end"]}


def test_other_line_breaks_are_spaces():
    # The real wrapper would shift every later caption onto the wrong image.
    out = cc.tokenize_captions({1: ["a\rb", "c\u2028d"], 2: ["e"]})
    assert out == {1: ["a b", "c d"], 2: ["e"]}


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize("refs, hyps, message", [
    ({1: ["a"]}, {1: "a", 7: "b"}, "image id 7 has no references"),
    ({1: ["a"], 2: ["b"]}, {1: "a"}, "image id 2 has references but no hypothesis"),
    ({1: []}, {1: "a"}, "image id 1 has an empty reference list"),
    ({1: ["a", 3]}, {1: "a"}, "image id 1 is a int"),
    ({1: "a"}, {1: "a"}, "image id 1 must be a list"),
    ({1: ["a"]}, {1: ["a"]}, "image id 1 must be a str"),
    ({}, {}, "references is empty"),
])
def test_invalid_input_names_the_image(refs, hyps, message):
    with pytest.raises(ValueError, match=message):
        cc.evaluate_captions(refs, hyps, metrics=("bleu",))


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metrics"):
        cc.evaluate_captions({1: ["a"]}, {1: "a"}, metrics=("bleu", "cidr"))


# ------------------------------------------------ equality with pycocoevalcap
def test_scores_match_pycocoevalcap_on_generated_sets():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    rng = random.Random(1234)
    total_images = 0
    for corpus_size in [1, 2, 3, 7] + [rng.randint(100, 200) for _ in range(20)]:
        gts, res = tokenized(*random_corpus(rng, corpus_size))
        total_images += corpus_size
        out = scores(gts, {k: v[0] for k, v in res.items()})
        ids = list(gts)
        bleu_corpus, bleu_images = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            name = "bleu%d" % (n + 1)
            assert out["corpus"][name] == pytest.approx(bleu_corpus[n], abs=1e-6)
            ours = [out["per_image"][i][name] for i in ids]
            assert ours == pytest.approx(bleu_images[n], abs=1e-6)
        for name, scorer in (("cider_d", Cider()), ("rouge_l", Rouge())):
            total, per_image = scorer.compute_score(gts, res)
            assert out["corpus"][name] == pytest.approx(float(total), abs=1e-6)
            ours = [out["per_image"][i][name] for i in ids]
            assert ours == pytest.approx(list(per_image), abs=1e-6)
    assert total_images > 2500


requires_java = pytest.mark.skipif(shutil.which("java") is None,
                                   reason="java is not on PATH: pycocoevalcap's tokenizer and "
                                          "METEOR are Java programs")


@requires_java
def test_tokenizer_matches_pycocoevalcap_ptbtokenizer():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    crafted = [caption for caption, _ in RULE_CASES] + [
        "gotta wanna lemme gimme 'tis 'twas", "don't DON'T won't ain't don'ts",
        "- -- --- ---- –—", "a---b a-----b .... ...... . . .", "² ³ x² H₂O ° × ÷ · • ™ © ®",
        "cafe\u0301 a\u00a0b a\u00adb a\u200bb",
        "e.g. i.e. a.k.a. Ph.D.", "No. 5 fig. 3 ca. 1900 Inc. Co. Ltd.", "Jan. The", "B. A cat",
        "file.jpg photo.png.", "a@b.com www.cnn.com http://x.org/a google.com", "#tag @user c++ C#",
        "o'clock O'Neil rock'n'roll y'all 'em '90s Dunkin' ol'", "555-123-4567 (555) 123-4567",
        "20 300 4000", "-LRB- -lrb- pro- anti-", "word; word: word, word!", "\ufeffbom",
        "'quoted start", "a 'b c'", "US$5 us$5 $5", "¥5 ¤1 ¼ ¾ ⅓ ⅔", "«guill» ‹x›", ":( ;-) :D ^_^",
        "S&P Straße ΟΔΟΣ",
        "tab\there", "   ",
    ]
    rng = random.Random(99)
    generated = [random_caption(rng, 14) for _ in range(300)]
    # Character soup: adjacency of letters, digits, quotes and punctuation.
    # (No \r, \v, \f, U+2028/9: the real wrapper would misalign on those.)
    alphabet = ("aeinostdlmyAEIOUSTDMB0123456789 .,;:!?'\"`-_/\\()[]{}<>@#$%&*+=|~^"
                "\u00a0’“”–…é½€")
    soup = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(100)]
    # Every 37th BMP code point in a few contexts: letter/digit/symbol classes
    # and lower-casing (the jar's Unicode tables are older than Python's).
    sample = [chr(cp) for cp in range(0x80, 0x10000, 37)
              if not 0xD800 <= cp <= 0xDFFF and chr(cp) not in "\u2028\u2029"]
    bmp = ["a%sb %s 1%s2 Inc. %s" % (c, c, c, c) for c in sample]
    captions = crafted + generated + soup + bmp
    by_image = {i // 3: captions[i:i + 3] for i in range(0, len(captions), 3)}
    wrapper_input = {k: [{"caption": c} for c in v] for k, v in by_image.items()}
    expected = PTBTokenizer().tokenize(wrapper_input)
    assert cc.tokenize_captions(by_image) == expected


@requires_java
def test_meteor_matches_pycocoevalcap():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.meteor.meteor import Meteor

    refs = {1: ["A man riding a horse.", "A person on a brown horse."],
            2: ["Two dogs play in the park.", "Dogs playing on grass."],
            3: ["A red bus isn't moving."], 4: ["a cat"]}
    hyps = {1: "a man on a horse", 2: "dogs are playing", 3: "The red bus.", 4: ""}
    out = cc.evaluate_captions(refs, hyps, metrics=("meteor",), java_timeout_s=120)
    assert "meteor" not in out["unavailable"], out["unavailable"]
    gts, res = tokenized(refs, hyps)
    total, per_image = Meteor().compute_score(gts, res)
    assert out["corpus"]["meteor"] == pytest.approx(total, abs=1e-6)
    assert [out["per_image"][i]["meteor"] for i in refs] == pytest.approx(per_image, abs=1e-6)


def test_meteor_without_java_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("PATH", "")
    out = cc.evaluate_captions({1: ["a dog"]}, {1: "a dog"}, metrics=("bleu", "meteor"))
    assert "meteor" not in out["corpus"] and "bleu1" in out["corpus"]
    assert "java" in out["unavailable"]["meteor"] or "pycocoevalcap" in out["unavailable"]["meteor"]


def test_spice_gives_a_score_or_a_reason():
    # Offline, pycocoevalcap's first-use download of the Stanford models fails.
    out = cc.evaluate_captions({1: ["a dog runs"], 2: ["a cat"]}, {1: "a dog", 2: "a cat"},
                               metrics=("spice",), java_timeout_s=20)
    if "spice" in out["corpus"]:
        assert set(out["per_image"][1]) == {"spice"}
    else:
        assert out["unavailable"]["spice"]

import numpy as np
import pytest

from vlm_keras.data.text import END_ID, PAD_ID, START_ID, UNK_ID, Tokenizer, normalize_text, tokenize


def test_normalisation_lowercases_and_strips_punctuation():
    out = normalize_text(["A Red-Circle, ABOVE the  square!", "  ", "Éclair's top"]).numpy()
    assert [s.decode() for s in out] == ["a red circle above the square", "", "éclair's top"]


def test_tokenize_matches_normalisation():
    assert tokenize(["Two shapes: a RED circle.", ""]) == [["two", "shapes", "a", "red", "circle"], []]
    assert tokenize([]) == []


def test_vocabulary_order_and_special_ids():
    tok = Tokenizer.from_texts(["b a a", "c a b"], max_length=4)
    assert tok.id_to_token == ["", "[UNK]", "<start>", "<end>", "a", "b", "c"]
    assert (PAD_ID, UNK_ID, START_ID, END_ID) == (0, 1, 2, 3)
    assert tok.vocab_size == 7


def test_encode_adds_start_end_and_pads_and_truncates():
    tok = Tokenizer.from_texts(["a b c"], max_length=3)
    ids = tok.encode(["a zebra", "", "c b a c b"]).numpy()
    assert ids.shape == (3, 5) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[0], [START_ID, 4, UNK_ID, END_ID, PAD_ID])
    np.testing.assert_array_equal(ids[1], [START_ID, END_ID, 0, 0, 0])
    np.testing.assert_array_equal(ids[2], [START_ID, 6, 5, 4, END_ID])


def test_decode_stops_at_end_and_round_trips():
    tok = Tokenizer.from_texts(["a red circle", "a blue square"])
    ids = tok.encode(["a blue circle"]).numpy()
    assert tok.decode(ids) == ["a blue circle"]
    assert tok.decode([[4, END_ID, 5, 6]]) == ["a"]
    with pytest.raises(ValueError, match="shape"):
        tok.decode([1, 2, 3])


def test_config_round_trip(tmp_path):
    tok = Tokenizer.from_texts(["a red circle", "a blue square"], max_length=6)
    tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.id_to_token == tok.id_to_token and again.max_length == 6


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.from_texts(["", "!!"])
    with pytest.raises(ValueError, match="reserved"):
        Tokenizer(["<end>", "a"], 4)
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer(["a"], 0)


def test_min_count_and_max_vocab():
    tok = Tokenizer.from_texts(["a a a b b c"], min_count=2)
    assert tok.vocabulary == ["a", "b"]
    assert Tokenizer.from_texts(["a a a b b c"], max_vocab_size=1).vocabulary == ["a"]


def test_the_default_length_is_a_high_percentile_not_the_longest_text():
    texts = ["a red circle"] * 999 + [" ".join(["word"] * 5000)]
    tok = Tokenizer.from_texts(texts)
    assert tok.max_length == 3  # one 5,000-word outlier does not set the length of every caption
    assert tok.length_stats == {"texts": 1000, "longest": 5000, "max_length": 3, "cut": 1}
    assert tok.describe_lengths() == ("captions up to 3 words (1 of 1,000 training captions cut; the longest "
                                      "has 5000)")
    assert tok.encode(["word " * 10]).shape == (1, 5)
    assert Tokenizer.from_texts(texts, max_length=20).length_stats["cut"] == 1
    even = Tokenizer.from_texts(["one two", "one two three"] * 10)
    assert even.max_length == 3 and even.length_stats["cut"] == 0

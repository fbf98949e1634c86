"""VQA accuracy: normalisation rules and scores checked by hand against the official rules."""

import pytest

from vlm_keras.metrics import normalize_answer, vqa_accuracy, vqa_accuracy_report


# One dissenting annotator among 10: enough disagreement for the official evaluation to
# normalise the answers and the prediction, while the 9 agreeing ones still give accuracy 1.0.
def nine_and_one(answer, other="zzz"):
    return [answer] * 9 + [other]


# --- normalize_answer ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("  Yes\n", "yes"),
    ("yes.", "yes"),                # period stripped ...
    ("2.5", "2.5"),                 # ... unless a digit follows it
    ("5.", "5"),
    ("yes!", "yes"),                # mark not touching a space: replaced by a space, then trimmed
    ("t-shirt", "t shirt"),
    ("red,white", "red white"),
    ("red, white", "red white"),    # ", " touches a space: every "," is deleted
    ("red , white", "red white"),
    ("1,000", "1000"),              # comma between digits: every mark is deleted
    ("1,000-2", "10002"),           # ... including marks elsewhere in the answer
    ("don't", "don't"),             # apostrophe kept
    ("10:30", "10:30"),             # colon kept
    ("two", "2"),
    ("Ten", "10"),
    ("none", "0"),                  # "none" is a number word in the official map
    ("eleven", "eleven"),
    ("a dog.", "dog"),
    ("The  Dog", "dog"),
    ("an apple", "apple"),
    ("dont", "don't"),
    ("isnt", "isn't"),
    ("whats", "what's"),
    ("youre", "you're"),
    ("its", "its"),                 # not in the contractions map
    ("im", "im"),                   # the official "Im" key never matches lower-cased words
    ("two dogs dont bark", "2 dogs don't bark"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_answer_rejects_non_strings():
    with pytest.raises(TypeError, match="answer 3 is a int"):
        normalize_answer(3)


# --- vqa_accuracy -------------------------------------------------------------------------------

def test_unanimous_answers():
    assert vqa_accuracy("red", ["red"] * 10) == 1.0
    assert vqa_accuracy("blue", ["red"] * 10) == 0.0


@pytest.mark.parametrize("n_agree, expected", [
    # Leaving out one of the n agreeing annotators leaves n - 1 matches, leaving out one of the
    # others leaves n: mean of min(1, m / 3) over the 10 left-out annotators.
    (0, 0.0),
    (1, (1 * 0 + 9 * (1 / 3)) / 10),          # 0.3
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),    # 0.6
    (3, (3 * (2 / 3) + 7 * 1) / 10),          # 0.9
    (4, (4 * 1 + 6 * 1) / 10),                # 1.0
    (7, 1.0),
])
def test_disagreeing_annotators(n_agree, expected):
    answers = ["red"] * n_agree + ["blue"] * (10 - n_agree)
    assert vqa_accuracy("red", answers) == pytest.approx(expected)


def test_number_words_match_digits_when_annotators_disagree():
    assert vqa_accuracy("2", nine_and_one("two")) == pytest.approx(1.0)
    assert vqa_accuracy("two", nine_and_one("2")) == pytest.approx(1.0)
    assert vqa_accuracy("Two.", nine_and_one("2")) == pytest.approx(1.0)
    # two of ten say "two", one says "2": three humans agree with the prediction "2".
    assert vqa_accuracy("2", ["two", "two", "2"] + ["3"] * 7) == pytest.approx(0.9)


def test_articles_punctuation_and_contractions_when_annotators_disagree():
    assert vqa_accuracy("dog", nine_and_one("a dog.")) == pytest.approx(1.0)
    assert vqa_accuracy("yes", nine_and_one("yes!")) == pytest.approx(1.0)
    assert vqa_accuracy("2.5", nine_and_one("2.5")) == pytest.approx(1.0)
    assert vqa_accuracy("25", nine_and_one("2.5")) == 0.0  # the decimal point is kept
    assert vqa_accuracy("1000", nine_and_one("1,000")) == pytest.approx(1.0)
    assert vqa_accuracy("1 000", nine_and_one("1,000")) == 0.0
    assert vqa_accuracy("don't", nine_and_one("dont")) == pytest.approx(1.0)


def test_unanimous_answers_are_compared_without_normalisation():
    # The official evaluation runs the punctuation / number / article processing, on the human
    # answers and on the prediction, only when the human answers are not all the same. With
    # unanimous annotators only surrounding whitespace is ignored: no lower-casing, no number
    # words, no punctuation.
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    assert vqa_accuracy("two", ["two"] * 10) == 1.0
    assert vqa_accuracy(" two\n", ["two"] * 10) == 1.0
    assert vqa_accuracy("2", ["two."] * 10) == 0.0
    assert vqa_accuracy("two.", ["two."] * 10) == 1.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    # One dissenting annotator switches the processing on for all answers and the prediction.
    assert vqa_accuracy("Yes", nine_and_one("yes", "no")) == pytest.approx(1.0)
    assert vqa_accuracy("2", nine_and_one("two.", "3")) == pytest.approx(1.0)


def test_ten_answers_or_one_and_no_other_count():
    # One reference answer (GQA, CLEVR): exact match after the official normalisation.
    assert vqa_accuracy("red", ["red"]) == 1.0 and vqa_accuracy("Two", ["2"]) == 1.0
    assert vqa_accuracy("blue", ["red"]) == 0.0
    # Any other count has no rule: scoring 3 answers as if 10 humans had answered would give a
    # right prediction 0.67, one answer 0.33.
    for answers in (["red"] * 3, ["red", "blue"], ["red"] * 11):
        with pytest.raises(ValueError, match=rf"{len(answers)} human answers; the VQA accuracy is defined for 10"):
            vqa_accuracy("red", answers)
    with pytest.raises(ValueError, match=r"question_id 2 has 3 human answers \(1 of 2 questions have neither 10 nor 1\)"):
        vqa_accuracy_report({1: "red", 2: "red"}, [annotation(1, "what color", "other", ["red"] * 10),
                                                   annotation(2, "what color", "other", ["red"] * 3)])
    report = vqa_accuracy_report({1: "red", 2: "red"}, [annotation(1, "what color", "other", ["red"] * 10),
                                                        annotation(2, "what color", "other", ["red"])])
    assert report["overall"] == 1.0


def test_vqa_accuracy_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_accuracy("red", [])
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_accuracy("red", "red")
    with pytest.raises(TypeError, match="human answer 1 \\(None\\)"):
        vqa_accuracy("red", ["red", None])
    with pytest.raises(TypeError, match="predicted answer 2 is a int"):
        vqa_accuracy(2, ["2"])


# --- vqa_accuracy_report ------------------------------------------------------------------------

def annotation(question_id, question_type, answer_type, answers):
    return {"question_id": question_id, "image_id": 100 + question_id,
            "question_type": question_type, "answer_type": answer_type,
            "multiple_choice_answer": answers[0],
            "answers": [{"answer": a, "answer_id": i + 1, "answer_confidence": "yes"}
                        for i, a in enumerate(answers)]}


ANNOTATIONS = [
    annotation(1, "what color is the", "other", ["red"] * 3 + ["blue"] * 7),
    annotation(2, "what color is the", "other", ["green"] * 10),
    annotation(3, "how many", "number", ["two"] * 9 + ["3"]),
    annotation(4, "is the", "yes/no", ["yes"] * 10),
]
PREDICTIONS = {1: "red", 2: "blue", 3: "2", 4: "yes"}  # scores 0.9, 0.0, 1.0, 1.0


def test_report_breakdowns():
    report = vqa_accuracy_report(PREDICTIONS, ANNOTATIONS)
    assert report["num_questions"] == 4
    assert report["overall"] == pytest.approx((0.9 + 0.0 + 1.0 + 1.0) / 4)
    assert report["per_question_type"] == pytest.approx(
        {"what color is the": 0.45, "how many": 1.0, "is the": 1.0})
    assert report["per_answer_type"] == pytest.approx({"other": 0.45, "number": 1.0, "yes/no": 1.0})


def test_report_accepts_the_results_format():
    results = [{"question_id": q, "answer": a} for q, a in PREDICTIONS.items()]
    expected = vqa_accuracy_report(PREDICTIONS, ANNOTATIONS)
    assert vqa_accuracy_report(results, ANNOTATIONS) == expected


def test_report_errors():
    with pytest.raises(ValueError, match=r"question_id\(s\) 9, 8, 7, 6, 5 and 1 more \(6 in all\), "
                                         "which are not annotated"):
        vqa_accuracy_report({**PREDICTIONS, 9: "x", 8: "x", 7: "x", 6: "x", 5: "x", 10: "x"},
                            ANNOTATIONS)
    with pytest.raises(ValueError, match=r"no prediction for annotated question_id\(s\) 2, 4$"):
        vqa_accuracy_report({1: "red", 3: "2"}, ANNOTATIONS)
    results = [{"question_id": q, "answer": a} for q, a in PREDICTIONS.items()]
    with pytest.raises(ValueError, match=r"answer question_id\(s\) 3 more than once"):
        vqa_accuracy_report(results + [{"question_id": 3, "answer": "4"}], ANNOTATIONS)
    with pytest.raises(ValueError, match="result 0"):
        vqa_accuracy_report([{"question_id": 1}], ANNOTATIONS)
    with pytest.raises(TypeError, match="question_id 1 is None"):
        vqa_accuracy_report({**PREDICTIONS, 1: None}, ANNOTATIONS)
    with pytest.raises(ValueError, match=r"annotations hold question_id\(s\) 1 more than once"):
        vqa_accuracy_report(PREDICTIONS, ANNOTATIONS + [ANNOTATIONS[0]])
    with pytest.raises(ValueError, match="annotation 0 has no answer_type"):
        vqa_accuracy_report({1: "x"}, [{"question_id": 1, "question_type": "x", "answers": []}])
    with pytest.raises(ValueError, match="at least one annotated question"):
        vqa_accuracy_report({}, [])

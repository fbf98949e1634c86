"""The official VQA accuracy (Antol et al. 2015; VQA v2, Goyal et al. 2017) and its answer
normalisation, as pure functions."""

import re

# The rules below restate the behaviour of the official VQA evaluation (vqaEval.py), quirks
# included, so that numbers computed here can be compared with published ones.

# Marks handled by the official processPunctuation. The apostrophe and colon are not in the list
# (they carry meaning in "don't", "10:30"); the period has its own rule (_PERIOD).
VQA_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                   ">", "<", "@", "`", ",", "?", "!")
# "none" -> "0" is part of the official map: "how many ...? none" counts as the number 0.
VQA_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
VQA_ARTICLES = ("a", "an", "the")
# The official contractions map, minus its entries with capital letters ("Im", "Ive", "Id've",
# "I'dve"): it looks words up after lower-casing them, so those entries can never match.
# Real words such as "its", "lets", "shed", "wed", "well" are deliberately absent.
VQA_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",  # sic: reversed in the official map; kept so scores agree
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
_COMMA_IN_NUMBER = re.compile(r"\d,\d")
# A period not followed by a digit. The official pattern also has "(?!<=\d)" in front, a typo
# for a look-behind that in fact never fires; so "5." loses its period and ".5" keeps it.
_PERIOD = re.compile(r"\.(?!\d)")
# The official code passes re.UNICODE (= 32) where re.sub expects `count`: at most 32 periods
# are removed. Mirrored so that scores agree on every input.
_OFFICIAL_PERIOD_COUNT = 32


def _clean_whitespace(answer):
    """Newlines and tabs to spaces, then strip: the only step the official code applies always."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(answer):
    # Adjacency to a space, and the comma-in-number test, look at the text as it came in, not
    # at the partly processed text, as in the official code. A comma between digits anywhere
    # makes every mark be removed rather than spaced: "1,000" -> "1000".
    remove_all = _COMMA_IN_NUMBER.search(answer) is not None
    out = answer
    for mark in VQA_PUNCTUATION:
        if remove_all or mark + " " in answer or " " + mark in answer:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")  # "t-shirt" -> "t shirt", "yes!" -> "yes "
    return _PERIOD.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def _process_digit_article(answer):
    words = []
    for word in answer.lower().split():
        word = VQA_NUMBER_WORDS.get(word, word)
        if word not in VQA_ARTICLES:
            words.append(VQA_CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(answer):
    """The official VQA answer normalisation.

    Steps, in the official order: newlines/tabs to spaces and strip; punctuation (each of
    `VQA_PUNCTUATION` is deleted if it touches a space anywhere in the answer or if the answer
    holds a comma between digits, else replaced by a space; a period is deleted unless a digit
    follows it, so "2.5" is kept and "yes." becomes "yes"); lower-case; number words "none",
    "zero".."ten" to digits; articles a/an/the dropped; `VQA_CONTRACTIONS` applied word by word
    ("dont" -> "don't"); whitespace collapsed to single spaces.

    Args:
        answer: one answer string.

    Returns:
        The normalised answer, e.g. "Two dogs!" -> "2 dogs", "1,000" -> "1000".
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer {answer!r} is a {type(answer).__name__}; expected a str")
    return _process_digit_article(_process_punctuation(_clean_whitespace(answer)))


# The VQA accuracy's min(1, m / 3) assumes 10 annotators (VQA v1/v2, VizWiz; OK-VQA's files list
# each of its 5 answers twice). Datasets with one answer per question (GQA, CLEVR) are scored by
# exact match. Any other count has no official rule: it is refused rather than scored as if it
# were 10, which would make the same prediction score 0.33 with one answer and 1.0 with ten.
HUMAN_ANSWERS = 10


def check_answer_counts(annotations):
    """Raises ValueError naming the first question whose number of human answers is neither 10
    nor 1 (see `vqa_accuracy`), and how many such questions there are."""
    bad = [(a.get("question_id"), len(a.get("answers") or [])) for a in annotations
           if len(a.get("answers") or []) not in (1, HUMAN_ANSWERS)]
    if bad:
        question_id, count = bad[0]
        raise ValueError(f"question_id {question_id!r} has {count} human answers ({len(bad)} of {len(annotations)} "
                         f"questions have neither 10 nor 1); the VQA accuracy is defined for 10 human answers, "
                         "and exact match for 1")


def vqa_accuracy(predicted, human_answers):
    """Official VQA accuracy of one predicted answer against the human answers to its question.

    With 10 human answers (VQA v1/v2), each is left out in turn; the prediction scores
    min(1, m / 3) where m is the number of the remaining answers equal to it; the result is the
    mean over the left-out answers: 1.0 once 4 or more humans agree with the prediction, 0.9 for
    3, 0.6 for 2, 0.3 for 1. With a single answer (GQA, CLEVR style) it is exact match after
    `normalize_answer`. Other counts raise ValueError: the rule has no meaning for them.

    As in the official evaluation, the answers and the prediction go through
    `normalize_answer` only when the human answers disagree (more than one distinct answer after
    stripping whitespace). When they are unanimous the comparison is exact: all humans saying
    "two" and a prediction "2", "Two" or "two." scores 0. Normalise predictions yourself
    beforehand if that is not what you want; VQA v2 annotations are lower-case already.

    Args:
        predicted: the predicted answer.
        human_answers: the 10 human answers (VQA v1/v2), or a single reference answer.

    Returns:
        The accuracy, a float in [0, 1].
    """
    if not isinstance(predicted, str):
        raise TypeError(f"predicted answer {predicted!r} is a {type(predicted).__name__}; "
                        "expected a str")
    if isinstance(human_answers, str) or not human_answers:
        raise ValueError(f"human_answers {human_answers!r} must be a non-empty list of strings")
    for i, answer in enumerate(human_answers):
        if not isinstance(answer, str):
            raise TypeError(f"human answer {i} ({answer!r}) is a {type(answer).__name__}; "
                            "expected a str")
    if len(human_answers) == 1:
        return float(normalize_answer(predicted) == normalize_answer(human_answers[0]))
    if len(human_answers) != HUMAN_ANSWERS:
        raise ValueError(f"{len(human_answers)} human answers; the VQA accuracy is defined for 10 human answers, "
                         "and exact match for 1")
    prediction = _clean_whitespace(predicted)
    answers = [_clean_whitespace(a) for a in human_answers]
    if len(set(answers)) > 1:
        prediction = normalize_answer(prediction)
        answers = [normalize_answer(a) for a in answers]
    matches = [a == prediction for a in answers]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(answers)


def _describe_ids(ids):
    shown = ", ".join(repr(i) for i in ids[:5])
    more = f" and {len(ids) - 5} more ({len(ids)} in all)" if len(ids) > 5 else ""
    return f"question_id(s) {shown}{more}"


def _predictions_by_question(predictions):
    if isinstance(predictions, dict):
        pairs = list(predictions.items())
    else:
        pairs = []
        for i, result in enumerate(predictions):
            if not (isinstance(result, dict) and "question_id" in result and "answer" in result):
                raise ValueError(f"result {i} ({result!r}) is not a "
                                 '{"question_id": int, "answer": str} dict')
            pairs.append((result["question_id"], result["answer"]))
    by_id, duplicates = {}, []
    for question_id, answer in pairs:
        if question_id in by_id and question_id not in duplicates:
            duplicates.append(question_id)
        if not isinstance(answer, str):
            raise TypeError(f"the answer to question_id {question_id!r} is {answer!r}; "
                            "expected a str")
        by_id[question_id] = answer
    if duplicates:
        raise ValueError(f"the results answer {_describe_ids(duplicates)} more than once")
    return by_id


def vqa_accuracy_report(predictions, annotations):
    """VQA accuracy over a set of questions, overall and per question type and answer type.

    The breakdowns are those of the official evaluation: the mean of `vqa_accuracy` over the
    questions of each `question_type` ("what color is the", "how many", ...) and each
    `answer_type` ("yes/no", "number", "other"). The official script prints percentages rounded
    to 2 decimals; here the values are unrounded fractions in [0, 1] (multiply by 100 and round
    to compare with it).

    Args:
        predictions: {question_id: answer}, or the VQA results format
            [{"question_id": int, "answer": str}, ...].
        annotations: VQA v2 annotation dicts, each with at least "question_id",
            "question_type", "answer_type" and "answers" (a list of {"answer": str, ...}).

    Returns:
        {"overall": float, "per_question_type": {type: float}, "per_answer_type": {type: float},
         "num_questions": int}.

    Raises:
        ValueError: a question id answered twice in the results, a prediction for a question
            not in the annotations, or an annotated question without a prediction (as the
            official evaluation, which requires the two sets of ids to be equal).
    """
    by_id = _predictions_by_question(predictions)
    if not annotations:
        raise ValueError("VQA accuracy needs at least one annotated question")
    annotated, duplicates = set(), []
    for i, annotation in enumerate(annotations):
        missing_keys = [k for k in ("question_id", "question_type", "answer_type", "answers")
                        if k not in annotation]
        if missing_keys:
            raise ValueError(f"annotation {i} has no {', '.join(missing_keys)}")
        question_id = annotation["question_id"]
        if question_id in annotated and question_id not in duplicates:
            duplicates.append(question_id)
        annotated.add(question_id)
    if duplicates:
        raise ValueError(f"the annotations hold {_describe_ids(duplicates)} more than once")
    unknown = [q for q in by_id if q not in annotated]
    if unknown:
        raise ValueError(f"predictions for {_describe_ids(unknown)}, which are not annotated")
    unanswered = [a["question_id"] for a in annotations if a["question_id"] not in by_id]
    if unanswered:
        raise ValueError(f"no prediction for annotated {_describe_ids(unanswered)}")

    scores, per_question_type, per_answer_type = [], {}, {}
    for annotation in annotations:
        question_id = annotation["question_id"]
        answers = [a["answer"] for a in annotation["answers"]]
        if not answers:
            raise ValueError(f"question_id {question_id!r} has no human answers")
        if len(answers) not in (1, HUMAN_ANSWERS):
            check_answer_counts(annotations)  # names the question and counts every such one
        score = vqa_accuracy(by_id[question_id], answers)
        scores.append(score)
        per_question_type.setdefault(annotation["question_type"], []).append(score)
        per_answer_type.setdefault(annotation["answer_type"], []).append(score)
    return {
        "overall": sum(scores) / len(scores),
        "per_question_type": {t: sum(s) / len(s) for t, s in per_question_type.items()},
        "per_answer_type": {t: sum(s) / len(s) for t, s in per_answer_type.items()},
        "num_questions": len(scores),
    }

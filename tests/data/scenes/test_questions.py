import collections
import re

import numpy as np
import pytest

from vlm_keras.data.scenes.questions import (
    ANSWER_TYPES,
    QUESTION_TYPES,
    generate_questions,
    human_answers,
    mentions_heldout_pair,
    relation,
)
from vlm_keras.data.scenes.scenes import COLORS, HELDOUT_PAIRS, SHAPES, Scene, SceneObject, sample_scene

_PLURAL_TO_SHAPE = {"circles": "circle", "squares": "square", "triangles": "triangle",
                    "crosses": "cross"}
_INVERSE = {"above": "below", "below": "above", "to the left of": "to the right of",
            "to the right of": "to the left of"}
_RELATION = r"(above|below|to the left of|to the right of)"
# Possible answers of each question type: the "uniform share" is 1 / their number.
_ANSWERS = {
    "what color": set(COLORS), "what shape": set(SHAPES), "what size": {"small", "large"},
    "how many": {"0", "1", "2", "3", "4"}, "is there": {"yes", "no"},
    "spatial": set(SHAPES) | {"yes", "no"},
}


def _obj(color, shape, size, x, y):
    return SceneObject(color, shape, size, x, y, 0.12 if size == "small" else 0.2)


def _scene(*objects):
    return Scene(tuple(objects), (200, 200, 200))


def _scenes(count, seed=0, compositional=False):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, compositional) for _ in range(count)]


def _many(scene, seeds=range(300), allow_heldout=False):
    """{question: answer} over many draws; fails if one question ever gets two answers."""
    found = {}
    for seed in seeds:
        for qa in generate_questions(scene, np.random.default_rng(seed), 6, allow_heldout):
            assert found.setdefault(qa["question"], qa["answer"]) == qa["answer"], qa
    return found


# --- an independent oracle: reads a question back and answers it from the scene --------------


def _clear_relation(a, b):
    """The captions' dominant-axis rule, restated: None when no axis is 1.5x the other."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= 1.5 * abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) >= 1.5 * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def _matches(words, scene):
    """Objects fitting a description such as ['small', 'red', 'object'] or ['circle']."""
    *adjectives, noun = words
    assert noun in SHAPES or noun == "object", words
    assert len(adjectives) == len(set(adjectives)) <= 2, words
    found = []
    for o in scene.objects:
        if noun != "object" and o.shape != noun:
            continue
        if all(word in (o.size, o.color) for word in adjectives):
            found.append(o)
    for word in adjectives:
        assert word in COLORS or word in ("small", "large"), words
    return found


def _the(phrase, scene):
    """The one object a 'the ...' phrase names; fails if it is not exactly one."""
    words = phrase.split()
    assert words[0] == "the", phrase
    found = _matches(words[1:], scene)
    assert len(found) == 1, f"'{phrase}' names {len(found)} objects"
    return found[0]


def _oracle(question, scene):
    for pattern in (r"what (color|shape|size) is (the .+)", r"what is the (color|shape|size) "
                    r"of (the .+)"):
        match = re.fullmatch(pattern, question)
        if match:
            attribute, phrase = match.groups()
            assert attribute not in phrase.split() and (attribute != "color" or not any(
                w in COLORS for w in phrase.split())), question
            return getattr(_the(phrase, scene), attribute)
    if question == "how many shapes are there":
        return str(len(scene.objects))
    match = re.fullmatch(r"how many (\w+) objects are there", question)
    if match:
        assert match.group(1) in COLORS
        return str(sum(o.color == match.group(1) for o in scene.objects))
    match = re.fullmatch(r"how many (\w+) are there", question)
    if match:
        shape = _PLURAL_TO_SHAPE[match.group(1)]
        return str(sum(o.shape == shape for o in scene.objects))
    match = re.fullmatch(r"is there (a|an) (.+)", question)
    if match:
        words = match.group(2).split()
        assert match.group(1) == ("an" if words[0][0] in "aeiou" else "a")
        return "yes" if _matches(words, scene) else "no"
    match = re.fullmatch(rf"what is {_RELATION} (the .+)", question)
    if match:
        wanted, reference = match.group(1), _the(match.group(2), scene)
        others = [o for o in scene.objects if o is not reference]
        relations = [_clear_relation(o, reference) for o in others]
        assert None not in relations, question
        assert relations.count(wanted) == 1, question
        return others[relations.index(wanted)].shape
    match = re.fullmatch(rf"is (the .+?) {_RELATION} (the .+)", question)
    if match:
        a, asked, b = _the(match.group(1), scene), match.group(2), _the(match.group(3), scene)
        actual = _clear_relation(a, b)
        assert actual in (asked, _INVERSE[asked]), question
        return "yes" if actual == asked else "no"
    raise AssertionError(f"unknown question form: {question!r}")


# --- answers are true --------------------------------------------------------------------------


def test_answers_for_a_constructed_scene():
    # A small red circle in the top left; a large blue square to its right, a little lower.
    scene = _scene(_obj("red", "circle", "small", 0.2, 0.25), _obj("blue", "square", "large",
                                                                   0.75, 0.4))
    found = _many(scene)
    expected = {
        "what color is the circle": "red",
        "what is the color of the large object": "blue",
        "what shape is the red object": "circle",
        "what is the shape of the large blue object": "square",
        "what size is the red circle": "small",
        "what size is the square": "large",
        "how many shapes are there": "2",
        "how many circles are there": "1",
        "how many triangles are there": "0",
        "how many red objects are there": "1",
        "how many green objects are there": "0",
        "is there a red circle": "yes",
        "is there a small square": "no",
        "is there a large blue square": "yes",
        "is there a triangle": "no",
        "what is to the left of the blue object": "circle",
        "what is to the right of the red object": "square",
        "what is to the right of the small object": "square",
        "is the red circle to the left of the blue square": "yes",
        "is the square to the left of the circle": "no",
    }
    asked = {q: found[q] for q in expected if q in found}
    assert asked == {q: expected[q] for q in asked}
    assert len(asked) >= 12, sorted(found)
    # Relations off the dominant axis are never asked: the square is only a little lower.
    assert not any(" above " in q or " below " in q for q in found)
    for question, answer in found.items():
        assert _oracle(question, scene) == answer, question


def test_answers_true_and_referents_unique_on_sampled_scenes():
    scenes = _scenes(300, seed=1) + _scenes(100, seed=2, compositional=True)
    rng = np.random.default_rng(0)
    for index, scene in enumerate(scenes):
        for qa in generate_questions(scene, rng, allow_heldout=index >= 300):
            assert _oracle(qa["question"], scene) == qa["answer"], (qa, scene)


def test_ambiguous_referents_are_avoided():
    # Two red circles that differ only in size, and two squares.
    scene = _scene(_obj("red", "circle", "small", 0.2, 0.2), _obj("red", "circle", "large",
                                                                  0.7, 0.25),
                   _obj("blue", "square", "small", 0.25, 0.75), _obj("green", "square", "large",
                                                                     0.75, 0.75))
    found = _many(scene, range(200))
    words = " ".join(found)
    for phrase in ("the circle", "the red circle", "the red object", "the square", "the small "
                   "object", "the large object"):
        assert not re.search(rf"{phrase}\b", words), phrase
    assert not any(q.startswith(("what size is the red", "what is the size of the red"))
                   for q in found)
    for question, answer in found.items():
        assert _oracle(question, scene) == answer, question


def test_question_format():
    rng = np.random.default_rng(3)
    for scene in _scenes(200, seed=3):
        questions = generate_questions(scene, rng, num_questions=6)
        assert len(questions) == 6
        assert len({qa["question"] for qa in questions}) == 6
        for qa in questions:
            assert set(qa) == {"question", "answer", "question_type", "answer_type"}
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", qa["question"]), qa
            assert re.fullmatch(r"[a-z0-9]+", qa["answer"]), qa
            assert qa["question_type"] in QUESTION_TYPES and qa["answer_type"] in ANSWER_TYPES
            assert qa["answer"] in _ANSWERS[qa["question_type"]]
            expected_type = ("yes/no" if qa["answer"] in ("yes", "no") else
                             "number" if qa["answer"].isdigit() else "other")
            assert qa["answer_type"] == expected_type


def test_relation_uses_the_dominant_axis():
    a = _obj("red", "circle", "small", 0.2, 0.5)
    assert relation(a, _obj("blue", "square", "small", 0.8, 0.6)) == "to the left of"
    assert relation(_obj("blue", "square", "small", 0.8, 0.6), a) == "to the right of"
    assert relation(a, _obj("blue", "square", "small", 0.25, 0.9)) == "above"
    assert relation(_obj("blue", "square", "small", 0.25, 0.9), a) == "below"
    assert relation(a, _obj("blue", "square", "small", 0.6, 0.8)) is None  # 0.4 vs 0.3


# --- balance ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampled_questions():
    rng = np.random.default_rng(7)
    questions = []
    for scene in _scenes(2000, seed=7):
        questions.extend(generate_questions(scene, rng))
    return questions


def test_answers_near_uniform_for_each_question_type(sampled_questions):
    by_type = collections.defaultdict(collections.Counter)
    for qa in sampled_questions:
        by_type[qa["question_type"]][qa["answer"]] += 1
    assert set(by_type) == set(QUESTION_TYPES)
    for question_type, counts in by_type.items():
        total = sum(counts.values())
        top_share = max(counts.values()) / total
        assert top_share <= 1.5 / len(_ANSWERS[question_type]), (question_type, counts)
        assert total >= 300, (question_type, total)
    yes = by_type["is there"]["yes"] / sum(by_type["is there"].values())
    assert 0.45 <= yes <= 0.55
    counts = by_type["how many"]
    assert min(counts[str(n)] for n in range(5)) >= 0.6 / 5 * sum(counts.values()), counts


def test_yes_no_balanced_within_each_form(sampled_questions):
    forms = collections.defaultdict(collections.Counter)
    for qa in sampled_questions:
        if qa["answer_type"] == "yes/no":
            # "is there a red circle" -> "is there a COLOR SHAPE"
            words = ["COLOR" if w in COLORS else "SHAPE" if w in SHAPES else w
                     for w in qa["question"].split()]
            forms[" ".join(words)][qa["answer"]] += 1
    for form, counts in forms.items():
        total = sum(counts.values())
        if total >= 100:
            assert 0.4 <= counts["yes"] / total <= 0.6, (form, counts)


def test_blind_answer_from_question_text_is_near_chance(sampled_questions):
    # Fit "most common answer to this exact question" on one half, score it on the other; a
    # question not seen in the first half gets the most common answer of its form.
    half = len(sampled_questions) // 2
    by_text = collections.defaultdict(collections.Counter)
    by_form = collections.defaultdict(collections.Counter)
    for qa in sampled_questions[:half]:
        by_text[qa["question"]][qa["answer"]] += 1
        by_form[qa["question_type"], qa["answer_type"]][qa["answer"]] += 1
    hits, totals = collections.Counter(), collections.Counter()
    for qa in sampled_questions[half:]:
        form = qa["question_type"], qa["answer_type"]
        counts = by_text.get(qa["question"]) or by_form[form]
        hits[form] += counts.most_common(1)[0][0] == qa["answer"]
        totals[form] += 1
    accuracy = {form: hits[form] / totals[form] for form in totals}
    # Chance is 1/2 for yes/no, 1/4 for shapes, 1/6 for colours, 1/5 for counts. Held-out pairs
    # leave 3 shapes to "what shape is the red object" and 5 colours to "what color is the
    # circle"; count templates have narrower ranges than 0..4 ("how many red objects": 0..2).
    # Spatial yes/no has only ~500 questions per half, hence the wider margin.
    limits = {("is there", "yes/no"): 0.56, ("spatial", "yes/no"): 0.6,
              ("what size", "other"): 0.56, ("spatial", "other"): 0.31,
              ("what shape", "other"): 0.33, ("what color", "other"): 0.25,
              ("how many", "number"): 0.45}
    assert set(limits) == set(accuracy)
    for form, limit in limits.items():
        assert accuracy[form] <= limit, accuracy


# --- held-out pairs ------------------------------------------------------------------------------


def test_heldout_pairs_never_mentioned_unless_allowed():
    rng = np.random.default_rng(5)
    train = [qa for scene in _scenes(300, seed=5) for qa in generate_questions(scene, rng)]
    compositional = _scenes(300, seed=6, compositional=True)
    closed = [qa for scene in compositional for qa in generate_questions(scene, rng)]
    assert not any(mentions_heldout_pair(qa["question"]) for qa in train + closed)
    opened = [qa for scene in compositional
              for qa in generate_questions(scene, rng, allow_heldout=True)]
    mentioning = [qa for qa in opened if mentions_heldout_pair(qa["question"])]
    assert len(mentioning) >= 0.1 * len(opened)
    is_there = collections.Counter(qa["answer"] for qa in mentioning
                                   if qa["question_type"] == "is there")
    assert is_there["yes"] > 0 and is_there["no"] > 0, is_there


def test_mentions_heldout_pair():
    color, shape = HELDOUT_PAIRS[0]
    assert mentions_heldout_pair(f"is there a small {color} {shape}")
    assert not mentions_heldout_pair(f"is the {color} object above the {shape}")


# --- determinism, errors, human answers ------------------------------------------------------


def test_deterministic():
    scene = _scenes(1, seed=9)[0]
    first = generate_questions(scene, np.random.default_rng(4))
    assert generate_questions(scene, np.random.default_rng(4)) == first
    others = [generate_questions(scene, np.random.default_rng(s)) for s in range(5, 10)]
    assert any(other != first for other in others)


def test_errors_name_the_input():
    scene = _scene(_obj("red", "circle", "small", 0.5, 0.5))
    with pytest.raises(ValueError, match="num_questions is 0; expected an int >= 1"):
        generate_questions(scene, np.random.default_rng(0), num_questions=0)
    with pytest.raises(ValueError, match="could only write .* distinct questions.*num_questions "
                                         "is 200"):
        generate_questions(scene, np.random.default_rng(0), num_questions=200)
    # A lone object still gets six distinct questions.
    assert len(generate_questions(scene, np.random.default_rng(0))) == 6


def _surface_forms(answer):
    """Forms the scheme allows: 'Yes', 'yes.', 'two' for '2', 'a circle' for 'circle'."""
    forms = {answer.capitalize(), answer + "."}
    if answer.isdigit():
        forms.add(["zero", "one", "two", "three", "four"][int(answer)])
    if answer in SHAPES:
        forms.add("a " + answer)
    return forms - {answer}


def test_human_answers_scheme():
    rng = np.random.default_rng(0)
    questions = [qa for scene in _scenes(300, seed=11) for qa in generate_questions(scene, rng)]
    with_wrong, num_variants = 0, collections.Counter()
    for qa in questions:
        answers = human_answers(qa, rng)
        assert len(answers) == 10
        assert answers.count(qa["answer"]) >= 7
        others = [a for a in answers if a != qa["answer"]]
        variants = [a for a in others if a in _surface_forms(qa["answer"])]
        wrong = [a for a in others if a not in variants]
        num_variants[len(variants)] += 1
        assert len(wrong) <= 1
        with_wrong += bool(wrong)
        for a in wrong:
            assert a in _ANSWERS[qa["question_type"]] and a != qa["answer"]
            if qa["answer_type"] == "number":
                assert abs(int(a) - int(qa["answer"])) == 1
    assert set(num_variants) == {0, 1, 2}
    assert 0.05 <= with_wrong / len(questions) <= 0.15
    assert human_answers(questions[0], np.random.default_rng(3), num_answers=4)[0] is not None
    with pytest.raises(ValueError, match="num_answers is 3; expected an int >= 4"):
        human_answers(questions[0], rng, num_answers=3)


def test_human_answers_normalise_to_the_true_answer():
    metrics = pytest.importorskip("vlm_keras.metrics")
    if not hasattr(metrics, "normalize_answer"):
        pytest.skip("metrics.normalize_answer not available")
    rng = np.random.default_rng(1)
    for scene in _scenes(100, seed=12):
        for qa in generate_questions(scene, rng):
            answers = human_answers(qa, rng)
            normalised = [metrics.normalize_answer(a) for a in answers]
            assert normalised.count(qa["answer"]) >= 9
            assert metrics.vqa_accuracy(qa["answer"], answers) == 1.0

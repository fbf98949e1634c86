"""Questions and answers about synthetic scenes (`scenes.py`), for visual question answering.

Six kinds of question, named by their `question_type`, with VQA v2's answer types:

    what color  what color is the circle / what is the color of the large square   other
    what shape  what shape is the red object / what is the shape of the small ...  other
    what size   what size is the red circle / what is the size of the triangle     other
    how many    how many shapes are there / how many red objects are there /       number
                how many crosses are there                         (answer "0".."4")
    is there    is there a circle / is there a red object / is there a blue        yes/no
                triangle / is there a small cross / is there a large green square
    spatial     what is above the red circle                       (answer: a shape) other
                is the red circle to the left of the blue square                   yes/no

Text is lower-case words separated by single spaces, with no punctuation and no "?", like the
captions, so that one tokenizer serves both. Answers are single words: a colour, a shape,
"small"/"large", "yes"/"no", or a count written as a digit, as VQA's normalisation writes it.

Every answer is true of the scene, and every object a question names is the only one that fits
its description ("the circle" only when there is one circle). Relations follow the captions'
dominant-axis rule (`relation`): A is "to the left of" B when A's centre is left of B's and the
horizontal distance is the larger; else A is "above" or "below" B. A pair is asked about only
when one axis clearly dominates (by `_AXIS_RATIO`), as in every two-object caption.

Answers are balanced so that a model blind to the image does little better than chance: yes and
no are drawn 50/50 before the question; counts and sizes are drawn answer-first; colours and
shapes come from an object picked at random, colours thinned to be equally common. Questions
never name a held-out (colour, shape) pair ("red triangle") unless `allow_heldout`.
"""

import itertools

from vlm_keras.data.scenes.scenes import COLORS, HELDOUT_PAIRS, SHAPES, SIZES, check_int

QUESTION_TYPES = ("what color", "what shape", "what size", "how many", "is there", "spatial")
ANSWER_TYPES = ("yes/no", "number", "other")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
# Relation of A to B -> relation of B to A.
RELATIONS = {"above": "below", "below": "above",
             "to the left of": "to the right of", "to the right of": "to the left of"}

# Two-object scenes are sampled with this ratio between the axes, so their captions' relation is
# clear; a pair in a larger scene is asked about only when it is as clear.
_AXIS_RATIO = 1.5
# The spatial "what is above ..." form has 4 answers and the yes/no form 2, so it should be asked
# twice as often for the 6 answers of "spatial" to be equally common. It is possible in about
# 65% of the scenes where the yes/no form is, hence tried 76% of the time (0.76 * 0.65 ~ 2 * 0.24).
_SPATIAL_WHAT_SHARE = 0.76
# Referent descriptions, as the attributes they name; the words come out as size colour shape.
_DESCRIPTIONS = (("shape",), ("color",), ("size",), ("size", "shape"), ("color", "shape"),
                 ("size", "color"), ("size", "color", "shape"))
_IS_THERE_ATTRIBUTES = (("shape",), ("color",), ("color", "shape"), ("size", "shape"),
                        ("size", "color", "shape"))
# Count questions are drawn answer-first. (template, answer): (wanted share among count
# questions, measured share of train scenes that can ask it). A cell is drawn with probability
# proportional to wanted / available and is asked only if the scene has it, so the answers
# asked follow "wanted": "0".."4" each near 1/5 overall, and no template near one answer.
# Colour and shape counts stop at 2: three objects of one colour occur in under 1% of scenes.
_COUNT_TARGETS = {
    ("color", 0): (1.0, 1.0), ("color", 1): (0.8, 0.94), ("color", 2): (0.8, 0.19),
    ("shape", 0): (1.0, 0.99), ("shape", 1): (0.8, 0.9), ("shape", 2): (0.8, 0.26),
    ("total", 1): (0.7, 0.35), ("total", 2): (0.7, 0.35), ("total", 3): (1.6, 0.2),
    ("total", 4): (1.6, 0.094),
}
# Colours with a held-out pair come in 3 shapes, the others in 4, so they are rarer in scenes;
# "what color" keeps a question about a colour with probability 3 / (its number of shapes).
_COLOR_SHAPES = {c: sum((c, s) not in HELDOUT_PAIRS for s in SHAPES) for c in COLORS}
_COLOR_KEEP = {c: min(_COLOR_SHAPES.values()) / n for c, n in _COLOR_SHAPES.items()}
_MAX_FALLBACK_TRIES = 50
_NUMBER_WORDS = ("zero", "one", "two", "three", "four")
_DISAGREE_PROBABILITY = 0.1


def generate_questions(scene, rng, num_questions=6, allow_heldout=False):
    """Writes distinct questions about a scene, with their answers.

    The question types take turns in a random order (with the default 6 questions, each type
    once). A type that cannot ask a balanced, unambiguous question about this scene gives its
    turn to "is there", which always can: e.g. "spatial" needs two objects, and "how many" asks
    only about 1 scene in 4 because its rare answers ("4") must be as common as the others.

    Args:
        scene: a `scenes.Scene`.
        rng: a `np.random.Generator`; the questions are a deterministic function of its state.
        num_questions: how many questions to write.
        allow_heldout: if False, no question mentions a `scenes.HELDOUT_PAIRS` (colour, shape)
            pair ("is there a red triangle"); use True for the "compositional" split, whose
            "is there" questions then name a held-out pair whenever they name a pair: one in
            the scene when the answer is yes, one absent from it when no.

    Returns:
        A list of `num_questions` dicts {"question", "answer", "question_type", "answer_type"},
        distinct questions, in the order asked.

    Raises:
        ValueError: if `num_questions` is not a positive int, or the scene does not allow that
            many distinct questions.
    """
    num_questions = check_int("num_questions", num_questions, 1)
    objects = tuple(scene.objects)
    if not objects:
        raise ValueError("scene has no objects; expected 1 to 4")
    makers = {"what color": _what_color, "what shape": _what_shape, "what size": _what_size,
              "how many": _how_many, "is there": _is_there, "spatial": _spatial}
    order = [QUESTION_TYPES[i] for i in rng.permutation(len(QUESTION_TYPES))]
    questions, asked = [], set()
    for slot in range(num_questions):
        qa = makers[order[slot % len(order)]](objects, rng, allow_heldout)
        if qa is None or qa["question"] in asked:
            qa = _another_is_there(objects, rng, allow_heldout, asked)
        if qa is None:
            raise ValueError(
                f"could only write {len(questions)} distinct questions for this scene; "
                f"num_questions is {num_questions}"
            )
        questions.append(qa)
        asked.add(qa["question"])
    return questions


def human_answers(qa, rng, num_answers=10):
    """Answers of synthetic human annotators to a question, who mostly agree.

    The scheme, all draws from `rng`:

    1. Every answer starts as the true one, `qa["answer"]`.
    2. 0, 1 or 2 of them (equally likely) become a surface form of it: "Yes" or "yes." for
       "yes"; "two" or "2." for "2"; "a circle" or "circle." for a shape; "Red" or "red." for
       the other words. `metrics.normalize_answer` (the official normalisation of predicted
       answers) maps each back to the true answer. The official script normalises human
       answers less (punctuation only), so there "Yes", "two" and "a circle" count as other
       answers; "yes." does not.
    3. With probability 0.1 one more becomes a wrong answer: the other of yes/no or of the
       sizes, a count one away, another colour or another shape.

    With 10 answers at least 7 are the true answer exactly, so it scores 1.0 under either rule;
    the wrong answer, where there is one, scores 0.3.

    Args:
        qa: a dict from `generate_questions`.
        rng: a `np.random.Generator`.
        num_answers: how many answers, at least 4 (VQA v2 has 10).

    Returns:
        A list of `num_answers` strings.
    """
    num_answers = check_int("num_answers", num_answers, 4)
    answer = qa["answer"]
    answers = [answer] * num_answers
    positions = rng.permutation(num_answers)
    num_variants = int(rng.integers(3))
    for position in positions[:num_variants]:
        answers[position] = _pick(_surface_forms(answer), rng)
    if rng.random() < _DISAGREE_PROBABILITY:
        answers[positions[num_variants]] = _pick(_wrong_answers(qa), rng)
    return answers


def relation(a, b):
    """How object `a` lies relative to object `b`, or None if neither axis clearly dominates.

    Args:
        a, b: `scenes.SceneObject`s (y grows downward).

    Returns:
        "above", "below", "to the left of", "to the right of", or None.
    """
    dx, dy = a.x - b.x, a.y - b.y
    if max(abs(dx), abs(dy)) < _AXIS_RATIO * min(abs(dx), abs(dy)) or dx == dy == 0:
        return None
    if abs(dx) > abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def named_objects(question, objects):
    """The objects a question names with "the ...", in the order it names them.

    A name is "the", then attribute words in the order size, colour, shape, ending in a shape or
    "object" ("the small red object", "the circle"); it names an object when exactly one of
    `objects` has every attribute it gives, as the generator's questions always do. "is the red
    circle to the left of the small square" names two objects, "what color is the circle" one,
    "is there a red circle" and "how many circles are there" none.

    Args:
        question: the question's text (lower-case words).
        objects: the scene's `SceneObject`s.

    Returns:
        A list of `objects`' items; a name that fits no object, or several, is left out.
    """
    words = question.split()
    named = []
    for start in (i for i, word in enumerate(words) if word == "the"):
        wanted, end = {}, start + 1
        for attribute, values in (("size", SIZES), ("color", COLORS), ("shape", SHAPES)):
            if end < len(words) and words[end] in values:
                wanted[attribute], end = words[end], end + 1
        if not wanted or ("shape" not in wanted and (end == len(words) or words[end] != "object")):
            continue
        fits = [o for o in objects if all(getattr(o, a) == v for a, v in wanted.items())]
        if len(fits) == 1:
            named.append(fits[0])
    return named


def mentions_heldout_pair(question):
    """True if the text names a held-out pair, e.g. "is there a small red triangle"."""
    words = question.split()
    return any(pair in HELDOUT_PAIRS for pair in zip(words, words[1:]))


def _qa(question, answer, question_type, answer_type):
    return {"question": question, "answer": answer, "question_type": question_type,
            "answer_type": answer_type}


def _pick(items, rng):
    return items[int(rng.integers(len(items)))]


def _phrase(obj, attributes):
    """'the small red object', 'the circle': the object named by the given attributes."""
    words = [getattr(obj, name) for name in ("size", "color", "shape") if name in attributes]
    return "the " + " ".join(words if "shape" in attributes else words + ["object"])


def _referents(obj, objects, avoid, allow_heldout):
    """Phrases naming `obj` and no other object, without the attribute `avoid`."""
    phrases = []
    for attributes in _DESCRIPTIONS:
        if avoid in attributes:
            continue
        if (not allow_heldout and "color" in attributes and "shape" in attributes
                and (obj.color, obj.shape) in HELDOUT_PAIRS):
            continue
        same = [o for o in objects if all(getattr(o, a) == getattr(obj, a) for a in attributes)]
        if len(same) == 1:
            phrases.append(_phrase(obj, attributes))
    return phrases


def _attribute_question(objects, rng, allow_heldout, attribute):
    """'what <attribute> is <referent>' about a random object that can be named without it."""
    if attribute == "size":  # answer first: multi-object scenes hold more small objects
        target = _pick(tuple(SIZES), rng)
        objects_asked = [obj for obj in objects if obj.size == target]
    else:
        objects_asked = objects
    options = [(obj, _referents(obj, objects, attribute, allow_heldout)) for obj in objects_asked]
    options = [(obj, phrases) for obj, phrases in options if phrases]
    if not options:
        return None
    obj, phrases = _pick(options, rng)
    if attribute == "color" and rng.random() >= _COLOR_KEEP[obj.color]:
        return None
    template = _pick((f"what {attribute} is {{}}", f"what is the {attribute} of {{}}"), rng)
    return _qa(template.format(_pick(phrases, rng)), getattr(obj, attribute),
               f"what {attribute}", "other")


def _what_color(objects, rng, allow_heldout):
    return _attribute_question(objects, rng, allow_heldout, "color")


def _what_shape(objects, rng, allow_heldout):
    return _attribute_question(objects, rng, allow_heldout, "shape")


def _what_size(objects, rng, allow_heldout):
    return _attribute_question(objects, rng, allow_heldout, "size")


def _how_many(objects, rng, allow_heldout):
    """A count question whose answer was drawn first from `_COUNT_TARGETS`, or None."""
    cells = list(_COUNT_TARGETS)
    weights = [wanted / available for wanted, available in _COUNT_TARGETS.values()]
    total = sum(weights)
    (template, answer) = cells[int(rng.choice(len(cells), p=[w / total for w in weights]))]
    if template == "total":
        if len(objects) != answer:
            return None
        question = "how many shapes are there"
    else:
        values = tuple(COLORS) if template == "color" else SHAPES
        matching = [v for v in values if sum(getattr(o, template) == v for o in objects) == answer]
        if not matching:
            return None
        value = _pick(matching, rng)
        question = (f"how many {value} objects are there" if template == "color"
                    else f"how many {PLURALS[value]} are there")
    return _qa(question, str(answer), "how many", "number")


def _is_there(objects, rng, allow_heldout, answer=None):
    """'is there a ...' with the answer drawn first (yes or no, 50/50), or None."""
    if answer is None:
        answer = "yes" if rng.random() < 0.5 else "no"
    attributes = _pick(_IS_THERE_ATTRIBUTES, rng)
    values = {"size": tuple(SIZES), "color": tuple(COLORS), "shape": SHAPES}
    everything = list(itertools.product(*(values[name] for name in attributes)))
    present = {tuple(getattr(o, name) for name in attributes) for o in objects}

    def heldout(kind):  # kind: one attribute tuple in `attributes` order
        named = dict(zip(attributes, kind))
        return (named.get("color"), named.get("shape")) in HELDOUT_PAIRS

    if not allow_heldout:
        everything = [kind for kind in everything if not heldout(kind)]
    candidates = [kind for kind in everything if (kind in present) == (answer == "yes")]
    if allow_heldout:
        # Name a held-out pair whenever the template names a pair, for "yes" (the scene's
        # held-out objects) and "no" alike, so that naming one does not give the answer away.
        candidates = [kind for kind in candidates if heldout(kind)] or candidates
    if not candidates:
        return None
    words = list(_pick(candidates, rng)) + ([] if "shape" in attributes else ["object"])
    article = "an" if words[0][0] in "aeiou" else "a"
    return _qa(f"is there {article} {' '.join(words)}", answer, "is there", "yes/no")


def _another_is_there(objects, rng, allow_heldout, asked):
    """An 'is there' question not in `asked`, or None.

    The answer drawn first is kept (so yes stays 50/50) unless the scene has run out of
    distinct questions with that answer, which takes more than 5 per scene.
    """
    first = "yes" if rng.random() < 0.5 else "no"
    for answer in (first, "no" if first == "yes" else "yes"):
        for _ in range(_MAX_FALLBACK_TRIES):
            qa = _is_there(objects, rng, allow_heldout, answer)
            if qa is not None and qa["question"] not in asked:
                return qa
    return None


def _spatial(objects, rng, allow_heldout):
    """'what is <relation> <referent>' (a shape) or 'is <A> <relation> <B>' (yes/no), or None."""
    pairs = [(a, b) for a, b in itertools.permutations(objects, 2) if relation(a, b)]
    if not pairs:
        return None
    ask_what = rng.random() < _SPATIAL_WHAT_SHARE
    a, b = _pick(pairs, rng)
    between = relation(a, b)
    # The answer is a shape, so the referent is named without one: in "what is above the
    # circle" the answer could not be "circle", which a blind model would learn.
    b_phrases = _referents(b, objects, "shape" if ask_what else None, allow_heldout)
    if not b_phrases:
        return None
    if ask_what:
        # `a` must be the only object in that relation to `b`, and every other one clearly not.
        others = [relation(c, b) for c in objects if c is not a and c is not b]
        if any(r is None or r == between for r in others):
            return None
        return _qa(f"what is {between} {_pick(b_phrases, rng)}", a.shape, "spatial", "other")
    a_phrases = _referents(a, objects, None, allow_heldout)
    if not a_phrases:
        return None
    answer = "yes" if rng.random() < 0.5 else "no"
    asked = between if answer == "yes" else RELATIONS[between]
    question = f"is {_pick(a_phrases, rng)} {asked} {_pick(b_phrases, rng)}"
    return _qa(question, answer, "spatial", "yes/no")


def _surface_forms(answer):
    if answer.isdigit():
        return [_NUMBER_WORDS[int(answer)], answer + "."]
    if answer in SHAPES:
        return ["a " + answer, answer + "."]
    return [answer.capitalize(), answer + "."]


def _wrong_answers(qa):
    answer = qa["answer"]
    if qa["answer_type"] == "yes/no":
        return ["no" if answer == "yes" else "yes"]
    if qa["answer_type"] == "number":
        return [str(n) for n in (int(answer) - 1, int(answer) + 1) if 0 <= n <= 4]
    for words in (tuple(SIZES), tuple(COLORS), SHAPES):
        if answer in words:
            return [w for w in words if w != answer]
    raise ValueError(f"answer {answer!r} is not a colour, shape, size, count or yes/no")

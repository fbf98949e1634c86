"""The pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016) on the
synthetic scenes, whose annotations record every object's colour, shape, size and position.

A map *hits* an object when its maximum lies in the object's box grown by the game's margin of
15 pixels at 224 px (`MARGIN`, 6.7% of the side). The maps here are attention over a grid of
regions, so a cell stands at its centre: cell (i, j) of an (h, w) grid is the point
((j + 0.5) / w, (i + 0.5) / h) of the image. When several cells share the maximum, the hit counts
the share of them inside the box (the expected hit of breaking the tie at random), so a uniform
map scores exactly the share of the grid's cells inside the box: the baseline reported next to
every hit rate (`uniform`), which differs between small objects on a coarse grid and large ones on
a fine grid.

What is scored:
- captions (`caption_pointing`): each word that names an object in the image. A caption's object
  phrase is a run of attribute words ("a small red square", "a big blue cross"); it describes the
  object that shares most of its attributes (at least its colour or its shape); of its words, the
  colour and the shape are scored when they are that object's (a "red square" said of the orange
  square scores "square" only). A phrase that fits two objects equally is left out, not guessed.
- questions (`question_pointing`): each question about one object: it names no relation and no
  count, and the attributes it names ("what color is the small square") fit exactly one object.

Every function here is pure: numbers in, numbers out; `Captioner.pointing` and `VQAModel.pointing`
run the models.
"""

import dataclasses

import numpy as np

from vlm_keras.data.scenes.scenes import COLORS, SHAPES

MARGIN = 15 / 224
_SIZE_WORDS = {"small": "small", "little": "small", "large": "large", "big": "large"}
_RELATION_WORDS = frozenset({"above", "below", "left", "right", "many"})


def object_box(obj, margin=MARGIN):
    """(x0, y0, x1, y1), fractions of the side: the box around the circle the object is drawn in
    (the scenes record its centre and that circle's radius), grown by `margin` on every side."""
    reach = obj.radius + margin
    return (obj.x - reach, obj.y - reach, obj.x + reach, obj.y + reach)


def _cell_centres(grid_shape):
    h, w = grid_shape
    return (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w   # rows (y), columns (x)


def _inside(box, grid_shape):
    """(h, w) bool: the cells whose centre lies in `box`."""
    ys, xs = _cell_centres(grid_shape)
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def point_hit(weights, box):
    """Whether the maximum of an (h, w) map lies in `box`: 1.0 or 0.0, or between when several
    cells share the maximum (the share of them inside)."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.size == 0:
        raise ValueError(f"attention map must be (h, w); got shape {weights.shape}")
    peaks = weights >= weights.max() - 1e-12 * max(1.0, abs(weights.max()))
    return float((peaks & _inside(box, weights.shape)).sum() / peaks.sum())


def uniform_share(box, grid_shape):
    """What a uniform map scores on `box`: the share of the grid's cells inside it."""
    return float(_inside(box, grid_shape).mean())


@dataclasses.dataclass
class PointingScore:
    """Sums over the scored words or questions: `hits`, what a uniform map would get (`uniform`),
    how many were scored (`count`) and how many object phrases were left out as ambiguous."""

    hits: float = 0.0
    uniform: float = 0.0
    count: int = 0
    ambiguous: int = 0

    def add(self, weights, obj):
        box = object_box(obj)
        self.hits += point_hit(weights, box)
        self.uniform += uniform_share(box, np.shape(weights))
        self.count += 1

    def report(self, prefix="pointing"):
        """{"<prefix>": hit rate, "<prefix>_uniform": a uniform map's rate, "<prefix>_count"}
        (rates are None when nothing was scored)."""
        rate = (lambda total: total / self.count if self.count else None)
        return {prefix: rate(self.hits), f"{prefix}_uniform": rate(self.uniform),
                f"{prefix}_count": self.count, f"{prefix}_ambiguous": self.ambiguous}


def _attributes(words):
    """{"color", "shape", "size"} named by a run of attribute words."""
    named = {}
    for word in words:
        if word in COLORS:
            named["color"] = word
        elif word in SHAPES:
            named["shape"] = word
        elif word in _SIZE_WORDS:
            named["size"] = _SIZE_WORDS[word]
    return named


def object_phrases(words):
    """The caption's object phrases: [(first word index, [word indices])], each a maximal run of
    colour, shape and size words that holds a colour or a shape."""
    phrases, run = [], []
    for index, word in enumerate(list(words) + [None]):
        if word is not None and (word in COLORS or word in SHAPES or word in _SIZE_WORDS):
            run.append(index)
            continue
        if run and any(words[i] in COLORS or words[i] in SHAPES for i in run):
            phrases.append(run)
        run = []
    return phrases


def _described_object(named, objects):
    """The one object sharing most of `named`'s attributes (at least its colour or shape), or
    None when none does or two tie."""
    def agreement(obj):
        return sum(getattr(obj, key) == value for key, value in named.items())

    candidates = [o for o in objects if o.color == named.get("color") or o.shape == named.get("shape")]
    if not candidates:
        return None
    best = max(agreement(o) for o in candidates)
    top = [o for o in candidates if agreement(o) == best]
    return top[0] if len(top) == 1 else None


def caption_pointing(words, weights, scene, score=None):
    """Adds a caption's words to a `PointingScore` (a new one when `score` is None) and returns it.

    Args:
        words: the generated words.
        weights: (len(words), h, w) attention maps, row t for word t (`Captioner.attention`).
        scene: the image's `Scene`.
    """
    weights = np.asarray(weights)
    if weights.ndim != 3 or len(weights) != len(words):
        raise ValueError(f"weights must be (len(words), h, w) = ({len(words)}, h, w); got shape "
                         f"{weights.shape}")
    score = PointingScore() if score is None else score
    for phrase in object_phrases(words):
        obj = _described_object(_attributes(words[i] for i in phrase), scene.objects)
        if obj is None:
            score.ambiguous += 1
            continue
        for i in phrase:
            if words[i] in (obj.color, obj.shape):
                score.add(weights[i], obj)
    return score


def question_object(question, scene):
    """The one object a question is about, or None (a relation, a count, or a description that
    fits no object or several)."""
    words = question.split()
    if _RELATION_WORDS.intersection(words):
        return None
    named = _attributes(words)
    if not named:
        return None
    fits = [o for o in scene.objects if all(getattr(o, key) == value for key, value in named.items())]
    return fits[0] if len(fits) == 1 else None


def question_pointing(question, weights, scene, score=None):
    """Adds one question's (h, w) map to a `PointingScore` when the question is about one object."""
    score = PointingScore() if score is None else score
    obj = question_object(question, scene)
    if obj is not None:
        score.add(weights, obj)
    return score

"""Synthetic scenes: coloured shapes on a tinted background, each with five reference captions.

The project's offline default dataset. A scene holds 1-4 non-overlapping objects, each a
(colour, shape, size) at a position; captions state the objects and where they are:

    1 object:     "a large red circle in the top left"
    2 objects:    "a small blue square above a large orange cross"
    3-4 objects:  "three shapes a small red circle a large green square and a large purple triangle"
                  (objects listed from left to right)

A few (colour, shape) pairs (`HELDOUT_PAIRS`) never occur in train/val/test; the
"compositional" split uses them, to test whether a model composes attributes it has seen apart.
`shapes_dataset.write_shapes_dataset` writes the splits in COCO captions format.
"""

import dataclasses
import hashlib
import json

import numpy as np
from PIL import Image, ImageDraw

# Saturated and far apart in RGB (closest pair, yellow/orange, is ~100 apart).
COLORS = {
    "red": (215, 25, 35),
    "green": (35, 175, 55),
    "blue": (35, 75, 225),
    "yellow": (245, 225, 30),
    "purple": (150, 50, 210),
    "orange": (255, 130, 0),
}
# Silhouettes that stay distinct at ~12 px (a star blurs into a blob at that size).
SHAPES = ("circle", "square", "triangle", "cross")
# Radius of the circle that each shape is inscribed in, as a fraction of the image side.
SIZES = {"small": 0.12, "large": 0.2}
HELDOUT_PAIRS = (("red", "triangle"), ("green", "circle"), ("blue", "cross"), ("yellow", "square"))
SPLITS = ("train", "val", "test", "compositional")
DATASET_VERSION = "1.0"
MAX_CAPTION_WORDS = 22

_OBJECT_COUNT_PROBS = (0.35, 0.35, 0.2, 0.1)  # P(1), P(2), P(3), P(4) objects
_RADIUS_JITTER = 0.08  # radius = SIZES[size] * U(0.92, 1.08): sizes never overlap
_EDGE_MARGIN = 0.02  # between a shape and the image border
_GAP = 0.04  # between two shapes' circles
_REGION_PAD = 0.03  # keeps a lone object's centre off the 3x3 grid lines
_MIN_X_GAP = 0.08  # 3-4 objects: left-to-right order must be visible
_AXIS_RATIO = 1.5  # 2 objects: the dominant axis must clearly dominate
_MIN_BACKGROUND_DISTANCE = 120  # RGB distance from every shape colour
_SUPERSAMPLE = 4

_SIZE_SYNONYMS = {"small": "little", "large": "big"}
_COUNT_WORDS = {3: "three", 4: "four"}
# (row, col) of the 3x3 grid -> position phrases; the first is canonical.
_POSITIONS = {
    (0, 0): ("in the top left", "in the top left corner", "in the upper left"),
    (0, 1): ("at the top", "near the top"),
    (0, 2): ("in the top right", "in the top right corner", "in the upper right"),
    (1, 0): ("on the left", "on the left side"),
    (1, 1): ("in the center", "in the middle"),
    (1, 2): ("on the right", "on the right side"),
    (2, 0): ("in the bottom left", "in the bottom left corner", "in the lower left"),
    (2, 1): ("at the bottom", "near the bottom"),
    (2, 2): ("in the bottom right", "in the bottom right corner", "in the lower right"),
}
_ONE_OBJECT_FRAMES = (
    "{a} {pos}", "there is {a} {pos}", "an image of {a} {pos}", "a picture with {a} {pos}",
    "{pos} there is {a}", "{a} is {pos}",
)
# {a} is the object above / left of {b}; {rel} reads a -> b and {inv} reads b -> a.
_TWO_OBJECT_FRAMES = (
    "{a} {rel} {b}", "{b} {inv} {a}", "there is {a} {rel} {b}", "there is {b} {inv} {a}",
    "an image of {a} {rel} {b}", "a picture with {b} {inv} {a}", "{a} is {rel} {b}",
)
_MANY_OBJECT_FRAMES = (
    "{count} shapes {list}", "there are {count} shapes {list}", "from left to right {list}",
    "{count} shapes from left to right {list}", "an image of {count} shapes {list}",
    "a picture with {count} objects {list}", "{count} objects from left to right {list}",
)



@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One shape in a scene.

    Args:
        color: a key of `COLORS`.
        shape: one of `SHAPES`.
        size: "small" or "large".
        x: centre, as a fraction of the image side, 0 = left.
        y: centre, as a fraction of the image side, 0 = top.
        radius: radius of the circle the shape is inscribed in, as a fraction of the side.
    """

    color: str
    shape: str
    size: str
    x: float
    y: float
    radius: float

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Builds an object from `to_dict()` output, checking every field."""
        choices = {"color": tuple(COLORS), "shape": SHAPES, "size": tuple(SIZES)}
        for key, allowed in choices.items():
            if d.get(key) not in allowed:
                raise ValueError(f"scene object {key} is {d.get(key)!r}; expected one of {allowed}")
        for key in ("x", "y", "radius"):
            if not isinstance(d.get(key), (int, float)) or not 0 <= d[key] <= 1:
                raise ValueError(
                    f"scene object {key} is {d.get(key)!r}; expected a number in [0, 1]"
                )
        position = (float(d["x"]), float(d["y"]), float(d["radius"]))
        return cls(d["color"], d["shape"], d["size"], *position)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A synthetic scene: objects on a background.

    Args:
        objects: tuple of 1-4 `SceneObject`s, non-overlapping and inside the image.
        background: base background colour (r, g, b), far from every shape colour.
    """

    objects: tuple
    background: tuple

    def to_dict(self):
        return {"background": list(self.background), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, d):
        """Builds a scene from `to_dict()` output."""
        background = d.get("background")
        if not isinstance(background, list) or len(background) != 3:
            raise ValueError(f"scene background is {background!r}; expected [r, g, b]")
        if not isinstance(d.get("objects"), list) or not d["objects"]:
            raise ValueError(f"scene objects is {d.get('objects')!r}; expected a non-empty list")
        objects = tuple(SceneObject.from_dict(o) for o in d["objects"])
        return cls(objects, tuple(int(c) for c in background))


def sample_scene(rng, compositional=False):
    """Samples a random scene.

    Args:
        rng: a `np.random.Generator`; the scene is a deterministic function of its state.
        compositional: if False, no object uses a `HELDOUT_PAIRS` pair; if True, at least one
            does.

    Returns:
        A `Scene` with 1-4 objects (weighted toward 1-2), no two alike in colour, shape and size.
    """
    count = 1 + int(rng.choice(4, p=_OBJECT_COUNT_PROBS))
    background = _sample_background(rng)
    for _ in range(1000):
        attributes = _sample_attributes(rng, count, compositional)
        objects = _place_objects(rng, attributes)
        if objects is not None:
            return Scene(tuple(objects), background)
    raise RuntimeError(f"could not place {count} objects without overlap")  # never in practice


def render_scene(scene, image_size=128, rng=None):
    """Draws a scene as an RGB image.

    Shapes are drawn at `_SUPERSAMPLE` times the resolution and averaged down, so edges are
    anti-aliased. The background gets a gentle gradient and mild noise; shape colours get a
    small jitter.

    Args:
        scene: the `Scene` to draw.
        image_size: side of the square image in pixels.
        rng: a `np.random.Generator` for the background and jitter; if None, one seeded from
            the scene itself, so the same scene always renders the same.

    Returns:
        A `PIL.Image.Image` in mode "RGB", `image_size` x `image_size`.
    """
    if rng is None:
        digest = hashlib.sha256(json.dumps(scene.to_dict(), sort_keys=True).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    background = Image.fromarray(_background_pixels(scene.background, image_size, rng))
    paint = Image.new("RGB", (image_size, image_size))
    big = image_size * _SUPERSAMPLE
    coverage = Image.new("L", (big, big), 0)
    paint_draw, coverage_draw = ImageDraw.Draw(paint), ImageDraw.Draw(coverage)
    for obj in scene.objects:
        jitter = rng.integers(-8, 9, size=3)
        color = tuple(int(c) for c in np.clip(np.array(COLORS[obj.color]) + jitter, 0, 255))
        angle = rng.uniform(-10.0, 10.0)
        # Flat colour on a disc a little larger than the shape; the coverage mask cuts it out.
        cx, cy, r = obj.x * image_size, obj.y * image_size, obj.radius * image_size + 2
        paint_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        _draw_shape(coverage_draw, obj, big, angle)
    # Box-filtering the 4x mask gives each pixel the fraction of it the shape covers.
    coverage = coverage.reduce(_SUPERSAMPLE)
    return Image.composite(paint, background, coverage)


def describe_scene(scene, rng, num_captions=5):
    """Writes distinct reference captions, all true of the scene.

    More than half the captions use the canonical words ("small"/"large", "in the top left");
    the others use synonyms ("little"/"big", "in the upper left") or omit the size where the
    colour and shape alone identify the object. Each caption uses a different frame
    ("there is ...", "an image of ...").

    Args:
        scene: a `Scene` with 1-4 objects.
        rng: a `np.random.Generator`; the captions are a deterministic function of its state.
        num_captions: how many captions to write.

    Returns:
        A list of `num_captions` distinct strings: lower-case words separated by single spaces,
        no punctuation, at most `MAX_CAPTION_WORDS` words.
    """
    count = len(scene.objects)
    if not 1 <= count <= 4:
        raise ValueError(f"scene has {count} objects; expected 1 to 4")
    num_captions = check_int("num_captions", num_captions, 1)
    frames = {1: _ONE_OBJECT_FRAMES, 2: _TWO_OBJECT_FRAMES}.get(count, _MANY_OBJECT_FRAMES)
    order = rng.permutation(len(frames))
    num_canonical = num_captions // 2 + 1
    canonical = np.arange(num_captions) < num_canonical
    rng.shuffle(canonical)
    captions = []
    for i, is_canonical in enumerate(canonical):
        for attempt in range(4 * len(frames)):
            frame = frames[order[(i + attempt) % len(frames)]]
            caption = _caption(scene, frame, bool(is_canonical), rng)
            if caption not in captions and len(caption.split()) <= MAX_CAPTION_WORDS:
                captions.append(caption)
                break
        else:
            raise ValueError(
                f"could only write {len(captions)} distinct captions for this scene; "
                f"num_captions is {num_captions}"
            )
    return captions


def _sample_background(rng):
    for _ in range(100):
        level = rng.uniform(180, 235) if rng.random() < 0.5 else rng.uniform(25, 75)
        color = np.clip(np.round(level + rng.uniform(-15, 15, size=3)), 0, 255)
        distances = [np.linalg.norm(color - np.array(c)) for c in COLORS.values()]
        if min(distances) >= _MIN_BACKGROUND_DISTANCE:
            return tuple(int(c) for c in color)
    raise RuntimeError("could not sample a background colour")  # never in practice


def _sample_attributes(rng, count, compositional):
    """Returns `count` distinct (color, shape, size) triples."""
    all_pairs = [(c, s) for c in COLORS for s in SHAPES]
    pairs = all_pairs if compositional else [p for p in all_pairs if p not in HELDOUT_PAIRS]
    forced = int(rng.integers(count)) if compositional else -1
    attributes = []
    while len(attributes) < count:
        choices = HELDOUT_PAIRS if len(attributes) == forced else pairs
        color, shape = choices[int(rng.integers(len(choices)))]
        size = tuple(SIZES)[int(rng.integers(len(SIZES)))]
        if (color, shape, size) not in attributes:
            attributes.append((color, shape, size))
    return attributes


def _place_objects(rng, attributes):
    """Places the objects, or returns None if this draw does not fit (the caller retries)."""
    radii = [round(float(SIZES[size] * rng.uniform(1 - _RADIUS_JITTER, 1 + _RADIUS_JITTER)), 4)
             for _, _, size in attributes]
    placed = []
    for (color, shape, size), radius in zip(attributes, radii):
        for _ in range(100):
            if len(attributes) == 1:
                x, y = _sample_in_region(rng, radius)
            else:
                x, y = rng.uniform(radius + _EDGE_MARGIN, 1 - radius - _EDGE_MARGIN, size=2)
            x, y = round(float(x), 4), round(float(y), 4)  # short, exact JSON
            candidate = SceneObject(color, shape, size, x, y, radius)
            if _fits(candidate, placed, len(attributes)):
                placed.append(candidate)
                break
        else:
            return None
    return placed


def _sample_in_region(rng, radius):
    """A lone object's centre: a random cell of the 3x3 grid, away from the cell's edges."""
    centre = []
    for cell in rng.integers(3, size=2):
        low = max(cell / 3 + _REGION_PAD, radius + _EDGE_MARGIN)
        high = min((cell + 1) / 3 - _REGION_PAD, 1 - radius - _EDGE_MARGIN)
        centre.append(rng.uniform(low, high))
    return centre


def _fits(candidate, placed, count):
    for other in placed:
        dx, dy = candidate.x - other.x, candidate.y - other.y
        if np.hypot(dx, dy) < candidate.radius + other.radius + _GAP:
            return False
        if count == 2 and max(abs(dx), abs(dy)) < _AXIS_RATIO * min(abs(dx), abs(dy)):
            return False
        if count >= 3 and abs(dx) < _MIN_X_GAP:
            return False
    return True


def _background_pixels(base, size, rng):
    """(size, size, 3) uint8: base colour + a linear gradient in a random direction + noise."""
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(10, 30)
    coords = (np.arange(size) + 0.5) / size - 0.5
    ramp = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]  # (S, S)
    pixels = np.asarray(base, np.float32) + strength * ramp[..., None]  # (S, S, 3)
    pixels += rng.normal(0.0, 3.0, size=(size, size, 3))
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _draw_shape(draw, obj, side, angle_degrees):
    """Fills the object's silhouette (inscribed in its circle) on a `side`-pixel mask."""
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        return
    if obj.shape == "square":
        unit = [(np.cos(t), np.sin(t)) for t in np.radians([45, 135, 225, 315])]
    elif obj.shape == "triangle":  # pointing up (y grows downward)
        unit = [(np.cos(t), np.sin(t)) for t in np.radians([-90, 30, 150])]
    else:  # cross: arms of half-width w, far corners on the unit circle
        a = 1 / np.hypot(1, 0.36)
        w = 0.36 * a
        unit = [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
                (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
    cos, sin = np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))
    points = [(cx + r * (u * cos - v * sin), cy + r * (u * sin + v * cos)) for u, v in unit]
    draw.polygon(points, fill=255)


def _caption(scene, frame, canonical, rng):
    """Fills a caption frame; non-canonical captions use synonyms or drop sizes."""
    style = "canonical" if canonical else ("synonym" if rng.random() < 0.7 else "omitted")
    position = 0
    if len(scene.objects) == 1 and not canonical:
        options = _POSITIONS[_cell(scene.objects[0])]
        position = 1 + int(rng.integers(len(options) - 1))
    return _fill_frame(scene, frame, style, position)


def _cell(obj):
    """(row, col) of the 3x3 grid cell that holds the object's centre."""
    return min(int(obj.y * 3), 2), min(int(obj.x * 3), 2)


def _fill_frame(scene, frame, style, position):
    """A caption: `frame` filled with the scene's objects in `style` ("canonical", "synonym" or
    "omitted": sizes dropped where colour and shape identify the object); a lone object's place
    is the `position`-th phrase of its grid cell (0 is the canonical one)."""
    objects = scene.objects
    kinds = [(o.color, o.shape) for o in objects]

    def phrase(obj):
        if style == "canonical" or (style == "omitted" and kinds.count((obj.color, obj.shape)) > 1):
            words = [obj.size, obj.color, obj.shape]
        elif style == "synonym":
            words = [_SIZE_SYNONYMS[obj.size], obj.color, obj.shape]
        else:
            words = [obj.color, obj.shape]
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)

    if len(objects) == 1:
        return frame.format(a=phrase(objects[0]), pos=_POSITIONS[_cell(objects[0])][position])
    if len(objects) == 2:
        first, second = objects
        if abs(second.x - first.x) > abs(second.y - first.y):
            first, second = sorted(objects, key=lambda o: o.x)
            relation, inverse = "to the left of", "to the right of"
        else:
            first, second = sorted(objects, key=lambda o: o.y)
            relation, inverse = "above", "below"
        return frame.format(a=phrase(first), b=phrase(second), rel=relation, inv=inverse)
    phrases = [phrase(o) for o in sorted(objects, key=lambda o: o.x)]
    listing = " ".join(phrases[:-1]) + " and " + phrases[-1]
    return frame.format(count=_COUNT_WORDS[len(objects)], list=listing)


def possible_captions(scene):
    """Every caption `describe_scene` can write for the scene (any random state): each frame in
    each style, with each of a lone object's position phrases. A caption is *true of* a scene
    when it is in this set; `caption_ambiguity` counts, for a caption, the scenes of a pool it is
    true of (how well posed retrieval is)."""
    count = len(scene.objects)
    frames = {1: _ONE_OBJECT_FRAMES, 2: _TWO_OBJECT_FRAMES}.get(count, _MANY_OBJECT_FRAMES)
    # Canonical captions use a lone object's first position phrase, the others any other one.
    other_positions = range(1, len(_POSITIONS[_cell(scene.objects[0])])) if count == 1 else (0,)
    captions = set()
    for frame in frames:
        captions.add(_fill_frame(scene, frame, "canonical", 0))
        for style in ("synonym", "omitted"):
            for position in other_positions:
                captions.add(_fill_frame(scene, frame, style, position))
    return captions


def caption_ambiguity(captions, scenes):
    """For each caption, how many of `scenes` it is true of (in their `possible_captions`).

    Args:
        captions: caption strings, e.g. every reference of a retrieval pool.
        scenes: the pool's `Scene`s.

    Returns:
        (len(captions),) int array; 1 means the caption singles out one scene of the pool.
    """
    true_of = {}
    for scene in scenes:
        for caption in possible_captions(scene):
            true_of[caption] = true_of.get(caption, 0) + 1
    return np.array([true_of.get(caption, 0) for caption in captions], dtype=np.int64)


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} is {value!r}; expected an int >= {minimum}")
    return int(value)

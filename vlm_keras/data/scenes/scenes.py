"""Synthetic scenes: coloured shapes on a tinted background, each with five reference captions.

The project's offline default dataset. A scene holds 1-4 non-overlapping objects, each a
(colour, shape, size) at a position; `captions.describe_scene` writes what is true of it and
`questions.generate_questions` asks about it.

A few (colour, shape) pairs (`HELDOUT_PAIRS`) never occur in train/val/test; the
"compositional" split uses them, to test whether a model composes attributes it has seen apart.
`dataset.write_scenes_dataset` writes the splits in the COCO captions format.
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
MAX_OBJECTS = 4  # a scene holds 1 to MAX_OBJECTS objects

_OBJECT_COUNT_PROBS = (0.35, 0.35, 0.2, 0.1)  # P(1) .. P(MAX_OBJECTS) objects
_RADIUS_JITTER = 0.08  # radius = SIZES[size] * U(0.92, 1.08): sizes never overlap
_EDGE_MARGIN = 0.02  # between a shape and the image border
_GAP = 0.04  # between two shapes' circles
_REGION_PAD = 0.03  # keeps a lone object's centre off the 3x3 grid lines
_MIN_X_GAP = 0.08  # 3-4 objects: left-to-right order must be visible
_AXIS_RATIO = 1.5  # 2 objects: the dominant axis must clearly dominate
_MIN_BACKGROUND_DISTANCE = 120  # RGB distance from every shape colour
_SUPERSAMPLE = 4

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
    count = 1 + int(rng.choice(MAX_OBJECTS, p=_OBJECT_COUNT_PROBS))
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


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} is {value!r}; expected an int >= {minimum}")
    return int(value)

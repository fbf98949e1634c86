"""Reference captions for the synthetic scenes: a varied grammar, and which captions are true of a scene.

Captions state the objects and where they are:

    1 object:     "a large red circle in the top left"
    2 objects:    "a small blue square above a large orange cross"
    3-4 objects:  "three shapes a small red circle a large green square and a large purple triangle"
                  (objects listed from left to right)
"""

import numpy as np

from vlm_keras.data.scenes.scenes import COLORS, MAX_CAPTION_WORDS, SHAPES, SIZES, check_int, render_scene, sample_scene

_SIZE_SYNONYMS = {"small": "little", "large": "big"}
# The words that name what an object looks like, by attribute: what a grounded captioner reads
# from the attended region (`CaptionerConfig.grounded_words="scenes"`).
VISUAL_WORD_GROUPS = (tuple(COLORS), tuple(SHAPES),
                      tuple(word for size in SIZES for word in (size, _SIZE_SYNONYMS[size])))
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
    return caption_matches(captions, scenes).sum(axis=0, dtype=np.int64)


def caption_matches(captions, scenes):
    """Which captions are true of which scenes: (len(scenes), len(captions)) bools, [i, j] when
    caption j is in `possible_captions(scenes[i])`. Retrieval's `matches`
    (`vlm_keras.metrics.retrieval_ranks`): every image a caption is true of counts as right."""
    column = {}
    for j, caption in enumerate(captions):
        column.setdefault(caption, []).append(j)
    matches = np.zeros((len(scenes), len(captions)), bool)
    for i, scene in enumerate(scenes):
        for caption in possible_captions(scene) & column.keys():
            matches[i, column[caption]] = True
    return matches


def render_example(job):
    """One example of the scenes dataset, from its own random stream (so it is the same whichever
    process makes it): samples the scene, saves its image, writes its captions.

    Args:
        job: (seed, split index, index in the split, compositional, image size, image path).

    Returns:
        (the scene as a dict, its reference captions).
    """
    seed, split_index, index, compositional, image_size, path = job
    rng = np.random.default_rng([seed, split_index, index])
    scene = sample_scene(rng, compositional=compositional)
    render_scene(scene, image_size, rng).save(path)
    return scene.to_dict(), describe_scene(scene, rng)

"""The pointing game on hand-built scenes and maps whose scores can be read off."""

import numpy as np
import pytest

from vlm_keras.data.scenes.scenes import Scene, SceneObject
from vlm_keras.metrics.pointing import (MARGIN, PointingScore, caption_pointing, object_box,
                                        object_phrases, point_hit, question_object, question_pointing,
                                        uniform_share)

# A 4x4 grid: cell centres at 0.125, 0.375, 0.625, 0.875 of the side.
RED_SQUARE = SceneObject("red", "square", "small", x=0.125, y=0.375, radius=0.12)   # covers column 0
BLUE_CIRCLE = SceneObject("blue", "circle", "large", x=0.75, y=0.5, radius=0.2)     # columns 2-3
SCENE = Scene((RED_SQUARE, BLUE_CIRCLE), (200, 200, 200))


def peak(row, col, shape=(4, 4)):
    weights = np.full(shape, 0.01)
    weights[row, col] = 1.0
    return weights / weights.sum()


def test_box_is_the_drawn_circle_grown_by_15_pixels_at_224():
    assert MARGIN == pytest.approx(15 / 224)
    x0, y0, x1, y1 = object_box(RED_SQUARE)
    assert (x0, x1) == pytest.approx((0.125 - 0.12 - MARGIN, 0.125 + 0.12 + MARGIN))
    assert (y0, y1) == pytest.approx((0.375 - 0.12 - MARGIN, 0.375 + 0.12 + MARGIN))


def test_a_map_peaked_on_the_object_scores_1_and_one_peaked_elsewhere_0():
    box = object_box(RED_SQUARE)          # x in [-0.062, 0.312], y in [0.188, 0.562]: cells (1, 0)
    assert point_hit(peak(1, 0), box) == 1.0
    assert point_hit(peak(2, 0), box) == 0.0           # y 0.625: just below the box
    assert point_hit(peak(1, 3), box) == 0.0


def test_a_uniform_map_scores_the_object_s_share_of_the_grid():
    small, large = object_box(RED_SQUARE), object_box(BLUE_CIRCLE)
    # The red square's box holds one cell centre of 16; the blue circle's (x 0.483-1.017,
    # y 0.233-0.767) holds columns 2-3 of rows 1-2: 4 of 16.
    assert uniform_share(small, (4, 4)) == pytest.approx(1 / 16)
    assert uniform_share(large, (4, 4)) == pytest.approx(4 / 16)
    uniform = np.full((4, 4), 1 / 16)
    assert point_hit(uniform, small) == pytest.approx(1 / 16)
    assert point_hit(uniform, large) == pytest.approx(4 / 16)
    # A tie between two cells, one inside: half a hit.
    tied = np.zeros((4, 4))
    tied[1, 0] = tied[3, 3] = 0.5
    assert point_hit(tied, small) == 0.5


def test_object_phrases_are_runs_naming_a_colour_or_shape():
    words = "a small red square to the left of a big blue circle".split()
    assert object_phrases(words) == [[1, 2, 3], [9, 10, 11]]
    assert object_phrases("there are two small things".split()) == []


def test_caption_words_score_on_the_object_they_name():
    words = "a small red square to the left of a big blue circle".split()
    right = np.stack([peak(1, 0) if w in ("red", "square") else peak(2, 3) for w in words])
    wrong = np.stack([peak(2, 3) if w in ("red", "square") else peak(1, 0) for w in words])
    # Scored: red, square (on the red square), blue, circle (on the blue circle); sizes are not.
    assert caption_pointing(words, right, SCENE).report() == {
        "pointing": 1.0, "pointing_uniform": pytest.approx((2 / 16 + 2 * 4 / 16) / 4),
        "pointing_count": 4, "pointing_ambiguous": 0}
    assert caption_pointing(words, wrong, SCENE).report()["pointing"] == 0.0
    uniform = np.full((len(words), 4, 4), 1 / 16)
    report = caption_pointing(words, uniform, SCENE).report()
    assert report["pointing"] == pytest.approx(report["pointing_uniform"])


def test_a_wrong_attribute_is_not_scored_and_a_tie_is_left_out():
    # "red circle" shares its colour with the square and its shape with the circle: left out.
    words = "a red circle".split()
    score = caption_pointing(words, np.stack([peak(1, 0)] * 3), SCENE)
    assert (score.count, score.ambiguous) == (0, 1)
    # "small blue square": the square agrees on size and shape; only "square" is scored.
    words = "a small blue square".split()
    score = caption_pointing(words, np.stack([peak(1, 0)] * 4), SCENE)
    assert (score.count, score.hits) == (1, 1.0)
    # Colours and shapes in no object of the scene name nothing.
    assert caption_pointing("a green cross".split(), np.stack([peak(0, 0)] * 3), SCENE).count == 0


def test_questions_about_one_object():
    assert question_object("what color is the square", SCENE) == RED_SQUARE
    assert question_object("what shape is the large blue object", SCENE) == BLUE_CIRCLE
    assert question_object("is there a small red square", SCENE) == RED_SQUARE
    for about_none in ("what is to the left of the blue circle", "how many red objects are there",
                       "is there a green triangle", "what size is the yellow object", "how many shapes are there"):
        assert question_object(about_none, SCENE) is None, about_none
    two_squares = Scene((RED_SQUARE, SceneObject("blue", "square", "large", 0.75, 0.5, 0.2)), (200, 200, 200))
    assert question_object("what color is the square", two_squares) is None
    score = PointingScore()
    question_pointing("what color is the circle", peak(2, 3), SCENE, score)
    question_pointing("how many shapes are there", peak(0, 0), SCENE, score)
    assert score.report() == {"pointing": 1.0, "pointing_uniform": 0.25, "pointing_count": 1,
                              "pointing_ambiguous": 0}


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        point_hit(np.ones(4), object_box(RED_SQUARE))
    with pytest.raises(ValueError, match="len\\(words\\)"):
        caption_pointing(["a", "red"], np.ones((3, 4, 4)), SCENE)
    assert PointingScore().report()["pointing"] is None

"""benchmarks/retrieval.py's oracle on a hand-made pool: which captions are true of which images,
and the Recall@1 both ways of an oracle that knows it."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

from vlm_keras.data.scenes.captions import caption_ambiguity, caption_matches
from vlm_keras.data.scenes.scenes import Scene, SceneObject

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("retrieval_benchmark", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def _scene(size):
    return Scene(objects=(SceneObject("red", "circle", size, 0.15, 0.15, 0.1),), background=(128, 128, 128))


def test_oracle_prefers_the_captions_true_of_fewest_images():
    # Two scenes alike but for the size: a caption naming the size is true of one of them, one
    # leaving it out of both.
    scenes = [_scene("small"), _scene("large")]
    captions = [["a small red circle in the top left", "a red circle in the upper left"],
                ["a large red circle in the top left", "there is a red circle in the top left corner"]]
    pool = [c for refs in captions for c in refs]
    assert caption_ambiguity(pool, scenes).tolist() == [1, 2, 1, 2]
    # Text -> image: the sized captions find their image, the others one of two: (1 + 0.5 + 1 + 0.5) / 4.
    # Image -> text: each image picks its own sized caption (true of it alone), not one of the three
    # true of it (which would find its own 2 of 3 times).
    assert _module().oracle_image_to_text_r1(caption_matches(pool, scenes), np.array([0, 0, 1, 1])) == 1.0
    assert float((1.0 / caption_ambiguity(pool, scenes)).mean()) == 0.75


def test_oracle_cannot_tell_identical_images_apart():
    scenes = [_scene("small"), _scene("small")]
    captions = [["a small red circle in the top left"], ["a red circle in the upper left"]]
    # Both captions are true of both images: each image picks either caption, its own half the time.
    matches = caption_matches([c for refs in captions for c in refs], scenes)
    assert _module().oracle_image_to_text_r1(matches, np.array([0, 1])) == pytest.approx(0.5)

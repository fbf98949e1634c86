"""benchmarks/caption_pairs.py: which colour-shape pairs a caption names, counted on hand-made scenes."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "caption_pairs.py"


def _module():
    spec = importlib.util.spec_from_file_location("caption_pairs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_named_pairs_are_a_colour_word_then_a_shape_word():
    module = _module()
    assert module.named_pairs("a small Red circle above a big blue square") == [("red", "circle"), ("blue", "square")]
    assert module.named_pairs("three shapes a red and a circle") == []          # not adjacent: no pair


def test_pair_report_counts_named_missed_and_invented_pairs():
    module = _module()
    scenes = [[("red", "triangle"), ("blue", "square")],          # a held-out pair and a seen one
              [("green", "circle")],                               # held out
              [("yellow", "square"), ("purple", "cross")]]         # held out, seen
    captions = ["a red circle above a blue square",                # red kept, shape from training
                "a small purple circle in the center",             # circle kept, colour invented
                "a yellow square and a purple cross"]              # both named
    report = module.pair_report(scenes, captions)
    assert report["heldout_objects"] == 3 and report["heldout_named"] == 1
    assert report["seen_objects"] == 2 and report["seen_named"] == 2
    assert report["heldout_missed"] == {"colour_with_another_shape": 1, "shape_with_another_colour": 1, "neither": 0}
    assert report["pairs_written"] == 5 and report["pairs_not_in_scene"] == 2
    assert report["heldout_pairs_written"] == 1
    # A caption that names nothing misses its held-out object with neither attribute kept.
    assert module.pair_report([[("blue", "cross")]], ["an image"])["heldout_missed"] == {
        "colour_with_another_shape": 0, "shape_with_another_colour": 0, "neither": 1}

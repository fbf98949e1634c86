"""Which colour-shape pairs a captioner names: a test of the language-prior account of its
compositional gap.

    python benchmarks/caption_pairs.py MODEL_DIR [--data DIR] [--splits test,compositional]

MODEL_DIR is a captioner's folder (`train_captioner(out=...)`, the demo's
`saved_models/captioner_model`); DIR a scenes dataset (default: the demo's 6,000 scenes, seed 0).
Every image of each split is captioned greedily. An object of the scene is *named* when the caption
holds its colour word followed by its shape word (the scenes' grammar always writes them so,
"a small red circle"); the split's first reference captions are scored the same way, as a check of
the parser (they name every object they mention).

For the held-out objects the caption does not name (a colour-shape pair no training image has), the
script says what the caption wrote in their place: the object's colour with a shape that no object of
that colour in the scene has ("red circle" for a red triangle): the colour read from the image and the
shape from what followed that colour in training; its shape with a colour no object of that shape
has; or neither. It also counts the pairs written that the scene does not hold.
"""

import argparse
import collections
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from vlm_keras.data.scenes.scenes import COLORS, HELDOUT_PAIRS, SHAPES  # noqa: E402

HELDOUT = set(HELDOUT_PAIRS)


def named_pairs(caption):
    """The (colour, shape) pairs a caption names: a colour word followed by a shape word."""
    words = caption.lower().split()
    return [(a, b) for a, b in zip(words, words[1:]) if a in COLORS and b in SHAPES]


def pair_report(scenes, captions):
    """Counts, over images, how each scene object's pair fares in its image's caption.

    Args:
        scenes: one list of (colour, shape) pairs per image, its objects.
        captions: one caption per image.

    Returns:
        {"heldout_objects", "heldout_named", "seen_objects", "seen_named", "heldout_missed": {
        "colour_with_another_shape", "shape_with_another_colour", "neither"}, "pairs_written",
        "pairs_not_in_scene", "heldout_pairs_written"} as counts.
    """
    counts = collections.Counter()
    missed = collections.Counter()
    for objects, caption in zip(scenes, captions):
        written = named_pairs(caption)
        in_scene = set(objects)
        counts["pairs_written"] += len(written)
        counts["pairs_not_in_scene"] += sum(p not in in_scene for p in written)
        counts["heldout_pairs_written"] += sum(p in HELDOUT for p in written)
        for colour, shape in objects:
            kind = "heldout" if (colour, shape) in HELDOUT else "seen"
            counts[f"{kind}_objects"] += 1
            if (colour, shape) in written:
                counts[f"{kind}_named"] += 1
            elif kind == "heldout":
                colour_kept = any(c == colour and s != shape and (c, s) not in in_scene for c, s in written)
                shape_kept = any(s == shape and c != colour and (c, s) not in in_scene for c, s in written)
                missed["colour_with_another_shape"] += colour_kept
                missed["shape_with_another_colour"] += shape_kept
                missed["neither"] += not (colour_kept or shape_kept)
    return dict(counts, heldout_missed=dict(missed))


def _share(part, whole):
    return f"{part / whole:.3f}" if whole else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--data", help="a scenes dataset folder (default: the demo's, written if missing)")
    parser.add_argument("--splits", default="test,compositional")
    args = parser.parse_args()

    from vlm_keras import load_model
    from vlm_keras.data.formats import coco
    from vlm_keras.data.scenes.dataset import load_scenes
    from vlm_keras.data.sources import resolve_data_dir

    data_dir = pathlib.Path(args.data) if args.data else resolve_data_dir("scenes", num_images=6000, seed=0)
    captioner = load_model(args.model_dir)
    print("| split | captions | held-out objects | named | seen objects | named | held-out missed: colour kept, "
          "shape from training | shape kept | neither | written pairs not in the scene | held-out pairs written |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for split in args.splits.split(","):
        caption_split = coco.load_caption_split(data_dir, split)
        scenes_by_id = load_scenes(data_dir, split)
        scenes = [[(o.color, o.shape) for o in scenes_by_id[i].objects] for i in caption_split.image_ids]
        for who, captions in (("model", captioner.caption(caption_split.image_paths)),
                              ("reference", [refs[0] for refs in caption_split.captions])):
            r = pair_report(scenes, captions)
            m = r["heldout_missed"]
            misses = r.get("heldout_objects", 0) - r.get("heldout_named", 0)
            print(f"| {split} | {who} | {r.get('heldout_objects', 0)} | "
                  f"{_share(r.get('heldout_named', 0), r.get('heldout_objects', 0))} | {r.get('seen_objects', 0)} | "
                  f"{_share(r.get('seen_named', 0), r.get('seen_objects', 0))} | "
                  f"{_share(m.get('colour_with_another_shape', 0), misses)} | "
                  f"{_share(m.get('shape_with_another_colour', 0), misses)} | {_share(m.get('neither', 0), misses)} | "
                  f"{_share(r['pairs_not_in_scene'], r['pairs_written'])} | {r['heldout_pairs_written']} |")
            print(json.dumps({"split": split, "captions": who, **r}), file=sys.stderr)


if __name__ == "__main__":
    main()

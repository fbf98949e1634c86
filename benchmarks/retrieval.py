"""Trains the retrieval dual encoder and prints Recall@1/5/10 both ways and the median rank.

    python benchmarks/retrieval.py [--num-images 10000] [--epochs 10] [--image-size 64]
                                   [--feature-layer block3_pool] [--batch-size 256]
                                   [--poolings attention,flatten,mean] [--no-outline]

The pools: the scenes dataset written with `--num-images 10000` has a test split of 1,000 images
(5,000 captions) and a compositional split of 1,000 images (colour-shape pairs never seen in
training); every image is scored against every caption of its split. Image -> text counts an image
as found at K when any of its 5 captions is in the top K (as COCO and Flickr30k); text -> image has
one right image per caption; ties count against the model.

First it prints how specific the captions are: for each caption, the number of pool images it is
true of (could have been written for; `vlm_keras.data.scenes.captions.possible_captions`), and the
Recall@1 of an oracle that knows exactly which images a caption is true of: text -> image it picks
among them at random, image -> text among the image's true captions that are true of the fewest
images. Then one JSON line per image pooling, then a Markdown table.
"""

import argparse
import json
import tempfile

import numpy as np

from vlm_keras.data.formats import coco
from vlm_keras.data.scenes.captions import caption_matches
from vlm_keras.data.sources import resolve_data_dir
from vlm_keras.data.scenes.dataset import load_scenes
from vlm_keras import train_retrieval

SPLITS = ("test", "compositional")


def caption_specificity(data_dir, split):
    caption_split = coco.load_caption_split(data_dir, split, check_images=False)
    scenes_by_id = load_scenes(data_dir, split)
    scenes = [scenes_by_id[i] for i in caption_split.image_ids]
    matches = caption_matches([c for refs in caption_split.captions for c in refs], scenes)   # (I, C)
    counts = matches.sum(axis=0)                                              # images each caption is true of
    owner = np.repeat(np.arange(len(scenes)), [len(refs) for refs in caption_split.captions])
    return {"split": split, "images": len(caption_split), "captions": len(counts),
            "images_per_caption_median": float(np.median(counts)),
            "images_per_caption_p90": float(np.percentile(counts, 90)),
            "images_per_caption_max": int(counts.max()),
            "captions_true_of_one_image": float(np.mean(counts == 1)),
            "oracle_text_to_image_r1": float(np.mean(1.0 / counts)),
            "oracle_text_to_image_r10": float(np.mean(np.minimum(1.0, 10.0 / counts))),
            "oracle_image_to_text_r1": oracle_image_to_text_r1(matches, owner)}


def oracle_image_to_text_r1(matches, caption_image_index):
    """Image -> text Recall@1 of the oracle that knows which pool captions are true of each image:
    it picks, at random, one of the image's true captions that are true of the fewest pool images
    (the likeliest to have been written for it). An image counts once, found when the pick is one
    of its own captions.

    Args:
        matches: (num_images, num_captions) bools, caption j true of image i
            (`vlm_keras.data.scenes.captions.caption_matches`); an image's own captions are true of it.
        caption_image_index: (num_captions,) ints, the image each caption was written for.
    """
    counts = matches.sum(axis=0)                                              # images each caption is true of
    hits = []
    for i, true in enumerate(matches):
        candidates = np.flatnonzero(true)
        fewest = candidates[counts[candidates] == counts[candidates].min()]
        hits.append(np.mean(caption_image_index[fewest] == i))
    return float(np.mean(hits))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--feature-layer", default="block3_pool")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poolings", default="attention", help="comma-separated: attention, flatten, mean")
    parser.add_argument("--outline", action=argparse.BooleanOptionalAction, default=None,
                        help="the outline stream (default: train_retrieval's, on for attention pooling)")
    args = parser.parse_args()

    data_dir = resolve_data_dir("scenes", num_images=args.num_images, seed=args.seed)
    for split in SPLITS:
        print(json.dumps(dict(caption_specificity(data_dir, split), kind="specificity")), flush=True)

    rows = []
    for pooling in args.poolings.split(","):
        result = train_retrieval(data=str(data_dir), pooling=pooling, epochs=args.epochs,
                                 image_size=args.image_size, feature_layer=args.feature_layer,
                                 batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, num_images=args.num_images,
                                 seed=args.seed, verbose=1, eval_splits=SPLITS, outline=args.outline,
                                 checkpoint_dir=tempfile.mkdtemp(prefix=f"bench_retrieval_{pooling}_"))
        row = dict(pooling=pooling, image_size=args.image_size, feature_layer=args.feature_layer,
                   batch_size=args.batch_size, **result.metrics)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nscenes n={args.num_images} seed {args.seed}, {args.image_size} px, VGG16 weights=None "
          f"{args.feature_layer}, "
          f"{args.epochs} epochs, batch {args.batch_size}; every image of a split against every caption\n")
    print("| image tower | pool | text->image R@1 / R@5 / R@10 | median rank | "
          "image->text R@1 / R@5 / R@10 | median rank | training s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for split in SPLITS:
            print(f"| {r['pooling']} | {split} ({r[f'num_images_{split}']:,} images, "
                  f"{r[f'num_captions_{split}']:,} captions) "
                  f"| {r[f'text_to_image_r1_{split}']:.3f} / {r[f'text_to_image_r5_{split}']:.3f} / "
                  f"{r[f'text_to_image_r10_{split}']:.3f} | {r[f'text_to_image_median_rank_{split}']:g} "
                  f"| {r[f'image_to_text_r1_{split}']:.3f} / {r[f'image_to_text_r5_{split}']:.3f} / "
                  f"{r[f'image_to_text_r10_{split}']:.3f} | {r[f'image_to_text_median_rank_{split}']:g} "
                  f"| {r['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()

"""Trains the VQA models with the same data, epochs and seed; prints the accuracy table.

    python benchmarks/vqa.py [--num-images 12000] [--epochs 12]
                             [--models attention,concat,graph,graph:scene_graph,question_only]

A model is a `train_vqa` model type, optionally with options after "+" (as learning_curves.py's
`--models`: `graph+word_glimpses=2+grounding_loss=1`) and with `:scene_graph`: the same head reading
the scenes' annotated objects instead of the pixels (`visual_input="scene_graph"`, the oracle that
bounds what perception costs).

12,000 scenes (9,600 for training), twice `train_vqa`'s default: with 6,000 the concat model
overfits them (0.91 training accuracy, 0.71 on validation) and scores 0.71 on test.

Official VQA accuracy (leave-one-annotator-out over 10 answers) on the test and compositional
splits, overall and per question type, and for the attention head the pointing game
(`vlm_keras.metrics.pointing`): the share of questions about one object whose glimpse-averaged
attention peaks on it, next to a uniform map's share (for the heads with attention over image
regions), the head's trained parameters and the training seconds. Prints one JSON line per model,
then Markdown tables.
"""

import argparse
import json
import tempfile

import keras

from learning_curves import model_spec
from vlm_keras import train_vqa


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="attention,concat,graph,graph:scene_graph,question_only")
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        spec, _, visual_input = name.partition(":")
        visual_input = visual_input or "image"
        if visual_input not in ("image", "scene_graph"):
            parser.error(f"--models: {name!r}: expected MODEL[+OPTION=VALUE...] or MODEL[+...]:scene_graph")
        model, options = model_spec(spec)
        result = train_vqa(data="scenes", model=model, visual_input=visual_input, epochs=args.epochs,
                           image_size=args.image_size, num_images=args.num_images, seed=args.seed, verbose=1,
                           checkpoint_dir=tempfile.mkdtemp(prefix=f"bench_vqa_{model}_"), **options)
        head = result.head
        row = dict(model=name, params=int(sum(keras.ops.size(w) for w in head.trainable_weights)), **result.metrics)
        if model in ("attention", "graph") and visual_input == "image":
            for split in ("test", "compositional"):
                report = result.pointing("scenes", split, verbose=0, num_images=args.num_images, seed=args.seed)
                row.update({f"{key}_{split}": value for key, value in report.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{args.num_images} scenes images ({args.image_size} px), {args.epochs} epochs, seed {args.seed}, "
          "VGG16 weights=None; official VQA accuracy\n")
    print("| model | test | compositional | pointing game test (uniform map) | questions | parameters | "
          "training s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        pointing = (f"{r['pointing_test']:.3f} ({r['pointing_uniform_test']:.3f}) | {r['pointing_count_test']:,}"
                    if "pointing_test" in r else "n/a | ")
        print(f"| {r['model']} | {r['accuracy_test']:.3f} | {r['accuracy_compositional']:.3f} | {pointing} "
              f"| {r['params']:,} | {r['train_seconds']:.0f} |")
    for split in ("test", "compositional"):
        types = sorted(rows[0][f"per_question_type_{split}"])
        print(f"\nPer question type, {split} split:\n")
        print("| model | " + " | ".join(types) + " |")
        print("|---|" + "---|" * len(types))
        for r in rows:
            per = r[f"per_question_type_{split}"]
            print(f"| {r['model']} | " + " | ".join(f"{per[t]:.3f}" for t in types) + " |")


if __name__ == "__main__":
    main()

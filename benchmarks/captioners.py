"""Trains the three captioners with the same data, epochs and seed, and prints the results table.

    python benchmarks/captioners.py [--num-images 6000] [--epochs 5] [--beam-size 3] [--models lstm,attention,transformer]

For each captioner: BLEU-4 on the test and compositional splits with greedy decoding and with beam
search, training seconds, and milliseconds per caption for greedy and beam decoding (a batch of
64 images, generation only). Prints a Markdown table, then one JSON line per model.
"""

import argparse
import json
import tempfile

from vlm_keras.data.formats import coco
from vlm_keras.data.sources import resolve_data_dir
from vlm_keras import train_captioner


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="lstm,attention,transformer")
    args = parser.parse_args()

    data_dir = resolve_data_dir("scenes", num_images=args.num_images, seed=args.seed)
    splits = {s: coco.load_caption_split(data_dir, s) for s in ("test", "compositional")}
    rows = []
    for model in args.models.split(","):
        result = train_captioner(data=str(data_dir), model=model, epochs=args.epochs,
                                 image_size=args.image_size, seed=args.seed, verbose=1,
                                 checkpoint_dir=tempfile.mkdtemp(prefix=f"bench_{model}_"))
        row = {"model": model, "epochs": args.epochs, "train_seconds": result.metrics["train_seconds"],
               "params": result.decoder.count_params()}
        for split, data in splits.items():
            row[f"bleu4_{split}"] = result.metrics[f"bleu4_{split}"]
            row[f"greedy_ms_{split}"] = result.metrics[f"ms_per_caption_{split}"]
            beam = result.evaluate(data, beam_size=args.beam_size, verbose=0)
            row[f"beam_bleu4_{split}"] = beam["bleu4"]
            row[f"beam_ms_{split}"] = beam["ms_per_caption"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    k = args.beam_size
    print(f"\n{args.num_images} scenes images ({args.image_size} px), {args.epochs} epochs, seed {args.seed}, "
          f"VGG16 weights=None; beam width {k}\n")
    print(f"| captioner | BLEU-4 test (greedy / beam {k}) | BLEU-4 compositional (greedy / beam {k}) "
          f"| training s | greedy ms/caption | beam ms/caption | decoder params |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['bleu4_test']:.3f} / {r['beam_bleu4_test']:.3f} "
              f"| {r['bleu4_compositional']:.3f} / {r['beam_bleu4_compositional']:.3f} "
              f"| {r['train_seconds']:.0f} | {r['greedy_ms_test']:.2f} | {r['beam_ms_test']:.2f} "
              f"| {r['params']:,} |")


if __name__ == "__main__":
    main()

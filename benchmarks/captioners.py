"""Trains the three captioners with the same data, epochs and seed, and prints the results table.

    python benchmarks/captioners.py [--num-images 6000] [--epochs 8] [--beam-size 3] [--models lstm,attention,transformer]
                                    [--feature-layer block3_pool] [--option region_layers=2 ...]
                                    [--compare-selection]

For each captioner, on the test and compositional splits, with greedy decoding and with beam
search: the COCO caption metrics (BLEU-4, CIDEr-D, ROUGE-L as pycocoevalcap computes them;
METEOR when pycocoevalcap and Java are installed), nltk's BLEU-4 (the figure earlier READMEs
quoted), and training seconds; the JSON lines also hold milliseconds per caption (a batch of 64).
For the captioners with attention, the pointing game (`vlm_keras.metrics.pointing`): the share of
generated colour and shape words whose attention peaks on the object they name, next to what a
uniform map would score on the same words.

With --compare-selection each model is trained once with every epoch's weights saved, and the
table compares keeping the epoch of the lowest validation loss with keeping the epoch of the
highest validation CIDEr-D (`checkpoint_metric="val_cider_d"`, as LAVIS selects): the training
is the same, only the epoch kept differs. Prints Markdown tables, then one JSON line per row.
"""

import argparse
import json
import pathlib
import tempfile

import keras
import numpy as np

from vlm_keras import train_captioner
from vlm_keras.config import _model_option
from vlm_keras.data.formats import coco
from vlm_keras.data.sources import resolve_data_dir

SPLITS = ("test", "compositional")


def scores(result, splits, beam_size):
    """{split: {"greedy": evaluate(), "beam": evaluate(beam)}} for a trained captioner."""
    return {split: {"greedy": result.evaluate(data, verbose=0),
                    "beam": result.evaluate(data, beam_size=beam_size, verbose=0)} for split, data in splits.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-layer", default=None,
                        help="the VGG16 layer the captioners read (default: train_captioner's, block3_pool)")
    parser.add_argument("--models", default="lstm,attention,transformer")
    parser.add_argument("--option", action="append", type=_model_option, default=[], metavar="KEY=VALUE",
                        help="a size for the decoder builders, e.g. region_layers=2 (repeat the flag)")
    parser.add_argument("--compare-selection", action="store_true",
                        help="keep the epoch of the lowest val_loss vs the highest val_cider_d")
    args = parser.parse_args()

    data_dir = resolve_data_dir("scenes", num_images=args.num_images, seed=args.seed)
    splits = {s: coco.load_caption_split(data_dir, s) for s in SPLITS}
    rows = []
    for model in args.models.split(","):
        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"bench_{model}_"))
        options = dict(data=str(data_dir), model=model, epochs=args.epochs, image_size=args.image_size, seed=args.seed,
                       verbose=1, eval_splits=(), checkpoint_dir=folder)
        if args.feature_layer:
            options["feature_layer"] = args.feature_layer
        options.update(dict(args.option))
        if args.compare_selection:
            every_epoch = keras.callbacks.ModelCheckpoint(str(folder / "epoch{epoch}.weights.h5"),
                                                          save_weights_only=True)
            result = train_captioner(checkpoint_metric="val_cider_d", callbacks=[every_epoch], **options)
            history = result.history
            picks = {"lowest val_loss": int(np.argmin(history["val_loss"])),
                     "highest val CIDEr-D": int(np.argmax(history["val_cider_d"]))}
            for rule, epoch in picks.items():
                result.decoder.load_weights(folder / f"epoch{epoch + 1}.weights.h5")
                row = {"model": model, "rule": rule, "epoch": epoch + 1,
                       "val_loss": history["val_loss"][epoch], "val_cider_d": history["val_cider_d"][epoch],
                       "scores": scores(result, splits, args.beam_size)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            continue
        result = train_captioner(**options)
        row = {"model": model, "train_seconds": result.metrics["train_seconds"],
               "params": result.decoder.count_params(), "scores": scores(result, splits, args.beam_size)}
        if model != "lstm":
            row["pointing"] = {split: result.pointing(str(data_dir), split, verbose=0) for split in SPLITS}
        rows.append(row)
        print(json.dumps(row), flush=True)

    k = args.beam_size
    print(f"\n{args.num_images} scenes images ({args.image_size} px), {args.epochs} epochs, seed {args.seed}, "
          f"VGG16 weights=None, {args.feature_layer or 'block3_pool'}; beam width {k}; COCO caption metrics "
          "(pycocoevalcap's definitions)\n")
    if args.compare_selection:
        print("| captioner | epoch kept | by | CIDEr-D test (greedy / beam) | BLEU-4 test (greedy / beam) "
              "| CIDEr-D compositional | BLEU-4 compositional |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            t, c = r["scores"]["test"], r["scores"]["compositional"]
            print(f"| {r['model']} | {r['epoch']} | {r['rule']} "
                  f"| {t['greedy']['coco_cider_d']:.3f} / {t['beam']['coco_cider_d']:.3f} "
                  f"| {t['greedy']['coco_bleu4']:.3f} / {t['beam']['coco_bleu4']:.3f} "
                  f"| {c['greedy']['coco_cider_d']:.3f} | {c['greedy']['coco_bleu4']:.3f} |")
        return
    # Decoding speed has its own benchmark (decode_speed.py); the JSON lines above hold these runs' ms.
    print(f"| captioner | split | CIDEr-D (greedy / beam {k}) | BLEU-4 (greedy / beam {k}) | ROUGE-L | METEOR "
          f"| nltk BLEU-4 (old figure) | training s | decoder params |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for split in SPLITS:
            g, b = r["scores"][split]["greedy"], r["scores"][split]["beam"]
            meteor = f"{g['coco_meteor']:.3f}" if "coco_meteor" in g else "n/a"
            print(f"| {r['model']} | {split} | {g['coco_cider_d']:.3f} / {b['coco_cider_d']:.3f} "
                  f"| {g['coco_bleu4']:.3f} / {b['coco_bleu4']:.3f} | {g['coco_rouge_l']:.3f} | {meteor} "
                  f"| {g['nltk_bleu4']:.3f} | {r['train_seconds']:.0f} | {r['params']:,} |")
    pointed = [r for r in rows if "pointing" in r]
    if pointed:
        print("\n| captioner | pointing game test (uniform map) | words | compositional (uniform map) | words |")
        print("|---|---|---|---|---|")
        for r in pointed:
            t, c = r["pointing"]["test"], r["pointing"]["compositional"]
            print(f"| {r['model']} | {t['pointing']:.3f} ({t['pointing_uniform']:.3f}) | {t['pointing_count']:,} "
                  f"| {c['pointing']:.3f} ({c['pointing_uniform']:.3f}) | {c['pointing_count']:,} |")


if __name__ == "__main__":
    main()

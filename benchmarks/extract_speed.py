"""Feature extraction at the CNN's speed: `extract_features` (read, decode, resize, preprocess, VGG16)
against the bare VGG16 forward pass on already-decoded batches of the same size, in one process;
and the opt-in bfloat16 extraction (`feature_precision="mixed_bfloat16"`).

    python benchmarks/extract_speed.py [--images 1200] [--image-size 64] [--batch-size 32] [--bleu]

Prints images per second for both paths in float32 and in bfloat16, the ratios (target: the
pipeline >= 0.85 of the bare forward pass), then one JSON line. With --bleu it also trains the
captioner of the README's table (6,000 scenes, 8 epochs) on float32 and on bfloat16 features and prints both test
scores (COCO BLEU-4 and CIDEr-D).
"""

import argparse
import contextlib
import json
import sys
import time

import numpy as np
import tensorflow as tf

from vlm_keras.data.formats import coco
from vlm_keras.data.sources import resolve_data_dir
from vlm_keras.encoders.features import extract_features, image_dataset
from vlm_keras.encoders.vgg16 import build_image_encoder
from vlm_keras.precision import cpu_supports_bfloat16, dtype_policy


def images_per_second(run, count, repeats):
    best = min(_timed(run) for _ in range(repeats))
    return count / best


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--feature-layer", default="block5_conv3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bleu", action="store_true", help="also train the demo's captioner on both")
    args = parser.parse_args()

    data_dir = resolve_data_dir("scenes", num_images=6000, seed=0, verbose=False)
    paths = coco.load_caption_split(data_dir, "train", check_images=False).image_paths[:args.images]
    encoders = {"float32": build_image_encoder(args.image_size, feature_layer=args.feature_layer)}
    with dtype_policy("mixed_bfloat16"):
        encoders["bfloat16"] = build_image_encoder(args.image_size, feature_layer=args.feature_layer)
    encoders["bfloat16"].set_weights(encoders["float32"].get_weights())
    # The bare forward pass: the same batches, decoded once beforehand.
    batches = [b for b in image_dataset(paths, args.image_size, args.batch_size)]
    row = {"images": len(paths), "image_size": args.image_size, "batch_size": args.batch_size,
           "cpu_bfloat16": cpu_supports_bfloat16()}
    features = {}
    for name, encoder in encoders.items():
        forward = tf.function(lambda x, e=encoder: e(x, training=False), reduce_retracing=True)
        forward(batches[0])
        extract_features(encoder, paths[:args.batch_size], args.image_size, args.batch_size, verbose=0)  # trace
        row[f"{name}_forward_images_per_s"] = images_per_second(
            lambda: [np.asarray(forward(b), np.float32) for b in batches], len(paths), args.repeats)
        row[f"{name}_extract_images_per_s"] = images_per_second(
            lambda: features.__setitem__(name, extract_features(encoder, paths, args.image_size, args.batch_size,
                                                                verbose=0)), len(paths), args.repeats)
        row[f"{name}_pipeline_vs_forward"] = row[f"{name}_extract_images_per_s"] / row[f"{name}_forward_images_per_s"]
    row["bfloat16_speedup"] = row["bfloat16_extract_images_per_s"] / row["float32_extract_images_per_s"]
    scale = np.abs(features["float32"]).mean()
    row["bfloat16_mean_abs_error_relative"] = float(np.abs(features["bfloat16"] - features["float32"]).mean() / scale)

    if args.bleu:
        from vlm_keras import train_captioner

        for name, precision in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
            with contextlib.redirect_stdout(sys.stderr):
                result = train_captioner(data=str(data_dir), epochs=8, seed=0, feature_precision=precision,
                                         eval_splits=("test",), verbose=1)
            row[f"{name}_features_coco_bleu4_test"] = result.metrics["coco_bleu4_test"]
            row[f"{name}_features_coco_cider_d_test"] = result.metrics["coco_cider_d_test"]
            row[f"{name}_features_train_seconds"] = result.metrics["train_seconds"]

    print(f"\n{row['images']} scenes images, {args.image_size} px, batches of {args.batch_size}, VGG16 up to "
          f"{args.feature_layer}; CPU bfloat16 support: {row['cpu_bfloat16']}\n")
    print("| precision | bare forward images/s | extract_features images/s | pipeline / forward |")
    print("|---|---|---|---|")
    for name in encoders:
        print(f"| {name} | {row[f'{name}_forward_images_per_s']:.0f} | {row[f'{name}_extract_images_per_s']:.0f} "
              f"| {row[f'{name}_pipeline_vs_forward']:.2f} |")
    print(f"\nbfloat16 extraction: {row['bfloat16_speedup']:.2f}x float32's, features within "
          f"{row['bfloat16_mean_abs_error_relative']:.2%} (mean absolute difference / mean magnitude)")
    if args.bleu:
        print("| features | COCO BLEU-4 test | CIDEr-D test | training s |\n|---|---|---|---|")
        for name in ("float32", "bfloat16"):
            print(f"| {name} | {row[f'{name}_features_coco_bleu4_test']:.3f} "
                  f"| {row[f'{name}_features_coco_cider_d_test']:.3f} | {row[f'{name}_features_train_seconds']:.0f} |")
    print(json.dumps(row))


if __name__ == "__main__":
    main()

"""Captioner training throughput on cached features, against this process's measured matmul peak.

    python benchmarks/train_speed.py [--types lstm,attention,transformer] [--batch-size 128] [--steps 40]

For each captioner type at the demo's sizes (64 px: a 4x4x512 grid, 51 words, captions padded to
24 tokens): real tokens trained per second through `train_captioner`'s own pipeline
(`pipeline.caption_dataset` + `fit`), through the bare compiled train step on a batch already in
memory, and the time one epoch spends outside the steps (fit() set-up, checkpoints and the
backup). The model FLOPs per token follow the field's 6N rule (6 x the weights applied per token,
plus the per-caption work spread over its tokens; attention scores added), so

    model FLOP/s utilisation = 6N x tokens/s / the peak of a large float32 matmul in this process,

a ratio that holds across machines. Prints a table, then one JSON line per type.
"""

import argparse
import json
import pathlib
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.captioning.losses import MaskedTokenAccuracy, caption_loss
from vlm_keras.captioning.models import build_caption_decoder
from vlm_keras.config import CAPTIONER_TYPES
from vlm_keras.data import pipeline
from vlm_keras.distribute import get_strategy
from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.fit import resumable_fit

VOCAB, MAX_LENGTH = 51, 22
GRID = (8, 8, 256)  # VGG16's block3_pool at 64 px (the default); --grid 4,4,512 is block5_conv3
# Decoder layers applied once per caption (the image side); all others run once per token.
PER_CAPTION = ("image_projection", "initial_h", "initial_c", "regions")


def matmul_peak(size=2048, repeats=10):
    """FLOP/s of a float32 (size x size) @ (size x size) matmul, the best of `repeats`."""
    a = tf.random.normal((size, size))
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()
    best = min(_timed(lambda: matmul(a).numpy()) for _ in range(repeats))
    return 2 * size ** 3 / best


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def forward_flops_per_token(decoder, tokens_per_caption):
    """2 x the weights a token passes through, plus the per-caption weights spread over its tokens,
    plus the attention scores (a forward pass; training is 3 times this)."""
    flops = 0.0
    regions = GRID[0] * GRID[1]
    for layer in decoder.layers:
        if layer.name == "region_encoder":
            # Its convolutions run once per caption, at every cell of their output grid.
            for conv in (sub for sub in layer.layers if isinstance(sub, keras.layers.Conv2D)):
                cells = int(np.prod(conv.output.shape[1:3]))
                flops += 2 * int(np.prod(conv.kernel.shape)) * cells / tokens_per_caption
            regions = int(np.prod(layer.output.shape[1:3]))      # what the attention reads
            continue
        if layer.name in ("token_embedding", "feature_normalization") or not layer.weights:
            continue
        size = sum(int(np.prod(w.shape)) for w in layer.trainable_weights if "kernel" in w.path)
        if layer.name.startswith(PER_CAPTION):
            applications = regions if layer.name == "regions" else 1
            flops += 2 * size * applications / tokens_per_caption
        elif layer.name.startswith("decoder_block"):
            # Self-attention and FFN weights per token; the cross-attention keys and values per region.
            cross = sum(int(np.prod(w.shape)) for w in layer.trainable_weights
                        if "cross_attention" in w.path and ("/key/" in w.path or "/value/" in w.path)
                        and "kernel" in w.path)
            flops += 2 * (size - cross) + 2 * cross * regions / tokens_per_caption
            width = layer.num_heads * layer.key_dim
            flops += 4 * width * (tokens_per_caption / 2 + regions)  # scores and weighted sums
        else:
            flops += 2 * size
    if any(layer.name == "region_attention" for layer in decoder.layers):
        attention_dim = decoder.get_layer("attention_query").units
        flops += 4 * attention_dim * regions
    return flops


def main():
    global GRID, VOCAB, MAX_LENGTH
    parser = argparse.ArgumentParser()
    parser.add_argument("--types", default=",".join(CAPTIONER_TYPES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    parser.add_argument("--grid", default="8,8,256", help="the feature grid (h,w,c)")
    parser.add_argument("--vocab", type=int, default=VOCAB, help="vocabulary size (COCO: about 10,000)")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH, help="words per caption at most")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                        help="the decoder's dtype policy while training")
    args = parser.parse_args()
    GRID, VOCAB, MAX_LENGTH = tuple(int(x) for x in args.grid.split(",")), args.vocab, args.max_length

    peak = matmul_peak()
    rng = np.random.default_rng(0)
    images = 2 * args.batch_size
    features = tf.constant(rng.normal(size=(images, *GRID)).astype("float32"))
    # Caption lengths spread like the scenes' (5 to 22 words), padded to 22 + 2 tokens.
    examples = args.steps * args.batch_size
    lengths = rng.integers(5, MAX_LENGTH + 1, size=examples)
    ids = np.zeros((examples, MAX_LENGTH + 2), np.int32)
    for i, length in enumerate(lengths):
        ids[i, 0], ids[i, 1:length + 1], ids[i, length + 1] = 2, rng.integers(4, VOCAB, size=length), 3
    image_index = rng.integers(0, images, size=examples).astype(np.int32)
    real_tokens = int((ids[:, 1:] != 0).sum())
    rows = []
    for model_type in args.types.split(","):
        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_dtype_policy(args.precision)
        decoder = build_caption_decoder(model_type, VOCAB, GRID, MAX_LENGTH)
        adapt_region_encoder(decoder, features)
        decoder.compile(optimizer=keras.optimizers.Adam(1e-3), loss=caption_loss(), metrics=[MaskedTokenAccuracy()])
        batches = lambda epoch, skip: pipeline.caption_dataset(features, image_index, ids, args.batch_size,  # noqa: E731
                                                                seed=0, epoch=epoch, skip=skip)
        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"train_speed_{model_type}_"))
        # Epoch 1 traces; epochs 2-3 are timed as train_captioner runs them (checkpoints, backup, logs).
        resumable_fit(decoder, batches, None, 1, folder, strategy=get_strategy("default"), verbose=0)
        start = time.perf_counter()
        resumable_fit(decoder, batches, None, 3, folder, strategy=get_strategy("default"), verbose=0)
        fit_seconds = (time.perf_counter() - start) / 2
        # The bare compiled step, on one batch already in memory.
        x, y = next(iter(batches(0, 0)))
        step = decoder.make_train_function()
        iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
        step(iterator)
        step_seconds = min(_timed(lambda: [step(iterator) for _ in range(5)]) for _ in range(3)) / 5
        tokens_per_caption = ids.shape[1] - 1
        flops = 3 * forward_flops_per_token(decoder, tokens_per_caption)   # per padded position
        padded_per_second = args.batch_size * tokens_per_caption / step_seconds
        row = {"type": model_type, "batch_size": args.batch_size, "params": decoder.count_params(),
               "tokens_per_s_fit": real_tokens / fit_seconds,
               "tokens_per_s_step": real_tokens / (args.steps * step_seconds),
               "epoch_s": fit_seconds, "steps_s": args.steps * step_seconds,
               "outside_steps_s": fit_seconds - args.steps * step_seconds,
               "train_flops_per_position": flops, "achieved_flops": flops * padded_per_second,
               "matmul_peak_flops": peak, "utilisation": flops * padded_per_second / peak}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nfloat32 matmul peak in this process: {peak / 1e9:.0f} GFLOP/s; batch {args.batch_size}; "
          f"{args.steps} steps per epoch; {real_tokens / examples:.1f} real tokens per caption of {MAX_LENGTH + 1} "
          f"positions; grid {GRID}, {VOCAB} words\n")
    print("| captioner | tokens/s (train_captioner's loop) | tokens/s (bare step) | s per epoch outside the steps "
          "| training GFLOP/s | share of the matmul peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['tokens_per_s_fit']:,.0f} | {r['tokens_per_s_step']:,.0f} "
              f"| {r['outside_steps_s']:.2f} of {r['epoch_s']:.2f} | {r['achieved_flops'] / 1e9:.1f} "
              f"| {r['utilisation']:.1%} |")


if __name__ == "__main__":
    main()

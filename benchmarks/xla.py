"""XLA (`jit_compile=True`) against plain graph mode for caption generation and training steps.

    python benchmarks/xla.py [--batch 64] [--repeats 5]

Freshly initialised decoders of the demo's sizes (LSTM, attention, Transformer) over a 4x4x512
grid: greedy decoding and beam search (width 3) run all 23 steps, and a teacher-forced training
step. Prints one JSON line per (decoder, task) with milliseconds per batch, best of --repeats,
and the compile time of each mode. `Captioner.jit_compile` and `train_*(jit_compile=...)` take
their defaults from these figures.
"""

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.captioning.decoding import beam_search, greedy_decode
from vlm_keras.captioning.losses import caption_loss
from vlm_keras.captioning.models import build_caption_decoder
from vlm_keras.config import CAPTIONER_TYPES
from vlm_keras.encoders.regions import adapt_region_encoder

VOCAB, STEPS, GRID = 51, 23, (4, 4, 512)


def best_ms(fn, repeats):
    start = time.perf_counter()
    fn()  # trace + compile
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times), first


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--types", default=",".join(CAPTIONER_TYPES))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(args.batch, *GRID)).astype("float32"))
    tokens = tf.constant(rng.integers(4, VOCAB, size=(args.batch, STEPS)).astype("int32"))
    for model_type in args.types.split(","):
        decoder = build_caption_decoder(model_type, VOCAB, GRID, STEPS - 1)
        adapt_region_encoder(decoder, features.numpy())
        optimizer = keras.optimizers.Adam(1e-3)
        loss_fn = caption_loss()

        def train_step():
            with tf.GradientTape() as tape:
                logits = decoder([features, tokens[:, :-1]], training=True)
                loss = loss_fn(tokens[:, 1:], logits)
            grads = tape.gradient(loss, decoder.trainable_variables)
            optimizer.apply_gradients(zip(grads, decoder.trainable_variables))
            return loss

        tasks = {"greedy": lambda: greedy_decode(decoder, features, STEPS),
                 "beam3": lambda: beam_search(decoder, features, STEPS, beam_size=3),
                 "train_step": train_step}
        for task, body in tasks.items():
            row = {"decoder": model_type, "task": task, "batch": args.batch}
            for mode, jit in (("graph", False), ("xla", True)):
                fn = tf.function(body, jit_compile=jit)
                try:
                    ms, first = best_ms(lambda: tf.nest.map_structure(np.asarray, fn()), args.repeats)
                    row[f"{mode}_ms"], row[f"{mode}_first_call_s"] = round(ms, 2), round(first, 2)
                except (tf.errors.OpError, ValueError, TypeError) as e:
                    row[f"{mode}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            if "graph_ms" in row and "xla_ms" in row:
                row["xla_speedup"] = round(row["graph_ms"] / row["xla_ms"], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

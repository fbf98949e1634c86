"""Greedy decoding speed: the in-graph loop (vlm_keras.captioning.decoding) vs a Python loop calling predict.

    python benchmarks/decode_speed.py [--model MODEL_DIR] [--batch 64] [--steps 23]

With --model it times a trained captioner's decoder; without, a freshly initialised decoder of
the demo's size (then both loops run all --steps steps). Prints one JSON object.
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

from vlm_keras.data.text import END_ID, START_ID
from vlm_keras.captioning.decoding import greedy_decode


def python_loop_greedy(decoder, features, steps):
    """The naive way: one Keras predict() per generated word."""
    tokens = np.full((len(features), 1), START_ID, np.int32)
    finished = np.zeros(len(features), bool)
    for _ in range(steps):  # stops early like the graph loop, once every caption has ended
        logits = decoder.predict([features, tokens], verbose=0)[:, -1]
        next_id = np.argmax(logits, -1).astype(np.int32)
        tokens = np.concatenate([tokens, next_id[:, None]], axis=1)
        finished |= next_id == END_ID
        if finished.all():
            break
    return tokens[:, 1:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=23)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    if args.model:
        from vlm_keras.captioning import Captioner

        captioner = Captioner.load(args.model)
        decoder, steps = captioner.decoder, captioner.max_steps
    else:
        from vlm_keras.captioning.models import build_lstm_decoder

        decoder, steps = build_lstm_decoder(51, (2, 2, 512)), args.steps
        decoder.get_layer("feature_normalization").adapt(np.random.rand(16, 2, 2, 512).astype("float32"))
    features = np.random.rand(args.batch, *decoder.input_shape[0][1:]).astype("float32")

    graph = tf.function(lambda f: greedy_decode(decoder, f, steps))
    graph(tf.constant(features))  # trace
    timings = {"graph": [], "python_predict_loop": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        graph(tf.constant(features))[0].numpy()
        timings["graph"].append(time.perf_counter() - start)
        start = time.perf_counter()
        python_loop_greedy(decoder, features, steps)
        timings["python_predict_loop"].append(time.perf_counter() - start)
    ms = {k: 1000 * min(v) / args.batch for k, v in timings.items()}
    print(json.dumps({"batch": args.batch, "max_steps": steps,
                      "graph_ms_per_caption": round(ms["graph"], 3),
                      "python_loop_ms_per_caption": round(ms["python_predict_loop"], 3),
                      "speedup": round(ms["python_predict_loop"] / ms["graph"], 1)}))


if __name__ == "__main__":
    main()

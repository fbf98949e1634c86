"""Caption generation speed: a Python loop calling predict per word, the graph loop that re-runs the
whole prefix every word, and the incremental graph loop that carries the decoder's state.

    python benchmarks/decode_speed.py [--models lstm=DIR,attention=DIR,transformer=DIR] [--batches 1,64]

Without --models each captioner type is freshly initialised at the demo's sizes (64 px: block3_pool's 8x8x256
grid, 51 words, 23 steps) with the end token's output bias at -1e4, so that every caption runs all
23 steps (a random decoder would otherwise stop at a random step, and the figures with it); with a
model folder, its trained decoder is timed as it is (generation stops when every caption of the
batch has ended; "steps" is the mean number run). Every method must give the same tokens (checked).
Prints milliseconds per caption (the best of --repeats runs, generation only, after tracing and
compiling), then the ratios the targets are about, for the incremental decoder as `Captioner` runs
it by default (compiled with XLA, `Captioner.jit_compile = "auto"`) and in plain graph mode (the
SavedModel export's, and `jit_compile=False`), then one JSON line per row. The prefix re-run and
the predict loop are the previous decoders, as they ran (graph mode; the prefix grows every step,
a shape XLA would compile anew each time).

Targets (issue 16): incremental >= 10x the prefix re-run at batch 64, >= 60x the predict loop;
beam 3 <= 3x greedy.
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

from vlm_keras.captioning.decoding import beam_search, beam_search_prefix, greedy_decode, greedy_decode_prefix
from vlm_keras.captioning.models import build_caption_decoder
from vlm_keras.config import CAPTIONER_TYPES
from vlm_keras.data.text import END_ID, PAD_ID, START_ID
from vlm_keras.encoders.regions import adapt_region_encoder

DEMO_SIZES = {"vocab_size": 51, "feature_shape": (8, 8, 256), "max_length": 22}


def predict_loop(decoder, features, steps):
    """The naive way: one Keras predict() per generated word (greedy)."""
    tokens = np.full((len(features), 1), START_ID, np.int32)
    finished = np.zeros(len(features), bool)
    for _ in range(steps):
        logits = decoder.predict([features, tokens], verbose=0)[:, -1]
        logits[:, [PAD_ID, START_ID]] = -np.inf  # as the graph loops: padding and <start> are never chosen
        next_id = np.argmax(logits, -1).astype(np.int32)
        next_id[finished] = 0
        tokens = np.concatenate([tokens, next_id[:, None]], axis=1)
        finished |= next_id == END_ID
        if finished.all():
            break
    return tokens[:, 1:]


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def decoder_of(model_type, folder):
    if folder:
        from vlm_keras.captioning import Captioner

        captioner = Captioner.load(folder)
        return captioner.decoder, captioner.max_steps
    sizes = DEMO_SIZES
    decoder = build_caption_decoder(model_type, sizes["vocab_size"], sizes["feature_shape"], sizes["max_length"])
    adapt_region_encoder(decoder, np.random.default_rng(0).random((32, *sizes["feature_shape"]),
                                                                                    dtype=np.float32))
    bias = decoder.get_layer("next_token_logits").bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[END_ID]], [-1e4]))  # never ends: all steps run
    return decoder, sizes["max_length"] + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="", help="type=MODEL_DIR,... (default: fresh decoders)")
    parser.add_argument("--types", default=",".join(CAPTIONER_TYPES))
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folders = dict(item.split("=", 1) for item in args.models.split(",") if item)
    k = args.beam_size
    rows = []
    for model_type in args.types.split(","):
        decoder, steps = decoder_of(model_type, folders.get(model_type))
        for batch in (int(b) for b in args.batches.split(",")):
            features = tf.constant(np.random.default_rng(1).random((batch, *decoder.input_shape[0][1:]),
                                                                   dtype=np.float32))
            functions = {
                "prefix greedy": tf.function(lambda f: greedy_decode_prefix(decoder, f, steps)),
                "incremental greedy": tf.function(lambda f: greedy_decode(decoder, f, steps)),
                "prefix beam": tf.function(lambda f: beam_search_prefix(decoder, f, steps, beam_size=k)),
                "incremental beam": tf.function(lambda f: beam_search(decoder, f, steps, beam_size=k)),
                "incremental greedy XLA": tf.function(lambda f: greedy_decode(decoder, f, steps), jit_compile=True),
                "incremental beam XLA": tf.function(lambda f: beam_search(decoder, f, steps, beam_size=k),
                                                    jit_compile=True),
            }
            row = {"type": model_type, "batch": batch, "max_steps": steps}
            tokens = {}
            for name, function in functions.items():
                function(features)  # trace
                seconds, (out, _) = best_time(lambda: [t.numpy() for t in function(features)], args.repeats)
                row[name] = 1000 * seconds / batch
                tokens[name] = out
            seconds, out = best_time(lambda: predict_loop(decoder, features.numpy(), steps), 1)
            row["predict loop"] = 1000 * seconds / batch
            row["same tokens"] = bool(np.array_equal(tokens["prefix greedy"], tokens["incremental greedy"])
                                      and np.array_equal(tokens["prefix beam"], tokens["incremental beam"])
                                      and np.array_equal(tokens["incremental greedy"], tokens["incremental greedy XLA"])
                                      and np.array_equal(tokens["incremental beam"], tokens["incremental beam XLA"])
                                      and np.array_equal(out[:, :tokens["incremental greedy"].shape[1]],
                                                         tokens["incremental greedy"][:, :out.shape[1]]))
            row["steps"] = float(np.mean(np.sum(tokens["incremental greedy"] != PAD_ID, axis=1)))
            rows.append(row)
            print(json.dumps(row), flush=True)

    print(f"\nms per caption (best of {args.repeats}); beam width {k}; "
          f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'} inter-op threads\n")
    print("| captioner | batch | steps | predict loop | prefix greedy | prefix beam | incremental greedy, graph "
          "| incremental beam, graph | **incremental greedy, XLA** | **incremental beam, XLA** | same tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['batch']} | {r['steps']:.1f} | {r['predict loop']:.2f} | {r['prefix greedy']:.2f} "
              f"| {r['prefix beam']:.2f} | {r['incremental greedy']:.2f} | {r['incremental beam']:.2f} "
              f"| {r['incremental greedy XLA']:.2f} | {r['incremental beam XLA']:.2f} | {r['same tokens']} |")
    print("\nTargets (issue 16, batch 64): incremental >= 10x the prefix re-run, >= 60x the predict loop; "
          "beam 3 <= 3x greedy\n")
    print("| captioner | batch | mode | incremental vs prefix | incremental vs predict | beam 3 / greedy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for mode, suffix in (("XLA (default)", " XLA"), ("graph (export)", "")):
            greedy, beam = r["incremental greedy" + suffix], r["incremental beam" + suffix]
            print(f"| {r['type']} | {r['batch']} | {mode} | {r['prefix greedy'] / greedy:.1f}x "
                  f"| {r['predict loop'] / greedy:.0f}x | {beam / greedy:.2f}x |")


if __name__ == "__main__":
    main()

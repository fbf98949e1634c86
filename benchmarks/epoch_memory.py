"""Process memory over epochs when each epoch makes a new feature dataset, as `train_*` do.

    python benchmarks/epoch_memory.py [--mb 256] [--epochs 6]

Runs twice in fresh processes: features given to `pipeline.grouped_vqa_dataset` as a NumPy array
(a new constant per epoch's dataset, never freed) and as one `tf.Tensor` (what the trainers
pass). Prints one JSON line per run: resident memory (MB) after each epoch.
"""

import argparse
import json
import os
import subprocess
import sys


def resident_mb():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def run(as_tensor, mb, epochs):
    import keras
    import numpy as np
    import tensorflow as tf

    from vlm_keras.data import pipeline

    images = mb * 2**20 // (16 * 16 * 64 * 4)
    features = np.random.default_rng(0).random((images, 16, 16, 64), np.float32)
    if as_tensor:
        features = tf.convert_to_tensor(features)
    tokens = np.ones((images, 6, 5), np.int32)
    answers = np.zeros((images, 6), np.int64)
    model = keras.Sequential([keras.Input((16, 16, 64)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    resident = []
    for epoch in range(epochs):
        ds = pipeline.grouped_vqa_dataset(features, np.arange(images), tokens, answers, 100, epoch=epoch)
        ds = ds.map(lambda x, y, w: (x["image_features"], tf.cast(tf.reduce_sum(y), tf.float32)))
        model.fit(ds, epochs=1, verbose=0)
        resident.append(resident_mb())
    print(json.dumps({"features": "tf.Tensor" if as_tensor else "numpy", "features_mb": mb,
                      "resident_mb_per_epoch": resident}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--child", choices=["numpy", "tensor"])
    args = parser.parse_args()
    if args.child:
        run(args.child == "tensor", args.mb, args.epochs)
        return
    for kind in ("numpy", "tensor"):
        subprocess.run([sys.executable, __file__, "--child", kind, "--mb", str(args.mb),
                        "--epochs", str(args.epochs)], check=True)


if __name__ == "__main__":
    main()

"""Running the frozen encoder: images from files or bytes, and the feature cache.

Training with a frozen encoder runs it once over every image (`extract_features`) and trains the
task head on the cached grid for every epoch: on a CPU this is what makes training fast. Give
the datasets the cache as one `tf.Tensor` (`cached_features`): a NumPy array is copied into a
new constant by each dataset made from it, and those copies are never freed, so a run would grow
by the size of its features every epoch (1.3 GB an epoch for 9,600 VQA images at block2_pool;
`benchmarks/epoch_memory.py`).
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.data.images import read_image_bytes
from vlm_keras.encoders.vgg16 import image_input, image_inputs
from vlm_keras.io import live_progress, log

AUTOTUNE = tf.data.AUTOTUNE


def image_dataset(image_paths, image_size, batch_size=32):
    """Batches of encoder inputs read from files, in order. Files are not validated here."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant([str(p) for p in image_paths], tf.string))
    ds = ds.map(lambda p: image_input(tf.io.read_file(p), image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def load_images(images, image_size):
    """Paths or encoded bytes -> (N, S, S, 3) encoder inputs, each file checked with a clear error."""
    encoded = [bytes(item) if isinstance(item, (bytes, bytearray)) else read_image_bytes(item)
               for item in images]
    if not encoded:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return image_inputs(tf.constant(encoded, tf.string), image_size).numpy()


def extract_features(encoder, image_paths, image_size, batch_size=32, verbose=1, what="images"):
    """Runs the frozen image encoder once over every image: (N, h, w, c) float32 features.

    Every worker of a distributed run computes the whole array locally (no `predict` across
    replicas), so the features line up with the captions on every worker.
    """
    if verbose:
        log(f"Encoding {len(image_paths)} {what} with the image encoder (once; cached for training)")
    if len(image_paths) == 0:
        return np.zeros((0,) + tuple(encoder.output_shape[1:]), np.float32)
    encode = _compiled_encoder(encoder)
    progress = (keras.utils.Progbar(len(image_paths), unit_name="image", verbose=1 if live_progress() else 2)
                if verbose else None)
    parts = []
    for images in image_dataset(image_paths, image_size, batch_size):
        # float32 whatever the policy: a mixed-precision encoder gives float16 / bfloat16
        parts.append(np.asarray(encode(images), np.float32))
        if progress is not None:
            progress.add(len(parts[-1]))
    return np.concatenate(parts)


def cached_features(encoder, image_paths, image_size, verbose=1, what="images"):
    """`extract_features` as one tensor, which every epoch's dataset then shares (see the module
    docstring)."""
    return tf.convert_to_tensor(extract_features(encoder, image_paths, image_size, verbose=verbose,
                                                 what=what))


_COMPILED_ENCODERS = weakref.WeakKeyDictionary()


def _compiled_encoder(encoder):
    """One traced graph per encoder, reused by every call (a new tf.function per call retraces)."""
    if encoder not in _COMPILED_ENCODERS:
        _COMPILED_ENCODERS[encoder] = tf.function(lambda images: encoder(images, training=False),
                                                  reduce_retracing=True)
    return _COMPILED_ENCODERS[encoder]

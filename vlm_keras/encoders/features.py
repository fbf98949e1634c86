"""Running the frozen encoder: images from files or bytes, and the feature cache.

Training with a frozen encoder runs it once over every image (`extract_features`) and trains the
task head on the cached grid for every epoch: on a CPU this is what makes training fast. Give
the datasets the cache as one `tf.Tensor` (`cached_features`): a NumPy array is copied into a
new constant by each dataset made from it, and those copies are never freed, so a run would grow
by the size of its features every epoch (1.3 GB an epoch for 9,600 VQA images at block2_pool;
`benchmarks/epoch_memory.py`).

`cached_features` also remembers what it computed, for the life of the process: a second model
trained on the same images with the same frozen encoder (same weights, layer and image size; the
files unchanged since) reuses the features instead of running VGG16 again. A notebook or a
benchmark that trains several models on one dataset pays for the encoder once. The memory is
bounded (`VLM_KERAS_FEATURE_MEMORY_MB`, default 3072; 0 turns it off); the oldest entries go first.
"""

import collections
import hashlib
import os
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
    """`extract_features` as one tensor, which every epoch's dataset then shares, remembered for
    later runs in this process on the same images and encoder (see the module docstring)."""
    budget = int(os.environ.get("VLM_KERAS_FEATURE_MEMORY_MB", "3072")) * 2 ** 20
    key = _feature_key(encoder, image_paths, image_size) if budget > 0 else None
    if key is not None and key in _REMEMBERED:
        _REMEMBERED.move_to_end(key)
        if verbose:
            log(f"Reusing the features of {len(image_paths)} {what} computed earlier in this process "
                "(same encoder weights, image size and files)")
        return _REMEMBERED[key]
    features = tf.convert_to_tensor(extract_features(encoder, image_paths, image_size, verbose=verbose,
                                                     what=what))
    if key is not None and features.shape.num_elements() * 4 <= budget:
        _REMEMBERED[key] = features
        while sum(t.shape.num_elements() * 4 for t in _REMEMBERED.values()) > budget:
            _REMEMBERED.popitem(last=False)
    return features


_REMEMBERED = collections.OrderedDict()     # key -> (N, h, w, c) float32 tf.Tensor


def _feature_key(encoder, image_paths, image_size):
    """A digest of everything the features depend on: the encoder's weights and output, the image
    size, and each file's path, size and modification time (None when a file cannot be read)."""
    digest = hashlib.sha256()
    digest.update(repr((image_size, tuple(encoder.output_shape), encoder.dtype_policy.name)).encode())
    for weight in encoder.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    for path in image_paths:
        try:
            stat = os.stat(path)
        except OSError:
            return None          # extract_features reports the file
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def forget_features():
    """Empties the process's memory of computed features (`cached_features`)."""
    _REMEMBERED.clear()


_COMPILED_ENCODERS = weakref.WeakKeyDictionary()


def _compiled_encoder(encoder):
    """One traced graph per encoder, reused by every call (a new tf.function per call retraces)."""
    if encoder not in _COMPILED_ENCODERS:
        _COMPILED_ENCODERS[encoder] = tf.function(lambda images: encoder(images, training=False),
                                                  reduce_retracing=True)
    return _COMPILED_ENCODERS[encoder]

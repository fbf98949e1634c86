"""tf.data pipelines: image decoding, feature caching and (image, caption) training examples.

`decode_image` is the only image decoder in the project: training, evaluation, the CLI and the
exported SavedModels all call it, so a served model sees exactly the pixels it was trained on.

The feature datasets (`caption_dataset`, `feature_dataset`, `grouped_vqa_dataset`,
`retrieval_dataset`) are made anew each epoch. Give them the cached features as one `tf.Tensor`
(`tf.convert_to_tensor(features)`, once): a NumPy array is copied into a new constant by each
dataset made from it, and those copies are never freed, so a run would grow by the size of its
features every epoch (1.3 GB an epoch for 9,600 VQA images at block2_pool).
"""

import sys
import weakref

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.data import images as image_checks
from vlm_keras.distribute import shard_by_data

AUTOTUNE = tf.data.AUTOTUNE
# keras.applications.vgg16.preprocess_input ("caffe" mode): BGR order, ImageNet channel means.
VGG16_BGR_MEAN = (103.939, 116.779, 123.68)


def decode_image(image_bytes, image_size):
    """Encoded JPEG/PNG/BMP/GIF bytes (scalar string) -> (S, S, 3) float32, VGG16-preprocessed.

    Grayscale is repeated to three channels, the alpha channel of RGBA is dropped, the first frame
    of a GIF is used, and the image is resized (bilinear, antialiased) to `image_size` square.
    """
    pixels = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)  # (H, W, 3) uint8
    pixels = tf.image.resize(pixels, [image_size, image_size], antialias=True)      # (S, S, 3) float32
    return vgg16_preprocess(pixels)


def vgg16_preprocess(pixels):
    """RGB values in [0, 255] (..., 3) -> BGR with the ImageNet means subtracted."""
    return tf.reverse(pixels, axis=[-1]) - tf.constant(VGG16_BGR_MEAN, tf.float32)


def decode_images(image_bytes, image_size):
    """A batch of encoded images (B,) -> (B, S, S, 3) float32."""
    return tf.map_fn(
        lambda b: decode_image(b, image_size),
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )


def image_dataset(image_paths, image_size, batch_size=32):
    """Batches of decoded images read from files, in order. Files are not validated here."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant([str(p) for p in image_paths], tf.string))
    ds = ds.map(lambda p: decode_image(tf.io.read_file(p), image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def load_images(images, image_size):
    """Paths or encoded bytes -> (N, S, S, 3) float32, each file checked with a clear error first."""
    encoded = []
    for item in images:
        if isinstance(item, (bytes, bytearray)):
            encoded.append(bytes(item))
        else:
            encoded.append(image_checks.read_image_bytes(item))
    if not encoded:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return decode_images(tf.constant(encoded, tf.string), image_size).numpy()


def extract_features(encoder, image_paths, image_size, batch_size=32, verbose=1, what="images"):
    """Runs the frozen image encoder once over every image: (N, h, w, c) float32 features.

    This is the feature cache: training reuses the array for every epoch instead of running
    VGG16 again, which is what makes CPU training of the decoders fast. Every worker of a
    distributed run computes the whole array locally (no `predict` across replicas), so the
    features line up with the captions on every worker.
    """
    if verbose:
        print(f"Encoding {len(image_paths)} {what} with the image encoder (once; cached for training)",
              file=sys.stderr)
    if len(image_paths) == 0:
        return np.zeros((0,) + tuple(encoder.output_shape[1:]), np.float32)
    encode = _compiled_encoder(encoder)
    progress = keras.utils.Progbar(len(image_paths), unit_name="image") if verbose else None
    parts = []
    for images in image_dataset(image_paths, image_size, batch_size):
        # float32 whatever the policy: a mixed-precision encoder gives float16 / bfloat16
        parts.append(np.asarray(encode(images), np.float32))
        if progress is not None:
            progress.add(len(parts[-1]))
    return np.concatenate(parts)


_COMPILED_ENCODERS = weakref.WeakKeyDictionary()


def _compiled_encoder(encoder):
    """One traced graph per encoder, reused by every call (a new tf.function per call retraces)."""
    if encoder not in _COMPILED_ENCODERS:
        _COMPILED_ENCODERS[encoder] = tf.function(lambda images: encoder(images, training=False),
                                                  reduce_retracing=True)
    return _COMPILED_ENCODERS[encoder]


def caption_examples(captions_per_image, tokenizer):
    """Every reference of every image as one training example.

    Returns (image_index (N,), caption_ids (N, max_length + 2)) where image_index points into
    the list of images.
    """
    image_index, texts = [], []
    for i, refs in enumerate(captions_per_image):
        for ref in refs:
            image_index.append(i)
            texts.append(ref)
    ids = tokenizer.encode(tf.constant(texts, tf.string)).numpy()
    return np.asarray(image_index, np.int32), ids


def epoch_batches(ds, num_examples, batch_size, shuffle, seed, epoch, skip, per_example=None):
    """Batches of one epoch whose order depends on (seed, epoch) alone, the first `skip` left out.

    A run resumed after a crash rebuilds epoch `epoch` and skips the steps already taken, so it
    sees the batches the uninterrupted run would have seen. `per_example` maps single examples
    before batching."""
    if shuffle:
        ds = ds.shuffle(num_examples, seed=seed * 100_003 + epoch, reshuffle_each_iteration=False)
    ds = ds.skip(skip * batch_size)  # only the last batch is short, and it is never skipped
    if per_example is not None:
        ds = ds.map(per_example, num_parallel_calls=AUTOTUNE)
    return shard_by_data(ds.batch(batch_size))


def caption_dataset(features, image_index, caption_ids, batch_size, shuffle=True, seed=0, epoch=0, skip=0):
    """Teacher-forcing batches: ({image_features, caption_tokens}, next_tokens).

    caption_tokens are ids[:, :-1] (starting with <start>), next_tokens are ids[:, 1:]; padding
    targets (id 0) are ignored by the loss. `batch_size` is the global batch; see
    `epoch_batches` for `seed`, `epoch` and `skip`.
    """
    features = tf.constant(features)
    ds = tf.data.Dataset.from_tensor_slices((image_index, caption_ids))
    ds = epoch_batches(ds, len(image_index), batch_size, shuffle, seed, epoch, skip)

    def to_example(idx, ids):
        inputs = {"image_features": tf.gather(features, idx), "caption_tokens": ids[:, :-1]}
        return inputs, ids[:, 1:]

    return ds.map(to_example, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def image_caption_dataset(image_paths, image_index, caption_ids, image_size, batch_size, shuffle=True,
                          seed=0, epoch=0, skip=0):
    """Like `caption_dataset` but decodes images every epoch (for fine-tuning the encoder)."""
    paths = tf.constant([str(p) for p in image_paths], tf.string)

    def to_example(idx, ids):
        image = decode_image(tf.io.read_file(tf.gather(paths, idx)), image_size)
        return {"image": image, "caption_tokens": ids[:-1]}, ids[1:]

    ds = tf.data.Dataset.from_tensor_slices((image_index, caption_ids))
    return epoch_batches(ds, len(image_index), batch_size, shuffle, seed, epoch, skip,
                         per_example=to_example).prefetch(AUTOTUNE)


def feature_dataset(features, image_index, token_inputs, targets, batch_size, shuffle=True, seed=0,
                    epoch=0, skip=0):
    """Batches of ({"image_features": features[image_index], **token_inputs}, targets).

    Args:
        features: (M, h, w, c) cached encoder features, a `tf.Tensor` (see the module docstring).
        image_index: (N,) the feature row of each example.
        token_inputs: {input name: (N, T) token ids}, e.g. {"question_tokens": ...}.
        targets: (N,) what the loss compares with.
        batch_size, shuffle, seed, epoch, skip: see `epoch_batches` (`batch_size` is global).
    """
    features = tf.constant(features)
    ds = tf.data.Dataset.from_tensor_slices((image_index, token_inputs, targets))
    ds = epoch_batches(ds, len(image_index), batch_size, shuffle, seed, epoch, skip)

    def to_example(idx, tokens, target):
        return dict(tokens, image_features=tf.gather(features, idx)), target

    return ds.map(to_example, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def group_questions(image_index, question_tokens, answer_ids, questions_per_image=None):
    """Every image's questions side by side, for `vlm_keras.models.vqa.build_grouped_trainer`.

    Args:
        image_index: (N,) the feature row of each question.
        question_tokens: (N, T) token ids.
        answer_ids: (N,) answer class ids; -1 for an answer outside the vocabulary (not trained on).
        questions_per_image: Q, the question slots per image; default: the most any image has.
            Give it to make two splits' groups the same shape.

    Returns:
        (images (G,), tokens (G, Q, T), answers (G, Q)): the G images that have at least one
        question with a known answer, in feature order.
        An image's questions keep their order; empty slots hold padding tokens and answer -1,
        as do questions with an unknown answer.
    """
    image_index, question_tokens, answer_ids = (np.asarray(a) for a in (image_index, question_tokens, answer_ids))
    if not len(image_index) == len(question_tokens) == len(answer_ids):
        raise ValueError(f"{len(image_index)} image indices, {len(question_tokens)} questions and "
                         f"{len(answer_ids)} answers; expected one of each per question")
    known = answer_ids >= 0
    images = np.unique(image_index[known])
    if len(images) == 0:
        raise ValueError("no question has an answer in the answer vocabulary")
    row = np.searchsorted(images, image_index)
    keep = np.isin(image_index, images)
    order = np.argsort(row[keep], kind="stable")
    rows = row[keep][order]
    slot = np.arange(len(rows)) - np.searchsorted(rows, rows)          # position among its image's questions
    slots = slot.max() + 1 if questions_per_image is None else questions_per_image
    if slot.max() >= slots:
        raise ValueError(f"an image has {slot.max() + 1} questions; questions_per_image is {slots}")
    tokens = np.zeros((len(images), slots, question_tokens.shape[1]), question_tokens.dtype)
    answers = np.full((len(images), slots), -1, np.int64)
    tokens[rows, slot] = question_tokens[keep][order]
    answers[rows, slot] = np.where(known, answer_ids, -1)[keep][order]
    return images.astype(np.int32), tokens, answers


def grouped_vqa_dataset(features, images, question_tokens, answer_ids, batch_images, shuffle=True,
                        seed=0, epoch=0, skip=0):
    """Batches of ({image_features (G, h, w, c), question_tokens (G, Q, T)}, answers (G Q,),
    weights (G Q,)) from `group_questions`; a weight is 0 for an empty slot or an unknown answer.

    `batch_images` is the global batch in images (each brings Q questions); see `epoch_batches`.
    """
    features = tf.constant(features)
    ds = tf.data.Dataset.from_tensor_slices((images, question_tokens, answer_ids))
    ds = epoch_batches(ds, len(images), batch_images, shuffle, seed, epoch, skip)

    def to_example(idx, tokens, answers):
        answers = tf.reshape(answers, (-1,))                                       # (G Q,)
        weights = tf.cast(answers >= 0, tf.float32)
        inputs = {"image_features": tf.gather(features, idx), "question_tokens": tokens}
        return inputs, tf.maximum(answers, 0), weights

    return ds.map(to_example, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def retrieval_dataset(features, image_index, caption_ids, batch_size, shuffle=True, seed=0, epoch=0, skip=0):
    """Batches of ({image_features, caption_tokens}, image index): every (image, reference) pair
    once per epoch (`caption_examples`). The image index is the target: the contrastive loss uses
    it so that two captions of one image in a batch are not each other's negatives."""
    return feature_dataset(features, image_index, {"caption_tokens": caption_ids}, image_index,
                           batch_size, shuffle=shuffle, seed=seed, epoch=epoch, skip=skip)

"""tf.data pipelines: the training examples of every task, batched the same way.

The feature datasets (`caption_dataset`, `feature_dataset`, `grouped_vqa_dataset`,
`retrieval_dataset`) are made anew each epoch from cached encoder features; give them the
features as one `tf.Tensor` (see `vlm_keras.encoders.features`). Each epoch's order depends on
(seed, epoch) alone (`epoch_batches`), so a resumed run sees the batches an uninterrupted run
would have seen.
"""

import numpy as np
import tensorflow as tf

from vlm_keras.distribute import shard_by_data

AUTOTUNE = tf.data.AUTOTUNE


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
    return shard_by_data(ds.batch(batch_size)).with_options(_EPOCH_OPTIONS)


# tf.data's autotuner off for the per-epoch datasets (their AUTOTUNE settings then take tf.data's
# defaults: parallelism = the cores). Every epoch's iterator is destroyed when its fit() returns,
# and the destructor waits for the autotuning thread, which on cores busy with training steps took
# 9-11 s after some epochs (the demo lost 30 s to it; py-spy showed fit()'s return blocked in
# IteratorResource::~IteratorResource). These pipelines slice cached arrays: nothing to tune.
_EPOCH_OPTIONS = tf.data.Options()
_EPOCH_OPTIONS.autotune.enabled = False


def caption_dataset(features, image_index, caption_ids, batch_size, shuffle=True, seed=0, epoch=0, skip=0,
                    bucket_by_length=False):
    """Teacher-forcing batches: ({image_features, caption_tokens}, next_tokens).

    caption_tokens are ids[:, :-1] (starting with <start>), next_tokens are ids[:, 1:]; padding
    targets (id 0) are ignored by the loss. `batch_size` is the global batch; see
    `epoch_batches` for `seed`, `epoch` and `skip`. With `bucket_by_length`, each batch holds
    captions of one length (`length_bucketed_order`) and is cut to its longest caption, so the
    decoder runs over fewer padding positions; the loss over the real tokens is the same.
    """
    caption_ids = np.asarray(caption_ids)
    image_index = np.asarray(image_index)
    if bucket_by_length:
        order = length_bucketed_order(np.count_nonzero(caption_ids, axis=1), batch_size, shuffle, seed, epoch)
        image_index, caption_ids, shuffle = image_index[order], caption_ids[order], False
    ds = feature_dataset(features, image_index, {"caption_tokens": caption_ids[:, :-1]}, caption_ids[:, 1:],
                         batch_size, shuffle=shuffle, seed=seed, epoch=epoch, skip=skip)
    return ds.map(_cut_padding, num_parallel_calls=AUTOTUNE) if bucket_by_length else ds


def length_bucketed_order(lengths, batch_size, shuffle=True, seed=0, epoch=0):
    """The order of an epoch's examples such that consecutive `batch_size` blocks are captions of
    (nearly) one length: sorted by length, ties in a (seed, epoch) random order, then the full
    blocks shuffled (the short block, if any, stays last, so `epoch_batches`' skip still counts
    whole batches). The order depends on (seed, epoch) alone, as `epoch_batches`' does."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    full = len(order) // batch_size
    blocks = order[:full * batch_size].reshape(full, batch_size)
    if shuffle:
        blocks = blocks[rng.permutation(full)]
    return np.concatenate([blocks.reshape(-1), order[full * batch_size:]])


def _cut_padding(inputs, targets):
    """A batch cut to its longest caption: (B, T) -> (B, L), L the most real targets of a row."""
    length = tf.reduce_max(tf.reduce_sum(tf.cast(tf.not_equal(targets, 0), tf.int32), axis=1))
    return dict(inputs, caption_tokens=inputs["caption_tokens"][:, :length]), targets[:, :length]


def image_caption_dataset(image_paths, image_index, caption_ids, image_input, batch_size, shuffle=True,
                          seed=0, epoch=0, skip=0):
    """Like `caption_dataset` but decodes images every epoch (for fine-tuning the encoder).

    `image_input(encoded_bytes)` gives the encoder's input for one image (the encoder's own
    preprocessing, e.g. `functools.partial(vgg16.image_input, image_size=64)`).
    """
    paths = tf.constant([str(p) for p in image_paths], tf.string)

    def to_example(idx, ids):
        image = image_input(tf.io.read_file(tf.gather(paths, idx)))
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
    """Every image's questions side by side, for `vlm_keras.vqa.grouped_trainer.build_grouped_trainer`.

    Args:
        image_index: (N,) the feature row of each question.
        question_tokens: (N, T) token ids (or any other per-question array (N, ...), such as the
            word glimpses' referent maps: grouped in the same slots as the tokens).
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
    tokens = np.zeros((len(images), slots, *question_tokens.shape[1:]), question_tokens.dtype)
    answers = np.full((len(images), slots), -1, np.int64)
    tokens[rows, slot] = question_tokens[keep][order]
    answers[rows, slot] = np.where(known, answer_ids, -1)[keep][order]
    return images.astype(np.int32), tokens, answers


def grouped_vqa_dataset(features, images, question_tokens, answer_ids, batch_images, shuffle=True,
                        seed=0, epoch=0, skip=0, image_inputs=None, question_inputs=None):
    """Batches of ({image_features (G, h, w, c), question_tokens (G, Q, T)}, answers (G Q,),
    weights (G Q,)) from `group_questions`; a weight is 0 for an empty slot or an unknown answer.

    `batch_images` is the global batch in images (each brings Q questions); see `epoch_batches`.
    `image_inputs`: {name: (M, ...) array}, more inputs per image, in the features' order (the
    region attribute maps of `build_grouped_trainer(attribute_loss=...)`).
    `question_inputs`: {name: (G, Q, ...) array}, more inputs per question slot, grouped as the
    tokens (the referent maps of `build_grouped_trainer(grounding_loss=...)`).
    """
    features = tf.constant(features)
    extra = {name: tf.constant(value) for name, value in (image_inputs or {}).items()}
    ds = tf.data.Dataset.from_tensor_slices((images, question_tokens, answer_ids, dict(question_inputs or {})))
    ds = epoch_batches(ds, len(images), batch_images, shuffle, seed, epoch, skip)

    def to_example(idx, tokens, answers, per_question):
        answers = tf.reshape(answers, (-1,))                                       # (G Q,)
        weights = tf.cast(answers >= 0, tf.float32)
        inputs = {"image_features": tf.gather(features, idx), "question_tokens": tokens, **per_question}
        inputs.update({name: tf.gather(value, idx) for name, value in extra.items()})
        return inputs, tf.maximum(answers, 0), weights

    return ds.map(to_example, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def retrieval_dataset(features, image_index, caption_ids, batch_size, shuffle=True, seed=0, epoch=0, skip=0,
                      negatives=None):
    """Batches of ({image_features, caption_tokens}, image index): every (image, reference) pair
    once per epoch (`caption_examples`). The image index is the target: the contrastive loss uses
    it so that two captions of one image in a batch are not each other's negatives.

    `negatives`: optional (negative_ids (N, T), has_negative (N,)), a hard negative caption per
    example (`vlm_keras.retrieval.negatives.NegativeCaptions.sample`), batched with it as
    "negative_tokens" and "has_negative"."""
    inputs = {"caption_tokens": caption_ids}
    if negatives is not None:
        negative_ids, has_negative = negatives
        inputs.update(negative_tokens=np.asarray(negative_ids, np.int32),
                      has_negative=np.asarray(has_negative, bool))
    return feature_dataset(features, image_index, inputs, image_index,
                           batch_size, shuffle=shuffle, seed=seed, epoch=epoch, skip=skip)

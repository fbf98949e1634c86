"""The tf.data pipelines."""

import numpy as np
import pytest
import tensorflow as tf

from vlm_keras.data import pipeline
from vlm_keras.data.text import END_ID, START_ID, Tokenizer


def test_every_reference_is_an_example_and_batches_shift_by_one():
    tok = Tokenizer.from_texts(["a red circle", "a blue square", "two shapes"])
    index, ids = pipeline.caption_examples([["a red circle", "a blue square"], ["two shapes"]], tok)
    np.testing.assert_array_equal(index, [0, 0, 1])
    features = np.arange(2 * 2 * 2 * 1, dtype=np.float32).reshape(2, 2, 2, 1)
    (inputs, targets), = pipeline.caption_dataset(features, index, ids, batch_size=8, shuffle=False).take(1)
    np.testing.assert_array_equal(inputs["image_features"].numpy()[2], features[1])
    np.testing.assert_array_equal(inputs["caption_tokens"].numpy(), ids[:, :-1])
    np.testing.assert_array_equal(targets.numpy(), ids[:, 1:])
    assert (inputs["caption_tokens"].numpy()[:, 0] == START_ID).all()
    assert (targets.numpy() == END_ID).sum() == 3


@pytest.mark.parametrize("trainer, dataset_fn", [
    ("train_captioner", "caption_dataset"),
    ("train_vqa", "grouped_vqa_dataset"),
    ("train_retrieval", "retrieval_dataset"),
])
def test_every_epoch_shares_one_features_tensor(shapes_dir, tmp_path, monkeypatch, trainer, dataset_fn):
    # A NumPy array would be copied into a new, never-freed constant by every epoch's dataset
    # (see the pipeline module docstring): the trainers must hand over one tensor.
    import vlm_keras
    from vlm_keras.data.scenes.dataset import write_vqa_dataset

    seen = []
    real = getattr(pipeline, dataset_fn)

    def spy(features, *args, **kwargs):
        if kwargs.get("shuffle", True):
            seen.append(features)
        return real(features, *args, **kwargs)

    monkeypatch.setattr(pipeline, dataset_fn, spy)
    data = write_vqa_dataset(shapes_dir) if trainer == "train_vqa" else shapes_dir
    small = {"train_captioner": {"units": 8, "embed_dim": 8, "num_layers": 1},
             "train_vqa": {"units": 8, "embed_dim": 8, "fusion_dim": 8, "region_filters": 4},
             "train_retrieval": {"embed_dim": 8, "hidden_dim": 8, "attention_dim": 8, "word_dim": 8,
                                 "units": 8}}[trainer]
    getattr(vlm_keras, trainer)(data=str(data), epochs=2, image_size=32, batch_size=32, seed=0, verbose=0,
                                eval_splits=(), checkpoint_dir=tmp_path / "ckpt", **small)
    assert len(seen) == 2
    assert all(isinstance(f, tf.Tensor) for f in seen)
    assert seen[1] is seen[0]


def _captions(lengths, max_words=9):
    """Caption ids of the given word counts: <start> w.. <end>, padded to max_words + 2."""
    ids = np.zeros((len(lengths), max_words + 2), np.int32)
    for row, n in enumerate(lengths):
        ids[row, 0], ids[row, 1:n + 1], ids[row, n + 1] = START_ID, 4 + row % 7, END_ID
    return ids


def test_length_buckets_are_an_epoch_permutation_of_one_length_blocks_fixed_by_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(1, 10, size=203)
    order = pipeline.length_bucketed_order(lengths, 16, seed=3, epoch=1)
    assert sorted(order) == list(range(203))
    blocks = [lengths[order[i:i + 16]] for i in range(0, 192, 16)]
    # Sorted by length, so a block spans at most two adjacent lengths; the short block is last.
    assert all(b.max() - b.min() <= 1 for b in blocks)
    assert lengths[order[192:]].min() == lengths.max()
    np.testing.assert_array_equal(order, pipeline.length_bucketed_order(lengths, 16, seed=3, epoch=1))
    assert not np.array_equal(order, pipeline.length_bucketed_order(lengths, 16, seed=3, epoch=2))


def test_length_bucketed_batches_are_cut_to_their_longest_caption_and_resume_by_skipping():
    lengths = np.random.default_rng(1).integers(1, 10, size=70)
    ids = _captions(lengths)
    features = np.random.default_rng(2).random((70, 1, 1, 2)).astype(np.float32)
    index = np.arange(70, dtype=np.int32)

    def batches(skip=0):
        return [(x["caption_tokens"].numpy(), x["image_features"].numpy(), y.numpy())
                for x, y in pipeline.caption_dataset(features, index, ids, 8, seed=0, epoch=4, skip=skip,
                                                     bucket_by_length=True)]

    full = batches()
    assert sum(len(t) for t, _, _ in full) == 70
    for tokens, image, targets in full:
        rows = [int(np.flatnonzero(np.all(features[:, 0, 0] == f[0, 0], axis=1))[0]) for f in image]
        real = lengths[rows] + 1                               # the words and <end>
        assert tokens.shape[1] == targets.shape[1] == real.max()  # no column of padding alone
        np.testing.assert_array_equal(tokens, ids[rows, :real.max()])
        np.testing.assert_array_equal(targets, ids[rows, 1:real.max() + 1])
    # A resumed epoch sees the batches the uninterrupted one saw.
    for (a, _, _), (b, _, _) in zip(full[3:], batches(skip=3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cutting_the_padding_leaves_the_captioners_loss_unchanged():
    import keras

    from vlm_keras.captioning.losses import caption_loss
    from vlm_keras.captioning.models import build_caption_decoder

    keras.utils.set_random_seed(0)
    ids = _captions([2, 5, 3, 5])
    features = np.random.default_rng(0).random((4, 2, 2, 8)).astype(np.float32)
    for model in ("lstm", "transformer"):
        decoder = build_caption_decoder(model, 16, (2, 2, 8), 9)
        loss = caption_loss()
        padded = loss(ids[:, 1:], decoder([features, ids[:, :-1]]))
        cut = loss(ids[:, 1:7], decoder([features, ids[:, :6]]))
        np.testing.assert_allclose(float(cut), float(padded), rtol=1e-5)


def test_per_epoch_datasets_run_without_the_autotuner():
    """Each epoch's iterator dies when its fit() returns, and with the autotuner on its destructor
    waited seconds for the tuning thread; the per-epoch datasets turn it off."""
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(4, 2, 2, 3)).astype("float32"))
    ids = rng.integers(1, 9, size=(8, 6)).astype("int32")
    index = np.repeat(np.arange(4), 2).astype("int32")
    captions = pipeline.caption_dataset(features, index, ids, 4)
    grouped = pipeline.grouped_vqa_dataset(features, np.arange(4, dtype="int32"), ids.reshape(4, 2, 6),
                                           np.zeros((4, 2), "int64"), 2)
    for ds in (captions, grouped):
        assert ds.options().autotune.enabled is False
        assert sum(1 for _ in ds) == 2

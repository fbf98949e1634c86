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
             "train_vqa": {"units": 8, "embed_dim": 8, "fusion_dim": 8, "conv_filters": 4},
             "train_retrieval": {"embed_dim": 8, "hidden_dim": 8, "attention_dim": 8, "word_dim": 8,
                                 "units": 8}}[trainer]
    getattr(vlm_keras, trainer)(data=str(data), epochs=2, image_size=32, batch_size=32, seed=0, verbose=0,
                                eval_splits=(), checkpoint_dir=tmp_path / "ckpt", **small)
    assert len(seen) == 2
    assert all(isinstance(f, tf.Tensor) for f in seen)
    assert seen[1] is seen[0]

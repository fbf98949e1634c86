"""Retrieval: the towers, a tiny dual encoder that must learn, global-batch negatives under
tf.distribute, train_retrieval, the .keras round trip and the SavedModel in a fresh process."""

import dataclasses
import json
import textwrap

import numpy as np
import pytest

import keras
from vlm_keras.metrics import retrieval_report
from vlm_keras.retrieval.models import (ContrastiveTrainer, adapt_image_tower, build_dual_encoder,
                                        build_image_tower, build_text_tower)
from vlm_keras.retrieval import RetrievalModel

from tests.helpers import run_python

GRID = (2, 2, 8)


def _dual_encoder(pooling="flatten", vocab=20, embed_dim=16):
    keras.utils.set_random_seed(0)
    image_tower = build_image_tower(GRID, embed_dim=embed_dim, pooling=pooling, hidden_dim=32,
                                    attention_dim=16, dropout=0.0)
    text_tower = build_text_tower(vocab, embed_dim=embed_dim, word_dim=8, units=16)
    return build_dual_encoder(image_tower, text_tower, temperature=0.1)


@pytest.mark.parametrize("pooling", ["flatten", "attention", "mean"])
def test_towers_give_unit_vectors_and_the_dual_encoder_all_pairs(pooling):
    dual = _dual_encoder(pooling)
    image_tower, text_tower = dual.get_layer("image_tower"), dual.get_layer("text_tower")
    images = np.random.rand(3, *GRID).astype("float32")
    tokens = np.array([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]], "int32")
    image_embeddings, text_embeddings = np.asarray(image_tower(images)), np.asarray(text_tower(tokens))
    assert image_embeddings.shape == (3, 16) and text_embeddings.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(image_embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_embeddings, axis=1), 1.0, atol=1e-5)
    logits = np.asarray(dual([images, tokens]))                                    # (3, 2)
    np.testing.assert_allclose(logits, 10.0 * image_embeddings @ text_embeddings.T, rtol=1e-4, atol=1e-5)
    # Padding is masked: trailing zeros do not change a text's embedding.
    np.testing.assert_allclose(text_tower(tokens[:1, :4]), text_embeddings[:1], atol=1e-5)


def test_the_word_bag_adds_the_projected_mean_of_the_real_words():
    keras.utils.set_random_seed(0)
    tower = build_text_tower(12, embed_dim=4, word_dim=3, units=5, word_bag=True)
    tokens = np.array([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]], "int32")
    table = tower.get_layer("word_embedding").embeddings.numpy()
    bag = np.stack([table[row[row != 0]].mean(axis=0) for row in tokens])          # padding left out, by hand
    dense = tower.get_layer("word_bag_projection")
    expected_bag = bag @ dense.kernel.numpy() + dense.bias.numpy()                 # (2, 4)
    lstm_part = keras.Model(tower.input, tower.get_layer("text_projection").output)(tokens)
    total = np.asarray(lstm_part) + expected_bag
    np.testing.assert_allclose(tower(tokens), total / np.linalg.norm(total, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(tower(tokens[:, :4]), tower(tokens), atol=1e-5)    # trailing padding changes nothing
    assert "word_bag" not in [layer.name for layer in build_text_tower(12, embed_dim=4).layers]


def test_the_image_tower_pools_an_earlier_vgg16_block_to_4x4():
    from vlm_keras.encoders.vgg16 import build_image_encoder

    encoder = build_image_encoder(64, feature_layer="block3_pool")
    assert encoder.output_shape == (None, 8, 8, 256)
    assert build_image_encoder(64, feature_layer="block4_pool").output_shape == (None, 4, 4, 512)
    tower = build_image_tower(encoder.output_shape[1:], pooling="flatten", embed_dim=8, hidden_dim=8)
    assert tower.get_layer("grid_pool").output.shape == (None, 4, 4, 256)
    features = np.random.rand(6, 8, 8, 256).astype("float32")
    adapt_image_tower(tower, features)                # the statistics of the pooled grid
    pooled = features.reshape(6, 4, 2, 4, 2, 256).max(axis=(2, 4))
    np.testing.assert_allclose(tower.get_layer("region_encoder").get_layer("feature_normalization").mean.numpy().reshape(4, 4, 256),
                               pooled.mean(axis=0), rtol=1e-4)
    assert "grid_pool" not in [layer.name for layer in build_image_tower((4, 4, 512)).layers]


def test_tower_errors():
    with pytest.raises(ValueError, match="unknown image pooling 'max'"):
        build_image_tower(GRID, pooling="max")
    with pytest.raises(ValueError, match="embeds into 16 dimensions and the text tower into 8"):
        build_dual_encoder(build_image_tower(GRID, embed_dim=16), build_text_tower(10, embed_dim=8))


def _toy_task(seed, copies=1):
    """32 kinds of image: one "colour" channel on at one of 4 cells (8 colours x 4 cells: position
    matters), each drawn `copies` times with noise from `seed`; every image has two captions naming
    the cell and the colour, in either order."""
    rng = np.random.default_rng(seed)
    kind = np.tile(np.arange(32), copies)
    cells, colours = kind % 4, kind // 4
    features = np.zeros((len(kind), *GRID), "float32")
    features[np.arange(len(kind)), cells // 2, cells % 2, colours] = 1.0
    features += rng.normal(scale=0.1, size=features.shape).astype("float32")
    start, end = np.full(len(kind), 2), np.full(len(kind), 3)
    cell_words, colour_words = 4 + cells, 8 + colours                               # ids 4..15
    tokens = np.concatenate([np.stack([start, cell_words, colour_words, end], 1),
                             np.stack([start, colour_words, cell_words, end], 1)])
    image_index = np.concatenate([np.arange(len(kind))] * 2)
    return features, tokens.astype("int32"), image_index


def _fit_and_score(pooling):
    """Trains on 4 noisy copies of each image, scores on a new draw of 32 (memorised noise does
    not help there)."""
    features, tokens, image_index = _toy_task(seed=0, copies=4)
    dual = _dual_encoder(pooling)
    adapt_image_tower(dual.get_layer("image_tower"), features)
    trainer = ContrastiveTrainer(dual)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainer.fit({"image_features": features[image_index], "caption_tokens": tokens}, image_index,
                batch_size=64, epochs=25, verbose=0)
    features, tokens, image_index = _toy_task(seed=1)
    similarity = (dual.get_layer("image_tower")(features).numpy()
                  @ dual.get_layer("text_tower")(tokens).numpy().T)                 # (32, 64)
    return retrieval_report(similarity, image_index)


def test_a_tiny_dual_encoder_learns_to_retrieve():
    report = _fit_and_score("flatten")
    # Chance: R@1 = 1/32 text -> image, about 2/64 image -> text; R@5 about 5/32.
    assert report["text_to_image_r1"] >= 0.65 and report["image_to_text_r1"] >= 0.65
    assert report["text_to_image_r5"] >= 0.9 and report["image_to_text_r5"] >= 0.9


def test_mean_pooling_cannot_tell_where_things_are():
    # The mean over cells is the same for the 4 images of a colour: about 1 in 4 at R@1 ...
    report = _fit_and_score("mean")
    assert report["text_to_image_r1"] <= 0.4
    assert report["text_to_image_r10"] >= 0.8        # ... though it learns the colours (chance 0.31)


def test_negatives_come_from_the_global_batch_under_tf_distribute(tmp_path):
    """One step on 2 replicas (2 logical CPUs) equals one step on one device with the whole batch,
    and differs from the loss of two half-batches (negatives from the local batch only); with hard
    negative captions too (each replica's are gathered like its captions)."""
    script = textwrap.dedent("""
        import json
        import sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from vlm_keras.encoders.regions import adapt_region_encoder
        from vlm_keras.retrieval.models import (ContrastiveTrainer, build_dual_encoder, build_image_tower,
                                                build_text_tower, contrastive_loss)

        rng = np.random.default_rng(0)
        x = {"image_features": rng.normal(size=(8, 2, 2, 4)).astype("float32"),
             "caption_tokens": rng.integers(4, 12, size=(8, 5)).astype("int32")}
        y = np.arange(8)
        hard = {"negative_tokens": rng.integers(4, 12, size=(8, 5)).astype("int32"),
                "has_negative": np.array([1, 1, 0, 1, 1, 1, 1, 0], "float32")}

        def step(negatives):
            inputs = dict(x, **hard) if negatives else x
            keras.utils.set_random_seed(0)
            image_tower = build_image_tower((2, 2, 4), embed_dim=8, hidden_dim=16, dropout=0.0)
            adapt_region_encoder(image_tower, x["image_features"])
            dual = build_dual_encoder(image_tower, build_text_tower(12, embed_dim=8, word_dim=4, units=4))
            trainer = ContrastiveTrainer(dual)
            trainer.compile(optimizer=keras.optimizers.SGD(0.5))

            def loss_of(rows):
                similarity, text_tower = dual.get_layer("similarity"), dual.get_layer("text_tower")
                images = dual.get_layer("image_tower")(x["image_features"][rows])
                negative_logits = (similarity(images, text_tower(hard["negative_tokens"][rows])) if negatives
                                   else None)
                return float(contrastive_loss(similarity(images, text_tower(x["caption_tokens"][rows])), None,
                                              negative_logits, hard["has_negative"][rows] if negatives else None))

            initial = [w.copy() for w in dual.get_weights()]
            global_loss, half_losses = loss_of(slice(0, 8)), [loss_of(slice(0, 4)), loss_of(slice(4, 8))]
            fit_loss = trainer.fit(inputs, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
            return {"initial": initial, "final": dual.get_weights(), "fit_loss": fit_loss,
                    "global_loss": global_loss, "local_loss": float(np.mean(half_losses)),
                    "replicas": trainer.distribute_strategy.num_replicas_in_sync}

        def compare(negatives):
            one = step(negatives)
            with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
                two = step(negatives)
            return {
                "replicas": [one["replicas"], two["replicas"]],
                "same_start": all(np.allclose(a, b) for a, b in zip(one["initial"], two["initial"])),
                "moved": max(float(np.abs(a - b).max()) for a, b in zip(one["initial"], one["final"])),
                "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(one["final"], two["final"])),
                "fit_loss": [one["fit_loss"], two["fit_loss"]], "global_loss": one["global_loss"],
                "local_loss": one["local_loss"]}

        print(json.dumps(compare(sys.argv[1] == "negatives")))
    """)
    # One process each: a second MirroredStrategy in a process can meet the first one's collective keys.
    plain, hard = (run_python(script, cwd=tmp_path, args=[which]) for which in ("plain", "negatives"))
    assert hard["global_loss"] > plain["global_loss"] + 0.1            # the negatives are in the loss
    for got in (plain, hard):
        _check_one_step_on_two_replicas(got)


def _check_one_step_on_two_replicas(got):
    assert got["replicas"] == [1, 2] and got["same_start"]
    # Both report the loss of the 8 x 8 batch, not the mean of two 4 x 4 ones (about log 8 vs log 4).
    assert got["fit_loss"][0] == pytest.approx(got["global_loss"], abs=1e-5)
    assert got["fit_loss"][1] == pytest.approx(got["global_loss"], abs=1e-5)
    assert abs(got["global_loss"] - got["local_loss"]) > 0.3
    assert got["moved"] > 1e-2                         # the step changed the weights ...
    assert got["max_weight_diff"] < 1e-4               # ... the same on 1 and 2 replicas (float32 sums)


def test_train_retrieval_reports_recall_both_ways(tiny_retrieval, shapes_dir):
    from vlm_keras.data.formats import coco

    result, out = tiny_retrieval
    assert len(result.history["loss"]) == 2 and "val_loss" in result.history
    for split in ("test", "compositional"):
        n = len(coco.load_caption_split(shapes_dir, split))
        assert result.metrics[f"num_images_{split}"] == n and result.metrics[f"num_captions_{split}"] == 5 * n
        for direction in ("image_to_text", "text_to_image"):
            for k in (1, 5, 10):
                assert 0.0 <= result.metrics[f"{direction}_r{k}_{split}"] <= 1.0
            assert result.metrics[f"{direction}_median_rank_{split}"] >= 1
    assert json.loads((out / "config.json").read_text())["task"] == "retrieval"
    assert result.metrics["learned_temperature"] == pytest.approx(result.temperature)
    with pytest.raises(ValueError, match="unknown tower option"):
        from vlm_keras import train_retrieval

        train_retrieval(data=str(shapes_dir), epochs=1, verbose=0, layers=3)


def test_evaluate_with_every_true_pair_right(tiny_retrieval, shapes_dir, tmp_path):
    from vlm_keras.data.formats import coco
    from vlm_keras.data.scenes.captions import caption_matches
    from vlm_keras.data.scenes.dataset import load_scenes
    from vlm_keras.data.formats.reader import DatasetError

    result, _ = tiny_retrieval
    # The tiny pool's captions are each true of their own image only: image 1 also gets one of
    # image 0's captions as a reference, so that one caption is true of an image not its own.
    split = coco.load_caption_split(shapes_dir, "compositional")
    split = dataclasses.replace(split, captions=[split.captions[0], split.captions[1] + [split.captions[0][0]],
                                                 *split.captions[2:]])
    report = result.evaluate(split, "compositional", verbose=0, true_matches=True)
    true = report.pop("true_matches")
    assert report == result.evaluate(split, "compositional", verbose=0)
    # The same similarities scored by hand with the scenes' truths.
    scenes = load_scenes(shapes_dir, "compositional")
    captions = [c for refs in split.captions for c in refs]
    owner = np.repeat(np.arange(len(split)), [len(refs) for refs in split.captions])
    similarity = result.embed_images(split.image_paths) @ result.embed_texts(captions).T
    matches = caption_matches(captions, [scenes[i] for i in split.image_ids])
    added = len(split.captions[0]) + len(split.captions[1]) - 1      # the caption of image 0 given to image 1
    assert matches[0, added] and not matches[1, added]
    assert matches.sum() == len(captions)            # each other caption is true of its own image alone
    expected = retrieval_report(similarity, owner, matches=matches)
    for key in ("text_to_image_r1", "image_to_text_r1", "text_to_image_r10", "text_to_image_median_rank"):
        assert true[key] == pytest.approx(expected[key], abs=1e-6)
    for key in ("text_to_image_r1", "text_to_image_r5", "image_to_text_r1", "image_to_text_r5"):
        assert true[key] >= report[key]            # more right answers never lower a recall
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DatasetError, match="no scene annotations for split 'test'"):
        result.evaluate(str(tmp_path), "test", verbose=0, true_matches=True)


def test_keras_round_trip_and_load_model(tiny_retrieval, shapes_dir):
    from vlm_keras import load_model
    from vlm_keras.bundle import ModelFolderError
    from vlm_keras.captioning import Captioner
    from vlm_keras.data.formats import coco

    result, out = tiny_retrieval
    loaded = load_model(out)
    assert isinstance(loaded, RetrievalModel)
    test = coco.load_caption_split(shapes_dir, "test")
    texts = [refs[0] for refs in test.captions]
    np.testing.assert_allclose(loaded.embed_images(test.image_paths), result.embed_images(test.image_paths),
                               atol=1e-5)
    np.testing.assert_allclose(loaded.embed_texts(texts), result.embed_texts(texts), atol=1e-5)
    x = [np.random.rand(2, 64, 64, 3).astype("float32"), np.array([[2, 5, 6, 3], [2, 4, 3, 0]], "int32")]
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-4)
    assert loaded.temperature == pytest.approx(result.temperature)
    assert loaded.config == result.config and loaded.history == result.history
    assert loaded.evaluate(test, verbose=0) == pytest.approx(
        {k.removesuffix("_test"): v for k, v in result.metrics.items() if k.endswith("_test")})
    with pytest.raises(ModelFolderError, match="holds a retrieval model, not a captioning model"):
        Captioner.load(out)
    with pytest.raises(ValueError, match="text #1 is ''"):
        loaded.embed_texts(["a red circle", ""])


def test_retrieval_saved_model_in_a_fresh_process(tiny_retrieval, shapes_dir, tmp_path):
    from vlm_keras.data.formats import coco

    result, _ = tiny_retrieval
    export = result.export(tmp_path / "export")
    test = coco.load_caption_split(shapes_dir, "test")
    images, texts = test.image_paths[:3], [refs[0] for refs in test.captions[:3]] + ["A RED circle!"]
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load({str(export)!r})
        data = [open(p, "rb").read() for p in {images!r}]
        images = loaded.signatures["embed_image"](images=tf.constant(data))["embeddings"].numpy()
        one = loaded.signatures["embed_image"](images=tf.constant(data[:1]))["embeddings"].numpy()
        texts = loaded.signatures["embed_text"](texts=tf.constant({texts!r}))["embeddings"].numpy()
        default = loaded.signatures["serving_default"](images=tf.constant(data))["embeddings"].numpy()
        print(json.dumps({{"images": images.tolist(), "one": one.tolist(), "texts": texts.tolist(),
                          "default": default.tolist(), "vlm_keras": "vlm_keras" in sys.modules}}))
    """)
    got = run_python(script, cwd=tmp_path)
    assert not got["vlm_keras"]
    expected_images = result.embed_images(images)
    np.testing.assert_allclose(got["images"], expected_images, atol=1e-5)
    np.testing.assert_allclose(got["one"], expected_images[:1], atol=1e-5)
    np.testing.assert_allclose(got["default"], expected_images, atol=1e-5)
    np.testing.assert_allclose(got["texts"], result.embed_texts(texts), atol=1e-5)
    # The graph tokenizer normalises as the Python one: case and punctuation do not matter.
    np.testing.assert_allclose(got["texts"][3], result.embed_texts(["a red circle"])[0], atol=1e-5)

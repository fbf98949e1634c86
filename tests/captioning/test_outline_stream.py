"""The captioner and the retrieval image tower with the outline stream (`outline=True`,
`outline_stream=True`, `region_appearance`) and the captioner's word dropout: trained end to end,
reloaded from their folders and served as SavedModels in a fresh process."""

import textwrap

import numpy as np
import pytest

from vlm_keras.data.formats import coco

from tests.helpers import run_python, serve_caption_export


def test_train_captioner_with_the_outline_stream_and_word_dropout(shapes_dir, tmp_path):
    from vlm_keras import train_captioner
    from vlm_keras.captioning import Captioner

    result = train_captioner(data=str(shapes_dir), outline=True, outline_stream=True, region_appearance=8,
                             word_dropout=0.3, epochs=1, units=16, embed_dim=8, num_layers=1, region_filters=8,
                             batch_size=32, seed=0, verbose=0, eval_splits=(), out=tmp_path / "model")
    decoder = result.model.get_layer("caption_decoder")
    assert decoder.get_layer("word_dropout").rate == 0.3
    channels = result.model.get_layer("image_encoder").output_shape[-1]          # the pixels', then the outlines'
    assert decoder.get_layer("appearance_conv").input.shape[-1] == channels // 2
    assert decoder.get_layer("region_encoder").output_shape[-1] == 8 + 2
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:3]
    expected = result.caption(images)
    assert Captioner.load(tmp_path / "model").caption(images) == expected
    export = result.export(tmp_path / "export")
    got = serve_caption_export(export, images, cwd=tmp_path)
    assert got["captions"] == expected and not got["vlm_keras"]


def test_train_retrieval_with_the_outline_stream_and_the_word_bag(shapes_dir, tmp_path):
    from vlm_keras import load_model, train_retrieval

    # The outline stream is the default for attention pooling: outline, outline_stream and 32 channels.
    result = train_retrieval(data=str(shapes_dir), word_bag=True, epochs=1, batch_size=32, seed=0, verbose=0,
                             eval_splits=(), out=tmp_path / "model", embed_dim=16, hidden_dim=32, attention_dim=16,
                             word_dim=8, units=16)
    tower = result.model.get_layer("dual_encoder").get_layer("image_tower")
    channels = result.model.get_layer("image_encoder").output_shape[-1]
    assert tower.get_layer("appearance_conv").input.shape[-1] == channels // 2
    assert tower.get_layer("appearance_conv").filters == 32
    assert result.text_tower.get_layer("word_bag_projection").units == 16
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:3]
    texts = ["a red circle", "two blue squares and a zebra"]
    expected, expected_texts = result.embed_images(images), result.embed_texts(texts)
    reloaded = load_model(tmp_path / "model")
    np.testing.assert_allclose(reloaded.embed_images(images), expected, atol=1e-5)
    np.testing.assert_allclose(reloaded.embed_texts(texts), expected_texts, atol=1e-5)
    export = result.export(tmp_path / "export")
    got = run_python(textwrap.dedent(f"""
        import json
        import tensorflow as tf
        model = tf.saved_model.load({str(export)!r})
        data = [open(p, "rb").read() for p in {images!r}]
        images = model.signatures["embed_image"](images=tf.constant(data))["embeddings"]
        texts = model.signatures["embed_text"](texts=tf.constant({texts!r}))["embeddings"]
        print(json.dumps({{"images": images.numpy().tolist(), "texts": texts.numpy().tolist()}}))
    """), cwd=tmp_path)
    np.testing.assert_allclose(got["images"], expected, atol=1e-5)
    np.testing.assert_allclose(got["texts"], expected_texts, atol=1e-5)


@pytest.mark.parametrize("trainer", ["captioner", "retrieval"])
def test_outline_defaults_and_errors(trainer):
    from vlm_keras.config import CaptionerConfig, RetrievalConfig

    config = {"captioner": CaptionerConfig, "retrieval": RetrievalConfig}[trainer]
    assert config().resolved_outline and config().record()["outline"] is True
    if trainer == "captioner":
        assert config(model="attention").stream_options() == {"outline_stream": True, "region_appearance": 32}
    assert config().stream_options() == {"outline_stream": True, "region_appearance": 32}
    assert config(outline=True, model_options={"region_appearance": 8}).stream_options() == {
        "outline_stream": True, "region_appearance": 8}
    # The outlines through the same convolutions as the pixels: no appearance stream unless given.
    assert config(outline=True, model_options={"outline_stream": False}).stream_options() == {"outline_stream": False}
    assert config(outline=False).stream_options() == {}
    other = {"captioner": dict(model="transformer"), "retrieval": dict(pooling="mean")}[trainer]
    assert not config(**other).resolved_outline
    with pytest.raises(ValueError, match="outline_stream reads the outline maps' half of the features: give "
                                         "outline=True"):
        config(outline=False, model_options={"outline_stream": True})


@pytest.mark.parametrize("options", [dict(outline_stream=True), dict(outline_stream=True, region_appearance=0)])
def test_the_outline_stream_needs_the_appearance_stream(options):
    from vlm_keras.captioning.models import build_lstm_decoder
    from vlm_keras.retrieval.models import build_image_tower

    with pytest.raises(ValueError, match="give region_appearance > 0"):
        build_lstm_decoder(12, (8, 8, 16), **options)
    with pytest.raises(ValueError, match="give region_appearance > 0"):
        build_image_tower((8, 8, 16), **options)

"""The attention captioner with grounded visual words (`grounded_words`, `GroundedWordLogits`): a tiny
decoder that must learn its captions; trained end to end with the outline stream, reloaded from its
folder and served as a SavedModel in a fresh process; the option's resolution and errors."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from vlm_keras.data.formats import coco

from tests.helpers import serve_caption_export


def _pairs(rng, n):
    """Images of one object in one of two cells (channels 0-3 its colour, 4-7 its shape, one-hot)
    captioned "<start> colour shape <end>": colour c is token 4 + c, shape s token 8 + s."""
    features = np.zeros((n, 1, 2, 8), "float32")
    tokens = np.zeros((n, 4), "int32")
    for i in range(n):
        colour, shape, cell = rng.integers(4), rng.integers(4), rng.integers(2)
        features[i, 0, cell, colour] = features[i, 0, cell, 4 + shape] = 1.0
        tokens[i] = (2, 4 + colour, 8 + shape, 3)
    return features, tokens


def test_a_tiny_grounded_decoder_learns_its_captions():
    from vlm_keras.captioning.decoding import greedy_decode
    from vlm_keras.captioning.losses import caption_loss
    from vlm_keras.captioning.models import build_attention_decoder
    from vlm_keras.encoders.regions import adapt_region_encoder

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features, tokens = _pairs(rng, 640)
    decoder = build_attention_decoder(12, (1, 2, 8), embed_dim=16, units=32, attention_dim=16,
                                      word_groups=[[4, 5, 6, 7], [8, 9, 10, 11]])
    adapt_region_encoder(decoder, features)
    decoder.compile(keras.optimizers.Adam(1e-2), loss=caption_loss())
    decoder.fit([features, tokens[:, :-1]], tokens[:, 1:], batch_size=32, epochs=5, verbose=0)
    test_features, test_tokens = _pairs(rng, 64)
    written = ops.convert_to_numpy(greedy_decode(decoder, test_features, 3)[0])   # colour, shape, end
    np.testing.assert_array_equal(written, test_tokens[:, 1:])


def test_train_the_grounded_captioner_reload_and_serve(shapes_dir, tmp_path):
    from vlm_keras import train_captioner
    from vlm_keras.captioning import Captioner
    from vlm_keras.data.scenes.captions import VISUAL_WORD_GROUPS
    from vlm_keras.layers import GroundedWordLogits

    result = train_captioner(data=str(shapes_dir), model="attention", outline=True, grounded_words="scenes",
                             epochs=1, units=16, embed_dim=8, attention_dim=16, batch_size=32, seed=0, verbose=0,
                             eval_splits=("test",), out=tmp_path / "model")
    decoder = result.model.get_layer("caption_decoder")
    output = decoder.get_layer("next_token_logits")
    assert isinstance(output, GroundedWordLogits)
    words = [[result.tokenizer.id_to_token[i] for i in group] for group in output.word_groups]
    assert [set(group) <= set(expected) for group, expected in zip(words, VISUAL_WORD_GROUPS)] == [True] * 3
    assert {"red", "circle", "small"} <= {word for group in words for word in group}
    # The outline stream: the region stage reads the outline half, the appearance stream the pixels'.
    channels = result.model.get_layer("image_encoder").output_shape[-1]
    assert decoder.get_layer("appearance_conv").input.shape[-1] == channels // 2
    recorded = json.loads((tmp_path / "model" / "config.json").read_text())
    assert recorded["grounded_words"] == "scenes" and recorded["outline"] is True
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:3]
    expected = result.caption(images)
    reloaded = Captioner.load(tmp_path / "model")
    assert reloaded.caption(images) == expected
    np.testing.assert_allclose(reloaded.attention(images)[0]["weights"], result.attention(images)[0]["weights"], atol=1e-6)
    export = result.export(tmp_path / "export")
    got = serve_caption_export(export, images, cwd=tmp_path)
    assert got["captions"] == expected and not got["vlm_keras"]


def test_word_groups_from_the_vocabulary():
    from vlm_keras.captioning.train import word_groups
    from vlm_keras.config import parse_word_groups
    from vlm_keras.data.text import Tokenizer

    tokenizer = Tokenizer(["a", "red", "blue", "circle", "square", "small"], max_length=6)   # ids 4..9
    assert word_groups("red,blue;circle", tokenizer) == [[5, 6], [7]]
    # "scenes": the words of each attribute the vocabulary holds (no "big", "triangle", ... here).
    assert word_groups("scenes", tokenizer) == [[5, 6], [7, 8], [9]]
    with pytest.raises(ValueError, match="grounded_words names 'green', 'cross', not in the training captions' "
                                         "vocabulary"):
        word_groups("red,green;cross", tokenizer)
    with pytest.raises(ValueError, match="the training captions hold none of the scenes' colour, shape and size"):
        word_groups("scenes", Tokenizer(["a", "dog"], max_length=4))
    assert parse_word_groups(" Red, blue ;;circle") == [["red", "blue"], ["circle"]]
    assert parse_word_groups([["Red", "blue"], ("circle",)]) == [["red", "blue"], ["circle"]]
    with pytest.raises(ValueError, match="grounded_words must be 'scenes', a string of word groups"):
        parse_word_groups(3)
    with pytest.raises(ValueError, match="names red more than once"):
        parse_word_groups("red,blue;red")


def test_grounded_words_option_errors():
    from vlm_keras import train_captioner
    from vlm_keras.config import CaptionerConfig

    with pytest.raises(ValueError, match="grounded_words reads the visual words from the attended region: it needs "
                                         "model='attention'; received model='lstm'"):
        CaptionerConfig(grounded_words="scenes")
    with pytest.raises(ValueError, match="grounded_words ';' names no words"):
        CaptionerConfig(model="attention", grounded_words=";")
    with pytest.raises(ValueError, match="unknown option.*word_groups"):
        train_captioner(model="attention", word_groups=[[4, 5]])

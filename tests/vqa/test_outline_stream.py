"""The VQA head's outline stream (`outline=True`): which half of the grid each stream reads, the errors,
and train_vqa with the .keras folder and the SavedModel."""

import keras
import numpy as np
import pytest

from vlm_keras.vqa.models import build_vqa_head

from tests.helpers import serve_vqa_export


def _vqa_image_branch():
    head = build_vqa_head("attention", 12, 4, (16, 16, 10), units=16, attention_dim=16, region_filters=8,
                          region_appearance=4, outline_stream=True)
    return head.get_layer("image_branch")


def _lstm_captioner():
    from vlm_keras.captioning.models import build_lstm_decoder

    return build_lstm_decoder(12, (16, 16, 10), embed_dim=8, units=8, region_filters=8, region_appearance=4,
                              outline_stream=True)


def _retrieval_tower():
    from vlm_keras.retrieval.models import build_image_tower

    return build_image_tower((16, 16, 10), embed_dim=8, hidden_dim=8, attention_dim=8, grid_pool=1,
                             region_layers=2, region_filters=8, region_appearance=4, outline_stream=True)


@pytest.mark.parametrize("build", [_vqa_image_branch, _lstm_captioner, _retrieval_tower],
                         ids=["vqa", "lstm captioner", "retrieval tower"])
def test_the_convolutions_read_the_outlines_and_the_appearance_the_pixels(build):
    keras.utils.set_random_seed(0)
    model = build()
    joined = keras.Model(model.inputs[0], model.get_layer("regions_with_appearance").output)

    def appearance(features):
        return np.asarray(joined(features))[..., :4]

    def convolutions(features):
        return np.asarray(joined(features))[..., 4:]

    features = np.random.default_rng(0).random((1, 16, 16, 10), dtype=np.float32)
    pixels_changed, outlines_changed = features.copy(), features.copy()
    pixels_changed[..., :5] += 2.0
    outlines_changed[..., 5:] += 2.0
    np.testing.assert_allclose(convolutions(pixels_changed), convolutions(features), atol=1e-6)
    np.testing.assert_allclose(appearance(outlines_changed), appearance(features), atol=1e-6)
    assert np.abs(convolutions(outlines_changed) - convolutions(features)).max() > 1e-3
    assert np.abs(appearance(pixels_changed) - appearance(features)).max() > 1e-3
    # The normalisation still sees every channel (adapt_region_encoder adapts it on the whole grid).
    assert model.get_layer("region_encoder").get_layer("feature_normalization").input.shape[-1] == 10


@pytest.mark.parametrize("shape, options, message", [
    ((16, 16, 5), dict(region_appearance=4), "as many channels each"),
    ((16, 16, 6), dict(), "give region_appearance"),
    ((8, 15), dict(region_appearance=4), "as many channels each"),      # scene graph nodes
])
def test_head_errors(shape, options, message):
    with pytest.raises(ValueError, match=message):
        build_vqa_head("attention", 12, 4, shape, outline_stream=True, **options)


@pytest.mark.parametrize("options, expected", [
    (dict(), True),                                                  # the default head: graph
    (dict(model="attention"), True),
    (dict(model="graph"), True),
    (dict(model="concat"), False),
    (dict(model="question_only"), False),
    (dict(visual_input="scene_graph"), False),
    (dict(outline=False), False),
    (dict(model="graph", outline=False), False),
    (dict(model="concat", outline=True), True),
])
def test_the_graph_and_attention_heads_read_the_outlines_by_default(options, expected):
    from vlm_keras.config import VQAConfig

    config = VQAConfig.from_options(**options)
    assert config.resolved_outline is expected and config.record()["outline"] is expected
    # A config made from another keeps choosing by its own head.
    assert VQAConfig.from_options(config=config, model="concat").resolved_outline is bool(options.get("outline"))


@pytest.mark.parametrize("options, message", [
    (dict(region_appearance=0), "region_appearance cannot be 0"),
    (dict(outline=True, model="graph", region_appearance=0), "region_appearance cannot be 0"),
    (dict(outline=True, visual_input="scene_graph", model_options={"region_appearance": 8}), "reads no images"),
    (dict(model_options={"outline_stream": True, "region_appearance": 8}), "give outline=True"),
])
def test_config_errors_before_any_work(options, message):
    from vlm_keras.config import VQAConfig

    with pytest.raises(ValueError, match=message):
        VQAConfig.from_options(**options)


def test_train_vqa_with_the_outline_stream(vqa_dir, tmp_path):
    """The attention head's; the graph head's default run (with the stream) is test_graph's round trip."""
    from vlm_keras import train_vqa
    from vlm_keras.data.formats.vqa import load_vqa_split
    from vlm_keras.vqa import VQAModel

    result = train_vqa(data=str(vqa_dir), model="attention", outline=True, region_appearance=8, epochs=1,
                       batch_size=32, out=tmp_path / "model", eval_splits=("test",), verbose=0, embed_dim=8,
                       units=16, fusion_dim=32, attention_dim=16)
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0
    encoder = result.model.get_layer("image_encoder")
    assert "outline_image" in [layer.name for layer in encoder.layers]
    assert encoder.output_shape[-1] == 2 * 128                       # block2_pool: 128 from each image
    assert '"outline": true' in (tmp_path / "model" / "config.json").read_text()
    test = load_vqa_split(vqa_dir, "test")
    images, questions = test.image_paths[:3], test.questions[:3]
    expected = [a["answer"] for a in result.answer(images, questions)]
    assert [a["answer"] for a in VQAModel.load(tmp_path / "model").answer(images, questions)] == expected
    served = serve_vqa_export(result.export(tmp_path / "export"), images, questions, cwd=tmp_path)
    assert served["answers"] == expected and not served["vlm_keras"]


@pytest.mark.parametrize("argv, expected", [([], None), (["--outline"], True), (["--no-outline"], False)])
def test_the_command_line_turns_it_on_or_off(argv, expected):
    import argparse

    from vlm_keras.config import VQAConfig, add_arguments, from_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser, VQAConfig)
    assert from_arguments(VQAConfig, parser.parse_args(argv)).outline is expected

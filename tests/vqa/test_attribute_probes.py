"""The attribute probes trained beside a VQA head (`attribute_loss`): the region maps from the
annotations, the loss by hand, the trainer holding the probes, a run that lowers their loss."""

import keras
import numpy as np
import pytest

from vlm_keras.data.scenes.scenes import Scene, SceneObject
from vlm_keras.layers import AttributeProbeLoss
from vlm_keras.vqa.grouped_trainer import build_grouped_trainer
from vlm_keras.vqa.models import build_vqa_head
from vlm_keras.vqa.scene_graphs import region_attribute_maps

from tests.helpers import side_loss_before_and_after


def _scene(*objects):
    return Scene(tuple(SceneObject(*o) for o in objects), (80, 80, 80))


def test_region_maps_by_hand():
    # 4x4 cells of 0.25; cell centres at 0.125, 0.375, 0.625, 0.875.
    big = ("blue", "square", "large", 0.5, 0.5, 0.2)         # holds the 4 central centres (0.177 away)
    tiny = ("orange", "cross", "small", 0.1, 0.9, 0.01)      # holds no centre: its own cell (row 3, col 0)
    corner = ("red", "circle", "small", 0.1, 0.1, 0.1)       # a dict, as the annotations hold it
    colours, shapes = region_attribute_maps([_scene(big, tiny), _scene(corner).to_dict()], (4, 4))
    expected = np.zeros((4, 4), int)
    expected[1:3, 1:3] = 3                                   # blue is colour 2, + 1
    expected[3, 0] = 6                                       # orange is colour 5, + 1
    np.testing.assert_array_equal(colours[0], expected)
    shape = np.zeros((4, 4), int)
    shape[1:3, 1:3], shape[3, 0] = 2, 4                      # square 1 + 1, cross 3 + 1
    np.testing.assert_array_equal(shapes[0], shape)
    assert colours[1][0, 0] == 1 and shapes[1][0, 0] == 1 and colours[1].sum() == shapes[1].sum() == 1


def test_probe_loss_by_hand():
    logits = np.ones((2, 3), np.float32)
    probe = np.array([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], np.float32)   # (B=1, R=3, values=2)
    target = np.array([[1, 2, 0]])                           # value 0, value 1, background (not scored)
    layer = AttributeProbeLoss(0.5)
    np.testing.assert_array_equal(layer(logits, [probe], [target], training=False), logits)
    assert not layer.losses
    out = layer(logits, [probe], [target], training=True)
    np.testing.assert_array_equal(out, logits)
    ce = lambda row, k: -(row[k] - np.log(np.exp(row).sum()))  # noqa: E731
    np.testing.assert_allclose(float(layer.losses[0]), 0.5 * (ce(probe[0, 0], 0) + ce(probe[0, 1], 1)) / 2, rtol=1e-6)
    assert AttributeProbeLoss.from_config(layer.get_config()).weight == 0.5


def test_the_trainer_holds_the_probes_and_training_lowers_their_loss():
    keras.utils.set_random_seed(0)
    head = build_vqa_head("attention", question_vocab_size=12, num_answers=5, feature_shape=(8, 8, 6),
                          region_layers=1, units=16, attention_dim=16, fusion_dim=16, embed_dim=8)
    trainer = build_grouped_trainer(head, 2, 4, attribute_loss=1.0)
    assert {"colour_probe", "shape_probe"} <= {layer.name for layer in trainer.layers}
    assert not any(layer.name.endswith("_probe") for layer in head.layers)
    plain = build_grouped_trainer(head, 2, 4)
    rng = np.random.default_rng(0)
    # Features that show each region's colour and shape: the probes can learn them.
    colours, shapes = rng.integers(0, 7, (16, 8, 8)), rng.integers(0, 5, (16, 8, 8))
    features = np.concatenate([np.eye(7)[colours][..., :3], np.eye(5)[shapes][..., :3]], -1).astype(np.float32)
    tokens, answers = rng.integers(1, 12, (16, 2, 4)).astype(np.int32), rng.integers(0, 5, 32)
    inputs = (features, tokens, colours.astype(np.int32), shapes.astype(np.int32))
    np.testing.assert_allclose(trainer(inputs, training=False), plain((features, tokens), training=False), rtol=1e-5)

    before, after = side_loss_before_and_after(trainer, inputs, answers, "attribute_probe_loss", steps=60)
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError, match="attribute_loss"):
        build_grouped_trainer(build_vqa_head("concat", 12, 5, (8, 8, 6)), 2, 4, attribute_loss=1.0)


def test_train_vqa_with_attribute_probes(vqa_dir, tmp_path):
    from vlm_keras import train_vqa
    from vlm_keras.vqa import VQAModel

    result = train_vqa(data=str(vqa_dir), model="attention", epochs=1, batch_size=32, attribute_loss=1.0,
                       out=tmp_path / "model", eval_splits=("test",), verbose=0, embed_dim=8, units=16,
                       fusion_dim=32, attention_dim=16)
    assert 0.0 <= result.metrics["accuracy_test"] <= 1.0
    loaded = VQAModel.load(tmp_path / "model")        # the head alone: the probes stayed in the trainer
    assert not any(layer.name.endswith("_probe") for layer in loaded.model._flatten_layers())
    assert '"attribute_loss": 1.0' in (tmp_path / "model" / "config.json").read_text()


@pytest.mark.parametrize("options", [dict(model="concat"), dict(model="attention", visual_input="scene_graph"),
                                     dict(model="attention", attribute_loss=-1.0)])
def test_attribute_loss_without_regions_to_probe_fails_before_any_work(options):
    from vlm_keras.config import VQAConfig

    with pytest.raises(ValueError, match="attribute_loss"):
        VQAConfig.from_options(**{"attribute_loss": 1.0, **options})

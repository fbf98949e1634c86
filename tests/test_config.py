"""RunConfig and the task configs: one set of defaults for the Python API and the CLI."""

import dataclasses
import json

import pytest

from vlm_keras.cli import build_parser
from vlm_keras.config import (CaptionerConfig, RetrievalConfig, RunConfig, TASK_CONFIGS, VQAConfig,
                              from_arguments)


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_the_cli_defaults_are_the_api_defaults(task):
    args = build_parser().parse_args(["train", task, "--out", "m"])
    assert from_arguments(TASK_CONFIGS[task], args) == TASK_CONFIGS[task](out="m")


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_every_cli_flag_sets_its_field(task):
    config_class = TASK_CONFIGS[task]
    argv = ["train", task, "--out", "m", "--epochs", "3", "--image-size", "96", "--batch-size", "7",
            "--learning-rate", "0.5", "--weights", "none", "--max-length", "12", "--num-images", "50",
            "--seed", "4", "--strategy", "default", "--precision", "mixed_bfloat16", "--jit-compile", "false",
            "--backup-every", "0", "--tensorboard", "--eval-splits", "test", "--feature-layer", "block4_pool",
            "--option", "dropout=0.25", "--option", "units=8"]
    config = from_arguments(config_class, build_parser().parse_args(argv))
    assert (config.epochs, config.image_size, config.batch_size, config.learning_rate) == (3, 96, 7, 0.5)
    assert (config.weights, config.max_length, config.num_images, config.seed) == (None, 12, 50, 4)
    assert (config.strategy, config.precision, config.jit_compile, config.backup_every) == (
        "default", "mixed_bfloat16", False, None)
    assert config.tensorboard and config.eval_splits == ("test",) and config.feature_layer == "block4_pool"
    assert config.model_options == {"dropout": 0.25, "units": 8}


def test_task_options_and_their_own_defaults():
    assert CaptionerConfig().model == "lstm" and CaptionerConfig().feature_layer == "block3_pool"
    assert VQAConfig().model == "graph" and VQAConfig().feature_layer == "block2_pool"
    assert RetrievalConfig().batch_size == 256 and RetrievalConfig().feature_layer == "block3_pool"
    assert {c().image_size for c in TASK_CONFIGS.values()} == {64}
    assert {c().epochs for c in TASK_CONFIGS.values()} == {10}
    assert CaptionerConfig(model="transformer").resolved_learning_rate == 1e-3
    assert CaptionerConfig(model="transformer", learning_rate=0.1).resolved_learning_rate == 0.1
    parser = build_parser()
    args = parser.parse_args(["train", "captioner", "--out", "m", "--model-type", "attention", "--fine-tune"])
    assert from_arguments(CaptionerConfig, args).model == "attention" and args.fine_tune
    args = parser.parse_args(["train", "captioner", "--out", "m", "--model-type", "attention", "--grounded-words",
                              "red,blue;circle"])
    assert from_arguments(CaptionerConfig, args).grounded_words == "red,blue;circle"
    args = parser.parse_args(["train", "retrieval", "--out", "m", "--pooling", "mean", "--embed-dim", "32"])
    config = from_arguments(RetrievalConfig, args)
    assert (config.pooling, config.embed_dim) == ("mean", 32)


def test_from_options_splits_config_fields_from_model_sizes():
    config = CaptionerConfig.from_options(epochs=2, units=16, embed_dim=8)
    assert config.epochs == 2 and config.model_options == {"units": 16, "embed_dim": 8}
    again = CaptionerConfig.from_options(config, seed=9, dropout=0.1)
    assert again.seed == 9 and again.epochs == 2 and again.model_options == {"units": 16, "embed_dim": 8,
                                                                             "dropout": 0.1}
    with pytest.raises(TypeError, match="CaptionerConfig"):
        CaptionerConfig.from_options(VQAConfig())


def test_tiny_is_a_smoke_setting_every_task_honours():
    for config_class in TASK_CONFIGS.values():
        tiny = config_class.tiny(seed=3)
        assert (tiny.epochs, tiny.image_size, tiny.num_images, tiny.verbose, tiny.seed) == (1, 32, 40, 0, 3)
        assert type(tiny) is config_class


def test_record_is_json_and_leaves_out_python_objects_and_paths():
    config = VQAConfig.from_options(out="/tmp/x", callbacks=[object()], dropout=0.5)
    record = config.record()
    json.dumps(record)
    assert "callbacks" not in record and "out" not in record and "verbose" not in record
    assert record["model"] == "graph" and record["model_options"] == {"dropout": 0.5}
    assert record["eval_splits"] == ["test", "compositional"]


@pytest.mark.parametrize("options,message", [
    ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
    ({"image_size": 16}, "image_size must be an int >= 32"),
    ({"batch_size": 2.5}, "batch_size must be an int >= 1"),
    ({"precision": "float8"}, "unknown precision 'float8'; expected one of float32"),
    ({"model": "gru"}, "unknown model 'gru'; expected one of lstm, attention, transformer"),
    ({"learning_rate": -1.0}, "learning_rate must be > 0"),
    ({"max_length": 0}, "max_length must be None or an int >= 1"),
])
def test_bad_options_name_themselves(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        CaptionerConfig(**options)


def test_the_old_name_of_the_scenes_still_works():
    assert RunConfig(data="shapes").data == "scenes"
    args = build_parser().parse_args(["data", "shapes", "--out", "d"])
    assert args.dataset == "shapes" and args.num_images == RunConfig().num_images


def test_unknown_model_options_fail_before_any_work(tmp_path):
    from vlm_keras import train_captioner, train_retrieval, train_vqa

    with pytest.raises(ValueError, match=r"unknown option\(s\) unit for the lstm captioner; it takes "
                                         r"embed_dim, units, num_layers, dropout"):
        train_captioner(data=str(tmp_path / "none"), unit=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) units for the transformer captioner"):
        train_captioner(data=str(tmp_path / "none"), model="transformer", units=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) layers for the VQA head"):
        train_vqa(data=str(tmp_path / "none"), layers=3)
    with pytest.raises(ValueError, match=r"unknown tower option\(s\) depth"):
        train_retrieval(data=str(tmp_path / "none"), depth=3)


def test_every_field_is_documented():
    for config_class in TASK_CONFIGS.values():
        for field in dataclasses.fields(config_class):
            assert field.metadata.get("help"), field.name


def test_length_buckets_need_cached_features():
    from vlm_keras.config import CaptionerConfig

    with pytest.raises(ValueError, match="bucket_by_length.*fine_tune"):
        CaptionerConfig(bucket_by_length=True, fine_tune=True)
    assert CaptionerConfig(bucket_by_length=True).bucket_by_length

"""The attention and Transformer captioners: train, round trips, both SavedModel signatures, maps."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vlm_keras.captioning import Captioner
from vlm_keras.cli import main
from vlm_keras.data.formats import coco

from tests.helpers import run_python

SIZES = {"attention": dict(embed_dim=16, units=32, attention_dim=32),
         "transformer": dict(embed_dim=32, num_layers=1, num_heads=2, ff_dim=64)}


@pytest.fixture(scope="module", params=["attention", "transformer"])
def trained(request, shapes_dir, tmp_path_factory):
    from vlm_keras import train_captioner

    out = tmp_path_factory.mktemp(request.param) / "model"
    result = train_captioner(data=str(shapes_dir), model=request.param, epochs=1, image_size=64,
                             batch_size=32, seed=2, verbose=0, out=out, eval_splits=("test",),
                             **SIZES[request.param])
    return request.param, result, out


def test_trains_and_scores(trained):
    model_type, result, out = trained
    assert result.config["model_type"] == model_type
    assert 0.0 <= result.metrics["coco_bleu4_test"] <= 1.0
    assert json.loads((out / "config.json").read_text())["model_options"] == SIZES[model_type]


def test_keras_round_trip(trained, shapes_dir):
    _, result, out = trained
    loaded = Captioner.load(out)
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:3]
    assert loaded.caption(images) == result.caption(images)
    assert loaded.caption(images, beam_size=3) == result.caption(images, beam_size=3)


def test_model_folder_loads_in_a_fresh_process(trained, shapes_dir):
    # keras.saving.load_model needs the custom layers and metric registered: a new process has
    # imported nothing of vlm_keras but the CLI.
    _, result, out = trained
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    run = subprocess.run([sys.executable, "-m", "vlm_keras.cli", "caption", "--model", str(out), image],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.rstrip("\n").split("\t")[1] == result.caption([image])[0]


def test_attention_maps(trained, shapes_dir):
    _, result, _ = trained
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:2]
    maps = result.attention(images)
    assert [m["caption"] for m in maps] == result.caption(images)
    for m in maps:
        assert m["weights"].shape == (len(m["words"]), 8, 8)       # block3_pool at 64 px: S / 8
        np.testing.assert_allclose(m["weights"].reshape(len(m["words"]), -1).sum(-1), 1.0, atol=1e-4)


def test_cli_attention_map_png(trained, shapes_dir, tmp_path, capsys):
    _, result, out = trained
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    png = tmp_path / "map.png"
    assert main(["caption", "--model", str(out), "--attention-map", str(png), image]) == 0
    assert capsys.readouterr().out.strip().split("\t")[1] == result.caption([image])[0]
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 200


def test_saved_model_signatures_in_a_fresh_process(trained, shapes_dir, tmp_path):
    _, result, _ = trained
    export_dir = result.export(tmp_path / "export")
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:3]
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load({str(export_dir)!r})
        data = tf.constant([open(p, "rb").read() for p in {images!r}])
        greedy = loaded.signatures["serving_default"](images=data)["captions"].numpy()
        beam = loaded.signatures["beam_search"](images=data, beam_size=tf.constant(3))["captions"].numpy()
        print(json.dumps({{"greedy": [c.decode() for c in greedy], "beam": [c.decode() for c in beam],
                          "vlm_keras": "vlm_keras" in sys.modules}}))
    """)
    got = run_python(script, cwd=tmp_path)
    assert got["greedy"] == result.caption(images)
    assert got["beam"] == result.caption(images, beam_size=3)
    assert not got["vlm_keras"]


def test_lstm_has_no_attention_map(tiny_captioner, shapes_dir):
    image = coco.load_caption_split(shapes_dir, "test").image_paths[0]
    with pytest.raises(ValueError, match="no attention over image regions"):
        tiny_captioner.attention([image])


def test_incremental_decoding_gives_the_prefix_re_run_s_captions(trained, shapes_dir):
    """Trained models: greedy and beam search a step at a time pick the tokens of the reference
    loops that re-run the whole prefix every word."""
    import tensorflow as tf

    from vlm_keras.captioning.decoding import beam_search, beam_search_prefix, greedy_decode, greedy_decode_prefix

    _, result, _ = trained
    features = tf.constant(result.encode_images(coco.load_caption_split(shapes_dir, "test").image_paths))
    decoder, steps = result.decoder, result.max_steps
    for fast, reference in ((greedy_decode, greedy_decode_prefix), (beam_search, beam_search_prefix)):
        tokens, log_probs = fast(decoder, features, steps)
        expected_tokens, expected_log_probs = reference(decoder, features, steps)
        np.testing.assert_array_equal(tokens, expected_tokens)
        np.testing.assert_allclose(log_probs, expected_log_probs, atol=1e-4)


def test_pointing_game_scores_the_words_of_the_maps_it_draws(trained, shapes_dir, capsys, monkeypatch):
    from vlm_keras.data.scenes.dataset import load_scenes
    from vlm_keras.metrics.pointing import PointingScore, caption_pointing

    _, result, out = trained
    report = result.pointing(str(shapes_dir), split="test", verbose=0)
    split, scenes = coco.load_caption_split(shapes_dir, "test"), load_scenes(shapes_dir, "test")
    expected = PointingScore()
    for image_id, m in zip(split.image_ids, result.attention(split.image_paths)):
        caption_pointing(m["words"], m["weights"], scenes[image_id], expected)
    assert report == expected.report()
    assert main(["evaluate", "captioner", "--model", str(out), "--data", str(shapes_dir), "--pointing"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pointing_count"] == report["pointing_count"] and "coco_bleu4" in printed

    # A captioner that says each image's first reference with uniform maps: every colour and shape
    # word is scored (two per object, but for phrases two objects fit equally), at the uniform rate.
    def says_references(features, beam_size=1):
        assert len(features) == len(split.captions)
        return [{"words": refs[0].split(), "weights": np.full((len(refs[0].split()), 4, 4), 1 / 16)}
                for refs in split.captions]

    monkeypatch.setattr(result, "attention_features", says_references)
    report = result.pointing(str(shapes_dir), split="test", verbose=0)
    objects = sum(len(scenes[i].objects) for i in split.image_ids)
    assert report["pointing_count"] + 2 * report["pointing_ambiguous"] == 2 * objects
    assert report["pointing"] == pytest.approx(report["pointing_uniform"]) and 0 < report["pointing"] < 0.5


def test_pointing_game_needs_attention_and_scenes(tiny_captioner, trained, tmp_path):
    with pytest.raises(ValueError, match="no attention over image regions"):
        tiny_captioner.pointing()
    from vlm_keras.data.formats.reader import DatasetError

    folder = tmp_path / "coco"
    coco.write_coco_captions(folder / "annotations" / "captions_test.json", [], {})
    with pytest.raises(DatasetError, match="no scene annotations for split 'test'"):
        trained[1].pointing(str(folder))

"""train_captioner() end to end on a small scenes dataset, the model folder and the SavedModel."""

import json
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from vlm_keras.bundle import ModelFolderError
from vlm_keras.captioning import Captioner
from vlm_keras.captioning.export import export_captioner
from vlm_keras.data.formats import coco
import vlm_keras.export as export_module
from vlm_keras.export import ExportError

from tests.helpers import run_python


def test_train_captioner_returns_model_history_metrics(tiny_captioner):
    result = tiny_captioner
    assert [i.name for i in result.model.inputs] == ["image", "caption_tokens"]
    assert len(result.history["loss"]) == 2 and "val_loss" in result.history
    for split in ("test", "compositional"):
        for n in (1, 2, 3, 4):
            assert 0.0 <= result.metrics[f"coco_bleu{n}_{split}"] <= 1.0
            assert 0.0 <= result.metrics[f"nltk_bleu{n}_{split}"] <= 1.0
        assert result.metrics[f"coco_cider_d_{split}"] >= 0.0 and 0 <= result.metrics[f"coco_rouge_l_{split}"] <= 1
        assert result.metrics[f"unavailable_metrics_{split}"] == {}  # METEOR and SPICE were not asked for
    assert "bleu4_test" not in result.metrics  # every caption figure names its convention
    assert result.metrics["seconds"] > 0
    assert not result.encoder.trainable_weights  # frozen by default


def test_captions_are_strings_from_the_vocabulary(tiny_captioner, shapes_dir):
    test = coco.load_caption_split(shapes_dir, "test")
    captions = tiny_captioner.caption(test.image_paths[:3])
    assert len(captions) == 3
    vocab = set(tiny_captioner.tokenizer.vocabulary) | {"[UNK]"}
    for c in captions:
        assert set(c.split()) <= vocab


def test_evaluate_writes_coco_results(tiny_captioner, shapes_dir, tmp_path):
    scores = tiny_captioner.evaluate(str(shapes_dir), split="val", predictions=tmp_path / "p.json",
                                     verbose=0)
    results = json.loads((tmp_path / "p.json").read_text())
    val = coco.load_caption_split(shapes_dir, "val")
    assert [r["image_id"] for r in results] == val.image_ids
    assert all(isinstance(r["caption"], str) for r in results)
    assert scores["num_images"] == len(val)


def test_keras_round_trip(tiny_captioner, tiny_model_dir, shapes_dir):
    loaded = Captioner.load(tiny_model_dir)
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:4]
    assert loaded.caption(images) == tiny_captioner.caption(images)
    x = [np.random.rand(2, 64, 64, 3).astype("float32"), np.array([[2, 5, 6], [2, 4, 0]], "int32")]
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0),
                               tiny_captioner.model.predict(x, verbose=0), atol=1e-5)
    assert loaded.tokenizer.id_to_token == tiny_captioner.tokenizer.id_to_token
    assert loaded.history == tiny_captioner.history and loaded.config == tiny_captioner.config
    assert loaded.metrics["coco_bleu4_test"] == pytest.approx(tiny_captioner.metrics["coco_bleu4_test"])


def test_load_errors(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        Captioner.load(tmp_path / "nope")
    with pytest.raises(ModelFolderError, match="holds no vlm_keras model"):
        Captioner.load(tmp_path)


def test_save_refuses_a_foreign_folder(tiny_captioner, tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ModelFolderError, match="not a vlm_keras model folder"):
        tiny_captioner.save(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_train_refuses_a_foreign_out_folder_before_training(shapes_dir, tmp_path):
    from vlm_keras import train_captioner

    (tmp_path / "results.csv").write_text("precious")
    started = time.perf_counter()
    with pytest.raises(ModelFolderError, match="not a vlm_keras model folder"):
        train_captioner(data=str(shapes_dir), epochs=1, out=tmp_path, verbose=0)
    assert time.perf_counter() - started < 5  # before any data, model or training work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_saved_model_in_a_fresh_process(tiny_captioner, shapes_dir, tmp_path):
    export_dir = tiny_captioner.export(tmp_path / "export")
    test = coco.load_caption_split(shapes_dir, "test")
    images = test.image_paths[:3]
    expected = tiny_captioner.caption(images)
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        assert "vlm_keras" not in sys.modules
        serve = tf.saved_model.load({str(export_dir)!r}).signatures["serving_default"]
        paths = {images!r}
        data = [open(p, "rb").read() for p in paths]
        batch = serve(images=tf.constant(data))["captions"].numpy().tolist()
        ones = [serve(images=tf.constant([d]))["captions"].numpy()[0] for d in data]  # batch size 1
        print(json.dumps({{"batch": [c.decode() for c in batch], "ones": [c.decode() for c in ones],
                          "vlm_keras_imported": "vlm_keras" in sys.modules}}))
    """)
    got = run_python(script, cwd=tmp_path)
    assert got["batch"] == expected and got["ones"] == expected
    assert not got["vlm_keras_imported"]


def test_saved_model_cli_run(tiny_captioner, shapes_dir, tmp_path):
    export_dir = tiny_captioner.export(tmp_path / "export")
    images = coco.load_caption_split(shapes_dir, "test").image_paths[:2]
    batch = np.array([open(p, "rb").read() for p in images], dtype=object)  # (B,) encoded images
    np.save(tmp_path / "images.npy", batch, allow_pickle=True)
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir", str(export_dir),
           "--tag_set", "serve", "--signature_def", "serving_default",
           "--inputs", f"images={tmp_path / 'images.npy'}"]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for caption in tiny_captioner.caption(images):
        assert caption in out.stdout


def test_export_is_atomic_and_never_overwrites_foreign_folders(tiny_captioner, tmp_path, monkeypatch):
    target = tmp_path / "not_a_model"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty and is not a SavedModel"):
        export_captioner(tiny_captioner, target)
    assert (target / "notes.txt").read_text() == "keep me"

    good = export_captioner(tiny_captioner, tmp_path / "export")
    before = (good / "saved_model.pb").read_bytes()

    class Boom(RuntimeError):
        pass

    def failing_write_json(path, *args, **kwargs):
        # The new SavedModel is written; the last file of the export fails (a full disk).
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_text("{half")
        raise Boom("disk full")

    monkeypatch.setattr(export_module, "write_json", failing_write_json)
    with pytest.raises(Boom):
        export_captioner(tiny_captioner, good)
    monkeypatch.undo()
    assert (good / "saved_model.pb").read_bytes() == before  # the good export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "not_a_model"]  # no leftovers
    with pytest.raises(ExportError, match="overwrite=True"):
        export_captioner(tiny_captioner, good, overwrite=False)


def test_same_seed_same_training(shapes_dir, tmp_path):
    from vlm_keras import train_captioner

    kwargs = dict(data=str(shapes_dir), epochs=2, image_size=64, units=16, embed_dim=8, num_layers=1,
                  batch_size=32, seed=7, verbose=0, eval_splits=())
    a = train_captioner(checkpoint_dir=tmp_path / "a", **kwargs)
    b = train_captioner(checkpoint_dir=tmp_path / "b", **kwargs)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    for wa, wb in zip(a.decoder.get_weights(), b.decoder.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_fine_tuning_trains_the_encoder(shapes_dir, tmp_path):
    from vlm_keras import train_captioner

    result = train_captioner(data=str(shapes_dir), epochs=1, image_size=32, fine_tune=True, units=8,
                             embed_dim=8, num_layers=1, batch_size=64, seed=0, verbose=0,
                             checkpoint_dir=tmp_path / "ckpt", eval_splits=(), learning_rate=1e-4)
    assert result.encoder.trainable_weights
    assert result.config["fine_tune"] is True
    import keras

    keras.utils.set_random_seed(0)  # the same initial VGG16 as the run above
    from vlm_keras.encoders.vgg16 import build_image_encoder

    initial = build_image_encoder(32).get_weights()
    changed = [not np.allclose(w0, w1) for w0, w1 in zip(initial, result.encoder.get_weights())]
    assert any(changed)


def test_xla_generation_gives_the_graph_mode_captions(tiny_captioner, shapes_dir):
    split = coco.load_caption_split(shapes_dir, "test")
    features = tiny_captioner.encode_images(split.image_paths)
    assert tiny_captioner.jit_compile == "auto"
    xla_tokens, xla_log_probs = tiny_captioner.generate_tokens(features)
    xla_beam = tiny_captioner.generate_tokens(features, beam_size=2)
    tiny_captioner.jit_compile = False
    try:
        tokens, log_probs = tiny_captioner.generate_tokens(features)
        beam = tiny_captioner.generate_tokens(features, beam_size=2)
    finally:
        tiny_captioner.jit_compile = "auto"
    np.testing.assert_array_equal(xla_tokens, tokens)
    np.testing.assert_allclose(xla_log_probs, log_probs, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(xla_beam[0], beam[0])
    np.testing.assert_allclose(xla_beam[1], beam[1], rtol=1e-4, atol=1e-5)
    # Batches padded to a power of two: 5 rows in batches of 4 give shapes 4 and 1, rows unchanged.
    np.testing.assert_array_equal(tiny_captioner.generate_tokens(features[:5], batch_size=4)[0], tokens[:5])
    np.testing.assert_array_equal(tiny_captioner.generate_tokens(features[:3])[0], tokens[:3])
    with pytest.raises(ValueError, match="jit_compile"):
        tiny_captioner.jit_compile = "yes"


def test_generation_falls_back_to_graph_mode_where_xla_cannot_compile(tiny_captioner, shapes_dir, monkeypatch):
    features = tiny_captioner.encode_images(coco.load_caption_split(shapes_dir, "test").image_paths[:3])
    expected = tiny_captioner.generate_tokens(features)[0]
    real_functions = Captioner._generate_functions

    def xla_missing(self, xla):  # as on a device without an XLA compiler: XLA functions fail when called
        if not xla:
            return real_functions(self, xla)

        def fail(*args):
            raise tf.errors.UnimplementedError(None, None, "Could not find compiler for platform FAKE")
        return {"greedy": fail, "beam": fail}

    monkeypatch.setattr(Captioner, "_generate_functions", xla_missing)
    fresh = type(tiny_captioner)(tiny_captioner.model, tiny_captioner.tokenizer, tiny_captioner.config)
    with pytest.warns(RuntimeWarning, match="XLA could not compile caption generation.*FAKE"):
        np.testing.assert_array_equal(fresh.generate_tokens(features)[0], expected)
    np.testing.assert_array_equal(fresh.generate_tokens(features, beam_size=2)[0],
                                  tiny_captioner.generate_tokens(features, beam_size=2)[0])
    fresh.jit_compile = True  # asked for explicitly: the error is raised
    with pytest.raises(tf.errors.UnimplementedError, match="FAKE"):
        fresh.generate_tokens(features)

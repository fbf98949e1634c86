"""What many tests do: run code in a fresh Python process, run the CLI, round-trip a model."""

import json
import subprocess
import sys
import textwrap

from vlm_keras.cli import main


def run_python(script, cwd=None, env=None, timeout=300, args=()):
    """Runs `script` (dedented) in a fresh Python process and returns the JSON its last stdout line
    prints; fails with the end of its stderr when it exits non-zero."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], capture_output=True,
                         text=True, timeout=timeout, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_vqa_export(export, images, questions, cwd=None):
    """Answers `questions` about the image files `images` with a VQA SavedModel loaded by plain
    TensorFlow in a fresh process: {"answers", "p" (their probabilities), "vlm_keras" (whether the
    process imported vlm_keras)}."""
    return run_python(f"""
        import json, sys
        import tensorflow as tf
        serve = tf.saved_model.load({str(export)!r}).signatures["serving_default"]
        out = serve(images=tf.constant([open(p, "rb").read() for p in {list(images)!r}]),
                    questions=tf.constant({list(questions)!r}))
        print(json.dumps({{"answers": [a.decode() for a in out["answer"].numpy()],
                          "p": out["probability"].numpy().tolist(), "vlm_keras": "vlm_keras" in sys.modules}}))
    """, cwd=cwd)


def serve_caption_export(export, images, cwd=None):
    """Captions the image files `images` with a captioner's SavedModel loaded by plain TensorFlow in a
    fresh process: {"captions", "vlm_keras" (whether the process imported vlm_keras)}."""
    return run_python(f"""
        import json, sys
        import tensorflow as tf
        serve = tf.saved_model.load({str(export)!r}).signatures["serving_default"]
        captions = serve(images=tf.constant([open(p, "rb").read() for p in {list(images)!r}]))["captions"]
        print(json.dumps({{"captions": [c.decode() for c in captions.numpy()], "vlm_keras": "vlm_keras" in sys.modules}}))
    """, cwd=cwd)


def run_cli(capsys, *argv):
    """`vlm-keras ARGV` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    """The CLI failed as it promises: exit code 2, one `vlm-keras: error:` line naming each fragment,
    no traceback."""
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("vlm-keras: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def keras_round_trip(model, tmp_path, name="model"):
    """`model` saved as .keras and loaded back (custom objects resolved by registration alone)."""
    import keras

    path = tmp_path / f"{name}.keras"
    model.save(path)
    return keras.saving.load_model(path)


def side_loss_before_and_after(trainer, inputs, answers, layer_name, steps):
    """A trainer's side loss (`TrainingLoss` layer `layer_name`) on `inputs`, before and after
    `steps` Adam steps on the same batch."""
    import keras
    import tensorflow as tf

    def side_loss():
        trainer(inputs, training=True)
        return float(trainer.get_layer(layer_name).losses[0])

    before = side_loss()
    trainer.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(tf.data.Dataset.from_tensors((inputs, answers)).repeat(steps), epochs=1, verbose=0, shuffle=False)
    return before, side_loss()

"""Writes the tutorial notebooks from the cells below; `--execute` also runs them and saves outputs.

    python notebooks/build_notebooks.py [--execute] [--only 02_image_captioning]

The notebooks are committed with the outputs of a real run, so they read well on GitHub; this
file is where their text and code are edited. `tests/test_notebooks.py` executes the committed
notebooks headless (the CI does too).
"""

import argparse
import pathlib
import re
import time

import nbformat

HERE = pathlib.Path(__file__).parent
NOTEBOOKS = {}

SETUP = """\
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")
"""


def notebook(name):
    def register(fn):
        NOTEBOOKS[name] = fn
        return fn
    return register


def md(text):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text):
    return nbformat.v4.new_code_cell(text.strip())


@notebook("00_from_the_document")
def from_the_document():
    return [
        md("""
# 00 · From the document to working code

The document we implement (`shared/seed`, sections 5.1 and 5.2) gives two Keras samples: a VGG16 +
LSTM image captioner and a concatenation-fusion VQA network. Neither runs. This notebook runs each
one as written, shows the real error, and then builds the corrected wiring that `vlm_keras` uses.
Nothing here trains; it takes seconds.
"""),
        code(SETUP + """
import keras
import numpy as np
import tensorflow as tf

def run(label, fn):
    try:
        fn()
        print(f"{label}: ran")
    except Exception as e:  # we want to see the error, not stop the notebook
        first = str(e).strip().splitlines()[0][:300]
        print(f"{label}: {type(e).__name__}: {first}")
"""),
        md("""
## 5.1 The captioner, as written

```python
encoder = tf.keras.applications.VGG16(include_top=False, weights='imagenet')
decoder = tf.keras.models.Sequential([
    tf.keras.layers.LSTM(256, return_sequences=True),
    tf.keras.layers.LSTM(256),
    tf.keras.layers.Dense(vocab_size, activation='softmax')])
model = tf.keras.models.Model(inputs=encoder.input, outputs=decoder(encoder.output))
```

First problem, before any modelling: `weights='imagenet'` downloads 58 MB. Offline (as here) it fails;
the package accepts `weights=None` (random) or a local `.h5` file instead.
"""),
        code("""
run("VGG16(weights='imagenet')", lambda: keras.applications.VGG16(include_top=False, weights="imagenet"))
"""),
        md("""
`vocab_size` is never defined. Define it, use random weights, and the real modelling error appears:
the LSTM is fed VGG16's 4-D feature map `(batch, h, w, 512)`, but an LSTM reads `(batch, time, features)`.
"""),
        code("""
vocab_size = 50
encoder = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
print("encoder output:", encoder.output.shape)

def document_captioner():
    decoder = keras.models.Sequential([
        keras.layers.LSTM(256, return_sequences=True),
        keras.layers.LSTM(256),
        keras.layers.Dense(vocab_size, activation="softmax")])
    keras.models.Model(inputs=encoder.input, outputs=decoder(encoder.output))

run("document captioner", document_captioner)
"""),
        md("""
Even if the shapes fitted, the model could not learn to caption: its only input is the image. It never
sees the caption, so it cannot be trained word by word (teacher forcing), and `model.predict(image)`
returns one distribution, not a sentence. The second LSTM also returns only its last step.

## The corrected captioner

`vlm_keras.models.captioner` keeps the document's parts (VGG16, two LSTMs of 256, a softmax over the
vocabulary) and fixes the wiring. Its docstring carries the table of corrections:
"""),
        code("""
from vlm_keras.models import captioner as captioner_module
print(captioner_module.__doc__[captioner_module.__doc__.index("| the document"):].split("\\n\\n")[0])
"""),
        code("""
from vlm_keras.models.captioner import build_captioner, build_lstm_decoder
from vlm_keras.models.image_encoder import build_image_encoder

encoder = build_image_encoder(64, weights=None)              # VGG16 up to block5_conv3, frozen
decoder = build_lstm_decoder(vocab_size, encoder.output_shape[1:])
model = build_captioner(encoder, decoder)
for t in model.inputs:
    print("input ", t.name, t.shape, t.dtype)
print("output", model.output.shape, "-> next-word logits at every position")
"""),
        code("""
images = np.random.default_rng(0).uniform(-100, 100, size=(2, 64, 64, 3)).astype("float32")
caption_prefix = np.array([[2, 7, 9, 0], [2, 5, 0, 0]], "int32")  # <start> w1 w2 <pad>
print(model([images, caption_prefix]).shape)
"""),
        md("""
Generation is a loop that feeds each chosen word back in: `vlm_keras.decoding.greedy_decode` (and
`beam_search`) run it inside the graph, so it is fast and exports with the SavedModel.

## 5.2 The VQA network, as written

```python
image_features = image_encoder(image)
question_features = question_encoder(question)
fused_features = fusion_layer([image_features, question_features])
```

`image` and `question` are never defined:
"""),
        code("""
def document_vqa_as_written():
    image_encoder = keras.applications.VGG16(include_top=False, weights=None)
    image_features = image_encoder(image)  # noqa: F821

run("document VQA", document_vqa_as_written)
"""),
        md("""
Declaring them as `keras.Input`s gets one step further, to the next error: `Concatenate` joins the 4-D
feature map with the 2-D question vector.
"""),
        code("""
def document_vqa_with_inputs():
    image = keras.Input((64, 64, 3))
    question = keras.Input((None,), dtype="int32")
    image_encoder = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    question_encoder = keras.models.Sequential([keras.layers.Embedding(vocab_size, 128), keras.layers.LSTM(256)])
    fused = keras.layers.Concatenate()([image_encoder(image), question_encoder(question)])
    keras.layers.Dense(10, activation="softmax")(fused)

run("document VQA with inputs", document_vqa_with_inputs)
"""),
        md("""
## The corrected VQA network

`vlm_keras.models.vqa.build_vqa_head("concat", ...)` is the document's network with the inputs declared
and the map pooled before the concatenation (its docstring has the table):
"""),
        code("""
from vlm_keras.models import vqa as vqa_module
from vlm_keras.models.vqa import build_vqa_head, build_vqa_model

print(vqa_module.__doc__[vqa_module.__doc__.index("| the document"):].split("\\n\\n")[0])
head = build_vqa_head("concat", question_vocab_size=vocab_size, num_answers=10,
                      feature_shape=encoder.output_shape[1:])
vqa = build_vqa_model(encoder, head)
question = np.array([[5, 8, 3, 0], [6, 2, 0, 0]], "int32")
print("answer logits:", vqa([images, question]).shape)
"""),
        md("""
The next notebooks train these models: `02_image_captioning` and `03_visual_question_answering`.
"""),
    ]


@notebook("01_attention")
def attention():
    return [
        md("""
# 01 · Attention: softmax(Q Kᵀ / √d) V

The document's formula, on tensors small enough to check by hand, then masks and a Transformer block.
"""),
        code(SETUP + """
import keras
import numpy as np
from vlm_keras.layers import ScaledDotProductAttention, TransformerDecoderBlock

np.set_printoptions(precision=4, suppress=True)
"""),
        md("""
## The formula against numpy

One query, three keys of dimension 2. Scores are `q·k / √2`, the softmax turns them into weights, and
the output is the weighted sum of the values.
"""),
        code("""
q = np.array([[[1.0, 0.0]]], "float32")                           # (B=1, Tq=1, d=2)
k = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], "float32")   # (1, Tk=3, 2)
v = np.array([[[10.0], [20.0], [30.0]]], "float32")               # (1, 3, 1)

scores = q @ k.transpose(0, 2, 1) / np.sqrt(2)
weights = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
expected = weights @ v
print("numpy weights", weights, "output", expected.ravel())

out, w = ScaledDotProductAttention()(q, k, v, return_attention_scores=True)
print("layer weights", np.asarray(w), "output", np.asarray(out).ravel())
np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5)
"""),
        md("""
## Masks

A padding mask hides keys (e.g. padding tokens); a causal mask stops position *t* from looking at
positions after it, which is what lets a decoder train on a whole caption at once.
"""),
        code("""
padding = np.array([[[True, True, False]]])          # the third key is padding
_, w = ScaledDotProductAttention()(q, k, v, attention_mask=padding, return_attention_scores=True)
print("padding mask:", np.asarray(w))

x = np.random.default_rng(0).normal(size=(1, 4, 2)).astype("float32")
_, w = ScaledDotProductAttention()(x, x, x, use_causal_mask=True, return_attention_scores=True)
print("causal weights (row t attends to 0..t):\\n", np.asarray(w)[0])
"""),
        md("""
## The same numbers as Keras' MultiHeadAttention

With one head and identity projections, `keras.layers.MultiHeadAttention` computes exactly our formula.
"""),
        code("""
mha = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, use_bias=False)
mha(q, k)  # build
eye = np.eye(2, dtype="float32")[:, None, :]      # (d, heads=1, key_dim)
mha.set_weights([eye, eye, np.eye(2, dtype="float32")[:, None, :], np.eye(2, dtype="float32")[None]])
v2 = np.concatenate([v, v], -1)                   # values of width 2, as the projections expect
ours = ScaledDotProductAttention()(q, k, v2)
np.testing.assert_allclose(np.asarray(mha(q, v2, key=k)), np.asarray(ours), rtol=1e-5)
print("MultiHeadAttention (1 head, identity projections) == ScaledDotProductAttention")
"""),
        md("""
## A Transformer decoder block

Causal self-attention over the caption, cross-attention to the image regions, then a feed-forward
network, each with a residual connection (pre-layer-norm). The block keeps the shape of its input.
"""),
        code("""
block = TransformerDecoderBlock(num_heads=2, key_dim=8, ff_dim=32)
words = np.random.default_rng(1).normal(size=(2, 5, 16)).astype("float32")    # (B, T, D)
regions = np.random.default_rng(2).normal(size=(2, 16, 16)).astype("float32")  # (B, 4x4 grid, D)
print(block(words, regions).shape)

# Causality, checked: changing word 4 leaves the outputs at positions 0..3 unchanged.
changed = words.copy()
changed[:, 4] += 1.0
a, b = np.asarray(block(words, regions)), np.asarray(block(changed, regions))
print("positions 0-3 unchanged:", np.allclose(a[:, :4], b[:, :4], atol=1e-5),
      "| position 4 changed:", not np.allclose(a[:, 4], b[:, 4]))
"""),
        md("""
`02_image_captioning` trains captioners built from these layers and draws their attention maps.
"""),
    ]


@notebook("02_image_captioning")
def image_captioning():
    return [
        md("""
# 02 · Image captioning

Data → model → training → looking at the predictions, on the offline scenes dataset: the document's
VGG16 + LSTM captioner and the attention captioner, BLEU, greedy vs beam search, attention maps, and a
SavedModel that serves captions without `vlm_keras`. About 3 minutes on a 2-core CPU.
"""),
        code(SETUP + """
import json, pathlib
import numpy as np
from PIL import Image
import vlm_keras
from vlm_keras.data import coco
from vlm_keras.data.shapes_dataset import write_shapes_dataset
"""),
        md("""
## Data

The scenes generator draws 1–4 coloured shapes per image and writes five reference captions each, in
the COCO captions layout. A small set keeps this notebook quick; the demo uses 6,000 images.
"""),
        code("""
data_dir = write_shapes_dataset("notebook_cache/shapes-1200", num_images=1200, seed=0, progress=False)
train = coco.load_caption_split(data_dir, "train")
print(len(train), "training images;", sorted(coco.list_caption_splits(data_dir)))
print(train.captions[0])
Image.open(train.image_paths[0]).resize((128, 128))
"""),
        md("""
## Train

`train_captioner` encodes every image once with VGG16 (random weights offline), caches the features and
trains the decoder on every (image, reference) pair. We train the document's LSTM captioner and the
attention captioner (an LSTM that looks at the 4×4 VGG16 grid for every word).
"""),
        code("""
common = dict(data=str(data_dir), epochs=8, image_size=64, seed=0, verbose=0, eval_splits=("test",))
lstm = vlm_keras.train_captioner(model="lstm", **common)
attention = vlm_keras.train_captioner(model="attention", **common)
for name, m in (("lstm", lstm), ("attention", attention)):
    print(f"{name:9s} BLEU-4 {m.metrics['bleu4_test']:.3f}  BLEU-1 {m.metrics['bleu1_test']:.3f}  "
          f"training {m.metrics['train_seconds']:.0f} s")
"""),
        md("""
## Look at the predictions: greedy vs beam search
"""),
        code("""
test = coco.load_caption_split(data_dir, "test")
paths = test.image_paths[:4]
greedy = attention.caption(paths)
beam = attention.caption(paths, beam_size=3)
for path, g, b, refs in zip(paths, greedy, beam, test.captions[:4]):
    print(pathlib.Path(path).name, "\\n  greedy:", g, "\\n  beam 3:", b, "\\n  a reference:", refs[0])
scores = {k: attention.evaluate(test, beam_size=k, verbose=0)["bleu4"] for k in (1, 3)}
print("BLEU-4 greedy %.3f, beam 3 %.3f" % (scores[1], scores[3]))
"""),
        md("""
## Attention maps

For every generated word, the weights the decoder gave the 16 grid cells.
"""),
        code("""
from vlm_keras.visualize import plot_attention_map

result = attention.attention([paths[0]])[0]
plot_attention_map(paths[0], result["words"], result["weights"], "notebook_cache/attention_map.png")
Image.open("notebook_cache/attention_map.png")
"""),
        md("""
## Export, reload, serve

The SavedModel takes encoded image bytes and returns caption strings. A fresh Python with TensorFlow
alone (no `vlm_keras`) can serve it.
"""),
        code("""
attention.export("notebook_cache/captioner_savedmodel")
import subprocess, sys
script = '''
import sys, tensorflow as tf
sm = tf.saved_model.load(sys.argv[1])
images = tf.constant([open(p, "rb").read() for p in sys.argv[2:]])
out = sm.signatures["serving_default"](images=images)
print([c.decode() for c in out["captions"].numpy()])
print("vlm_keras imported:", "vlm_keras" in sys.modules)
'''
print(subprocess.run([sys.executable, "-c", script, "notebook_cache/captioner_savedmodel", *paths[:2]],
                     capture_output=True, text=True).stdout)
"""),
    ]


_STARTUP_LOG = re.compile(r"^(?:[IWE]\d{4} .*|WARNING: All log messages before absl::InitializeLog\(\).*)$")


def _drop_startup_logs(nb):
    """TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) go to stderr before any
    Python setting can silence them; they say nothing about the tutorial, so they are dropped."""
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                out["text"] = "".join(line for line in out["text"].splitlines(keepends=True)
                                      if not _STARTUP_LOG.match(line.rstrip("\n")))
                if not out["text"].strip():
                    continue
            outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs


def build(names, execute):
    for name in names:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = NOTEBOOKS[name]()
        path = HERE / f"{name}.ipynb"
        if execute:
            from nbclient import NotebookClient

            start = time.perf_counter()
            NotebookClient(nb, timeout=900, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute()
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
            _drop_startup_logs(nb)
        nbformat.write(nb, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--execute", action="store_true")
    parser.add_argument("--only", action="append", help="notebook name (repeatable)")
    args = parser.parse_args()
    build(args.only or list(NOTEBOOKS), args.execute)


if __name__ == "__main__":
    main()

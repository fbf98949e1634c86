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


# Keeps TensorFlow's Python-side notes (retracing warnings, "Assets written to") out of the outputs.
# Importing TensorFlow in an interactive session sets its logger to INFO, so this comes after it.
QUIET = """\
import tensorflow as tf
tf.get_logger().setLevel("ERROR")
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


VQA_AT_THIS_SIZE = """
These figures come from 480 training images seen 6 times, so that the notebook runs in minutes, and at
this size the image models do no better than the blind baseline: the region convolutions have too few
examples to learn the shapes from VGG16's random (offline) features, so the image only adds noise to what
the question's wording gives away. This is the document's data-efficiency
problem (`05_open_problems` plots it). With 9,600 training images and 12 epochs,
`python benchmarks/vqa.py` measures the attention model at 0.98 VQA accuracy on the test split (1.00 on
colour and shape questions, 0.80 on spatial relations); the README has the table for all three models.
"""


@notebook("03_visual_question_answering")
def visual_question_answering():
    return [
        md("""
# 03 · Visual question answering

Data → models → training → looking at the answers: the scenes' questions in the VQA v2 format, the three
VQA models of `vlm_keras` (the document's concatenation network, a question that attends over the image
regions, and a blind baseline), the official VQA accuracy overall and per question type, where the
attention model looked, and a SavedModel that answers without `vlm_keras`. A few minutes on a 2-core CPU.
"""),
        code(SETUP + QUIET + """
import pathlib
import numpy as np
from PIL import Image
import vlm_keras
from vlm_keras.data.shapes_dataset import write_shapes_dataset
from vlm_keras.data.vqa import load_vqa_split
from vlm_keras.data.vqa_dataset import write_vqa_dataset
"""),
        md("""
## Data

`write_vqa_dataset` adds questions to a scenes dataset in the layout of the VQA v2 release
(`annotations/questions_<split>.json` and `annotations/vqa_<split>.json`). Each question has a type, an
answer type and ten "human" answers from synthetic annotators who mostly agree. A question is asked only
when its answer is unambiguous, and the answers of each question template are balanced, so the question
alone says little about its answer. A small set keeps this notebook quick.
"""),
        code("""
NUM_IMAGES, EPOCHS = 600, 6
data_dir = write_shapes_dataset(f"notebook_cache/shapes-{NUM_IMAGES}", num_images=NUM_IMAGES, seed=0,
                                progress=False)
write_vqa_dataset(data_dir, seed=0)
train, test = load_vqa_split(data_dir, "train"), load_vqa_split(data_dir, "test")
print(f"{len(train)} training questions about {len(set(train.image_ids))} images; {len(test)} test questions")
for i in range(6):
    print(f"  [{train.question_types[i]:10s}] {train.questions[i]:45s} -> {train.multiple_choice_answers[i]}")
print("the ten human answers to the first:", train.answers[0])
Image.open(train.image_paths[0]).resize((128, 128))
"""),
        md("""
## The metric

The official VQA accuracy credits an answer by how many humans gave it: each of the ten human answers
is left out in turn, the prediction scores min(1, matches among the other nine / 3), and the ten scores
are averaged. When the humans disagree, answers are normalised first (case, punctuation, articles,
number words).
"""),
        code("""
from vlm_keras.metrics import vqa_accuracy

humans = ["red"] * 7 + ["orange"] * 3
for answer in ("red", "Red.", "orange", "blue"):
    print(f"{answer!r:9s} {vqa_accuracy(answer, humans):.2f}")
"""),
        md("""
## Three models

Each reads the question with a word embedding and an LSTM, and the image as a grid of VGG16 features
(random weights offline; computed once per image and cached) refined by a few learned convolutions into
an 8×8 grid of regions. Training takes whole images with all their questions, so those convolutions run
once per image.

- `concat`: the document's network (section 5.2): the grid pooled to one vector (a learned pooling that
  keeps where things are), concatenated with the question, then a classifier over the answer vocabulary;
- `attention`: the same, plus four queries made from the question that attend over the regions (each
  knows its row and column), so it can look at the object it asks about;
- `question_only`: no image at all. The gap between it and the others is what the image contributes.
"""),
        code("""
common = dict(data=str(data_dir), epochs=EPOCHS, image_size=64, seed=0, verbose=0, eval_splits=("test",))
models = {name: vlm_keras.train_vqa(model=name, **common) for name in ("question_only", "concat", "attention")}
print("VGG16 grid (h, w, channels):", models["attention"].encoder.output_shape[1:])
for name, m in models.items():
    print(f"{name:13s} VQA accuracy {m.metrics['accuracy_test']:.3f}   training {m.metrics['train_seconds']:.0f} s")
"""),
        md(VQA_AT_THIS_SIZE),
        md("""
## Per question type

The overall figure mixes easy and hard questions. Yes/no and size questions have two answers (chance is
0.5), colours six and shapes four; counting and spatial relations need the whole scene.
"""),
        code("""
per_type = {name: m.metrics["per_question_type_test"] for name, m in models.items()}
print(f"{'question type':14s}" + "".join(f"{name:>15s}" for name in models))
for t in sorted(per_type["attention"]):
    print(f"{t:14s}" + "".join(f"{per_type[name][t]:15.3f}" for name in models))
"""),
        md("""
## Look at the answers

`answer` takes image files (or encoded bytes) and one question per image, and returns the top answers
with their probabilities. Here: the first test question of four types.
"""),
        code("""
attention = models["attention"]
picks = [test.question_types.index(t) for t in ("what color", "what shape", "how many", "spatial")]
paths, questions = [test.image_paths[i] for i in picks], [test.questions[i] for i in picks]
results = attention.answer(paths, questions, top_k=3)
for i, result in zip(picks, results):
    top = ", ".join(f"{a} {p:.2f}" for a, p in result["top_k"])
    print(f"{pathlib.Path(test.image_paths[i]).name}  {test.questions[i]!r}\\n"
          f"    -> {top}   (humans: {test.multiple_choice_answers[i]})")
Image.fromarray(np.hstack([np.asarray(Image.open(p).convert("RGB").resize((128, 128))) for p in paths]))
"""),
        md("""
## Attention maps

For the attention model, `attention(images, questions)` returns the weights the question gave the grid's
regions (they sum to 1): where it looked. `vlm-keras ask --attention-map` draws the
same picture.
"""),
        code("""
from vlm_keras.visualize import plot_attention_map

weights = attention.attention(paths, questions)                       # (N, h, w)
pngs = [plot_attention_map(path, [result["answer"]], weights[k:k + 1], f"notebook_cache/vqa_attention_{k}.png",
                           title=question) for k, (path, question, result) in enumerate(zip(paths, questions, results))]
Image.fromarray(np.hstack([np.asarray(Image.open(png).convert("RGB")) for png in pngs]))
"""),
        md("""
The maps show which regions the model weighed for its answer, not a segmentation of the object.

## Export, reload, serve

The SavedModel takes encoded image bytes and question strings (tokenised inside the graph) and returns
the answer, its probability and the top 5. A fresh Python with TensorFlow alone (no `vlm_keras`) serves
it.
"""),
        code('''
attention.export("notebook_cache/vqa_savedmodel")
import subprocess, sys
script = """
import sys, tensorflow as tf
sm = tf.saved_model.load(sys.argv[1])
n = (len(sys.argv) - 2) // 2
images = tf.constant([open(p, "rb").read() for p in sys.argv[2:2 + n]])
out = sm.signatures["serving_default"](images=images, questions=tf.constant(sys.argv[2 + n:]))
for q, a, p in zip(sys.argv[2 + n:], out["answer"].numpy(), out["probability"].numpy()):
    print(f"{q!r} -> {a.decode()} ({p:.2f})")
print("vlm_keras imported:", "vlm_keras" in sys.modules)
"""
print(subprocess.run([sys.executable, "-c", script, "notebook_cache/vqa_savedmodel", *paths[:2], *questions[:2]],
                     capture_output=True, text=True).stdout)
'''),
        md("""
`05_open_problems` looks at the attention model's right and wrong answers, and measures how the models
cope with colour-shape pairs they never saw.
"""),
    ]


@notebook("04_image_text_retrieval")
def image_text_retrieval():
    return [
        md("""
# 04 · Image-text retrieval

The document's section 3.3: an image encoder and a text encoder map into one space, and a similarity
between the two ranks the results. Data → a dual encoder trained contrastively → Recall@K both ways →
similarities → searching a folder of images by text with the exported model. A few minutes on a 2-core
CPU.
"""),
        code(SETUP + QUIET + """
import pathlib, shutil
import numpy as np
from PIL import Image
import vlm_keras
from vlm_keras.data import coco
from vlm_keras.data.shapes_dataset import write_shapes_dataset

np.set_printoptions(precision=2, suppress=True)
"""),
        md("""
## Data

The scenes dataset in the COCO captions layout: five captions per image, each naming every object's
colour and shape and where it is, so a caption singles out few images. Every (image, caption) pair of the
training split is a training example.
"""),
        code("""
NUM_IMAGES, EPOCHS = 800, 6
data_dir = write_shapes_dataset(f"notebook_cache/shapes-{NUM_IMAGES}", num_images=NUM_IMAGES, seed=0,
                                progress=False)
train, test = coco.load_caption_split(data_dir, "train"), coco.load_caption_split(data_dir, "test")
print(len(train), "training images,", len(test), "test images, 5 captions each")
print(test.captions[0])
Image.open(test.image_paths[0]).resize((128, 128))
"""),
        md("""
## Train

`train_retrieval` builds two towers that end in 256-dimensional unit vectors: the image tower reads
VGG16's `block3_pool` grid (computed once and cached) and pools it with attention over its regions; the
text tower is a bidirectional LSTM. Their cosine similarity, times a learned inverse temperature, scores
every image of a batch against every caption of the batch. The loss is CLIP's symmetric contrastive
loss: each image must pick its own caption among the batch's, and each caption its own image.
"""),
        code("""
ret = vlm_keras.train_retrieval(data=str(data_dir), epochs=EPOCHS, image_size=64, seed=0, verbose=0,
                                eval_splits=("test",))
print("loss per epoch:", np.array(ret.history["loss"]))
print(f"learned temperature {ret.metrics['learned_temperature']:.3f} (starts at 0.07); "
      f"training {ret.metrics['train_seconds']:.0f} s")
"""),
        md("""
## Recall@K and median rank

Every test image is scored against every test caption, as COCO and Flickr30k results are reported.
Text → image: each caption is a query with one right image. Image → text: an image is found at K when
any of its five captions is in the top K. Recall@K is the fraction found at K; the median rank is that of
the right answer (1 is perfect). Picking at random, Recall@1 would be 1 / the number of test images.
"""),
        code("""
m = ret.metrics
print(f"{m['num_images_test']} test images, {m['num_captions_test']} captions; "
      f"chance R@1 = {1 / m['num_images_test']:.3f}")
print(f"{'':15s}{'R@1':>7s}{'R@5':>7s}{'R@10':>7s}{'median rank':>13s}")
for direction in ("text_to_image", "image_to_text"):
    print(f"{direction:15s}" + "".join(f"{m[f'{direction}_r{k}_test']:7.3f}" for k in (1, 5, 10))
          + f"{m[f'{direction}_median_rank_test']:13.0f}")
"""),
        md("""
## Similarities

`similarity(images, texts)` returns the cosines between image and text embeddings. For four test images
and the first caption of each, the diagonal (each image with its own caption) should stand out.
"""),
        code("""
paths = test.image_paths[:4]
texts = [refs[0] for refs in test.captions[:4]]
for k, text in enumerate(texts):
    print(k, text)
print(ret.similarity(paths, texts))          # rows: images, columns: texts
"""),
        md("""
## Export

The SavedModel has two signatures, `embed_image` (encoded image bytes) and `embed_text` (strings,
tokenised inside the graph), both returning unit vectors; `image_embeddings @ text_embeddings.T` ranks.
A fresh Python with TensorFlow alone (no `vlm_keras`) uses it.
"""),
        code('''
ret.export("notebook_cache/retrieval_savedmodel")
import subprocess, sys
script = """
import sys, tensorflow as tf
sm = tf.saved_model.load(sys.argv[1])
images = sm.signatures["embed_image"](images=tf.constant([open(p, "rb").read() for p in sys.argv[2:4]]))
texts = sm.signatures["embed_text"](texts=tf.constant(sys.argv[4:]))
print((images["embeddings"] @ tf.transpose(texts["embeddings"])).numpy().round(2))
print("vlm_keras imported:", "vlm_keras" in sys.modules)
"""
print(subprocess.run([sys.executable, "-c", script, "notebook_cache/retrieval_savedmodel", *paths[:2], *texts[:2]],
                     capture_output=True, text=True).stdout)
'''),
        md("""
## Search a folder of images by text

`vlm_keras.index` is what `vlm-keras index` and `vlm-keras search` run. `index_folder` embeds every
readable image under a folder once, with a model folder or an export, and writes one `.npz` (files that
are not images are skipped and listed); `search` embeds the query with the same model and ranks the
images by cosine. Here the folder holds the test images and a stray text file:

```bash
vlm-keras index --model notebook_cache/retrieval_savedmodel photos/ --out photos.npz
vlm-keras search --index photos.npz "a large red circle" -k 3
```
"""),
        code("""
from vlm_keras.index import index_folder, load_index, open_embedder, search

photos = pathlib.Path("notebook_cache/photos")
shutil.rmtree(photos, ignore_errors=True)
shutil.copytree(pathlib.Path(test.image_paths[0]).parent, photos)
(photos / "notes.txt").write_text("not an image")
summary = index_folder("notebook_cache/retrieval_savedmodel", photos, "notebook_cache/photos.npz", progress=False)
print(summary["num_images"], "images indexed; skipped:", [pathlib.Path(s["path"]).name for s in summary["skipped"]])
"""),
        code("""
index, embedder = load_index("notebook_cache/photos.npz"), open_embedder("notebook_cache/retrieval_savedmodel")

def show_search(query, k=4):
    hits = search(index, query, k=k, embedder=embedder)
    print(repr(query), "->", ", ".join(f"{pathlib.Path(h['path']).name} ({h['score']:.2f})" for h in hits))
    return Image.fromarray(np.hstack([np.asarray(Image.open(h["path"]).convert("RGB").resize((128, 128)))
                                      for h in hits]))

print("the image that caption was written for:", pathlib.Path(test.image_paths[1]).name)
show_search(test.captions[1][0])
"""),
        code("""
show_search("a large red circle")
"""),
        md("""
`05_open_problems` measures how retrieval and the other tasks cope with colour-shape pairs never seen in
training, and how much data they need.
"""),
    ]


@notebook("05_open_problems")
def open_problems():
    return [
        md("""
# 05 · Three open problems, measured

The document ends with three open problems of vision-language models: generalising to combinations never
seen in training, needing a lot of data, and seeing why a model answers as it does. This notebook puts a
number (or a picture) on each, with the models of the previous notebooks at a size a 2-core CPU trains in
a few minutes. The figures are small-scale; the benchmarks in the README give the full-size ones.
"""),
        code(SETUP + QUIET + """
import pathlib
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from PIL import Image
import vlm_keras
from vlm_keras.data import coco
from vlm_keras.data.shapes import HELDOUT_PAIRS
from vlm_keras.data.shapes_dataset import write_shapes_dataset
"""),
        md("""
## Data

Scenes datasets of three sizes. Image *i* of a split depends only on (seed, split, *i*), so the smaller
training sets are the first images of the larger ones, and the test images of the largest set (used to
score every model) are never seen in training by any of them. Its `compositional` split holds images with
a colour-shape pair that no other split contains.
"""),
        code("""
SIZES, EPOCHS = (150, 300, 600), 5
data = {n: write_shapes_dataset(f"notebook_cache/shapes-{n}", num_images=n, seed=0, progress=False) for n in SIZES}
largest = data[max(SIZES)]
test = coco.load_caption_split(largest, "test")
compositional = coco.load_caption_split(largest, "compositional")
print("held-out pairs:", ", ".join(" ".join(p) for p in HELDOUT_PAIRS))
print(len(test), "test images;", len(compositional), "compositional images, e.g.:", compositional.captions[0][0])
Image.open(compositional.image_paths[0]).resize((128, 128))
"""),
        md("""
## 1 · Combinations never seen in training

A model that understands "red" and "triangle" separately should find a red triangle although no training
image has one. We train the retrieval model of `04_image_text_retrieval` on the largest set and score it
on two pools of the same size: the test images (colour-shape pairs seen in training) and the
compositional images (each with an unseen pair).
"""),
        code("""
retrieval = {max(SIZES): vlm_keras.train_retrieval(data=str(largest), epochs=EPOCHS, image_size=64, seed=0,
                                                   verbose=0, eval_splits=("test", "compositional"))}
m = retrieval[max(SIZES)].metrics
print(f"{'':15s}{'R@1 test':>10s}{'R@1 comp.':>11s}{'R@10 test':>11s}{'R@10 comp.':>12s}")
for direction in ("text_to_image", "image_to_text"):
    print(f"{direction:15s}{m[direction + '_r1_test']:10.3f}{m[direction + '_r1_compositional']:11.3f}"
          f"{m[direction + '_r10_test']:11.3f}{m[direction + '_r10_compositional']:12.3f}")
"""),
        md("""
The drop from the test pool to the compositional one is the cost of unseen combinations. At full size
(6,000 images, README) it is about 0.2 of Recall@1 for retrieval and 0.07 of BLEU-4 for the captioners.

## 2 · Data efficiency: a learning curve

The same model and the same number of epochs, trained on the training split (80%) of each set, all
scored on the same test images.
"""),
        code("""
for n in SIZES[:-1]:
    retrieval[n] = vlm_keras.train_retrieval(data=str(data[n]), epochs=EPOCHS, image_size=64, seed=0,
                                             verbose=0, eval_splits=())
curve = {n: retrieval[n].evaluate(test, verbose=0) for n in SIZES}
train_images = [len(coco.load_caption_split(data[n], "train")) for n in SIZES]
for n, t in zip(SIZES, train_images):
    print(f"{t:4d} training images: text->image R@1 {curve[n]['text_to_image_r1']:.3f}, "
          f"image->text R@1 {curve[n]['image_to_text_r1']:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.2))
for key, label in (("text_to_image_r1", "text → image R@1"), ("image_to_text_r1", "image → text R@1"),
                   ("text_to_image_r10", "text → image R@10")):
    ax.plot(train_images, [curve[n][key] for n in SIZES], "o-", label=label)
ax.axhline(1 / len(test), color="gray", ls=":", label="chance R@1")
ax.set(xscale="log", xticks=train_images, xticklabels=train_images, ylim=(0, 1),
       xlabel="training images", ylabel=f"recall ({len(test)} test images)")
ax.minorticks_off()
ax.legend(fontsize=8)
plt.show()
"""),
        md("""
Doubling the training images still raises recall a lot: the curve has not flattened, so at this size the
model is short of data, not of capacity. Learning as much from fewer examples (a pretrained encoder,
augmentation, better inductive biases) is the open problem; the README's benchmarks train on 4,800
images (9,600 for VQA, where the concat model overfits 4,800).

## 3 · Interpretability: where did the model look?

The VQA attention model of `03_visual_question_answering` tells us which image regions each question
attended to. We train it on the largest set, answer the colour and shape questions about the test
images (each is about one object), and compare the maps of right answers (full VQA credit) and wrong ones.
"""),
        code("""
from vlm_keras.data.vqa import load_vqa_split
from vlm_keras.data.vqa_dataset import write_vqa_dataset
from vlm_keras.metrics import vqa_accuracy
from vlm_keras.visualize import plot_attention_map

write_vqa_dataset(largest, seed=0)
vqa = vlm_keras.train_vqa(data=str(largest), model="attention", epochs=EPOCHS, image_size=64, seed=0,
                          verbose=0, eval_splits=("test",))
print(f"VQA accuracy on all test questions: {vqa.metrics['accuracy_test']:.3f}")

questions = load_vqa_split(largest, "test")
picked = [i for i, t in enumerate(questions.question_types) if t in ("what color", "what shape")]
paths = [questions.image_paths[i] for i in picked]
asked = [questions.questions[i] for i in picked]
answers = [r["answer"] for r in vqa.answer(paths, asked)]
right = np.array([vqa_accuracy(a, questions.answers[i]) == 1.0 for a, i in zip(answers, picked)])
weights = vqa.attention(paths, asked)                                   # (N, h, w), each sums to 1
peak = weights.reshape(len(weights), -1).max(axis=1)
print(f"{len(picked)} colour and shape questions: {right.sum()} right, {(~right).sum()} wrong")
print(f"mean peak attention weight: right {peak[right].mean():.3f}, wrong {peak[~right].mean():.3f} "
      f"(uniform over the {weights[0].size} regions: {1 / weights[0].size:.3f})")
"""),
        code("""
for verdict in ("right", "wrong"):
    print(f"{verdict} answers:")
    pngs = []
    for k in np.flatnonzero(right == (verdict == "right"))[:3]:
        truth = questions.multiple_choice_answers[picked[k]]
        print(f"  {asked[k]!r} -> {answers[k]}   (humans: {truth})")
        pngs.append(plot_attention_map(paths[k], [answers[k]], weights[k:k + 1],
                                       f"notebook_cache/open_{verdict}_{k}.png", title=asked[k]))
    if pngs:
        display(Image.fromarray(np.hstack([np.asarray(Image.open(png).convert("RGB")) for png in pngs])))
"""),
        md("""
Here the maps are close to uniform, for right and wrong answers alike: the peak weight is barely above
1/64. Trained on 480 images for a few epochs, the model has not learned where to look, and the answers it
gets right come from elsewhere in the network (the pooled image joins the fusion too). Even a well-trained
model's map shows where the attention weights went, not why the model answered as it did: explanations
that are faithful to the computation are the open problem.
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

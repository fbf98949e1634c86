# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Visual question answering
#
# Data → models → training → looking at the answers: the scenes' questions in the VQA v2 format, the VQA
# models of `vlm_keras` (the document's concatenation network, a question that attends over the image
# regions, a graph over the regions, and a blind baseline), the official VQA accuracy overall and per
# question type, where the attention model looked (and whether that is on the object), and a SavedModel
# that answers without `vlm_keras`; then the graph model for relations, its edges drawn, and the same graph
# reading annotated scene graphs instead of pixels. About 10 minutes on a 2-core CPU.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")
import tensorflow as tf
tf.get_logger().setLevel("ERROR")

import pathlib
import numpy as np
from PIL import Image
import vlm_keras
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.dataset import write_scenes_dataset, write_vqa_dataset

# %% [markdown]
# ## Data
#
# `write_vqa_dataset` adds questions to a scenes dataset in the layout of the VQA v2 release
# (`annotations/questions_<split>.json` and `annotations/vqa_<split>.json`). Each question has a type, an
# answer type and ten "human" answers from synthetic annotators who mostly agree. A question is asked only
# when its answer is unambiguous, and the answers of each question template are balanced, so the question
# alone says little about its answer. 4,800 images (3,840 for training) keep this notebook to a few
# minutes; below about 4,000 training images the models have not yet learnt where to look (the
# data-efficiency problem that `05_open_problems` measures).

# %%
NUM_IMAGES, EPOCHS = 4800, 8
data_dir = write_scenes_dataset(f"notebook_cache/scenes-{NUM_IMAGES}", num_images=NUM_IMAGES, seed=0,
                                progress=False)
write_vqa_dataset(data_dir, seed=0)
train, test = load_vqa_split(data_dir, "train"), load_vqa_split(data_dir, "test")
print(f"{len(train)} training questions about {len(set(train.image_ids))} images; {len(test)} test questions")
for i in range(6):
    print(f"  [{train.question_types[i]:10s}] {train.questions[i]:45s} -> {train.multiple_choice_answers[i]}")
print("the ten human answers to the first:", train.answers[0])
Image.open(train.image_paths[0]).resize((128, 128))

# %% [markdown]
# ## The metric
#
# The official VQA accuracy credits an answer by how many humans gave it: each of the ten human answers
# is left out in turn, the prediction scores min(1, matches among the other nine / 3), and the ten scores
# are averaged. When the humans disagree, answers are normalised first (case, punctuation, articles,
# number words).

# %%
from vlm_keras.metrics import vqa_accuracy

humans = ["red"] * 7 + ["orange"] * 3
for answer in ("red", "Red.", "orange", "blue"):
    print(f"{answer!r:9s} {vqa_accuracy(answer, humans):.2f}")

# %% [markdown]
# ## The models
#
# Each reads the question with a word embedding and an LSTM, and the image through the region encoder that
# every task of `vlm_keras` shares: a grid of VGG16 features (random weights offline; computed once per
# image and cached, and reused by the next model trained on the same images in this process) refined by
# four learned convolutions into an 8×8 grid of regions, each knowing its row and column. Training takes
# whole images with all their questions, so those convolutions run once per image.
#
# - `concat`: the document's network (section 5.2): the grid pooled to one vector (a learned pooling that
#   keeps where things are), concatenated with the question, then a classifier over the answer vocabulary;
# - `attention`: the same, plus four queries made from the question that attend over the regions (each
#   knows its row and column), so it can look at the object it asks about. By default it also reads each
#   image's outline map (where the colour changes, drawn in grey; the grid below has twice the channels):
#   its convolutions read the outlines and a separate stream of 1x1 convolutions the colours, so that no
#   feature binds a shape to the colours it was seen with (the README's "Keeping colour and shape apart");
# - `graph`, `train_vqa()`'s default: the document's third fusion: the regions are the nodes of a graph and
#   pass messages to each other, steered by the question, before the question's queries read them (for
#   relations: "what is left of the red object"); it reads the outlines as `attention` does;
# - `question_only`: no image at all. The gap between it and the others is what the image contributes.
#
# We train the attention model and the blind baseline here (the graph models further down); the blind
# one learns what the wording gives away within a few epochs (3 here; 0.423 after 12 at full size). The
# README's table has the others at full size (`python benchmarks/vqa.py`): concat 0.819, attention 0.981
# (0.894 on the compositional split, 0.734 without the outline stream), graph 0.980 (0.875; 0.639 without
# it).

# %%
common = dict(data=str(data_dir), image_size=64, seed=0, verbose=0, eval_splits=("test",))
models = {"question_only": vlm_keras.train_vqa(model="question_only", epochs=3, **common),
          "attention": vlm_keras.train_vqa(model="attention", epochs=EPOCHS, **common)}
print("VGG16 grid (h, w, channels):", models["attention"].encoder.output_shape[1:])
for name, m in models.items():
    print(f"{name:13s} VQA accuracy {m.metrics['accuracy_test']:.3f}   training {m.metrics['train_seconds']:.0f} s")
lead = models["attention"].metrics["accuracy_test"] - models["question_only"].metrics["accuracy_test"]
print(f"attention minus the blind baseline: {lead:+.3f}")

# %% [markdown]
# The blind baseline shows how much the wording of a question gives away: the answers are balanced per
# question template, so it stays far from 1. The attention model's lead over it is what it reads from the
# image. With 9,600 training images and 12 epochs the README measures the attention model at 0.98 VQA
# accuracy on the test split (1.00 on colour and shape questions, 0.82 on spatial relations).

# %% [markdown]
# ## Per question type
#
# The overall figure mixes easy and hard questions. Yes/no and size questions have two answers (chance is
# 0.5), colours six and shapes four; counting and spatial relations need the whole scene.

# %%
per_type = {name: m.metrics["per_question_type_test"] for name, m in models.items()}
print(f"{'question type':14s}" + "".join(f"{name:>15s}" for name in models))
for t in sorted(per_type["attention"]):
    print(f"{t:14s}" + "".join(f"{per_type[name][t]:15.3f}" for name in models))

# %% [markdown]
# ## Look at the answers
#
# `answer` takes image files (or encoded bytes) and one question per image, and returns the top answers
# with their probabilities. Here: the first test question of four types.

# %%
attention = models["attention"]
picks = [test.question_types.index(t) for t in ("what color", "what shape", "how many", "spatial")]
paths, questions = [test.image_paths[i] for i in picks], [test.questions[i] for i in picks]
results = attention.answer(paths, questions, top_k=3)
for i, result in zip(picks, results):
    top = ", ".join(f"{a} {p:.2f}" for a, p in result["top_k"])
    print(f"{pathlib.Path(test.image_paths[i]).name}  {test.questions[i]!r}\n"
          f"    -> {top}   (humans: {test.multiple_choice_answers[i]})")
Image.fromarray(np.hstack([np.asarray(Image.open(p).convert("RGB").resize((128, 128))) for p in paths]))

# %% [markdown]
# ## Attention maps
#
# For the attention model, `attention(images, questions)` returns the weights the question gave the grid's
# regions (they sum to 1): where it looked. `vlm-keras ask --attention-map` draws the
# same picture.

# %%
from vlm_keras.visualize import plot_attention_map

weights = attention.attention(paths, questions)                       # (N, h, w)
pngs = [plot_attention_map(path, [result["answer"]], weights[k:k + 1], f"notebook_cache/vqa_attention_{k}.png",
                           title=question) for k, (path, question, result) in enumerate(zip(paths, questions, results))]
Image.fromarray(np.hstack([np.asarray(Image.open(png).convert("RGB")) for png in pngs]))

# %% [markdown]
# The maps show which regions the model weighed for its answer, not a segmentation of the object. Whether
# they land on the object a question names is measured by the pointing game (the same as notebook 02's
# captioner): for every test question about one object, a hit when the map's maximum lies on it.

# %%
pointing = attention.pointing(str(data_dir), "test", verbose=0)
print(f"pointing game on {pointing['pointing_count']} questions: {pointing['pointing']:.3f} "
      f"(a uniform map: {pointing['pointing_uniform']:.3f})")

# %% [markdown]
# ## Relations: a graph over the regions, and the scene graph as the input
#
# Spatial questions ("what is left of the red circle") need two objects and where one lies from the
# other, and counting needs every object at once: a softmax over regions averages, it does not compare.
# The document's third fusion is a graph over the visual elements. In the `graph` model the 64 regions
# are its nodes; in two rounds of message passing (`QuestionGraphAttention`) every region gathers from
# every other, with edge weights that depend on both regions, on where one lies from the other and on
# the question; then the question's glimpses read the updated regions as in `attention`.
#
# The scenes also record every object (colour, shape, size, position). With
# `visual_input="scene_graph"` the same head reads those annotated objects as its nodes instead of the
# regions: what a VQA paper calls "ground-truth scene graphs". It bounds what perception costs: where it
# is right and the pixel model wrong, the pixel model failed to see; where it too is wrong, the
# question needs more than seeing.

# %%
models["graph"] = vlm_keras.train_vqa(model="graph", epochs=EPOCHS, **common)
models["graph, scene graph"] = vlm_keras.train_vqa(model="graph", visual_input="scene_graph", epochs=EPOCHS,
                                                   **common)
per_type = {name: m.metrics["per_question_type_test"] for name, m in models.items()}
print(f"{'question type':14s}" + "".join(f"{name:>20s}" for name in models))
for t in sorted(per_type["attention"]):
    print(f"{t:14s}" + "".join(f"{per_type[name][t]:20.3f}" for name in models))
print(f"{'overall':14s}" + "".join(f"{m.metrics['accuracy_test']:20.3f}" for m in models.values()))
print(f"{'training s':14s}" + "".join(f"{m.metrics['train_seconds']:20.0f}" for m in models.values()))

# %% [markdown]
# `graph_edges(images, questions)` returns each round's edge weights: row i is how region i weighed every
# other region for this question. Below, three spatial test questions; for the region the question's
# glimpses weigh most (what the answer is read from), its three strongest edges of the last round, drawn
# as arrows from that region to the regions it gathered from.

# %%
from vlm_keras.visualize import plot_graph_edges

graph = models["graph"]
spatial = [i for i, t in enumerate(test.question_types) if t == "spatial"][:3]
paths_s, questions_s = [test.image_paths[i] for i in spatial], [test.questions[i] for i in spatial]
answers_s = graph.answer(paths_s, questions_s)
edges = graph.graph_edges(paths_s, questions_s)                             # (N, rounds, 64, 64)
looked_at = graph.attention(paths_s, questions_s).reshape(len(spatial), -1).argmax(-1)   # a region each
pngs = []
for k, (i, answer) in enumerate(zip(spatial, answers_s)):
    print(f"{test.questions[i]!r} -> {answer['answer']} (humans: {test.multiple_choice_answers[i]})")
    pngs.append(plot_graph_edges(test.image_paths[i], edges[k, -1], (8, 8), f"notebook_cache/vqa_edges_{k}.png",
                                 top_k=3, rows=[looked_at[k]], title=test.questions[i]))
Image.fromarray(np.hstack([np.asarray(Image.open(png).convert("RGB")) for png in pngs]))

# %% [markdown]
# Read the table and the arrows soberly. At this size the graph model, which reads the outlines as attention
# does, answers better than attention (0.900 against 0.764): the gain is in the questions about one named
# object (what color 0.99, what shape 0.88, is there 0.95) and in counting (0.73 against 0.61), while spatial
# questions stay near 0.55 for both. (The attention model's own figure moves from run to run at this size:
# the previous run of this notebook, with the same head and trainer, gave 0.828; threads on a CPU do not
# add in one order, and the README's three seeds of it at 2,400 images range from 0.755 to 0.850.) In the
# first two examples the region its glimpses weigh most lies on or
# at the edge of an object, and for "what is above the large yellow object" its strongest edges run from the
# answer (the orange cross) down to the object the question names; in the third it is background above the
# objects and the yes/no answer is wrong: its edges are not yet a picture of "left of". The scene-graph model,
# with perception solved, answers colour, shape, size and existence perfectly, and still misses spatial
# questions. At full size (12,000 scenes, 12 epochs; the README's tables) the two heads are level, 0.980 and
# 0.978 on test over three seeds with the outline stream (0.981 and 0.980 without it), and the graph head
# reaches 0.91 of that with a quarter of the images where attention reaches 0.81, which is why it is
# `train_vqa()`'s default; spatial questions stay at 0.76-0.82 for both and 0.80 with ground-truth scene
# graphs. Split by form, "what is above the yellow object"
# is answered (0.93 with scene graphs) and "is the red object to the left of the small square" is not (0.55, chance), although
# every label agrees with the generator's rule: the yes/no relations, two objects bound to their roles in
# the question's order, are what none of these heads has learnt.

# %% [markdown]
# ## Export, reload, serve
#
# The SavedModel takes encoded image bytes and question strings (tokenised inside the graph) and returns
# the answer, its probability and the top 5. A fresh Python with TensorFlow alone (no `vlm_keras`) serves
# it.

# %%
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

# %% [markdown]
# `05_open_problems` looks at the attention model's right and wrong answers, and measures how the models
# cope with colour-shape pairs they never saw.

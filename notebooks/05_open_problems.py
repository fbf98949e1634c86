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
# # 05 · Three open problems, measured
#
# The document ends with three open problems of vision-language models: generalising to combinations never
# seen in training, needing a lot of data, and seeing why a model answers as it does. This notebook puts a
# number (or a picture) on each, with the models of the previous notebooks at a size a 2-core CPU trains in
# a few minutes. The figures are small-scale; the benchmarks in the README give the full-size ones.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")
import tensorflow as tf
tf.get_logger().setLevel("ERROR")

import pathlib
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from PIL import Image
import vlm_keras
from vlm_keras.data.formats import coco
from vlm_keras.data.scenes.scenes import HELDOUT_PAIRS
from vlm_keras.data.scenes.dataset import write_scenes_dataset

# %% [markdown]
# ## Data
#
# Scenes datasets of three sizes. Image *i* of a split depends only on (seed, split, *i*), so the smaller
# training sets are the first images of the larger ones, and the test images of the largest set (used to
# score every model) are never seen in training by any of them. Its `compositional` split holds images with
# a colour-shape pair that no other split contains.

# %%
SIZES, EPOCHS = (150, 300, 600), 5
data = {n: write_scenes_dataset(f"notebook_cache/scenes-{n}", num_images=n, seed=0, progress=False) for n in SIZES}
largest = data[max(SIZES)]
test = coco.load_caption_split(largest, "test")
compositional = coco.load_caption_split(largest, "compositional")
print("held-out pairs:", ", ".join(" ".join(p) for p in HELDOUT_PAIRS))
print(len(test), "test images;", len(compositional), "compositional images, e.g.:", compositional.captions[0][0])
Image.open(compositional.image_paths[0]).resize((128, 128))

# %% [markdown]
# ## 1 · Combinations never seen in training
#
# A model that understands "red" and "triangle" separately should find a red triangle although no training
# image has one. We train the retrieval model of `04_image_text_retrieval` on the largest set and score it
# on two pools of the same size: the test images (colour-shape pairs seen in training) and the
# compositional images (each with an unseen pair).

# %%
retrieval = {max(SIZES): vlm_keras.train_retrieval(data=str(largest), epochs=EPOCHS, image_size=64, seed=0,
                                                   verbose=0, eval_splits=("test", "compositional"))}
m = retrieval[max(SIZES)].metrics
print(f"{'':15s}{'R@1 test':>10s}{'R@1 comp.':>11s}{'R@10 test':>11s}{'R@10 comp.':>12s}")
for direction in ("text_to_image", "image_to_text"):
    print(f"{direction:15s}{m[direction + '_r1_test']:10.3f}{m[direction + '_r1_compositional']:11.3f}"
          f"{m[direction + '_r10_test']:11.3f}{m[direction + '_r10_compositional']:12.3f}")

# %% [markdown]
# The drop from the test pool to the compositional one is the cost of unseen combinations. At full size
# (6,000 images, README) it is about 0.2 of Recall@1 for retrieval and 0.07 of BLEU-4 (nltk's) for the captioners.
#
# ## 2 · Data efficiency: a learning curve
#
# The same model and the same number of epochs, trained on the training split (80%) of each set, all
# scored on the same test images.

# %%
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

# %% [markdown]
# Doubling the training images still raises recall a lot: the curve has not flattened, so at this size the
# model is short of data, not of capacity. Learning as much from fewer examples (a pretrained encoder,
# augmentation, better inductive biases) is the open problem; the README's benchmarks train on 4,800
# images (9,600 for VQA, where the concat model overfits 4,800).
#
# ## 3 · Interpretability: where did the model look?
#
# The VQA attention model of `03_visual_question_answering` tells us which image regions each question
# attended to. We train it on the largest set, answer the colour and shape questions about the test
# images (each is about one object), and compare the maps of right answers (full VQA credit) and wrong ones.

# %%
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.dataset import write_vqa_dataset
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

# %%
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

# %% [markdown]
# Here the maps are close to uniform, for right and wrong answers alike: the peak weight is barely above
# 1/64. Trained on 480 images for a few epochs, the model has not learned where to look, and the answers it
# gets right come from elsewhere in the network (the pooled image joins the fusion too). Even a well-trained
# model's map shows where the attention weights went, not why the model answered as it did: explanations
# that are faithful to the computation are the open problem.

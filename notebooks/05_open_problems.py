# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
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
SIZES, EPOCHS = (150, 300, 600), 4
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
# compositional images (each with an unseen pair). The training sets here are small (120 to 480 images),
# so the models train on batches of 32: the default 256 would make one or two updates an epoch. They are
# trained without the outline stream (`outline=False`): at these sizes it learns no faster than the model
# without it (the full-size curves below, where it pulls ahead from 1,200 training images on), and at 480
# images and 4 epochs it still sees too little to show the gap. The default's hard negative captions stay on.

# %%
SMALL = dict(epochs=EPOCHS, batch_size=32, outline=False, image_size=64, seed=0, verbose=0)
retrieval = {max(SIZES): vlm_keras.train_retrieval(data=str(largest), eval_splits=("test", "compositional"), **SMALL)}
m = retrieval[max(SIZES)].metrics
print(f"{'':15s}{'R@1 test':>10s}{'R@1 comp.':>11s}{'R@10 test':>11s}{'R@10 comp.':>12s}")
for direction in ("text_to_image", "image_to_text"):
    print(f"{direction:15s}{m[direction + '_r1_test']:10.3f}{m[direction + '_r1_compositional']:11.3f}"
          f"{m[direction + '_r10_test']:11.3f}{m[direction + '_r10_compositional']:12.3f}")

# %% [markdown]
# The drop from the test pool to the compositional one is the cost of unseen combinations. On pools of 60
# images one run is noisy (each image is 0.017 of R@1, and the two directions can disagree about the drop,
# as in this run's). At full size (6,000 images, three seeds, the curves below) it is 0.20 of Recall@1 for
# retrieval and 0.13 of BLEU-4 for the LSTM captioner, with their default models.
#
# ## 2 · Data efficiency: a learning curve
#
# The same model and the same number of epochs, trained on the training split (80%) of each set, all
# scored on the same test images.

# %%
for n in SIZES[:-1]:
    retrieval[n] = vlm_keras.train_retrieval(data=str(data[n]), eval_splits=(), **SMALL)
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
# ### The same at full size, over three seeds
#
# `python benchmarks/learning_curves.py` trains each task's model at four sizes (an eighth, a quarter, a half
# and all of the README's benchmark set), three seeds each, and scores every run on the test and
# compositional images of the largest set; each run is one line of `benchmarks/results/learning_curves.jsonl`
# (hours on 2 cores, so this notebook reads the file the repository holds rather than training). Lines show
# the mean over seeds, bands one standard deviation; dashed lines are the compositional split. Each task's
# model before and after the outline stream (its region convolutions read the images' outline maps, a
# stream of 1x1 convolutions the pixels): the VQA attention head as it was (`attention+outline=false`) and
# with the stream, and the graph head with it (`train_vqa()`'s default now); the LSTM captioner and the retrieval model as they were (`outline=False`)
# and as `train_captioner()` and `train_retrieval()` build them now (`outline=True, outline_stream=True,
# region_appearance=32`); for captioning also the attention captioner with the outline stream and grounded
# visual words (`model="attention", grounded_words="scenes"`: which colour, shape or size it writes is read
# from the region it attends to, not from the words before).

# %%
import json
import pathlib

CURVES = pathlib.Path(vlm_keras.__file__).resolve().parents[1] / "benchmarks" / "results" / "learning_curves.jsonl"
SCORE = {"vqa": "VQA accuracy", "captioning": "CIDEr-D", "retrieval": "R@1 (mean of both directions)"}
rows = [json.loads(line) for line in CURVES.read_text().splitlines() if line.strip()] if CURVES.exists() else []
# Each task's model before and after issue 20 (the file also holds single-seed probes of other options).
STREAM = "outline=true+outline_stream=true+region_appearance=32"
GROUNDED = "attention+outline=true+grounded_words=scenes"   # the attention captioner, visual words grounded
SHOWN = {"vqa": ("attention+outline=false", "attention+region_appearance=32+outline=true", "graph+outline=true"),
         "captioning": ("lstm+outline=false", f"lstm+{STREAM}", GROUNDED),
         "retrieval": ("default+outline=false+hard_negatives=false", f"default+{STREAM}+hard_negatives=false",
                       f"default+{STREAM}+hard_negatives=true")}
groups = sorted({(r["task"], r["model"]) for r in rows if r["model"] in SHOWN.get(r["task"], ())},
                key=lambda g: (list(SCORE).index(g[0]), g[1]))
if not groups:
    print(f"no benchmark results at {CURVES}: run `python benchmarks/learning_curves.py` to produce them")
else:
    tasks = [t for t in SCORE if any(g[0] == t for g in groups)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for colour, (_, model) in zip(("C0", "C1", "C2", "C3"), [g for g in groups if g[0] == task]):
            runs = [r for r in rows if (r["task"], r["model"]) == (task, model)]
            sizes = sorted({r["train_images"] for r in runs})
            at = {n: [r for r in runs if r["train_images"] == n] for n in sizes}    # the seeds of each size
            for split, style in (("test", "o-"), ("compositional", "s--")):
                scores = [[r["score_" + split] for r in at[n]] for n in sizes]
                mean, std = np.array([np.mean(s) for s in scores]), np.array([np.std(s) for s in scores])
                name = (model.replace(f"+{STREAM}", " + outline stream").replace(GROUNDED, "attention, grounded words")
                        .replace("+hard_negatives=false", "")
                        .replace("default + outline stream+hard_negatives=true", "stream + hard negatives"))
                ax.plot(sizes, mean, style, color=colour, label=f"{name}, {split}")
                ax.fill_between(sizes, mean - std, mean + std, color=colour, alpha=0.15)
            print(f"{task} {model}: " + "; ".join(
                f"{n:,} images {np.mean([r['score_test'] for r in at[n]]):.3f} (n={len(at[n])})" for n in sizes))
        ticks = sorted({r["train_images"] for r in rows if r["task"] == task})      # every model's sizes
        ax.set(xscale="log", xticks=ticks, xticklabels=[f"{n:,}" for n in ticks], xlabel="training images",
               ylabel=SCORE[task], title=task, ylim=(0, None if task == "captioning" else 1))
        ax.minorticks_off()
        ax.legend(fontsize=7)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Doubling the training images still raises the scores a lot, at this notebook's size and at the
# benchmark's: neither full-size curve has flattened at 4,800 training images, so the models are short of
# data, not of capacity. The full-size curves also show the compositional gap widening with the data
# (captioning 0.28 -> 1.09 CIDEr-D, retrieval 0.08 -> 0.19 R@1, VQA attention as it was 0.05 -> 0.30): more
# images help the pairs a model has seen more than the pairs it has not. The VQA head with the outline
# stream (its region convolutions read the images' outline maps, which carry no colour, and a separate
# stream the colours) narrows that gap at full size (0.30 -> 0.10 at 9,600 images, over three seeds, at
# the same test score) and learns more from a quarter of the images (0.81 of its full score at 2,400
# images, against 0.68). The graph head with the same stream (`graph+outline=true`, `train_vqa()`'s default
# now: the regions pass each other messages, steered by the question, before the question's glimpses read
# them) learns more still: 0.89 at 2,400 images, 0.91 of its full score (0.980), the target, with
# the same gap at full size (0.105) and a curve above the attention head's up to half the images. The same stream makes the LSTM captioner and the retrieval model better on both
# splits at 4,800 images (CIDEr-D 3.72 -> 4.54 on test, 2.63 -> 3.31 compositional; R@1 0.68 -> 0.82 and
# 0.48 -> 0.59, three seeds each) without narrowing their gaps (1.09 -> 1.23 CIDEr-D, 0.19 -> 0.22 R@1):
# there the held-out pairs gain as much as the seen ones, not more (both are now their trainers'
# defaults). The retrieval model with the stream
# also learns more from less (R@1 0.71 at 2,400 images, above the previous default's 0.68 at 4,800); the captioner
# gains only at the largest size. Hard negative captions (the retrieval model's default now, "stream + hard
# negatives": each caption also brings a copy with two of its colours, shapes or places exchanged, never
# writing a colour-shape pair the training captions lack) learn more from less again: R@1 0.67 at 1,200
# images (0.51 without them) and 0.85 at 2,400, above the 0.82 they reach at 4,800, where the compositional
# pool gains 0.02 (0.59 -> 0.61) at the same test score. The retrieval gap narrows only from 0.22 to 0.20,
# not the half the issue asks for. Why the captioner's gap stays (`benchmarks/caption_pairs.py`, in the README):
# on the compositional images it names the objects whose colour-shape pair it has seen 0.44 of the time and
# those whose pair is held out 0.07 of the time (0.001 without the outline stream), and in place of a held-out
# object it mostly writes its colour with a shape seen in that colour. The colour comes from the image, the
# shape from the sentence so far: after "red" it has never written "triangle". The attention captioner with
# the outline stream and grounded visual words (the blue lines) takes that choice away from the sentence: its
# state decides that a shape comes next and where to look, and the shape is read from the attended region
# alone. It names 0.82 of the held-out objects by their own pair, its gap at 4,800 images is 0.45 CIDEr-D
# (0.41 of the old LSTM captioner's 1.09, the target met) and it narrows with more data, and trained
# on 600 images it scores above the LSTM captioner trained on 4,800, on both splits (README, "Grounded visual
# words").
# Learning as much from fewer examples (a pretrained encoder, augmentation, better inductive biases) is the
# open problem; the README's benchmarks train on 4,800 images (9,600 for VQA, where the concat model
# overfits 4,800).
#
# ## 3 · Interpretability: where did the model look?
#
# The VQA attention model of `03_visual_question_answering` tells us which image regions each question
# attended to. We train it much as notebook 03 does (4,000 images here, 8 epochs), answer the colour and
# shape questions (each is about one object) of the test images and of the compositional ones, and ask of
# every map the pointing game's question: does its maximum lie on the object the question names?

# %%
from vlm_keras.data.formats.vqa import load_vqa_split
from vlm_keras.data.scenes.dataset import write_vqa_dataset
from vlm_keras.data.sources import scenes_of
from vlm_keras.metrics import vqa_accuracy
from vlm_keras.metrics.pointing import object_box, point_hit, question_object
from vlm_keras.visualize import plot_attention_map

vqa_data = write_scenes_dataset("notebook_cache/scenes-4000", num_images=4000, seed=0, progress=False)
write_vqa_dataset(vqa_data, seed=0)
vqa = vlm_keras.train_vqa(data=str(vqa_data), model="attention", epochs=8, image_size=64, seed=0,
                          verbose=0, eval_splits=("test",))
print(f"VQA accuracy on all test questions: {vqa.metrics['accuracy_test']:.3f}")


def look(split):
    """Answers, right or wrong, and whether the map peaks on the named object, for the colour and
    shape questions of a split."""
    questions = load_vqa_split(vqa_data, split)
    scenes = scenes_of(str(vqa_data), split, verbose=False)
    picked = [i for i, t in enumerate(questions.question_types) if t in ("what color", "what shape")]
    paths = [questions.image_paths[i] for i in picked]
    asked = [questions.questions[i] for i in picked]
    images, row = np.unique(paths, return_inverse=True)                 # each image encoded once
    features = vqa.encode_images(list(images))
    answers = [vqa.answers[k] for k in vqa.answer_probabilities(features, asked, row).argmax(-1)]
    right = np.array([vqa_accuracy(a, questions.answers[i]) == 1.0 for a, i in zip(answers, picked)])
    weights = vqa.attention_features(features, asked, row)              # (N, h, w), each sums to 1
    targets = [question_object(q, scenes[questions.image_ids[i]]) for q, i in zip(asked, picked)]
    on_object = np.array([t is not None and point_hit(w, object_box(t)) == 1.0 for w, t in zip(weights, targets)])
    truths = [questions.multiple_choice_answers[i] for i in picked]
    return dict(paths=paths, asked=asked, answers=answers, truths=truths, right=right, weights=weights,
                on_object=on_object)


looks = {split: look(split) for split in ("test", "compositional")}
for split, r in looks.items():
    right, on = r["right"], r["on_object"]
    print(f"{split}: {len(right)} colour and shape questions, {right.sum()} right; the attention peaks on the "
          f"named object for {on[right].mean():.2f} of the right answers and "
          f"{on[~right].mean() if (~right).any() else float('nan'):.2f} of the wrong ones")

# %%
for split, verdict in (("test", "right"), ("compositional", "wrong")):
    r = looks[split]
    print(f"{split}, {verdict} answers:")
    pngs = []
    for k in np.flatnonzero(r["right"] == (verdict == "right"))[:3]:
        where = "on the object" if r["on_object"][k] else "elsewhere"
        print(f"  {r['asked'][k]!r} -> {r['answers'][k]}   (humans: {r['truths'][k]}; attention peaks {where})")
        pngs.append(plot_attention_map(r["paths"][k], [r["answers"][k]], r["weights"][k:k + 1],
                                       f"notebook_cache/open_{split}_{k}.png", title=r["asked"][k]))
    if pngs:
        display(Image.fromarray(np.hstack([np.asarray(Image.open(png).convert("RGB")) for png in pngs])))

# %% [markdown]
# On the test images the maps mostly do what the pointing game asks: for about three right answers in
# four the maximum lies on the object the question names. Most wrong answers look elsewhere (about three in
# ten peak on the object): this small model (4,000 images, 8 epochs) misses objects more often than it
# misreads them. On the compositional images, which hold a colour-shape pair never seen in training, about
# a third of the wrong answers peak on the named object and still read it wrong, a colour or shape the model
# has learnt to expect with the other attribute: where it looks can be right while what it reads there is
# the pair it expects (section 1's problem again). This head reads shapes from the outline maps and colours
# from a separate stream, which at full size makes that failure rare (the README: held-out colour and shape
# questions 0.96 and 0.93 over three seeds); with less data it remains. A map shows where the attention
# weights went, not why the model answered as it did; explanations faithful to the computation are the
# open problem.

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
# # 02 · Image captioning
#
# Data → model → training → looking at the predictions, on the offline scenes dataset: the document's
# VGG16 + LSTM captioner and the attention captioner, the COCO caption metrics (CIDEr-D and BLEU-4 as
# captioning papers report them), greedy vs beam search, attention maps, and a SavedModel that serves
# captions without `vlm_keras`. About 4 minutes on a 2-core CPU.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")

import pathlib
from PIL import Image
import vlm_keras
from vlm_keras.data.formats import coco
from vlm_keras.data.scenes.dataset import write_scenes_dataset

# %% [markdown]
# ## Data
#
# The scenes generator draws 1–4 coloured shapes per image and writes five reference captions each, in
# the COCO captions layout. 2,000 images keep this notebook to a few minutes; the demo uses 6,000.

# %%
data_dir = write_scenes_dataset("notebook_cache/scenes-2000", num_images=2000, seed=0, progress=False)
train = coco.load_caption_split(data_dir, "train")
print(len(train), "training images;", sorted(coco.list_caption_splits(data_dir)))
print(train.captions[0])
Image.open(train.image_paths[0]).resize((128, 128))

# %% [markdown]
# ## Train
#
# `train_captioner` encodes every image once with VGG16 (random weights offline), caches the features and
# trains the decoder on every (image, reference) pair. Both captioners read the same region encoder
# (`vlm_keras.encoders.regions`): VGG16's `block3_pool`, an 8×8 grid whose every cell sees its own part of
# the image, each cell knowing its row and column. The document's LSTM captioner brings the grid down to
# 4×4 with two learned convolutions and flattens it into its initial state; the attention captioner (an
# LSTM) looks at the 64 cells for every word. By default both also have VGG16 read each image's outline
# map (where the colour changes, in grey): the region stage reads the outlines (shapes without their
# colours) and 32 channels of 1×1 convolutions the pixels (each cell's colour), which scores better on
# seen and unseen colour-shape pairs alike (`05_open_problems`; `outline=False` is the document's network
# as it was). The attention captioner here also grounds its visual words (`grounded_words="scenes"`): its
# state decides whether a colour, a shape or a size comes next and where to look, and which colour or shape
# it writes is read from the attended cells alone, so that after "red" it can write any shape the image
# holds, not only those training wrote after "red".
#
# The compositional split holds colour-shape pairs no training image shows (a red triangle): the document's
# generalisation problem. Every split is scored with the COCO caption evaluation (`vlm_keras.metrics.coco_caption`: the
# numbers pycocoevalcap gives, with its PTB tokenisation, without Java): CIDEr-D, BLEU-4 and ROUGE-L.
# Here we skip METEOR, which starts a Java VM for every evaluation.

# %%
os.environ["VLM_KERAS_CAPTION_METRICS"] = "bleu,cider,rouge"
common = dict(data=str(data_dir), epochs=8, image_size=64, seed=0, verbose=0, eval_splits=("test", "compositional"))
lstm = vlm_keras.train_captioner(model="lstm", **common)
attention = vlm_keras.train_captioner(model="attention", grounded_words="scenes", **common)
for name, m in (("lstm", lstm), ("attention", attention)):
    for split in ("test", "compositional"):
        print(f"{name:9s} {split:13s} CIDEr-D {m.metrics['coco_cider_d_' + split]:.3f}  "
              f"BLEU-4 {m.metrics['coco_bleu4_' + split]:.3f}  ROUGE-L {m.metrics['coco_rouge_l_' + split]:.3f}")
    print(f"{name:9s} training {m.metrics['train_seconds']:.0f} s")

# %% [markdown]
# ## Look at the predictions: greedy vs beam search

# %%
test = coco.load_caption_split(data_dir, "test")
paths = test.image_paths[:4]
greedy = attention.caption(paths)
beam = attention.caption(paths, beam_size=3)
for path, g, b, refs in zip(paths, greedy, beam, test.captions[:4]):
    print(pathlib.Path(path).name, "\n  greedy:", g, "\n  beam 3:", b, "\n  a reference:", refs[0])
scores = {k: attention.evaluate(test, beam_size=k, verbose=0) for k in (1, 3)}
for k, s in scores.items():
    print(f"{'greedy' if k == 1 else 'beam 3':7s} CIDEr-D {s['coco_cider_d']:.3f}  BLEU-4 {s['coco_bleu4']:.3f}")

# %% [markdown]
# ## Attention maps
#
# For every generated word, the weights the decoder gave the 64 grid cells. Colour and shape words should
# light up the object they name.

# %%
from vlm_keras.visualize import plot_attention_map

result = attention.attention([paths[0]])[0]
plot_attention_map(paths[0], result["words"], result["weights"], "notebook_cache/attention_map.png")
Image.open("notebook_cache/attention_map.png")

# %% [markdown]
# "Should" is measured, not eyeballed: the **pointing game** (Zhang et al. 2016) takes every generated colour
# or shape word of an object in a test image and counts a hit when the map's maximum lies on that object (its
# box grown by the game's margin). A uniform map would score the share of cells inside the boxes.

# %%
pointing = attention.pointing(str(data_dir), "test", verbose=0)
print(f"pointing game on {pointing['pointing_count']} words: {pointing['pointing']:.3f} "
      f"(a uniform map: {pointing['pointing_uniform']:.3f})")

# %% [markdown]
# ## Export, reload, serve
#
# The SavedModel takes encoded image bytes and returns caption strings. A fresh Python with TensorFlow
# alone (no `vlm_keras`) can serve it.

# %%
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

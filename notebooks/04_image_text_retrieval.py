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
# # 04 · Image-text retrieval
#
# The document's section 3.3: an image encoder and a text encoder map into one space, and a similarity
# between the two ranks the results. Data → a dual encoder trained contrastively → Recall@K both ways →
# similarities → searching a folder of images by text with the exported model. A few minutes on a 2-core
# CPU.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")
import tensorflow as tf
tf.get_logger().setLevel("ERROR")

import pathlib, shutil
import numpy as np
from PIL import Image
import vlm_keras
from vlm_keras.data.formats import coco
from vlm_keras.data.scenes.dataset import write_scenes_dataset

np.set_printoptions(precision=2, suppress=True)

# %% [markdown]
# ## Data
#
# The scenes dataset in the COCO captions layout: five captions per image, each naming every object's
# colour and shape and where it is, so a caption singles out few images. Every (image, caption) pair of the
# training split is a training example.

# %%
NUM_IMAGES, EPOCHS = 800, 6
data_dir = write_scenes_dataset(f"notebook_cache/scenes-{NUM_IMAGES}", num_images=NUM_IMAGES, seed=0,
                                progress=False)
train, test = coco.load_caption_split(data_dir, "train"), coco.load_caption_split(data_dir, "test")
print(len(train), "training images,", len(test), "test images, 5 captions each")
print(test.captions[0])
Image.open(test.image_paths[0]).resize((128, 128))

# %% [markdown]
# ## Train
#
# `train_retrieval` builds two towers that end in 256-dimensional unit vectors: the image tower reads
# VGG16's `block3_pool` grid (computed once and cached) and pools it with attention over its regions; the
# text tower is a bidirectional LSTM. VGG16 also reads each image's outline map (where the colour changes,
# in grey): the tower's region convolutions read the outlines (shapes without their colours) and 32
# channels of 1×1 convolutions the pixels, the default since it retrieves better on seen and unseen
# colour-shape pairs alike (`05_open_problems`; `outline=False` turns it off). The towers' cosine
# similarity, times a learned inverse temperature, scores every image of a batch against every caption of
# the batch. The loss is CLIP's symmetric contrastive
# loss: each image must pick its own caption among the batch's, and each caption its own image. Each
# caption also brings a hard negative, drawn anew every epoch: a copy with two of its colours, shapes,
# sizes or places exchanged or one replaced ("a red circle above a blue square" -> "a blue circle above a
# red square"), an extra wrong caption for every image, which only a model that binds each colour to its
# own shape can tell from the true one (`hard_negatives`, the default on the synthetic scenes since it
# retrieves better on both of their test pools, README; no negative writes a colour-shape pair the training
# captions lack).
#
# The default batch is 256 (more negatives per step); with this notebook's 640 training images that is
# 3 updates an epoch, too few for 6 epochs, so we train on batches of 64 (10 updates an epoch).

# %%
ret = vlm_keras.train_retrieval(data=str(data_dir), epochs=EPOCHS, batch_size=64, image_size=64, seed=0,
                                verbose=0, eval_splits=("test",))
print("loss per epoch:", np.array(ret.history["loss"]))
print(f"learned temperature {ret.metrics['learned_temperature']:.3f} (starts at 0.07); "
      f"training {ret.metrics['train_seconds']:.0f} s")

# %% [markdown]
# ## Recall@K and median rank
#
# Every test image is scored against every test caption, as COCO and Flickr30k results are reported.
# Text → image: each caption is a query with one right image. Image → text: an image is found at K when
# any of its five captions is in the top K. Recall@K is the fraction found at K; the median rank is that of
# the right answer (1 is perfect). Picking at random, Recall@1 would be 1 / the number of test images.

# %%
m = ret.metrics
print(f"{m['num_images_test']} test images, {m['num_captions_test']} captions; "
      f"chance R@1 = {1 / m['num_images_test']:.3f}")
print(f"{'':15s}{'R@1':>7s}{'R@5':>7s}{'R@10':>7s}{'median rank':>13s}")
for direction in ("text_to_image", "image_to_text"):
    print(f"{direction:15s}" + "".join(f"{m[f'{direction}_r{k}_test']:7.3f}" for k in (1, 5, 10))
          + f"{m[f'{direction}_median_rank_test']:13.0f}")

# %% [markdown]
# ## Similarities
#
# `similarity(images, texts)` returns the cosines between image and text embeddings. For four test images
# and the first caption of each, the diagonal (each image with its own caption) should stand out.

# %%
paths = test.image_paths[:4]
texts = [refs[0] for refs in test.captions[:4]]
for k, text in enumerate(texts):
    print(k, text)
print(ret.similarity(paths, texts))          # rows: images, columns: texts

# %% [markdown]
# ## Export
#
# The SavedModel has two signatures, `embed_image` (encoded image bytes) and `embed_text` (strings,
# tokenised inside the graph), both returning unit vectors; `image_embeddings @ text_embeddings.T` ranks.
# A fresh Python with TensorFlow alone (no `vlm_keras`) uses it.

# %%
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

# %% [markdown]
# ## Search a folder of images by text
#
# `vlm_keras.retrieval.index` is what `vlm-keras index` and `vlm-keras search` run. `index_folder` embeds every
# readable image under a folder once, with a model folder or an export, and writes one `.npz` (files that
# are not images are skipped and listed); `search` embeds the query with the same model and ranks the
# images by cosine. Here the folder holds the test images and a stray text file:
#
# ```bash
# vlm-keras index --model notebook_cache/retrieval_savedmodel photos/ --out photos.npz
# vlm-keras search --index photos.npz "a large red circle" -k 3
# ```

# %%
from vlm_keras.retrieval.index import index_folder, load_index, open_embedder, search

photos = pathlib.Path("notebook_cache/photos")
shutil.rmtree(photos, ignore_errors=True)
shutil.copytree(pathlib.Path(test.image_paths[0]).parent, photos)
(photos / "notes.txt").write_text("not an image")
summary = index_folder("notebook_cache/retrieval_savedmodel", photos, "notebook_cache/photos.npz", progress=False)
print(summary["num_images"], "images indexed; skipped:", [pathlib.Path(s["path"]).name for s in summary["skipped"]])

# %%
index, embedder = load_index("notebook_cache/photos.npz"), open_embedder("notebook_cache/retrieval_savedmodel")

def show_search(query, k=4):
    hits = search(index, query, k=k, embedder=embedder)
    print(repr(query), "->", ", ".join(f"{pathlib.Path(h['path']).name} ({h['score']:.2f})" for h in hits))
    return Image.fromarray(np.hstack([np.asarray(Image.open(h["path"]).convert("RGB").resize((128, 128)))
                                      for h in hits]))

print("the image that caption was written for:", pathlib.Path(test.image_paths[1]).name)
show_search(test.captions[1][0])

# %%
show_search("a large red circle")

# %% [markdown]
# `05_open_problems` measures how retrieval and the other tasks cope with colour-shape pairs never seen in
# training, and how much data they need.

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
# # 00 · From the document to working code
#
# The document we implement (`shared/seed`, sections 5.1 and 5.2) gives two Keras samples: a VGG16 +
# LSTM image captioner and a concatenation-fusion VQA network. Neither runs. This notebook runs each
# one as written, shows the real error, and then builds the corrected wiring that `vlm_keras` uses.
# Nothing here trains; it takes seconds.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")

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


# %% [markdown]
# ## 5.1 The captioner, as written
#
# ```python
# encoder = tf.keras.applications.VGG16(include_top=False, weights='imagenet')
# decoder = tf.keras.models.Sequential([
#     tf.keras.layers.LSTM(256, return_sequences=True),
#     tf.keras.layers.LSTM(256),
#     tf.keras.layers.Dense(vocab_size, activation='softmax')])
# model = tf.keras.models.Model(inputs=encoder.input, outputs=decoder(encoder.output))
# ```
#
# First problem, before any modelling: `weights='imagenet'` downloads 58 MB. Offline (as here) it fails;
# the package accepts `weights=None` (random) or a local `.h5` file instead.

# %%
run("VGG16(weights='imagenet')", lambda: keras.applications.VGG16(include_top=False, weights="imagenet"))

# %% [markdown]
# `vocab_size` is never defined. Define it, use random weights, and the real modelling error appears:
# the LSTM is fed VGG16's 4-D feature map `(batch, h, w, 512)`, but an LSTM reads `(batch, time, features)`.

# %%
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

# %% [markdown]
# Even if the shapes fitted, the model could not learn to caption: its only input is the image. It never
# sees the caption, so it cannot be trained word by word (teacher forcing), and `model.predict(image)`
# returns one distribution, not a sentence. The second LSTM also returns only its last step.
#
# ## The corrected captioner
#
# `vlm_keras.captioning.models` keeps the document's parts (VGG16, two LSTMs of 256, a softmax over the
# vocabulary) and fixes the wiring. Its docstring carries the table of corrections:

# %%
from vlm_keras.captioning import models as captioning_models
print(captioning_models.__doc__[captioning_models.__doc__.index("| the document"):].split("\n\n")[0])

# %%
from vlm_keras.captioning.models import build_captioner, build_lstm_decoder
from vlm_keras.encoders.vgg16 import build_image_encoder

encoder = build_image_encoder(64, weights=None)              # VGG16 up to block5_conv3, frozen
decoder = build_lstm_decoder(vocab_size, encoder.output_shape[1:])
model = build_captioner(encoder, decoder)
for t in model.inputs:
    print("input ", t.name, t.shape, t.dtype)
print("output", model.output.shape, "-> next-word logits at every position")

# %%
images = np.random.default_rng(0).uniform(-100, 100, size=(2, 64, 64, 3)).astype("float32")
caption_prefix = np.array([[2, 7, 9, 0], [2, 5, 0, 0]], "int32")  # <start> w1 w2 <pad>
print(model([images, caption_prefix]).shape)


# %% [markdown]
# Generation is a loop that feeds each chosen word back in: `vlm_keras.captioning.decoding.greedy_decode` (and
# `beam_search`) run it inside the graph, so it is fast and exports with the SavedModel.
#
# ## 5.2 The VQA network, as written
#
# ```python
# image_features = image_encoder(image)
# question_features = question_encoder(question)
# fused_features = fusion_layer([image_features, question_features])
# ```
#
# `image` and `question` are never defined:

# %%
def document_vqa_as_written():
    image_encoder = keras.applications.VGG16(include_top=False, weights=None)
    image_features = image_encoder(image)  # noqa: F821

run("document VQA", document_vqa_as_written)


# %% [markdown]
# Declaring them as `keras.Input`s gets one step further, to the next error: `Concatenate` joins the 4-D
# feature map with the 2-D question vector.

# %%
def document_vqa_with_inputs():
    image = keras.Input((64, 64, 3))
    question = keras.Input((None,), dtype="int32")
    image_encoder = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    question_encoder = keras.models.Sequential([keras.layers.Embedding(vocab_size, 128), keras.layers.LSTM(256)])
    fused = keras.layers.Concatenate()([image_encoder(image), question_encoder(question)])
    keras.layers.Dense(10, activation="softmax")(fused)

run("document VQA with inputs", document_vqa_with_inputs)

# %% [markdown]
# ## The corrected VQA network
#
# `vlm_keras.vqa.models.build_vqa_head("concat", ...)` is the document's network with the inputs declared
# and the map pooled before the concatenation (its docstring has the table):

# %%
from vlm_keras.vqa import models as vqa_models
from vlm_keras.vqa.models import build_vqa_head, build_vqa_model

print(vqa_models.__doc__[vqa_models.__doc__.index("| the document"):].split("\n\n")[0])
head = build_vqa_head("concat", question_vocab_size=vocab_size, num_answers=10,
                      feature_shape=encoder.output_shape[1:])
vqa = build_vqa_model(encoder, head)
question = np.array([[5, 8, 3, 0], [6, 2, 0, 0]], "int32")
print("answer logits:", vqa([images, question]).shape)

# %% [markdown]
# The next notebooks train these models: `02_image_captioning` and `03_visual_question_answering`.

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
# # 01 · Attention: softmax(Q Kᵀ / √d) V
#
# The document's formula, on tensors small enough to check by hand, then masks and a Transformer block.

# %%
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("VLM_KERAS_HOME", os.path.abspath("notebook_cache"))  # datasets are written here
import warnings
warnings.filterwarnings("ignore", message=".*shuffle=True.*")

import keras
import numpy as np
from vlm_keras.layers import ScaledDotProductAttention, TransformerDecoderBlock

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The formula against numpy
#
# One query, three keys of dimension 2. Scores are `q·k / √2`, the softmax turns them into weights, and
# the output is the weighted sum of the values.

# %%
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

# %% [markdown]
# ## Masks
#
# A padding mask hides keys (e.g. padding tokens); a causal mask stops position *t* from looking at
# positions after it, which is what lets a decoder train on a whole caption at once.

# %%
padding = np.array([[[True, True, False]]])          # the third key is padding
_, w = ScaledDotProductAttention()(q, k, v, attention_mask=padding, return_attention_scores=True)
print("padding mask:", np.asarray(w))

x = np.random.default_rng(0).normal(size=(1, 4, 2)).astype("float32")
_, w = ScaledDotProductAttention()(x, x, x, use_causal_mask=True, return_attention_scores=True)
print("causal weights (row t attends to 0..t):\n", np.asarray(w)[0])

# %% [markdown]
# ## The same numbers as Keras' MultiHeadAttention
#
# With one head and identity projections, `keras.layers.MultiHeadAttention` computes exactly our formula.

# %%
mha = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2, use_bias=False)
mha(q, k)  # build
eye = np.eye(2, dtype="float32")[:, None, :]      # (d, heads=1, key_dim)
mha.set_weights([eye, eye, np.eye(2, dtype="float32")[:, None, :], np.eye(2, dtype="float32")[None]])
v2 = np.concatenate([v, v], -1)                   # values of width 2, as the projections expect
ours = ScaledDotProductAttention()(q, k, v2)
np.testing.assert_allclose(np.asarray(mha(q, v2, key=k)), np.asarray(ours), rtol=1e-5)
print("MultiHeadAttention (1 head, identity projections) == ScaledDotProductAttention")

# %% [markdown]
# ## A Transformer decoder block
#
# Causal self-attention over the caption, cross-attention to the image regions, then a feed-forward
# network, each with a residual connection (pre-layer-norm). The block keeps the shape of its input.

# %%
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

# %% [markdown]
# `02_image_captioning` trains captioners built from these layers and draws their attention maps.

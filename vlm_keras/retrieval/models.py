"""Image-text retrieval (document section 3.3): a dual encoder trained with a contrastive loss.

An image tower and a text tower map each side to an L2-normalised vector in one space; the cosine
similarity of two vectors, times a learnable inverse temperature, scores the pair; results are
ranked by it. The two towers never look at each other, so a collection of images is embedded once
and searched with a matrix product (`vlm_keras.retrieval.index`).

    image features (B, h, w, c) -> image tower -> (B, D) unit vectors  \
                                                                         ScaledCosineSimilarity -> (B, B) logits
    caption tokens (B, T)       -> text tower  -> (B, D) unit vectors  /

Training (`ContrastiveTrainer`) uses CLIP's symmetric in-batch loss: in a batch of B (image,
caption) pairs, each image must pick its caption among the B captions and each caption its image
among the B images.
"""

import keras
import tensorflow as tf
from keras import ops

from vlm_keras.config import IMAGE_POOLING
from vlm_keras.encoders.regions import adapt_region_encoder, region_grid
from vlm_keras.layers import (GroupedTokens, RegionEmbedding, RoleFillerBinding, ScaledCosineSimilarity,
                              ScaledDotProductAttention)


def build_image_tower(feature_shape, embed_dim=256, pooling="attention", grid_pool="auto", hidden_dim=512,
                      attention_dim=256, glimpses=2, dropout=0.5, region_layers=0, region_filters=64,
                      region_cells=8, region_appearance=0, outline_stream=False, name="image_tower"):
    """Encoder features -> an L2-normalised image embedding, as a functional model.

    Args:
        feature_shape: one image's encoder grid, e.g. (8, 8, 256) for VGG16 block3_pool at 64 px.
        embed_dim: size `D` of the shared embedding space.
        pooling: how the grid becomes one vector:
            "attention": `glimpses` queries (the first from the mean region, the next adding what
                the previous one found) attend over the regions with their positions
                (`RegionEmbedding`, `ScaledDotProductAttention`);
            "flatten": every cell keeps its place (a Dense layer over the flattened grid), so
                "left of" and "above" stay visible; the captioner's image projection;
            "mean": the average cell: position is lost (a baseline).
        grid_pool: max-pools the grid by this factor first (as VGG16's own pooling); "auto" pools
            a grid larger than 4x4 down to 4x4 (block3_pool's 8x8 cells at 64 px by 2), 1 not at all.
        hidden_dim: width of the hidden layer before the projection; 0: none (the embedding is
            then linear in the pooled features).
        attention_dim: size of the region vectors ("attention" only).
        glimpses: attention hops ("attention" only).
        dropout: dropout on the pooled features, before the hidden layer (the tower overfits
            8,000 training images quickly without it).
        region_layers, region_filters, region_cells: the learned stage of the region encoder
            (`vlm_keras.encoders.regions.build_region_encoder`, after the grid pooling; 0 layers:
            none).
        region_appearance, outline_stream: each region's appearance stream (channels; 0: none)
            and the outline split (the convolutions read the outline features, the appearance
            stream the pixels'): `vlm_keras.encoders.regions.region_grid`.
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32.

    Returns:
        A `keras.Model` giving (B, embed_dim) float32 unit vectors. Its region encoder must be
        adapted on training features before training (`adapt_image_tower`;
        `train_retrieval` does it).
    """
    if pooling not in IMAGE_POOLING:
        raise ValueError(f"unknown image pooling {pooling!r}; expected one of {', '.join(IMAGE_POOLING)}")
    if grid_pool == "auto":
        grid_pool = max(1, int(feature_shape[0]) // 4)
    image_features = keras.Input(tuple(feature_shape), name="image_features")      # (B, h, w, c)
    grid = image_features
    if grid_pool > 1:
        grid = keras.layers.MaxPooling2D(grid_pool, name="grid_pool")(grid)        # (B, h/p, w/p, c)
    # Statistics per grid cell and channel for the flattened grid (as the captioner's), per channel
    # for the readers that compare cells.
    grid = region_grid(grid, grid.shape[1:], region_layers, region_filters, region_cells,
                       normalization_axis=(1, 2, 3) if pooling == "flatten" else -1,
                       appearance=region_appearance, outline_stream=outline_stream)
    if pooling == "flatten":
        x = keras.layers.Flatten(name="flatten_grid")(grid)                           # (B, h*w*(d + 2))
    else:
        x = keras.layers.GlobalAveragePooling2D(name="mean_region")(grid)           # (B, d + 2)
    if pooling == "attention":
        regions = RegionEmbedding(attention_dim, name="regions")(grid)              # (B, R, A)
        query = keras.layers.Dense(attention_dim, name="attention_query")(x)
        query = keras.layers.Reshape((1, attention_dim), name="query_as_sequence")(query)  # (B, 1, A)
        parts = []
        for i in range(glimpses):
            attended = ScaledDotProductAttention(name=f"region_attention_{i}")(query, regions, regions)
            parts.append(keras.layers.Flatten(name=f"glimpse_{i}")(attended))        # (B, A)
            query = keras.layers.Add(name=f"next_query_{i}")([query, attended])
        x = keras.layers.Concatenate(name="glimpses")(parts)                        # (B, glimpses*A)
    x = keras.layers.Dropout(dropout, name="feature_dropout")(x)
    if hidden_dim:
        x = keras.layers.Dense(hidden_dim, activation="relu", name="image_hidden")(x)    # (B, H)
    x = keras.layers.Dense(embed_dim, dtype="float32", name="image_projection")(x)   # (B, D)
    embeddings = keras.layers.UnitNormalization(axis=-1, dtype="float32", name="image_embedding")(x)
    return keras.Model(image_features, embeddings, name=name)


def adapt_image_tower(image_tower, features, batch_size=512):
    """Adapts the tower's region encoder to training features (after its grid pooling, if any):
    the statistics come from the training images only."""
    if "grid_pool" in [layer.name for layer in image_tower.layers]:
        features = keras.Model(image_tower.input, image_tower.get_layer("grid_pool").output).predict(
            features, batch_size=batch_size, verbose=0)                             # the pooled grid
    adapt_region_encoder(image_tower, features)


def build_text_tower(vocab_size, embed_dim=256, word_dim=128, units=256, bidirectional=True, word_bag=False,
                     word_groups=(), name="text_tower"):
    """Caption tokens -> an L2-normalised text embedding, as a functional model.

    Args:
        vocab_size: token ids, special tokens included.
        embed_dim: size `D` of the shared embedding space (as the image tower's).
        word_dim: word embedding size.
        units: LSTM width (per direction).
        bidirectional: read the caption both ways; the last states of the two directions are
            concatenated. Word order matters here: "a red circle above a blue square" and "a blue
            square above a red circle" are different scenes.
        word_bag: also project the mean of the caption's word embeddings (its words without their
            order) and add it to the BiLSTM's projection: a caption's embedding then moves with each
            of its words by the same amount, whichever words surround it (a colour-shape pair the
            LSTM never read is the sum of two words it has).
        word_groups: groups of token ids of attribute words (e.g. the colours, the shapes, the
            sizes). With them the LSTM reads the caption with each attribute word replaced by its
            group (`GroupedTokens`: "a COLOUR SHAPE above a COLOUR SHAPE"), and the attribute words
            come back bound to the roles it gives their places (`RoleFillerBinding`): the
            embedding is the projection of the LSTM's mean state plus sum_t role_t * filler(w_t).
            The LSTM then never reads which colour goes with which shape (bar what an article
            betrays: "an" before "orange").
        name: the model's name.

    Call arguments:
        caption_tokens: (B, T) int32 ids from `Tokenizer.encode`; 0 is padding (masked).

    Returns:
        A `keras.Model` giving (B, embed_dim) float32 unit vectors.
    """
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")      # (B, T)
    read = caption_tokens
    if word_groups:
        read = GroupedTokens(vocab_size, word_groups, name="grouped_tokens")(caption_tokens)
    words = keras.layers.Embedding(vocab_size + len(word_groups), word_dim, mask_zero=True,
                                   name="word_embedding")(read)                     # (B, T, E)
    lstm = keras.layers.LSTM(units, return_sequences=bool(word_groups), name="caption_lstm")
    if bidirectional:
        lstm = keras.layers.Bidirectional(lstm, name="caption_bilstm")
    x = lstm(words)                                                                 # (B, U) or (B, 2U); (B, T, .)
    if word_groups:
        states = x
        x = keras.layers.GlobalAveragePooling1D(name="mean_state")(states)          # padding masked
    x = keras.layers.Dense(embed_dim, dtype="float32", name="text_projection")(x)    # (B, D)
    if word_groups:
        roles = keras.layers.Dense(embed_dim, name="word_roles")(states)            # (B, T, D)
        bound = RoleFillerBinding(vocab_size, word_groups, embed_dim, dtype="float32",
                                  name="bound_words")([caption_tokens, roles])       # (B, D)
        x = keras.layers.Add(dtype="float32", name="with_bound_words")([x, bound])
    if word_bag:
        bag = keras.layers.GlobalAveragePooling1D(name="word_bag")(words)           # (B, E), padding masked
        bag = keras.layers.Dense(embed_dim, dtype="float32", name="word_bag_projection")(bag)   # (B, D)
        x = keras.layers.Add(dtype="float32", name="with_word_bag")([x, bag])
    embeddings = keras.layers.UnitNormalization(axis=-1, dtype="float32", name="text_embedding")(x)
    return keras.Model(caption_tokens, embeddings, name=name)


def build_dual_encoder(image_tower, text_tower, temperature=0.07, name="dual_encoder"):
    """The two towers and their similarity: (image features, caption tokens) -> (B_i, B_t) logits.

    Args:
        image_tower: from `build_image_tower`.
        text_tower: from `build_text_tower`, with the same embedding size.
        temperature: the initial temperature of `ScaledCosineSimilarity` (learned in training).
        name: the model's name.

    Call arguments:
        image_features: (B_i, h, w, c) float32.
        caption_tokens: (B_t, T) int32 ids. B_i and B_t may differ.

    Returns:
        A `keras.Model` giving `exp(logit_scale) * cos(image_i, caption_j)`, (B_i, B_t) float32.
    """
    if image_tower.output_shape[-1] != text_tower.output_shape[-1]:
        raise ValueError(f"the image tower embeds into {image_tower.output_shape[-1]} dimensions and the "
                         f"text tower into {text_tower.output_shape[-1]}; expected the same embed_dim")
    image_features = keras.Input(image_tower.input_shape[1:], name="image_features")
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")
    logits = ScaledCosineSimilarity(temperature, name="similarity")(
        image_tower(image_features), text_tower(caption_tokens))                     # (B_i, B_t)
    return keras.Model([image_features, caption_tokens], logits, name=name)


def build_retrieval_model(encoder, dual_encoder, name="retrieval"):
    """The end-to-end model: (images, caption tokens) -> (B_i, B_t) similarity logits.

    Args:
        encoder: from `build_image_encoder`.
        dual_encoder: from `build_dual_encoder`, built for the encoder's output shape.
    """
    image = keras.Input(encoder.input_shape[1:], name="image")                      # (B_i, S, S, 3)
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")
    logits = dual_encoder([encoder(image), caption_tokens])
    return keras.Model([image, caption_tokens], logits, name=name)


def contrastive_loss(logits, image_ids=None, negative_logits=None, has_negative=None):
    """CLIP's symmetric in-batch contrastive loss.

    Row i of `logits` scores image i against every caption of the batch and column j caption j
    against every image; the pair (i, i) is the positive. The loss is the mean of the cross-entropy
    of each image over the captions (image -> text) and of each caption over the images
    (text -> image).

    Args:
        logits: (B, B) similarities of B images against their B captions, in the same order.
        image_ids: optional (B,) ids of the images: when two examples show the same image (two of
            its captions in one batch), neither is counted as a negative of the other.
        negative_logits: optional (B, B) similarities of the B images against B hard negative
            captions (`vlm_keras.retrieval.negatives`): extra wrong captions for every image, in the
            image -> text half only (a negative caption has no image to find).
        has_negative: optional (B,) bool: which columns of `negative_logits` hold a negative (the
            others are left out).

    Returns:
        A float32 scalar.
    """
    logits = ops.cast(logits, "float32")                                             # (B, B)
    if len(logits.shape) != 2 or (None not in logits.shape and logits.shape[0] != logits.shape[1]):
        raise ValueError(f"contrastive_loss expects (B, B) logits of B images against their B "
                         f"captions; received shape {tuple(logits.shape)}")
    batch = ops.shape(logits)[0]
    labels = ops.arange(batch)
    if image_ids is not None:
        ids = ops.reshape(image_ids, (-1,))
        same_image = ops.equal(ids[:, None], ids[None, :])
        false_negatives = ops.logical_and(same_image, ops.logical_not(ops.eye(batch, dtype="bool")))
        logits = ops.where(false_negatives, ops.cast(-1e9, "float32"), logits)
    image_logits = logits
    if negative_logits is not None:
        negative_logits = ops.cast(negative_logits, "float32")                       # (B, B)
        if has_negative is not None:
            keep = ops.reshape(ops.cast(has_negative, "bool"), (1, -1))
            negative_logits = ops.where(keep, negative_logits, ops.cast(-1e9, "float32"))
        image_logits = ops.concatenate([logits, negative_logits], axis=1)           # (B, 2B)
    image_to_text = keras.losses.sparse_categorical_crossentropy(labels, image_logits, from_logits=True)
    text_to_image = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits),
                                                                 from_logits=True)
    return (ops.mean(image_to_text) + ops.mean(text_to_image)) / 2.0


def gather_replicas(values):
    """Concatenates a per-replica tensor over the replicas of a `tf.distribute` strategy, in
    replica order; the tensor itself outside a strategy or with one replica. Its gradient is
    the sum over replicas of the upstream gradients, restricted to this replica's rows."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_gather(values, axis=0)


class ContrastiveTrainer(keras.Model):
    """Fits a dual encoder with `contrastive_loss`, negatives taken from the whole global batch.

    Under a `tf.distribute` strategy with R replicas each replica embeds its B / R examples; the
    embeddings (and image ids) of all replicas are gathered, so every replica computes the loss
    of the global batch, B x B. Keras sums the replicas' gradients, so each replica's loss is
    divided by R; with `gather_replicas`' gradient the sum is exactly the gradient of the global
    loss, the same as one device with the whole batch (tested with two replicas).

    It is a training wrapper, not a saved model: the functional `dual_encoder` it trains is.

    Args:
        dual_encoder: from `build_dual_encoder`.

    Call arguments:
        inputs: {"image_features": (B, h, w, c), "caption_tokens": (B, T)}, and optionally
            "negative_tokens" (B, T) and "has_negative" (B,) 0/1: a hard negative caption per example
            and whether it is one (`vlm_keras.retrieval.negatives`); the targets passed to `fit` are the (B,) image ids
            of the examples (for `contrastive_loss`'s `image_ids`).

    Returns:
        {"image_embeddings": (B, D), "text_embeddings": (B, D)}, and "negative_embeddings" (B, D)
        and "has_negative" (B,) with negatives.
    """

    def __init__(self, dual_encoder, **kwargs):
        super().__init__(**kwargs)
        self.dual_encoder = dual_encoder

    def call(self, inputs, training=False):
        encoder = self.dual_encoder
        text_tower = encoder.get_layer("text_tower")
        outputs = {"image_embeddings": encoder.get_layer("image_tower")(inputs["image_features"], training=training),
                   "text_embeddings": text_tower(inputs["caption_tokens"], training=training)}
        if "negative_tokens" in inputs:
            if "has_negative" not in inputs:
                # A caption without a swap carries its own ids as its "negative": unflagged, it
                # would be trained as a wrong answer.
                raise ValueError("negative_tokens come with has_negative, (B,) 1 where a row holds a "
                                 "negative (NegativeCaptions.sample's second output)")
            outputs["negative_embeddings"] = text_tower(inputs["negative_tokens"], training=training)
            outputs["has_negative"] = ops.cast(inputs["has_negative"], "float32")    # gathered by every replica
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        similarity = self.dual_encoder.get_layer("similarity")
        images = gather_replicas(y_pred["image_embeddings"])                        # (B, D)
        texts = gather_replicas(y_pred["text_embeddings"])                          # (B, D)
        image_ids = gather_replicas(y) if y is not None else None
        negative_logits = has_negative = None
        if "negative_embeddings" in y_pred:
            negative_logits = similarity(images, gather_replicas(y_pred["negative_embeddings"]))   # (B, B)
            has_negative = gather_replicas(y_pred["has_negative"])
        loss = contrastive_loss(similarity(images, texts), image_ids, negative_logits, has_negative)
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

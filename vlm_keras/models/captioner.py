"""The document's captioner (section 5.1), with its wiring corrected.

The document's code builds `Model(inputs=encoder.input, outputs=decoder(encoder.output))`: the
decoder never sees the caption, the LSTM is fed VGG16's 4-D feature map, the last LSTM returns one
vector instead of a word per step, and training uses one-hot targets with a softmax output. The
builders here keep its parts (VGG16 features -> two LSTM(256) layers -> a distribution over the
vocabulary) and fix each of those:

| the document                                | here                                                                                      |
|---------------------------------------------|-------------------------------------------------------------------------------------------|
| inputs: the image only                      | inputs: the image (or its cached features) **and** the caption prefix (teacher forcing)  |
| LSTM fed the (B, h, w, 512) conv map        | the map is flattened and projected; it initialises each LSTM's state `[h0, c0]`          |
| words embedded: never                       | `Embedding(vocab, 256, mask_zero=True)` on the caption tokens                             |
| second LSTM returns the last step only      | every LSTM returns sequences: a next-word distribution at every step `(B, T, V)`          |
| `Dense(vocab, softmax)` + categorical CE    | `Dense(vocab)` logits (float32) + sparse CE from logits, padding ignored                 |
| `model.predict(image)` "generates" a caption | `vlm_keras.decoding.greedy_decode`: an in-graph loop that feeds back each predicted word |
"""

import keras

from vlm_keras.data.text import PAD_ID


def build_lstm_decoder(vocab_size, feature_shape, embed_dim=256, units=256, num_layers=2,
                       dropout=0.2, name="caption_decoder"):
    """Image features + caption prefix -> next-token logits, as a functional model.

    Args:
        vocab_size: number of token ids, special tokens included.
        feature_shape: shape of one image's encoder output, e.g. (2, 2, 512) for VGG16 at 64 px.
        embed_dim: word embedding size.
        units: LSTM width (the document uses 256).
        num_layers: stacked LSTM layers (the document uses 2).
        dropout: dropout on the image projection and between LSTM layers.
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32 encoder features.
        caption_tokens: (B, T) int32 ids starting with the start token; 0 is padding.

    Returns:
        A `keras.Model` giving (B, T, vocab_size) float32 logits; position t predicts token t + 1.
        The "feature_normalization" layer must be adapted on training features before training
        (`train_captioner` does it).
    """
    image_features = keras.Input(tuple(feature_shape), name="image_features")   # (B, h, w, c)
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")  # (B, T)

    # Statistics per grid cell and channel; adapted on the training features before training.
    x = keras.layers.Normalization(axis=(1, 2, 3), name="feature_normalization")(image_features)
    x = keras.layers.Flatten(name="flatten_grid")(x)                            # (B, h*w*c)
    x = keras.layers.Dropout(dropout, name="feature_dropout")(x)
    image_vector = keras.layers.Dense(units, activation="relu", name="image_projection")(x)  # (B, U)

    seq = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True,
                                 name="token_embedding")(caption_tokens)         # (B, T, E)
    for i in range(num_layers):
        h0 = keras.layers.Dense(units, activation="tanh", name=f"initial_h_{i}")(image_vector)
        c0 = keras.layers.Dense(units, name=f"initial_c_{i}")(image_vector)
        seq = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(
            seq, initial_state=[h0, c0])                                        # (B, T, U)
        seq = keras.layers.Dropout(dropout, name=f"lstm_dropout_{i}")(seq)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="next_token_logits")(seq)  # (B, T, V)
    return keras.Model([image_features, caption_tokens], logits, name=name)


def build_captioner(encoder, decoder, name="captioner"):
    """The end-to-end model: image + caption prefix -> next-token logits.

    Args:
        encoder: from `build_image_encoder`.
        decoder: from `build_lstm_decoder`, built for the encoder's output shape.

    Call arguments:
        image: (B, S, S, 3) VGG16-preprocessed images.
        caption_tokens: (B, T) int32 ids.
    """
    image = keras.Input(encoder.input_shape[1:], name="image")
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")
    logits = decoder([encoder(image), caption_tokens])
    return keras.Model([image, caption_tokens], logits, name=name)


@keras.saving.register_keras_serializable(package="vlm_keras")
class CaptionLoss(keras.losses.Loss):
    """Next-token cross-entropy on logits, averaged over the real (non-padding) tokens of the
    *global* batch.

    Under `tf.distribute` each replica sees part of the batch, and captions differ in length, so
    averaging per replica and then over replicas weights tokens unequally. Here each replica
    divides its token-loss sum by the token count of all replicas (one all-reduce), and the
    "sum" reduction leaves that alone; summing the replicas' gradients then gives the gradient
    of the whole batch's token mean, on one device or many.
    """

    def __init__(self, name="caption_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        import tensorflow as tf

        y_true = keras.ops.cast(y_true, "int32")                                      # (B, T)
        real = keras.ops.cast(keras.ops.not_equal(y_true, PAD_ID), "float32")         # (B, T)
        token_loss = keras.losses.sparse_categorical_crossentropy(
            keras.ops.where(y_true == PAD_ID, 0, y_true), y_pred, from_logits=True)  # (B, T)
        count = keras.ops.sum(real)
        context = tf.distribute.get_replica_context()
        if tf.distribute.get_strategy().num_replicas_in_sync > 1 and context is not None:
            count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        return token_loss * real / keras.ops.maximum(count, 1.0)

    def get_config(self):
        return {"name": self.name}


def caption_loss():
    """The captioners' training loss (see `CaptionLoss`)."""
    return CaptionLoss()


@keras.saving.register_keras_serializable(package="vlm_keras")
class MaskedTokenAccuracy(keras.metrics.Mean):
    """Next-token accuracy over real tokens: targets equal to the padding id are not counted.

    Keras' own mask (padding *inputs*) is a subset of padding targets, so it is not needed here.
    """

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")                                    # (B, T)
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")      # (B, T)
        correct = keras.ops.cast(keras.ops.equal(predicted, y_true), "float32")
        real = keras.ops.cast(keras.ops.not_equal(y_true, PAD_ID), "float32")
        return super().update_state(correct, sample_weight=real)


CAPTIONER_TYPES = ("lstm", "attention", "transformer")


def build_caption_decoder(model_type, vocab_size, feature_shape, max_length, **options):
    """Builds the decoder of a captioner type: "lstm", "attention" or "transformer".

    `options` are the chosen builder's size arguments (e.g. units=256, dropout=0.2).
    """
    from vlm_keras.models.attention_captioner import build_attention_decoder
    from vlm_keras.models.transformer_captioner import build_transformer_decoder

    if model_type == "lstm":
        return build_lstm_decoder(vocab_size, feature_shape, **options)
    if model_type == "attention":
        return build_attention_decoder(vocab_size, feature_shape, **options)
    if model_type == "transformer":
        return build_transformer_decoder(vocab_size, feature_shape, max_length, **options)
    raise ValueError(f"unknown captioner type {model_type!r}; expected one of {', '.join(CAPTIONER_TYPES)}")


def attention_weights_model(decoder):
    """A model sharing the decoder's layers that returns its weights over image regions.

    Returns a `keras.Model` mapping [image_features (B, h, w, c), caption_tokens (B, T)] to
    (B, T, R) weights (R = h * w regions, row-major; the Transformer's heads are averaged).
    Raises ValueError for a decoder without attention (the document's LSTM captioner).
    """
    names = [layer.name for layer in decoder.layers]
    if "region_attention" in names:
        weights = decoder.get_layer("region_attention").output[1]                   # (B, T, R)
    else:
        blocks = sorted(n for n in names if n.startswith("decoder_block_"))
        if not blocks:
            raise ValueError(f"decoder '{decoder.name}' has no attention over image regions "
                             "(the lstm captioner); train model='attention' or 'transformer'")
        per_head = decoder.get_layer(blocks[-1]).output[1]                           # (B, H, T, R)
        weights = keras.ops.mean(per_head, axis=1)                                   # (B, T, R)
    return keras.Model(decoder.inputs, weights, name=f"{decoder.name}_attention")

"""The three captioners' decoders: the document's LSTM captioner (section 5.1, its wiring
corrected), an LSTM that attends over the image regions per word (section 4.1), and a Transformer
decoder (section 4.2); the end-to-end model; and the attention maps.

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
| `model.predict(image)` "generates" a caption | `vlm_keras.captioning.decoding.greedy_decode`: an in-graph loop that feeds back each predicted word |
"""

import keras

from vlm_keras.config import CAPTIONER_TYPES, check_model_options
from vlm_keras.encoders.regions import build_region_encoder, region_grid
from vlm_keras.layers import (GroundedWordLogits, PositionalEmbedding, RegionEmbedding, ScaledDotProductAttention,
                              TransformerDecoderBlock, WordDropout)


def build_lstm_decoder(vocab_size, feature_shape, embed_dim=256, units=256, num_layers=2,
                       dropout=0.2, region_layers=2, region_filters=64, region_cells=4, region_appearance=0,
                       outline_stream=False, word_dropout=0.0, name="caption_decoder"):
    """Image features + caption prefix -> next-token logits, as a functional model.

    Args:
        vocab_size: number of token ids, special tokens included.
        feature_shape: shape of one image's encoder output, e.g. (8, 8, 256) for VGG16's
            block3_pool at 64 px.
        embed_dim: word embedding size.
        units: LSTM width (the document uses 256).
        num_layers: stacked LSTM layers (the document uses 2).
        dropout: dropout on the image projection and between LSTM layers.
        region_layers, region_filters, region_cells: the learned stage of the region encoder
            (`vlm_keras.encoders.regions.build_region_encoder`): by default two 3x3 convolutions
            bring the grid to at most 4x4 cells of 64 before it is flattened (block3_pool's 8x8x256
            flattened directly has 16,384 values per image for 4,800 training images, and overfits:
            test BLEU-4 0.516 against 0.627 with the convolutions, README). 0 layers: none.
        region_appearance, outline_stream: each region's appearance stream (channels; 0: none)
            and the outline split (the convolutions read the outline features, the appearance
            stream the pixels'): `vlm_keras.encoders.regions.region_grid`.
        word_dropout: in training, the probability that a word of the caption prefix is fed as
            the unknown token (`WordDropout`; 0: none).
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32 encoder features.
        caption_tokens: (B, T) int32 ids starting with the start token; 0 is padding.

    Returns:
        A `keras.Model` giving (B, T, vocab_size) float32 logits; position t predicts token t + 1.
        Its "region_encoder" must be adapted on training features before training
        (`adapt_region_encoder`; `train_captioner` does it).
    """
    image_features = keras.Input(tuple(feature_shape), name="image_features")   # (B, h, w, c)
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")  # (B, T)

    # Statistics per grid cell and channel: the grid is flattened, every cell keeps its place.
    regions = region_grid(image_features, feature_shape, region_layers, region_filters, region_cells,
                          normalization_axis=(1, 2, 3), appearance=region_appearance,
                          outline_stream=outline_stream)                        # (B, h', w', [C +] d + 2)
    x = keras.layers.Flatten(name="flatten_grid")(regions)                      # (B, h'*w'*(d + 2))
    x = keras.layers.Dropout(dropout, name="feature_dropout")(x)
    image_vector = keras.layers.Dense(units, activation="relu", name="image_projection")(x)  # (B, U)

    tokens = WordDropout(word_dropout, name="word_dropout")(caption_tokens) if word_dropout else caption_tokens
    seq = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True,
                                 name="token_embedding")(tokens)                 # (B, T, E)
    for i in range(num_layers):
        h0 = keras.layers.Dense(units, activation="tanh", name=f"initial_h_{i}")(image_vector)
        c0 = keras.layers.Dense(units, name=f"initial_c_{i}")(image_vector)
        seq = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(
            seq, initial_state=[h0, c0])                                        # (B, T, U)
        seq = keras.layers.Dropout(dropout, name=f"lstm_dropout_{i}")(seq)
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="next_token_logits")(seq)  # (B, T, V)
    return keras.Model([image_features, caption_tokens], logits, name=name)


def build_attention_decoder(vocab_size, feature_shape, embed_dim=256, units=256, attention_dim=256,
                            dropout=0.2, region_layers=0, region_filters=64, region_cells=8, region_appearance=0,
                            outline_stream=False, word_groups=(), name="caption_decoder"):
    """Image features + caption prefix -> next-token logits, attending over regions per word.

    The document's example of attention (section 4.1): a word (the query) attends to the image
    regions (keys and values) that it describes. The query at step t is the LSTM's hidden state
    h_t, the keys and values are the grid cells with their positions, and the attended context
    joins h_t to predict the next word: Luong et al.'s "global attention" form of Show, Attend and
    Tell. The attention runs after the recurrence, so training stays one parallel pass over the
    caption and the per-word weights over regions are an output that can be drawn.

    With `word_groups` the visual words are grounded (`GroundedWordLogits`): the state chooses
    whether a colour, a shape or a size comes next and where to look; which colour or shape is
    read from the attended region's vector alone. On the scenes, with the outline stream, it names
    0.82 of the objects whose colour-shape pair training never wrote, and its compositional gap is
    0.45 CIDEr-D, against the LSTM captioner's 1.09 (README, "Grounded visual words").

    Args:
        vocab_size: number of token ids, special tokens included.
        feature_shape: one image's encoder grid, e.g. (4, 4, 512).
        embed_dim: word embedding size.
        units: LSTM width.
        attention_dim: size of the region vectors and of the attention queries.
        dropout: dropout on the regions, the LSTM output and before the output layer.
        region_layers, region_filters, region_cells: the learned stage of the region encoder
            (`vlm_keras.encoders.regions.build_region_encoder`; 0 layers: none).
        region_appearance, outline_stream: each region's appearance stream (channels; 0: none)
            and the outline split (the region stage reads the outline features, the appearance
            stream the pixels'): `vlm_keras.encoders.regions.region_grid`.
        word_groups: groups of token ids of visual words (e.g. the colours, the shapes, the
            sizes; `CaptionerConfig.grounded_words` names them): the state chooses the group of
            the next word, the attended region alone which word of it (`GroundedWordLogits`).
            Empty: every word from the attentional state.
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32 encoder features.
        caption_tokens: (B, T) int32 ids starting with the start token; 0 is padding.

    Returns:
        A `keras.Model` giving (B, T, vocab_size) float32 logits. Its "region_attention" layer
        holds the weights over the h*w regions for each step; see `attention_weights_model`.
    """
    image_features = keras.Input(tuple(feature_shape), name="image_features")   # (B, h, w, c)
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")  # (B, T)

    grid = region_grid(image_features, feature_shape, region_layers, region_filters, region_cells,
                       appearance=region_appearance, outline_stream=outline_stream)  # (B, h', w', [C +] d + 2)
    regions = RegionEmbedding(attention_dim, name="regions")(grid)               # (B, R, A)
    regions = keras.layers.Dropout(dropout, name="region_dropout")(regions)
    summary = keras.layers.GlobalAveragePooling1D(name="mean_region")(regions)  # (B, A)
    h0 = keras.layers.Dense(units, activation="tanh", name="initial_h")(summary)
    c0 = keras.layers.Dense(units, name="initial_c")(summary)

    words = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True,
                                   name="token_embedding")(caption_tokens)      # (B, T, E)
    states = keras.layers.LSTM(units, return_sequences=True, name="lstm")(
        words, initial_state=[h0, c0])                                          # (B, T, U)
    queries = keras.layers.Dense(attention_dim, name="attention_query")(states)  # (B, T, A)
    context, _ = ScaledDotProductAttention(name="region_attention")(
        queries, regions, regions, return_attention_scores=True)                # (B, T, A), (B, T, R)
    x = keras.layers.Concatenate(name="state_and_context")([states, context])   # (B, T, U + A)
    x = keras.layers.Dense(units, activation="tanh", name="attentional_state")(x)
    x = keras.layers.Dropout(dropout, name="output_dropout")(x)
    if word_groups:
        # Which visual word: from the attended region only (dropped out like the state).
        context = keras.layers.Dropout(dropout, name="context_dropout")(context)
        logits = GroundedWordLogits(vocab_size, word_groups, dtype="float32", name="next_token_logits")(
            [x, context])                                                        # (B, T, V)
    else:
        logits = keras.layers.Dense(vocab_size, dtype="float32", name="next_token_logits")(x)  # (B, T, V)
    return keras.Model([image_features, caption_tokens], logits, name=name)


def build_transformer_decoder(vocab_size, feature_shape, max_length, embed_dim=256, num_layers=2,
                              num_heads=4, ff_dim=512, dropout=0.1, region_layers=0, region_filters=64,
                              region_cells=8, name="caption_decoder"):
    """Image features + caption prefix -> next-token logits with pre-LN Transformer blocks
    (document section 4.2): self-attention over the words, cross-attention to the regions.

    Args:
        vocab_size: number of token ids, special tokens included.
        feature_shape: one image's encoder grid, e.g. (4, 4, 512).
        max_length: the longest caption in words; sequences of up to max_length + 2 tokens
            are accepted (start and end included).
        embed_dim: model width D (token, position and region vectors).
        num_layers: decoder blocks.
        num_heads: attention heads; each head has embed_dim // num_heads dimensions.
        ff_dim: hidden size of each block's feed-forward network.
        dropout: dropout in the blocks and on the regions.
        region_layers, region_filters, region_cells: the learned stage of the region encoder
            (`vlm_keras.encoders.regions.build_region_encoder`; 0 layers: none).
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32 encoder features.
        caption_tokens: (B, T) int32 ids starting with the start token; 0 is padding.

    Returns:
        A `keras.Model` giving (B, T, vocab_size) float32 logits. The last block is named
        "decoder_block_{num_layers - 1}"; its cross-attention weights are the attention maps.
    """
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    image_features = keras.Input(tuple(feature_shape), name="image_features")   # (B, h, w, c)
    caption_tokens = keras.Input((None,), dtype="int32", name="caption_tokens")  # (B, T)

    grid = build_region_encoder(feature_shape, region_layers, region_filters, region_cells)(
        image_features)                                                          # (B, h', w', d + 2)
    regions = RegionEmbedding(embed_dim, name="regions")(grid)                   # (B, R, D)
    regions = keras.layers.Dropout(dropout, name="region_dropout")(regions)

    x = PositionalEmbedding(vocab_size, max_length + 2, embed_dim, name="token_embedding")(
        caption_tokens)                                                          # (B, T, D)
    for i in range(num_layers):
        block = TransformerDecoderBlock(num_heads, embed_dim // num_heads, ff_dim, dropout=dropout,
                                        name=f"decoder_block_{i}")
        if i == num_layers - 1:
            x, _ = block(x, regions, return_attention_scores=True)               # _: (B, H, T, R)
        else:
            x = block(x, regions)
    x = keras.layers.LayerNormalization(name="final_norm")(x)   # pre-LN stacks end with a norm
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="next_token_logits")(x)  # (B, T, V)
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


def build_caption_decoder(model_type, vocab_size, feature_shape, max_length, **options):
    """Builds the decoder of a captioner type: "lstm", "attention" or "transformer".

    `options` are the chosen builder's size arguments (e.g. units=256, dropout=0.2); an option the
    builder does not take is a ValueError that lists those it does.
    """
    if model_type not in CAPTIONER_TYPES:
        raise ValueError(f"unknown captioner type {model_type!r}; expected one of {', '.join(CAPTIONER_TYPES)}")
    builder = DECODER_BUILDERS[model_type]
    check_model_options(builder, options, f"the {model_type} captioner",
                        given=("vocab_size", "feature_shape", "max_length", "name"))
    if model_type == "transformer":
        return builder(vocab_size, feature_shape, max_length, **options)
    return builder(vocab_size, feature_shape, **options)


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


DECODER_BUILDERS = {"lstm": build_lstm_decoder, "attention": build_attention_decoder,
                    "transformer": build_transformer_decoder}

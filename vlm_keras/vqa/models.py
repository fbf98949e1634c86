"""Visual question answering (document sections 3.2 and 5.2): joint embedding of image and question.

The document's code passes undefined `image` and `question` tensors, concatenates VGG16's 4-D
feature map with a question vector, and trains a softmax with categorical cross-entropy. Here:

| the document                                   | vlm_keras                                                                 |
|------------------------------------------------|---------------------------------------------------------------------------|
| `image`, `question` never defined              | `keras.Input`s: image features (B, h, w, c) and question tokens (B, T)   |
| Concatenate([(B, h, w, 512) map, (B, 256)])    | the map is pooled to a (B, 256) vector before the concatenation         |
| `Dense(num_answers, softmax)` + categorical CE | `Dense(num_answers)` float32 logits + sparse CE from logits             |

A head is two functional sub-models, so that training can run the image part once per image
and share it between that image's questions (`build_grouped_trainer`):

- "image_branch": VGG16 grid -> the region encoder every task shares, here with learned
  convolutions ("region convolutions": the frozen encoder's features are generic, and with the
  offline random weights they are far from the colours, outlines and positions the questions ask
  about) -> the pooled image vector
  (B, units), plus for "attention" the region vectors (B, R, attention_dim), each knowing its
  position (`CoordinateChannels`, `RegionEmbedding`). The pooling is learned: a 1x1 convolution
  to a few channels per cell, flattened and projected, so that where things are survives it
  (a global average of the grid would lose "left of" and "above").
- "answer_branch": question tokens -> Embedding(vocab, 128) -> LSTM(256), the document's
  question encoder, then the fusion and the answer classifier.

Four heads, chosen by `model_type`:
- "concat": the document's network, corrected: [question vector, pooled image vector] ->
  Dense -> answer logits;
- "attention": the question also attends over the regions through `ScaledDotProductAttention`
  (`glimpses` queries made from the question, each a softmax over the regions); the attended
  vectors join the concatenation;
- "graph": the document's third fusion (section 2.3), a graph over the visual elements: the
  regions are its nodes, with their positions; `graph_rounds` rounds of `QuestionGraphAttention`
  let every region gather from every other, with edge weights and messages that depend on both
  regions, their relative position and the question ("what is left of the red object" needs two
  regions and where one lies from the other); then the question's glimpses read the updated
  regions as in "attention";
- "question_only": no image at all: the blind baseline that shows how much the image matters.

"attention" and "graph" can add word glimpses (`word_glimpses`, `WordGlimpses`): glimpses whose
queries are made of the question words each picks, whose landing places join the fusion, with the
offsets between them read along directions the question's words choose; with
`build_grouped_trainer(grounding_loss=...)` glimpse k learns to land on the k-th object the question
names. They bind "is A left of B" to its two objects in their roles (README, "Binding the two objects").

With a scene graph as the visual input (`feature_shape` (N, F), `scene_graphs.py`: the "oracle"
setting) the image branch reads the annotated objects instead of the VGG16 grid: each node's
attributes are embedded and its position encoded into one vector, and these nodes stand where the
regions stood (the glimpses and the graph rounds skip absent nodes); the pooled vector is the
sum of the present nodes (so it counts).
"""

import keras

from vlm_keras.config import VQA_TYPES
from vlm_keras.encoders.regions import region_grid, region_grid_shape
from vlm_keras.layers import QuestionGraphAttention, RegionEmbedding, ScaledDotProductAttention, WordGlimpses
from vlm_keras.vqa.scene_graphs import ATTRIBUTE_WIDTH, NODE_FEATURES, POSITION_SLICE, PRESENT_INDEX


# Directions along which the word glimpses' offsets are read (two axes, each way round).
_ASKED_DIRECTIONS = 4


def build_vqa_head(model_type, question_vocab_size, num_answers, feature_shape, embed_dim=128,
                   units=256, fusion_dim=512, attention_dim=256, glimpses=4, region_filters=64,
                   region_layers=4, region_cells=8, cell_channels=32, image_dropout=0.0, dropout=0.3,
                   graph_units=64, graph_rounds=2, region_appearance=0, word_glimpses=0, outline_stream=False,
                   name="vqa_head"):
    """Image features + question tokens -> answer logits, as a functional model.

    Args:
        model_type: "concat", "attention", "graph" or "question_only".
        question_vocab_size: question token ids, special tokens included.
        num_answers: size of the answer vocabulary.
        feature_shape: one image's encoder grid, e.g. (16, 16, 128) from VGG16's block2_pool at
            64 px; or (N, NODE_FEATURES): a scene graph of N nodes (`scene_graphs.scene_graph_nodes`).
        embed_dim: question word embedding size (the document uses 128).
        units: question LSTM width and pooled image vector size (the document uses 256).
        fusion_dim: width of the hidden layer after the fusion.
        attention_dim: size of region vectors and queries ("attention" and "graph").
        glimpses: queries the question makes over the regions ("attention" and "graph").
        region_filters: channels of the region convolutions.
        region_layers: 3x3 region convolutions, each with batch normalisation and ReLU (0: none;
            the grid is used as it is). `build_region_encoder`, the stage every task shares.
        region_cells: the region convolutions stride down to at most this many cells a side (a
            16x16 grid becomes 8x8; a 4x4 grid stays 4x4).
        cell_channels: channels per region cell that the learned pooling keeps (1x1 convolution)
            before flattening the grid into the pooled image vector's Dense.
        image_dropout: dropout on the flattened cells, before that Dense.
        dropout: dropout after the fusion.
        graph_units: size of the queries, keys and messages of each graph round ("graph"), and of
            the word glimpses' word-picking controls.
        graph_rounds: rounds of message passing between the regions ("graph" only).
        region_appearance: channels of each region's appearance stream (0: none): 1x1
            convolutions over the frozen grid, each cell read alone and then averaged over the
            cells a region covers, joined to the region convolutions' features. A cell alone holds
            the local colour and texture, not the object's outline, so this stream keeps an
            object's colour apart from its shape (README, "Keeping colour and shape apart").
        word_glimpses: glimpses whose queries are made of the question words each picks
            (`WordGlimpses`; 0: none; "attention" and "graph"): they join the question's glimpses,
            and where they landed (each one's row and column) joins the fusion, so that a question
            naming two objects can compare where each lies.
        outline_stream: the grid is the pixels' features, then the outlines' (`build_image_encoder(
            outline=True)`): the region convolutions read the outlines (no colour), the appearance
            stream the pixels, so no learned feature binds a shape to its colours (README).
        name: the model's name.

    Call arguments:
        image_features: (B, h, w, c) float32, or (B, N, NODE_FEATURES) scene graph nodes (ignored
            by "question_only", but always an input so every head has the same signature).
        question_tokens: (B, T) int32 ids; 0 is padding.

    Returns:
        A `keras.Model` giving (B, num_answers) float32 logits, made of the sub-models
        "image_branch" (absent for "question_only") and "answer_branch". Adapt its feature
        normalisation to training features with `adapt_region_encoder` before training.

    Example:
    ```python
    head = build_vqa_head("attention", question_vocab_size=40, num_answers=20,
                          feature_shape=(16, 16, 128))
    head.output_shape   # (None, 20)
    ```
    """
    if model_type not in VQA_TYPES:
        raise ValueError(f"unknown VQA model type {model_type!r}; expected one of {', '.join(VQA_TYPES)}")
    if word_glimpses and model_type not in ("attention", "graph"):
        raise ValueError(f"word_glimpses look over image regions; the {model_type!r} head has none "
                         "(use 'attention' or 'graph')")
    scene_graph = len(feature_shape) == 2
    if scene_graph and feature_shape[-1] != NODE_FEATURES:
        raise ValueError(f"scene graph nodes of {feature_shape[-1]} features; expected {NODE_FEATURES} "
                         "(vlm_keras.vqa.scene_graphs)")
    if not scene_graph and len(feature_shape) != 3:
        raise ValueError(f"feature_shape {tuple(feature_shape)}: expected an image grid (h, w, c) or "
                         "scene graph nodes (N, features)")
    # An image grid's outline stream is checked by `region_grid`; scene graph nodes have none.
    if outline_stream and model_type != "question_only" and scene_graph:
        raise ValueError(f"outline_stream reads a grid of the pixels' and the outlines' features, as many channels each "
                         f"(build_image_encoder(outline=True)); received scene graph nodes {tuple(feature_shape)}")
    image_features = keras.Input(tuple(feature_shape), name="image_features")     # (B, h, w, c)
    question_tokens = keras.Input((None,), dtype="int32", name="question_tokens")  # (B, T)
    if model_type == "question_only":
        answer_branch = _answer_branch(model_type, question_vocab_size, num_answers, None, embed_dim,
                                       units, fusion_dim, attention_dim, glimpses, dropout, graph_units,
                                       graph_rounds, word_glimpses)
        return keras.Model([image_features, question_tokens], answer_branch([question_tokens]), name=name)
    if scene_graph:
        image_branch = _scene_graph_branch(model_type, feature_shape, units, attention_dim, word_glimpses)
    else:
        image_branch = _image_branch(model_type, feature_shape, units, attention_dim, region_filters,
                                     region_layers, region_cells, cell_channels, image_dropout,
                                     region_appearance, word_glimpses, outline_stream)
    answer_branch = _answer_branch(model_type, question_vocab_size, num_answers, image_branch,
                                   embed_dim, units, fusion_dim, attention_dim, glimpses, dropout, graph_units,
                                   graph_rounds, word_glimpses)
    image_outputs = image_branch(image_features)
    image_outputs = image_outputs if isinstance(image_outputs, (list, tuple)) else [image_outputs]
    logits = answer_branch([question_tokens, *image_outputs])
    return keras.Model([image_features, question_tokens], logits, name=name)


def _image_branch(model_type, feature_shape, units, attention_dim, region_filters, region_layers, region_cells,
                  cell_channels, image_dropout, region_appearance=0, word_glimpses=0, outline_stream=False):
    """(B, h, w, c) grid -> pooled image vector (B, units) [, regions (B, R, attention_dim)
    [, their positions (B, R, 2)]]."""
    image_features = keras.Input(tuple(feature_shape), name="image_features")
    # With the outline stream: the convolutions read the outlines' half, the appearance the pixels'.
    grid = region_grid(image_features, feature_shape, region_layers, region_filters, region_cells,
                       appearance=region_appearance, outline_stream=outline_stream)   # (B, h', w', [C +] F + 2)
    cells = keras.layers.Conv2D(cell_channels, 1, activation="relu", name="cell_reduction")(grid)
    pooled = keras.layers.Flatten(name="pooled_image")(cells)                   # (B, h' w' C)
    if image_dropout:
        pooled = keras.layers.Dropout(image_dropout, name="pooled_dropout")(pooled)
    image_vector = keras.layers.Dense(units, activation="relu", name="image_projection")(pooled)
    outputs = [image_vector]
    if model_type in ("attention", "graph"):
        outputs.append(RegionEmbedding(attention_dim, name="regions")(grid))      # (B, R, A)
    if _reads_positions(model_type, word_glimpses):
        # The region encoder's last two channels: each cell's row and column.
        outputs.append(keras.layers.Reshape((grid.shape[1] * grid.shape[2], 2), name="region_positions")(grid[..., -2:]))
    return keras.Model(image_features, outputs, name="image_branch")


def _scene_graph_branch(model_type, feature_shape, units, attention_dim, word_glimpses=0):
    """(B, N, F) scene graph nodes -> pooled vector (B, units) [, nodes (B, N, attention_dim)
    [, positions (B, N, 2)], present (B, N)]: the outputs of `_image_branch`, plus the mask."""
    nodes = keras.Input(tuple(feature_shape), name="image_features")              # (B, N, F)
    attributes = nodes[..., :ATTRIBUTE_WIDTH]                                      # (B, N, 12) one-hots
    positions = nodes[..., POSITION_SLICE]                                         # (B, N, 2) row, column
    present = nodes[..., PRESENT_INDEX]                                            # (B, N) 1: an object
    embedded = keras.layers.Add(name="nodes")([
        keras.layers.Dense(attention_dim, use_bias=False, name="attribute_embedding")(attributes),
        keras.layers.Dense(attention_dim, name="position_encoding")(positions)])   # (B, N, A)
    embedded = keras.layers.Multiply(name="present_nodes")([embedded, present[..., None]])  # absent: 0
    # A sum, not a mean: how many objects (of a colour, of a shape) is a question it must answer.
    pooled = keras.ops.sum(embedded, axis=1)                                      # (B, A)
    image_vector = keras.layers.Dense(units, activation="relu", name="image_projection")(pooled)
    outputs = [image_vector]
    if model_type in ("attention", "graph"):
        outputs.append(embedded)
    if _reads_positions(model_type, word_glimpses):
        outputs.append(positions)
    return keras.Model(nodes, outputs + [present], name="image_branch")


def _answer_branch(model_type, question_vocab_size, num_answers, image_branch, embed_dim, units,
                   fusion_dim, attention_dim, glimpses, dropout, graph_units, graph_rounds, word_glimpses=0):
    """[question tokens (B, T), image vector (B, U), regions (B, R, A), positions (B, R, 2)] ->
    answer logits (B, answers)."""
    question_tokens = keras.Input((None,), dtype="int32", name="question_tokens")
    inputs = [question_tokens]
    words = keras.layers.Embedding(question_vocab_size, embed_dim, mask_zero=True,
                                   name="question_embedding")(question_tokens)    # (B, T, E)
    if word_glimpses:       # build_vqa_head allows them on attention and graph heads only
        word_states, question, _ = keras.layers.LSTM(units, return_sequences=True, return_state=True,
                                                     name="question_lstm")(words)  # (B, T, U), (B, U)
    else:
        question = keras.layers.LSTM(units, name="question_lstm")(words)          # (B, U)
    parts = [question]
    node_mask = None
    if image_branch is not None:
        shapes = image_branch.output_shape
        shapes = list(shapes) if isinstance(shapes, list) else [shapes]
        image_vector = keras.Input(shapes[0][1:], name="image_vector")
        inputs.append(image_vector)
        parts.append(image_vector)
    if model_type in ("attention", "graph"):
        regions = keras.Input(shapes[1][1:], name="regions")                       # (B, R, A)
        inputs.append(regions)
    if _reads_positions(model_type, word_glimpses):
        positions = keras.Input(shapes[2][1:], name="region_positions")            # (B, R, 2)
        inputs.append(positions)
    if image_branch is not None and _reads_scene_graphs(image_branch):
        node_mask = keras.Input(shapes[-1][1:], name="node_mask")                  # (B, R) 1: present
        inputs.append(node_mask)
    if model_type == "graph":
        for i in range(graph_rounds):
            # The regions talk to each other, steered by the question (who, and in which direction).
            regions = QuestionGraphAttention(graph_units, name=f"graph_round_{i}")(
                regions, positions, question, node_mask=node_mask)
    if model_type in ("attention", "graph") and glimpses:
        queries = keras.layers.Dense(attention_dim * glimpses, name="attention_queries")(question)
        queries = keras.layers.Reshape((glimpses, attention_dim), name="glimpse_queries")(queries)  # (B, G, A)
        attended, _ = ScaledDotProductAttention(name="question_attention")(
            queries, regions, regions, attention_mask=node_mask,
            return_attention_scores=True)                                          # (B, G, A), (B, G, R)
        parts.append(keras.layers.Flatten(name="glimpses")(attended))             # (B, G A)
    if word_glimpses:
        word_mask = keras.ops.not_equal(question_tokens, 0)                        # (B, T)
        # The weights are unused here; the trainer's grounding loss reads them (build_grouped_trainer).
        attended, where, _, _ = WordGlimpses(word_glimpses, graph_units, name="word_glimpses")(
            regions, positions, question, word_states, words, word_mask, region_mask=node_mask,
            return_weights=True)
        parts += [keras.layers.Flatten(name="word_glimpses_seen")(attended),     # (B, W A)
                  keras.layers.Flatten(name="word_glimpses_where")(where)]       # (B, W 2)
        if word_glimpses > 1:
            # Where one named object lies from another, along directions the question's words pick
            # ("left of": the column axis, pointing left). The LSTM state does not keep the relation
            # word, so each word owns K directions (`word_directions`), a question's are the sum of
            # its words', free in length so "left of" and "right of" can point opposite ways (unit
            # directions from the mean embedding did not turn round: benchmarks/vqa_question_forms.py).
            pairs = [(i, j) for i in range(word_glimpses) for j in range(i + 1, word_glimpses)]
            offsets = keras.ops.stack([where[:, i] - where[:, j] for i, j in pairs], axis=1)   # (B, P, 2)
            per_word = keras.layers.Embedding(question_vocab_size, 2 * _ASKED_DIRECTIONS,
                                              name="word_directions")(question_tokens)  # (B, T, 2K)
            present = keras.ops.cast(word_mask, per_word.dtype)[..., None]            # (B, T, 1)
            directions = keras.ops.sum(per_word * present, axis=1)                     # (B, 2K)
            directions = keras.layers.Reshape((_ASKED_DIRECTIONS, 2), name="asked_direction_vectors")(directions)
            compared = keras.ops.einsum("bkc,bpc->bkp", directions, keras.ops.cast(offsets, directions.dtype))
            parts.append(keras.layers.Flatten(name="offsets_along_asked")(compared))   # (B, K P)
    fused = keras.layers.Concatenate(name="fusion")(parts) if len(parts) > 1 else parts[0]
    x = keras.layers.Dense(fusion_dim, activation="relu", name="fused_hidden")(fused)
    x = keras.layers.Dropout(dropout, name="fusion_dropout")(x)
    logits = keras.layers.Dense(num_answers, dtype="float32", name="answer_logits")(x)  # (B, answers)
    return keras.Model(inputs, logits, name="answer_branch")


def _reads_positions(model_type, word_glimpses):
    """Whether a head's answer branch reads the regions' positions (word glimpses come only with
    attention and graph heads)."""
    return model_type == "graph" or bool(word_glimpses)


def _reads_scene_graphs(image_branch):
    return has_layer(image_branch, "attribute_embedding")


def reads_scene_graphs(head):
    """Whether a VQA head reads scene graph nodes (the oracle setting) rather than an image grid."""
    return has_layer(head, "image_branch") and _reads_scene_graphs(head.get_layer("image_branch"))


def has_layer(model, name):
    """Whether `model` has a layer of that name (its own layers, not those of its sub-models)."""
    return name in [layer.name for layer in model.layers]


def build_vqa_model(encoder, head, name="vqa"):
    """The end-to-end model: image + question tokens -> answer logits. With `encoder` None (a head
    that reads scene graphs) the model is the head's own inputs -> its logits, around it."""
    question_tokens = keras.Input((None,), dtype="int32", name="question_tokens")
    if encoder is None:
        nodes = keras.Input(head.input_shape[0][1:], name="scene_graph")
        return keras.Model([nodes, question_tokens], head([nodes, question_tokens]), name=name)
    image = keras.Input(encoder.input_shape[1:], name="image")
    logits = head([encoder(image), question_tokens])
    return keras.Model([image, question_tokens], logits, name=name)


def question_attention_model(head):
    """(B, h', w') weights over the region grid, averaged over every glimpse the answer reads (the
    question glimpses and, in a head with them, the word glimpses; each sums to 1, so the average
    does too); (B, N) weights over the nodes for a head that reads scene graphs; ValueError for heads
    without attention."""
    answer_branch = head.get_layer("answer_branch")
    # (layer, index of its (B, G, R) region weights among its outputs)
    sources = [(name, index) for name, index in (("question_attention", 1), ("word_glimpses", 3))
               if has_layer(answer_branch, name)]
    if not has_layer(head, "image_branch") or not sources:
        raise ValueError(f"VQA head '{head.name}' has no attention over image regions (no question glimpses); "
                         "train model_type='attention' (or 'graph') with glimpses > 0 or word_glimpses > 0")
    # A head with word glimpses finds the objects a question names with them (the grounding loss
    # teaches them where); its question glimpses alone landed on the asked object in 0.52 of the
    # pointing game's questions, all its glimpses together in 0.97 (README, "graph fusion").
    weights = [keras.ops.cast(answer_branch.get_layer(name).output[index], "float32") for name, index in sources]
    weights = keras.ops.concatenate(weights, axis=1) if len(weights) > 1 else weights[0]   # (B, G + W, R)
    weights = answer_branch_output(head, keras.ops.mean(weights, axis=1))        # (B, R)
    image_branch = head.get_layer("image_branch")
    if not _reads_scene_graphs(image_branch):
        grid_shape = region_grid_shape(image_branch)                               # (h', w')
        weights = keras.layers.Reshape(tuple(grid_shape), name="attention_grid")(weights)
    return keras.Model(head.inputs, weights, name=f"{head.name}_attention")


def answer_branch_output(head, tensor):
    """`tensor`, computed inside the head's answer branch from its inputs, as a tensor of the head's
    own inputs (image features, question tokens), for a model that reads a head's inner values."""
    branch = keras.Model(head.get_layer("answer_branch").inputs, tensor)
    image_features, question_tokens = head.inputs
    image_outputs = head.get_layer("image_branch")(image_features)
    image_outputs = image_outputs if isinstance(image_outputs, (list, tuple)) else [image_outputs]
    return branch([question_tokens, *image_outputs])


def graph_edges_function(head):
    """A function (image_features, question_tokens) -> (B, rounds, R, R) edge weights of a graph
    head's message passing, round by round: row i of a round is how region (or node) i weighed
    every region j (each row sums to 1 over the present nodes).

    It runs the head's own layers eagerly, each round on the nodes the previous one wrote, so the
    weights are those the answer used (Keras cannot call a round a second time inside a functional
    model with another output structure). Build it once per head and call it per batch.

    Args:
        head: a "graph" head from `build_vqa_head`.

    Raises:
        ValueError: for heads without graph rounds.
    """
    answer_branch = head.get_layer("answer_branch")
    rounds = sorted((layer for layer in answer_branch.layers if layer.name.startswith("graph_round_")),
                    key=lambda layer: int(layer.name.rsplit("_", 1)[1]))
    if not rounds:
        raise ValueError(f"VQA head '{head.name}' has no graph rounds; train model_type='graph'")
    names = [tensor.name for tensor in answer_branch.inputs]
    image_branch = head.get_layer("image_branch")
    question_model = keras.Model(answer_branch.inputs[0], answer_branch.get_layer("question_lstm").output)

    def edges(image_features, question_tokens):
        inputs = dict(zip(names, [question_tokens, *image_branch(image_features, training=False)]))
        question = question_model(question_tokens, training=False)                 # (B, U)
        nodes, weights = inputs["regions"], []
        for layer in rounds:
            nodes, round_weights = layer(nodes, inputs["region_positions"], question,
                                         node_mask=inputs.get("node_mask"), return_edge_weights=True)
            weights.append(round_weights)                                          # (B, R, R)
        return keras.ops.stack(weights, axis=1)

    return edges

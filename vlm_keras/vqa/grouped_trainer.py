"""The VQA head as trained: each image's questions share one pass through its image branch, and the
training-only losses (attribute probes, grounding of the word glimpses) sit beside the head."""

import keras

from vlm_keras.encoders.regions import region_grid_shape
from vlm_keras.layers import AttributeProbeLoss, GroundingLoss
from vlm_keras.vqa.models import has_layer, reads_scene_graphs
from vlm_keras.vqa.scene_graphs import ATTRIBUTES


def build_grouped_trainer(head, questions_per_image, question_length, attribute_loss=0.0, grounding_loss=0.0):
    """The head as trained: each image's questions share one pass through its image branch.

    A VQA dataset asks several questions about each image (6 on the scenes, 5.4 on average in
    VQA v2). Feeding (image, question) pairs would run the region convolutions once per
    question; this model takes a batch of images and all their questions, runs the image branch
    once per image and repeats its outputs for the questions. It shares every weight with
    `head`, so training it trains the head.

    Args:
        head: a model from `build_vqa_head`.
        questions_per_image: Q, the question slots per image (pad with empty questions).
        question_length: T, the token length of every question.
        attribute_loss: weight of the attribute probes' loss (0: none; "attention" and "graph"
            heads): two linear probes read every region vector the glimpses read, one its colour
            and one its shape (`AttributeProbeLoss`), so the regions carry each attribute apart
            from the other. The probes live in the trainer only; the head is unchanged.
        grounding_loss: weight of the word glimpses' grounding loss (0: none; heads with
            `word_glimpses`): glimpse k is taught to land on the k-th object the question names
            (`GroundingLoss`, targets from `scene_graphs.referent_maps`).

    Call arguments:
        image_features: (G, h, w, c).
        question_tokens: (G, Q, T) int32.
        region_colours, region_shapes: (G, h', w') int32 per region of the head's grid, 0 for
            background (`scene_graphs.region_attribute_maps`); with attribute_loss only.
        referent_maps: (G, Q, W, R) float32, each question's glimpses' targets over the R regions
            or nodes (`scene_graphs.referent_maps`); with grounding_loss only.

    Returns:
        A `keras.Model` giving (G * Q, num_answers) logits, image-major (image g's questions are
        rows g * Q .. g * Q + Q - 1).
    """
    image_features = keras.Input(head.input_shape[0][1:], name="image_features")
    question_tokens = keras.Input((questions_per_image, question_length), dtype="int32", name="question_tokens")
    flat_tokens = keras.ops.reshape(question_tokens, (-1, question_length))      # (G Q, T)
    answer_branch = head.get_layer("answer_branch")
    inputs = [flat_tokens]
    image_outputs = []
    if has_layer(head, "image_branch"):
        image_outputs = head.get_layer("image_branch")(image_features)
        image_outputs = image_outputs if isinstance(image_outputs, (list, tuple)) else [image_outputs]
        inputs += [keras.ops.repeat(x, questions_per_image, axis=0) for x in image_outputs]  # (G Q, ...)
    trainer_inputs = [image_features, question_tokens]
    if grounding_loss:
        if not has_layer(answer_branch, "word_glimpses"):
            raise ValueError("grounding_loss needs a head with word glimpses (build_vqa_head(word_glimpses=...))")
        glimpses = answer_branch.get_layer("word_glimpses")
        region_weights = glimpses.output[3]                                       # (G Q, W, R)
        logits, region_weights = keras.Model(answer_branch.inputs, [answer_branch.outputs[0], region_weights],
                                             name="answer_branch_with_glimpses")(inputs)
        referents = keras.Input((questions_per_image, *region_weights.shape[1:]), name="referent_maps")
        trainer_inputs.append(referents)
        logits = GroundingLoss(grounding_loss, name="grounding_loss")(
            logits, region_weights, keras.ops.reshape(referents, (-1, *region_weights.shape[1:])))
    else:
        logits = answer_branch(inputs)
    if not attribute_loss:
        return keras.Model(trainer_inputs, logits, name=f"{head.name}_grouped")
    if len(image_outputs) < 2 or reads_scene_graphs(head):
        raise ValueError("attribute_loss needs a head that attends over image regions (attention or graph)")
    grid = region_grid_shape(head)
    colours = keras.Input(grid, dtype="int32", name="region_colours")
    shapes = keras.Input(grid, dtype="int32", name="region_shapes")
    regions = image_outputs[1]                                                   # (G, R, A)
    colour_logits = keras.layers.Dense(len(ATTRIBUTES[0]), dtype="float32", name="colour_probe")(regions)
    shape_logits = keras.layers.Dense(len(ATTRIBUTES[1]), dtype="float32", name="shape_probe")(regions)
    logits = AttributeProbeLoss(attribute_loss, name="attribute_probe_loss")(
        logits, [colour_logits, shape_logits], [keras.ops.reshape(colours, (-1, grid[0] * grid[1])),
                                                keras.ops.reshape(shapes, (-1, grid[0] * grid[1]))])
    return keras.Model(trainer_inputs + [colours, shapes], logits, name=f"{head.name}_grouped")

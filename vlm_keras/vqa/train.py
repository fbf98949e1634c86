"""`train_vqa()`: VGG16 features + a question LSTM -> an answer classifier, scored with the
official VQA accuracy."""

import collections

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.config import VQAConfig, check_model_options
from vlm_keras.data import pipeline
from vlm_keras.data.formats.reader import DatasetError
from vlm_keras.data.sources import scenes_of
from vlm_keras.data.text import Tokenizer
from vlm_keras.encoders.regions import adapt_region_encoder, region_grid_shape
from vlm_keras.io import log
from vlm_keras.metrics import normalize_answer
from vlm_keras.training import TrainingRun, train_and_val
from vlm_keras.vqa.grouped_trainer import build_grouped_trainer
from vlm_keras.vqa.models import build_vqa_head, build_vqa_model
from vlm_keras.vqa.scene_graphs import referent_maps, region_attribute_maps, scenes_of_images, split_scene_graphs
from vlm_keras.vqa.vqa_model import VQAModel, build_answer_vocabulary


def train_vqa(data=None, *, config=None, **options):
    """Trains a VQA model (VGG16 features + question LSTM -> answer) and scores the VQA accuracy.

    Args:
        data: "scenes" (the synthetic scenes with their questions; the default), a folder in the
            VQA v2 layout (`annotations/questions_<split>.json`, `annotations/vqa_<split>.json`,
            image folders), or a TFDS dataset with questions ("tfds:vlm_scenes/small"), as
            `train_captioner`'s `data`.
        config: a `VQAConfig` to start from; keyword options override its fields.
        **options: any `VQAConfig` field (`vlm_keras.config`), chiefly:
            model: "graph" (question-conditioned message passing between the regions, then the
                question attends over them; the default), "attention" (the same without the
                message passing), "concat" (the document's network) or "question_only" (the blind
                baseline);
            feature_layer: "block2_pool" (16x16x128 at 64 px) by default;
            visual_input: "image" (the default), or "scene_graph": the model reads the synthetic
                scenes' annotated objects instead of the pixels (`vqa/scene_graphs.py`), the
                "ground-truth scene graph" oracle that bounds what perception costs;
            batch_size: questions per replica and step, rounded down to whole images (each image
                comes with all its questions, which share one pass through the image branch);
            learning_rate: Adam's at the first step; it decays along a cosine to 5% of that by the
                last step. The weights kept are those of the epoch with the best validation
                accuracy (without a validation split, of the best training accuracy);
            top_k_answers: the answer vocabulary keeps the most frequent answers;
            attribute_loss: weight of linear probes that read each region's colour and shape from
                the synthetic scenes' annotations while training (0, the default: none;
                `build_grouped_trainer`);
            grounding_loss: weight of the word glimpses' grounding loss, which teaches glimpse k
                where the k-th object a question names is, from the synthetic scenes' annotations
                (0, the default: none; needs a head with `word_glimpses`);
            outline: the encoder also reads each image's outline map, and the head's region
                convolutions read only those features (shape without colour) while its appearance
                stream reads the pixels' (`region_appearance`, 32 unless given). By default (None) on
                for the graph and attention heads reading images, off for the others, whose
                benchmarks were run without it;
            and the options every trainer shares, as `train_captioner`.
            Any other keyword is a size for `vlm_keras.vqa.models.build_vqa_head`.

    Returns:
        A `VQAModel` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    if data is not None:
        options["data"] = data
    config = VQAConfig.from_options(config, **options)
    check_model_options(build_vqa_head, config.model_options, "the VQA head",
                        given=("model_type", "question_vocab_size", "num_answers", "feature_shape", "name"))
    with TrainingRun(config) as run:
        return _train(run)


def _train(run):
    """The body of `train_vqa` for an open run."""
    config = run.config
    source = run.source(questions=True)
    train_split, val_split = train_and_val(source, "VQA dataset")
    for split in (train_split, val_split):
        if split is not None and not split.has_answers:
            raise DatasetError(f"VQA split '{split.name}' has no answers (no annotations file); training needs them")
    # The evaluation splits are read (and checked) before any work: a broken one fails now.
    splits = [(s, source.split(s)) for s in config.eval_splits if s in source.splits]
    answers = build_answer_vocabulary(train_split.answers, config.top_k_answers)
    tokenizer = Tokenizer.from_texts(train_split.questions, max_length=config.max_length,
                                     min_count=config.min_word_count)
    if run.verbose:
        log(f"train: {len(train_split)} questions about {len(set(train_split.image_ids))} images; "
            f"{len(answers)} answers; question vocabulary {tokenizer.vocab_size} tokens; "
            f"{tokenizer.describe_lengths('questions')}")

    oracle = config.visual_input == "scene_graph"
    answer_ids = {a: i for i, a in enumerate(answers)}
    # Every split is grouped into the same number of question slots per image.
    questions_per_image = max(max(collections.Counter(s.image_paths).values())
                              for s in (train_split, val_split) if s is not None)

    def examples(split):
        """(features (M, h, w, c), images (G,), tokens (G, Q, T), answers (G, Q)) for a split, the
        image id of each feature row, and a function that groups any per-question array the same way."""
        if oracle:
            scenes = scenes_of(split, split.name, verbose=False, purpose="visual_input='scene_graph'")
            features, image_index = split_scene_graphs(scenes, split.image_ids, split.name)
        else:
            paths, image_index = np.unique(np.asarray(split.image_paths), return_inverse=True)
            features = run.features(encoder, list(paths), f"{split.name} images")
        image_ids = np.zeros(len(features), object)
        image_ids[image_index] = split.image_ids
        labels = np.array([answer_ids.get(normalize_answer(a), -1) for a in split.multiple_choice_answers])
        tokens = tokenizer.encode(tf.constant(split.questions, tf.string)).numpy()
        grouped = (features, *pipeline.group_questions(image_index, tokens, labels, questions_per_image))
        return grouped, image_ids, lambda values: pipeline.group_questions(image_index, values, labels,
                                                                          questions_per_image)[1]

    def attribute_maps(split, image_ids):
        """The attribute probes' targets, each region's colour and shape, per feature row."""
        if not config.attribute_loss:
            return None
        scenes = scenes_of(split, split.name, verbose=False, purpose="attribute_loss")
        scenes = scenes_of_images(scenes, image_ids.tolist(), split.name, purpose="attribute_loss")
        colours, shapes = region_attribute_maps(scenes, region_grid_shape(head))
        return {"region_colours": colours, "region_shapes": shapes}

    def referents(split, group):
        """The word glimpses' grounding targets, grouped as the split's questions."""
        if not config.grounding_loss:
            return None
        scenes = scenes_of(split, split.name, verbose=False, purpose="grounding_loss")
        scenes = scenes_of_images(scenes, split.image_ids, split.name, purpose="grounding_loss")
        glimpses = head.get_layer("answer_branch").get_layer("word_glimpses").glimpses
        grid = None if oracle else region_grid_shape(head)
        return {"referent_maps": group(referent_maps(scenes, split.questions, glimpses, grid))}

    encoder = None if oracle else run.build_encoder()
    train_examples, train_images, train_group = examples(train_split)
    val_examples, val_images, val_group = examples(val_split) if val_split is not None else (None, None, None)
    # A step takes about batch_size questions per replica: whole images with all their questions.
    images_per_step = max(1, config.batch_size // questions_per_image) * run.replicas
    with run.scope():
        # With the outline stream the colours come from the appearance stream.
        head = build_vqa_head(config.model, tokenizer.vocab_size, len(answers), train_examples[0].shape[1:],
                              **config.stream_options())
        full_model = build_vqa_model(encoder, head)
        trainer = build_grouped_trainer(head, questions_per_image, train_examples[2].shape[2],
                                        attribute_loss=config.attribute_loss, grounding_loss=config.grounding_loss)
    adapt_region_encoder(head, train_examples[0])   # statistics of the training images only
    train_maps = attribute_maps(train_split, train_images)
    val_maps = attribute_maps(val_split, val_images) if val_examples is not None else None
    train_referents = referents(train_split, train_group)
    val_referents = referents(val_split, val_group) if val_examples is not None else None

    def train_batches(epoch, skip):
        return pipeline.grouped_vqa_dataset(*train_examples, images_per_step, seed=config.seed, epoch=epoch,
                                            skip=skip, image_inputs=train_maps, question_inputs=train_referents)

    val_data = (pipeline.grouped_vqa_dataset(*val_examples, images_per_step, shuffle=False, image_inputs=val_maps,
                                             question_inputs=val_referents)
                if val_examples is not None else None)
    # The learning rate decays along a cosine to 5% of its start by the last step: the heads
    # begin to overfit the scenes after about 8 epochs, and a decaying rate settles them.
    steps_per_epoch = -(-len(train_examples[1]) // images_per_step)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, alpha=0.05,
                                                      decay_steps=config.epochs * steps_per_epoch)
    run.compile(trainer, schedule, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    # The epoch kept is that of the best validation accuracy, not loss: once the head is sure of
    # most answers, a few confident mistakes raise the loss while accuracy still climbs (concat,
    # 20 epochs: lowest validation loss at epoch 7, best validation accuracy, 0.741, at epoch 15).
    run.fit(trainer, train_batches, val_data, monitor="val_accuracy", mode="max")

    result = VQAModel(full_model, tokenizer, answers, run.model_config(config.model))
    return run.finish(result, splits, lambda r: f"VQA accuracy {r['overall']:.3f} ({r['num_questions']} questions)",
                      keys={"overall": "accuracy", "per_question_type": "per_question_type",
                            "per_answer_type": "per_answer_type"})

"""Training entry points: `train_captioner()`, `train_vqa()` and `train_retrieval()`."""

import collections
import pathlib
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from vlm_keras import __version__
from vlm_keras.bundle import CHECKPOINT_DIR, check_model_folder, log
from vlm_keras.captioning import Captioner
from vlm_keras.data import coco, pipeline
from vlm_keras.data.sources import resolve_data_dir
from vlm_keras.data.text import Tokenizer
from vlm_keras.distribute import get_strategy, global_batch_size, is_chief
from vlm_keras.fit import resumable_fit
from vlm_keras.metrics import normalize_answer
from vlm_keras.models.captioner import (CAPTIONER_TYPES, MaskedTokenAccuracy, build_caption_decoder,
                                        build_captioner, caption_loss)
from vlm_keras.models.image_encoder import build_image_encoder
from vlm_keras.precision import adam, check_precision, dtype_policy

DEFAULT_LEARNING_RATES = {"lstm": 3e-3, "attention": 3e-3, "transformer": 1e-3}


def train_captioner(data="shapes", *, model="lstm", epochs=10, image_size=128, batch_size=128,
                    learning_rate=None, weights=None, feature_layer="block5_conv3", fine_tune=False,
                    num_images=6000, seed=0, out=None, checkpoint_dir=None, strategy="auto",
                    eval_splits=("test", "compositional"), max_length=None, data_root=None, verbose=1,
                    precision="float32", jit_compile="auto", backup_every=200, tensorboard=False,
                    callbacks=(), **decoder_options):
    """Trains an image captioner (VGG16 features -> a decoder) and evaluates it with BLEU.

    Args:
        data: "shapes" (the offline synthetic scenes), a folder in the COCO captions layout
            (`annotations/captions_<split>.json` and one image folder per split), or a TFDS
            dataset: "tfds:<name>[/<config>]" ("tfds:coco_captions", "tfds:vlm_scenes/small"), or
            its bare name when no folder has that name. A TFDS dataset is read from
            $TFDS_DATA_DIR (else ~/tensorflow_datasets) and written once as a COCO folder under
            `data_root`; vlm_scenes is built offline, any other must be prepared beforehand
            (`tfds build coco_captions`). See `vlm_keras.data.sources`.
        model: the captioner type: "lstm" (the document's VGG16 + LSTM network), "attention" (an
            LSTM that attends over the VGG16 grid for every word) or "transformer".
        epochs: passes over every (image, reference caption) pair of the train split.
        image_size: square input side for VGG16 (64 trains fast on a CPU; 128 suits photos).
        batch_size: examples per replica; a step takes batch_size x replicas (the global batch).
        learning_rate: Adam's learning rate (default 3e-3, 1e-3 for the transformer).
        weights: VGG16 weights: None (random; the offline default), "imagenet" or a local .h5 path.
        feature_layer: the VGG16 layer whose grid the decoder reads ("block5_conv3" or "block5_pool").
        fine_tune: False freezes VGG16 and caches its features once; True trains it end to end.
        num_images: for data="shapes", images in train + val + test (a TFDS config fixes its own).
        seed: seeds weight initialisation, dropout, shuffling and the scenes generator.
        out: optional model folder to save the result into (checkpoints go to out/checkpoints).
            Run the same call again after a crash and training resumes from the last backup.
        checkpoint_dir: where per-epoch weights, backups and training.csv go; default
            out/checkpoints, or a temporary folder (then a crashed run cannot be resumed).
        strategy: a `tf.distribute.Strategy` or a name for `vlm_keras.distribute.get_strategy`
            ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu").
        eval_splits: splits scored with BLEU after training (missing ones are skipped).
        max_length: words kept per caption; None uses the longest training caption.
        data_root: where "shapes" and TFDS datasets are written (default ~/.cache/vlm_keras/datasets).
        verbose: 0 silent, 1 progress bars.
        precision: "float32", "mixed_float16" (GPUs; the loss is scaled) or "mixed_bfloat16".
        jit_compile: XLA for the training step: "auto" (Keras: on with a GPU when every layer
            supports it, off on CPU, where it measured 1.7-5x slower, `benchmarks/xla.py`), True, False.
        backup_every: steps between mid-epoch backups (None: at epoch ends only).
        tensorboard: also log TensorBoard scalars and sample captions to checkpoints/tensorboard.
        callbacks: extra Keras callbacks for fit().
        **decoder_options: sizes passed to the decoder builder, e.g. units=256, dropout=0.2 (see
            `build_lstm_decoder`, `build_attention_decoder`, `build_transformer_decoder`).

    Returns:
        A `Captioner` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    if model not in CAPTIONER_TYPES:
        raise ValueError(f"unknown captioner type {model!r}; expected one of {', '.join(CAPTIONER_TYPES)}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[model]
    started, strategy = _begin(epochs, out, precision, strategy, seed)
    data_dir, available, train_split, val_split, tokenizer = _caption_data(
        data, num_images, seed, data_root, max_length, verbose)

    global_batch = global_batch_size(batch_size, strategy)
    with strategy.scope(), dtype_policy(precision):
        encoder = build_image_encoder(image_size, weights=weights, trainable=fine_tune,
                                      feature_layer=feature_layer)
        decoder = build_caption_decoder(model, tokenizer.vocab_size, encoder.output_shape[1:],
                                        tokenizer.max_length, **decoder_options)
        full_model = build_captioner(encoder, decoder)

    train_index, train_ids = pipeline.caption_examples(train_split.captions, tokenizer)
    train_features = _cached_features(encoder, train_split.image_paths, image_size, verbose, "train images")
    # Feature statistics come from the training images only.
    decoder.get_layer("feature_normalization").adapt(train_features)

    val_data = None
    if fine_tune:
        trained = full_model

        def train_batches(epoch, skip):
            return pipeline.image_caption_dataset(train_split.image_paths, train_index, train_ids, image_size,
                                                  global_batch, seed=seed, epoch=epoch, skip=skip)

        if val_split is not None:
            val_index, val_ids = pipeline.caption_examples(val_split.captions, tokenizer)
            val_data = pipeline.image_caption_dataset(val_split.image_paths, val_index, val_ids,
                                                      image_size, global_batch, shuffle=False)
    else:
        trained = decoder

        def train_batches(epoch, skip):
            return pipeline.caption_dataset(train_features, train_index, train_ids, global_batch, seed=seed,
                                            epoch=epoch, skip=skip)

        if val_split is not None:
            val_features = _cached_features(encoder, val_split.image_paths, image_size, verbose, "val images")
            val_index, val_ids = pipeline.caption_examples(val_split.captions, tokenizer)
            val_data = pipeline.caption_dataset(val_features, val_index, val_ids, global_batch,
                                                shuffle=False)

    with strategy.scope():
        trained.compile(optimizer=adam(learning_rate, precision), loss=caption_loss(),
                        metrics=[MaskedTokenAccuracy()], jit_compile=jit_compile)

    config = {
        "model_type": model,
        "image_size": image_size,
        "encoder_weights": None if weights is None else str(weights),
        "feature_layer": feature_layer,
        "fine_tuned": bool(fine_tune),
        "decoder": decoder_options,
        "precision": precision,
        "batch_size": batch_size,
        "replicas": strategy.num_replicas_in_sync,
        "learning_rate": learning_rate,
        "seed": seed,
        "data": str(data),
        "vlm_keras_version": __version__,
    }
    captioner = Captioner(full_model, tokenizer, config)
    samples = val_split.image_paths[:4] if (tensorboard and val_split is not None) else []

    checkpoint_dir = _checkpoint_dir(out, checkpoint_dir, strategy)
    history, train_seconds, resumed = resumable_fit(
        trained, train_batches, val_data, epochs, checkpoint_dir, strategy=strategy, verbose=verbose,
        backup_every=backup_every, tensorboard=tensorboard, callbacks=callbacks,
        sample_fn=(lambda: captioner.caption(samples)) if samples else None)
    monitor = "val_loss" if val_data is not None else "loss"
    captioner.history, captioner.checkpoint_dir = history, str(checkpoint_dir)

    metrics = {"train_seconds": train_seconds, "epochs": epochs, "resumed_from": resumed,
               "best_" + monitor: float(np.min(history[monitor]))}
    splits = [(s, coco.load_caption_split(data_dir, s)) for s in eval_splits if s in available]
    return _evaluate_and_save(
        captioner, metrics, splits, started, out, strategy, verbose,
        lambda r: f"BLEU-1 {r['bleu1']:.3f}  BLEU-4 {r['bleu4']:.3f}  ({r['num_images']} images, "
                  f"{r['ms_per_caption']:.2f} ms per caption)")


def _cached_features(encoder, image_paths, image_size, verbose, what):
    """`pipeline.extract_features` as one tensor, which every epoch's dataset then shares (a NumPy
    array would be copied into each of them; see the `pipeline` module docstring)."""
    return tf.convert_to_tensor(pipeline.extract_features(encoder, image_paths, image_size, verbose=verbose,
                                                          what=what))


def _begin(epochs, out, precision, strategy, seed):
    """What every train_* does first: checks what can fail before any work (a bad `out` fails in
    a second, not after training), creates the strategy (MultiWorkerMirroredStrategy must exist
    before TensorFlow runs any op), then seeds everything. Returns (start time, strategy)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if out:
        check_model_folder(out)
    check_precision(precision)
    started = time.perf_counter()
    strategy = get_strategy(strategy)
    keras.utils.set_random_seed(seed)
    return started, strategy


def _caption_data(data, num_images, seed, data_root, max_length, verbose):
    """A captions dataset for training: (data_dir, its splits, the train split, the val split or
    None, the tokenizer built from every training caption)."""
    data_dir = resolve_data_dir(data, num_images=num_images, seed=seed, data_root=data_root,
                                verbose=bool(verbose))
    train_split = coco.load_caption_split(data_dir, "train")
    available = coco.list_caption_splits(data_dir)
    val_split = coco.load_caption_split(data_dir, "val") if "val" in available else None
    tokenizer = Tokenizer.from_texts(
        [c for refs in train_split.captions for c in refs], max_length=max_length)
    if verbose:
        log(f"train: {len(train_split)} images, {sum(map(len, train_split.captions))} captions; "
            f"vocabulary {tokenizer.vocab_size} tokens; captions up to {tokenizer.max_length} words")
    return data_dir, available, train_split, val_split, tokenizer


def _evaluate_and_save(result, metrics, splits, started, out, strategy, verbose, describe, keys=None):
    """Scores `result` on each (name, loaded split), adds the figures to `metrics` as
    "<figure>_<split>" (only the figures in `keys`, renamed, when given), logs `describe(report)`,
    records the total seconds, saves the model folder and returns `result`."""
    for split, data in splits:
        report = result.evaluate(data, verbose=verbose)
        for name, value in report.items():
            if keys is None or name in keys:
                metrics[f"{keys[name] if keys else name}_{split}"] = value
        if verbose:
            log(f"{split}: {describe(report)}")
    metrics["seconds"] = time.perf_counter() - started
    result.metrics = metrics
    _save_result(result, out, strategy, verbose)
    return result


def _checkpoint_dir(out, checkpoint_dir, strategy):
    """out/checkpoints, the given folder, or a new temporary one; a worker of its own below it for
    every worker but the chief of a multi-worker run (two writers must never share a file)."""
    if checkpoint_dir is None:
        checkpoint_dir = (pathlib.Path(out) / CHECKPOINT_DIR if out
                          else pathlib.Path(tempfile.mkdtemp(prefix="vlm_keras_checkpoints_")))
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    if not is_chief(strategy):
        checkpoint_dir = checkpoint_dir / f"worker_{strategy.cluster_resolver.task_id}"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return checkpoint_dir


def _save_result(bundle, out, strategy, verbose):
    """Saves the model folder; in a multi-worker run only the chief writes it."""
    if not out:
        return
    if is_chief(strategy):
        bundle.save(out)
    elif verbose:
        log(f"worker {strategy.cluster_resolver.task_id}: the chief writes '{out}'")


def train_vqa(data="shapes", *, model="concat", epochs=10, image_size=64, batch_size=128,
              learning_rate=2e-3, weights=None, feature_layer="block2_pool", num_images=6000, seed=0,
              out=None, checkpoint_dir=None, strategy="auto", eval_splits=("test", "compositional"),
              top_k_answers=1000, data_root=None, verbose=1, precision="float32", jit_compile="auto",
              backup_every=200, tensorboard=False, callbacks=(), **head_options):
    """Trains a VQA model (VGG16 features + question LSTM -> answer) and scores the VQA accuracy.

    Args:
        data: "shapes" (the synthetic scenes with their questions), a folder in the VQA v2 layout
            (`annotations/questions_<split>.json`, `annotations/vqa_<split>.json`, image folders),
            or a TFDS dataset with questions ("tfds:vlm_scenes", "tfds:vlm_scenes/small"), as
            `train_captioner`'s `data`.
        model: "concat" (the document's network), "attention" (the question attends over the
            VGG16 grid) or "question_only" (the blind baseline).
        feature_layer: the VGG16 layer the head reads: "block2_pool" (16x16x128 at 64 px) by
            default. With the offline random weights, deeper blocks keep less of the shapes, and
            the head's own region convolutions learn what the questions need from this grid.
        batch_size: questions per replica and step, rounded down to whole images (each image
            comes with all its questions, which share one pass through the image branch).
        epochs, image_size, weights, num_images, seed, out, checkpoint_dir, strategy, data_root,
        verbose, precision, jit_compile, backup_every, tensorboard, callbacks: as `train_captioner`.
        learning_rate: Adam's learning rate at the first step; it decays along a cosine to 5% of
            that by the last step. The weights kept are those of the epoch with the best
            validation accuracy (without a validation split, of the best training accuracy).
        eval_splits: splits scored with the official VQA accuracy after training.
        top_k_answers: the answer vocabulary keeps the most frequent answers.
        **head_options: sizes for `vlm_keras.models.vqa.build_vqa_head`.

    Returns:
        A `VQAModel` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    from vlm_keras.data.sources import resolve_vqa_dir
    from vlm_keras.data.vqa import list_vqa_splits, load_vqa_split
    from vlm_keras.models.vqa import (VQA_TYPES, adapt_vqa_head, build_grouped_trainer, build_vqa_head,
                                      build_vqa_model)
    from vlm_keras.vqa import VQAModel, build_answer_vocabulary

    if model not in VQA_TYPES:
        raise ValueError(f"unknown VQA model type {model!r}; expected one of {', '.join(VQA_TYPES)}")
    started, strategy = _begin(epochs, out, precision, strategy, seed)
    data_dir = resolve_vqa_dir(data, num_images=num_images, seed=seed, data_root=data_root,
                               verbose=bool(verbose))
    available = list_vqa_splits(data_dir)
    train_split = load_vqa_split(data_dir, "train")
    val_split = load_vqa_split(data_dir, "val") if "val" in available else None
    answers = build_answer_vocabulary(train_split.answers, top_k_answers)
    tokenizer = Tokenizer.from_texts(train_split.questions)
    if verbose:
        log(f"train: {len(train_split)} questions about {len(set(train_split.image_ids))} images; "
            f"{len(answers)} answers; question vocabulary {tokenizer.vocab_size} tokens")

    answer_ids = {a: i for i, a in enumerate(answers)}
    # Every split is grouped into the same number of question slots per image.
    questions_per_image = max(max(collections.Counter(s.image_paths).values())
                              for s in (train_split, val_split) if s is not None)

    def examples(split, encoder):
        """(features (M, h, w, c), images (G,), tokens (G, Q, T), answers (G, Q)) for a split."""
        paths, image_index = np.unique(np.asarray(split.image_paths), return_inverse=True)
        features = _cached_features(encoder, list(paths), image_size, verbose, f"{split.name} images")
        labels = np.array([answer_ids.get(normalize_answer(a), -1) for a in split.multiple_choice_answers])
        tokens = tokenizer.encode(tf.constant(split.questions, tf.string)).numpy()
        return (features, *pipeline.group_questions(image_index, tokens, labels, questions_per_image))

    with strategy.scope(), dtype_policy(precision):
        encoder = build_image_encoder(image_size, weights=weights, feature_layer=feature_layer)
    train_examples = examples(train_split, encoder)
    val_examples = examples(val_split, encoder) if val_split is not None else None
    # A step takes about batch_size questions per replica: whole images with all their questions.
    images_per_step = max(1, batch_size // questions_per_image) * strategy.num_replicas_in_sync
    with strategy.scope(), dtype_policy(precision):
        head = build_vqa_head(model, tokenizer.vocab_size, len(answers), encoder.output_shape[1:],
                              **head_options)
        full_model = build_vqa_model(encoder, head)
        trainer = build_grouped_trainer(head, questions_per_image, train_examples[2].shape[2])
    adapt_vqa_head(head, train_examples[0])

    def train_batches(epoch, skip):
        return pipeline.grouped_vqa_dataset(*train_examples, images_per_step, seed=seed, epoch=epoch, skip=skip)

    val_data = (pipeline.grouped_vqa_dataset(*val_examples, images_per_step, shuffle=False)
                if val_examples is not None else None)
    # The learning rate decays along a cosine to 5% of its start by the last step: the heads
    # begin to overfit the scenes after about 8 epochs, and a decaying rate settles them.
    steps_per_epoch = -(-len(train_examples[1]) // images_per_step)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch,
                                                      alpha=0.05)
    with strategy.scope():
        trainer.compile(optimizer=adam(schedule, precision),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                        jit_compile=jit_compile)
    checkpoint_dir = _checkpoint_dir(out, checkpoint_dir, strategy)
    # The epoch kept is that of the best validation accuracy, not loss: once the head is sure of
    # most answers, a few confident mistakes raise the loss while accuracy still climbs (concat,
    # 20 epochs: lowest validation loss at epoch 7, best validation accuracy, 0.741, at epoch 15).
    history, train_seconds, resumed = resumable_fit(
        trainer, train_batches, val_data, epochs, checkpoint_dir, strategy=strategy, verbose=verbose,
        backup_every=backup_every, tensorboard=tensorboard, callbacks=callbacks,
        monitor="val_accuracy", mode="max")

    config = {"model_type": model, "image_size": image_size, "feature_layer": feature_layer,
              "encoder_weights": None if weights is None else str(weights), "head": head_options,
              "learning_rate": learning_rate, "seed": seed, "data": str(data), "precision": precision,
              "batch_size": batch_size, "replicas": strategy.num_replicas_in_sync,
              "vlm_keras_version": __version__}
    result = VQAModel(full_model, tokenizer, answers, config, history=history,
                      checkpoint_dir=str(checkpoint_dir))
    metrics = {"train_seconds": train_seconds, "epochs": epochs, "resumed_from": resumed}
    splits = [(s, load_vqa_split(data_dir, s)) for s in eval_splits if s in available]
    return _evaluate_and_save(
        result, metrics, splits, started, out, strategy, verbose,
        lambda r: f"VQA accuracy {r['overall']:.3f} ({r['num_questions']} questions)",
        keys={"overall": "accuracy", "per_question_type": "per_question_type",
              "per_answer_type": "per_answer_type"})


IMAGE_TOWER_OPTIONS = ("embed_dim", "grid_pool", "hidden_dim", "attention_dim", "glimpses", "dropout")
TEXT_TOWER_OPTIONS = ("embed_dim", "word_dim", "units", "bidirectional")


def train_retrieval(data="shapes", *, pooling="attention", epochs=10, image_size=64, batch_size=256,
                    learning_rate=1e-3, temperature=0.07, weights=None, feature_layer="block3_pool",
                    num_images=6000, seed=0, out=None, checkpoint_dir=None, strategy="auto",
                    eval_splits=("test", "compositional"), max_length=None, data_root=None, verbose=1,
                    precision="float32", jit_compile="auto", backup_every=200, tensorboard=False,
                    callbacks=(), **tower_options):
    """Trains a dual encoder (VGG16 features -> image tower; caption -> text tower) with the
    symmetric contrastive loss and scores Recall@1/5/10 both ways and the median rank.

    Args:
        data: "shapes", a folder in the COCO captions layout (several captions per image) or a
            TFDS captions dataset, as `train_captioner`'s `data`.
        pooling: how the image tower pools the VGG16 grid: "attention" (the best on the scenes,
            `benchmarks/retrieval.py`), "flatten" or "mean" (`build_image_tower`).
        epochs: passes over every (image, reference caption) pair of the train split.
        batch_size: examples per replica. Each example's negatives are all the other examples of
            the global batch (batch_size x replicas), gathered from every replica.
        learning_rate: Adam's learning rate.
        temperature: the similarity's initial temperature (learned).
        feature_layer: the VGG16 layer the image tower reads. "block3_pool" by default: with
            random weights the deeper blocks keep less of the shapes (see `build_image_encoder`);
            on the scenes, block5_conv3 at 64 px reached image -> text R@1 0.40 against 0.55.
        image_size, weights, num_images, seed, out, checkpoint_dir, strategy,
        max_length, data_root, verbose, precision, jit_compile, backup_every, tensorboard,
        callbacks: as `train_captioner`.
        eval_splits: splits scored after training (missing ones are skipped): every image of the
            split against every caption.
        **tower_options: sizes for the towers: embed_dim (both), grid_pool, hidden_dim,
            attention_dim, glimpses, dropout (image tower), word_dim, units, bidirectional (text
            tower).

    Returns:
        A `RetrievalModel` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    from vlm_keras.models.retrieval import (IMAGE_POOLING, ContrastiveTrainer, adapt_image_tower,
                                            build_dual_encoder, build_image_tower, build_retrieval_model,
                                            build_text_tower)
    from vlm_keras.retrieval import RetrievalModel

    if pooling not in IMAGE_POOLING:
        raise ValueError(f"unknown image pooling {pooling!r}; expected one of {', '.join(IMAGE_POOLING)}")
    unknown = sorted(set(tower_options) - set(IMAGE_TOWER_OPTIONS) - set(TEXT_TOWER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown tower option(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(set(IMAGE_TOWER_OPTIONS + TEXT_TOWER_OPTIONS)))}")
    started, strategy = _begin(epochs, out, precision, strategy, seed)
    data_dir, available, train_split, val_split, tokenizer = _caption_data(
        data, num_images, seed, data_root, max_length, verbose)

    global_batch = global_batch_size(batch_size, strategy)
    with strategy.scope(), dtype_policy(precision):
        encoder = build_image_encoder(image_size, weights=weights, feature_layer=feature_layer)
        image_tower = build_image_tower(encoder.output_shape[1:], pooling=pooling,
                                        **{k: v for k, v in tower_options.items() if k in IMAGE_TOWER_OPTIONS})
        text_tower = build_text_tower(tokenizer.vocab_size,
                                      **{k: v for k, v in tower_options.items() if k in TEXT_TOWER_OPTIONS})
        dual_encoder = build_dual_encoder(image_tower, text_tower, temperature=temperature)
        full_model = build_retrieval_model(encoder, dual_encoder)
        trainer = ContrastiveTrainer(dual_encoder)

    def examples(split):
        features = _cached_features(encoder, split.image_paths, image_size, verbose, f"{split.name} images")
        return (features, *pipeline.caption_examples(split.captions, tokenizer))

    train_examples = examples(train_split)
    adapt_image_tower(image_tower, train_examples[0])

    def train_batches(epoch, skip):
        return pipeline.retrieval_dataset(*train_examples, global_batch, seed=seed, epoch=epoch, skip=skip)

    val_data = (pipeline.retrieval_dataset(*examples(val_split), global_batch, shuffle=False)
                if val_split is not None else None)
    with strategy.scope():
        trainer.compile(optimizer=adam(learning_rate, precision), jit_compile=jit_compile)
    checkpoint_dir = _checkpoint_dir(out, checkpoint_dir, strategy)
    history, train_seconds, resumed = resumable_fit(
        trainer, train_batches, val_data, epochs, checkpoint_dir, strategy=strategy, verbose=verbose,
        backup_every=backup_every, tensorboard=tensorboard, callbacks=callbacks)

    config = {"model_type": "dual_encoder", "pooling": pooling, "image_size": image_size,
              "feature_layer": feature_layer, "encoder_weights": None if weights is None else str(weights),
              "towers": tower_options, "temperature": temperature, "learning_rate": learning_rate,
              "precision": precision, "batch_size": batch_size, "replicas": strategy.num_replicas_in_sync,
              "seed": seed, "data": str(data), "vlm_keras_version": __version__}
    result = RetrievalModel(full_model, tokenizer, config, history=history, checkpoint_dir=str(checkpoint_dir))
    metrics = {"train_seconds": train_seconds, "epochs": epochs, "resumed_from": resumed,
               "learned_temperature": result.temperature}
    splits = [(s, coco.load_caption_split(data_dir, s)) for s in eval_splits if s in available]
    return _evaluate_and_save(
        result, metrics, splits, started, out, strategy, verbose,
        lambda r: (f"text->image R@1/5/10 {r['text_to_image_r1']:.3f}/{r['text_to_image_r5']:.3f}/"
                   f"{r['text_to_image_r10']:.3f}, image->text R@1/5/10 {r['image_to_text_r1']:.3f}/"
                   f"{r['image_to_text_r5']:.3f}/{r['image_to_text_r10']:.3f} "
                   f"({r['num_images']} images, {r['num_captions']} captions)"))

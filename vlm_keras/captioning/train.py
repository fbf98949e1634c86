"""`train_captioner()`: VGG16 features -> a caption decoder, trained with teacher forcing."""

import keras

from vlm_keras.captioning.captioner import Captioner
from vlm_keras.captioning.losses import MaskedTokenAccuracy, caption_loss
from vlm_keras.captioning.models import DECODER_BUILDERS, build_caption_decoder, build_captioner
from vlm_keras.config import CaptionerConfig, check_model_options
from vlm_keras.data import pipeline
from vlm_keras.data.text import word_groups
from vlm_keras.encoders.regions import adapt_region_encoder
from vlm_keras.encoders.vgg16 import image_input
from vlm_keras.metrics import evaluate_captions, tokenize_captions
from vlm_keras.training import TrainingRun


class ValidationCIDEr(keras.callbacks.Callback):
    """Adds "val_cider_d" to every epoch's logs: the COCO CIDEr-D of greedy captions of the
    validation images against their references, so the best epoch can be picked by it.

    Args:
        caption_fn: `caption_fn()` -> one generated caption per validation image.
        image_ids: the validation images' ids.
        references: their reference captions (PTB-tokenised once, here).
    """

    def __init__(self, caption_fn, image_ids, references):
        super().__init__()
        self.caption_fn = caption_fn
        self.image_ids = list(image_ids)
        self.references = tokenize_captions(dict(zip(self.image_ids, references)))

    def on_epoch_end(self, epoch, logs=None):
        generated = tokenize_captions({i: [c] for i, c in zip(self.image_ids, self.caption_fn())})
        hypotheses = {i: captions[0] for i, captions in generated.items()}
        score = evaluate_captions(self.references, hypotheses, tokenize=False, metrics=("cider",))
        if logs is not None:
            logs["val_cider_d"] = score["corpus"]["cider_d"]


def train_captioner(data=None, *, config=None, **options):
    """Trains an image captioner (VGG16 features -> a decoder) and evaluates it with the COCO metrics.

    Args:
        data: "scenes" (the offline synthetic scenes; the default), a folder in the COCO captions
            layout (`annotations/captions_<split>.json` and one image folder per split), or a TFDS
            dataset: "tfds:<name>[/<config>]" ("tfds:coco_captions", "tfds:vlm_scenes/small"), or
            its bare name when no folder has that name. See `vlm_keras.data.sources`.
        config: a `CaptionerConfig` to start from; keyword options override its fields.
        **options: any `CaptionerConfig` field (`vlm_keras.config`), chiefly:
            model: "lstm" (the document's VGG16 + LSTM network), "attention" (an LSTM that attends
                over the VGG16 grid for every word) or "transformer";
            epochs, image_size, batch_size (per replica), learning_rate (default 3e-3, 1e-3 for
                the transformer), weights (None: random, the offline default; "imagenet"; a
                local .h5), feature_layer ("block3_pool"), fine_tune (train VGG16 too; else its
                features are cached once), max_length, num_images, seed;
            outline: the encoder also reads each image's outline map, and the captioner's region
                stage reads the outlines (shape without colour) and a 32-channel appearance stream
                the pixels (`outline_stream`, `region_appearance`). Default: on for the LSTM and
                attention captioners (better on the test and compositional splits), off for the
                transformer; outline=False is the document's network as it was;
            grounded_words: the attention captioner reads its visual words from the attended region
                alone (`GroundedWordLogits`): "scenes" (the synthetic scenes' colours, shapes and
                sizes) or groups of words, "red,blue;circle,square". Default None: off (the groups
                are the dataset's own);
            out: the model folder to write; run the same call again after a crash and training
                resumes from the last backup in out/checkpoints;
            checkpoint_metric: "val_loss" (default) keeps the epoch of the lowest validation loss,
                "val_cider_d" that of the highest validation CIDEr-D (greedy captions, computed
                after every epoch; LAVIS selects its checkpoints so);
            strategy, precision, jit_compile, backup_every, tensorboard, callbacks, eval_splits,
                data_root, verbose.
            Any other keyword is a size for the decoder builder, e.g. units=256, dropout=0.2 (see
            `build_lstm_decoder`, `build_attention_decoder`, `build_transformer_decoder`).

    Returns:
        A `Captioner` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    if data is not None:
        options["data"] = data
    config = CaptionerConfig.from_options(config, **options)
    check_model_options(DECODER_BUILDERS[config.model], config.model_options, f"the {config.model} captioner",
                        given=("vocab_size", "feature_shape", "max_length", "word_groups", "name"))
    with TrainingRun(config) as run:
        return _train(run)


def _train(run):
    """The body of `train_captioner` for an open run."""
    config = run.config
    source, available, train_split, val_split, tokenizer = run.caption_data()
    # The evaluation splits are read (and checked) before any work: a broken one fails now.
    splits = [(s, source.split(s)) for s in config.eval_splits if s in available]

    encoder = run.build_encoder(trainable=config.fine_tune)
    with run.scope():
        options = config.stream_options(takes_stream=config.model in ("lstm", "attention"))
        if config.grounded_words is not None:
            options["word_groups"] = word_groups(config.grounded_words, tokenizer)
        decoder = build_caption_decoder(config.model, tokenizer.vocab_size, encoder.output_shape[1:],
                                        tokenizer.max_length, **options)
        full_model = build_captioner(encoder, decoder)

    train_index, train_ids = pipeline.caption_examples(train_split.captions, tokenizer)
    train_features = run.features(encoder, train_split.image_paths, "train images")
    # Feature statistics come from the training images only.
    adapt_region_encoder(decoder, train_features)
    val_examples = pipeline.caption_examples(val_split.captions, tokenizer) if val_split is not None else None

    if config.fine_tune:
        trained = full_model

        def image_batches(split, index, ids, **kwargs):
            return pipeline.image_caption_dataset(
                split.image_paths, index, ids, lambda b: image_input(b, config.image_size), run.global_batch,
                **kwargs)

        def train_batches(epoch, skip):
            return image_batches(train_split, train_index, train_ids, seed=config.seed, epoch=epoch, skip=skip)

        val_data = image_batches(val_split, *val_examples, shuffle=False) if val_split is not None else None
    else:
        trained = decoder

        def train_batches(epoch, skip):
            return pipeline.caption_dataset(train_features, train_index, train_ids, run.global_batch,
                                            seed=config.seed, epoch=epoch, skip=skip,
                                            bucket_by_length=config.bucket_by_length)

        val_data = None
        if val_split is not None:
            val_features = run.features(encoder, val_split.image_paths, "val images")
            val_data = pipeline.caption_dataset(val_features, *val_examples, run.global_batch, shuffle=False,
                                                bucket_by_length=config.bucket_by_length)

    run.compile(trained, loss=caption_loss(), metrics=[MaskedTokenAccuracy()])
    captioner = Captioner(full_model, tokenizer, run.model_config(config.model))
    samples = val_split.image_paths[:4] if (config.tensorboard and val_split is not None) else []
    monitor, metric_callbacks = config.checkpoint_metric, []
    if monitor == "val_cider_d":
        if val_split is None:
            raise ValueError("checkpoint_metric 'val_cider_d' needs a val split; the dataset has none "
                             "(use checkpoint_metric='val_loss')")
        caption_val = ((lambda: captioner.caption(val_split.image_paths)) if config.fine_tune
                       else (lambda: captioner.caption_features(val_features)))
        metric_callbacks.append(ValidationCIDEr(caption_val, val_split.image_ids, val_split.captions))
    mode = "max" if monitor == "val_cider_d" else "min"
    history = run.fit(trained, train_batches, val_data, monitor=monitor, mode=mode, metric_callbacks=metric_callbacks,
                      sample_fn=(lambda: captioner.caption(samples)) if samples else None)

    monitor = monitor if val_data is not None else "loss"
    best = max if mode == "max" else min
    return run.finish(captioner, splits, _describe, metrics={"best_" + monitor: float(best(history[monitor]))})


def _describe(report):
    """The line logged for an evaluated split."""
    figures = [f"{label} {report[key]:.3f}" for key, label in (
        ("coco_bleu4", "BLEU-4"), ("coco_cider_d", "CIDEr-D"), ("coco_rouge_l", "ROUGE-L"), ("coco_meteor", "METEOR"),
        ("coco_spice", "SPICE")) if key in report]
    return (f"COCO {', '.join(figures)} ({report['num_images']} images, {report['ms_per_caption']:.2f} ms "
            "per caption)")

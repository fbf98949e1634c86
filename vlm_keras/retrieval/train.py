"""`train_retrieval()`: a contrastive dual encoder (VGG16 features -> image tower; caption -> text
tower), scored with Recall@K both ways."""

import inspect

import numpy as np

from vlm_keras.config import RetrievalConfig
from vlm_keras.data import pipeline
from vlm_keras.data.sources import is_scenes_split
from vlm_keras.data.text import word_groups
from vlm_keras.io import log
from vlm_keras.retrieval.models import (ContrastiveTrainer, adapt_image_tower, build_dual_encoder,
                                        build_image_tower, build_retrieval_model, build_text_tower)
from vlm_keras.retrieval.negatives import NegativeCaptions, can_swap
from vlm_keras.retrieval.retrieval_model import RetrievalModel
from vlm_keras.training import TrainingRun


def _tower_options(builder):
    """The size arguments a tower builder takes (its inputs and `embed_dim`, set by the trainer, aside)."""
    return [name for name in inspect.signature(builder).parameters
            if name not in ("feature_shape", "vocab_size", "embed_dim", "pooling", "word_groups", "name")]


IMAGE_TOWER_OPTIONS = _tower_options(build_image_tower)
TEXT_TOWER_OPTIONS = _tower_options(build_text_tower)


def train_retrieval(data=None, *, config=None, **options):
    """Trains a dual encoder with the symmetric contrastive loss and scores Recall@1/5/10 both ways
    and the median rank.

    Args:
        data: "scenes" (the default), a folder in the COCO captions layout (several captions per
            image) or a TFDS captions dataset, as `train_captioner`'s `data`.
        config: a `RetrievalConfig` to start from; keyword options override its fields.
        **options: any `RetrievalConfig` field (`vlm_keras.config`), chiefly:
            pooling: how the image tower pools the grid: "attention" (the best on the scenes,
                `benchmarks/retrieval.py`), "flatten" or "mean" (`build_image_tower`);
            batch_size: examples per replica (256). Each example's negatives are all the other
                examples of the global batch, gathered from every replica;
            temperature: the similarity's initial temperature (learned);
            embed_dim: the size of the shared embedding space;
            feature_layer: "block3_pool" by default;
            hard_negatives: each training caption also brings a copy with words of one group
                exchanged or replaced, a wrong caption only a model that binds each colour and shape
                to its object can tell from the true one (`vlm_keras.retrieval.negatives`). Default:
                on for the synthetic scenes (better on both of their pools; README), off for other
                data, where it is unmeasured (True turns it on where the captions hold such words);
            bound_words: "scenes" or groups of words ("red,blue;circle,square"): the text tower's
                LSTM reads the caption with those words replaced by their group and they come back
                bound to its roles (`build_text_tower(word_groups=...)`; off by default: it did not
                narrow the compositional gap, README);
            outline: the encoder also reads each image's outline map, and the image tower's region
                convolutions read the outlines (shape without colour) and a 32-channel appearance
                stream the pixels (`outline_stream`, `region_appearance`). Default: on for attention
                pooling (better on the test and compositional splits), off for the others;
            and the options every trainer shares, as `train_captioner`.
            Any other keyword is a size for a tower: grid_pool, hidden_dim, attention_dim,
            glimpses, dropout (image tower), word_dim, units, bidirectional, word_bag (text tower).

    Returns:
        A `RetrievalModel` with `.model`, `.history`, `.metrics` and `.export(path)`.
    """
    if data is not None:
        options["data"] = data
    config = RetrievalConfig.from_options(config, **options)
    towers = config.model_options
    unknown = sorted(set(towers) - set(IMAGE_TOWER_OPTIONS) - set(TEXT_TOWER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown tower option(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(set(IMAGE_TOWER_OPTIONS + TEXT_TOWER_OPTIONS)))}")
    with TrainingRun(config) as run:
        return _train(run)


def _train(run):
    """The body of `train_retrieval` for an open run."""
    config = run.config
    towers = config.stream_options()
    source, available, train_split, val_split, tokenizer = run.caption_data()
    # The evaluation splits are read (and checked) before any work: a broken one fails now.
    splits = [(s, source.split(s)) for s in config.eval_splits if s in available]
    bound_words = word_groups(config.bound_words, tokenizer, "bound_words") if config.bound_words else ()
    use_negatives = config.hard_negatives
    if use_negatives is None:      # the default: on for the synthetic scenes, where it was measured
        use_negatives = is_scenes_split(train_split) and can_swap(tokenizer)
    elif use_negatives and not can_swap(tokenizer):
        raise ValueError(f"hard_negatives=True, but the training captions of {config.data!r} hold no two "
                         "colours, shapes, sizes or places of one kind to exchange (the synthetic scenes' words)")

    encoder = run.build_encoder()
    with run.scope():
        image_tower = build_image_tower(encoder.output_shape[1:], embed_dim=config.embed_dim, pooling=config.pooling,
                                        **{k: v for k, v in towers.items() if k in IMAGE_TOWER_OPTIONS})
        text_tower = build_text_tower(tokenizer.vocab_size, embed_dim=config.embed_dim,
                                      word_groups=bound_words,
                                      **{k: v for k, v in towers.items() if k in TEXT_TOWER_OPTIONS})
        dual_encoder = build_dual_encoder(image_tower, text_tower, temperature=config.temperature)
        full_model = build_retrieval_model(encoder, dual_encoder)
        trainer = ContrastiveTrainer(dual_encoder)

    def examples(split):
        features = run.features(encoder, split.image_paths, f"{split.name} images")
        return (features, *pipeline.caption_examples(split.captions, tokenizer))

    train_examples = examples(train_split)
    adapt_image_tower(image_tower, train_examples[0])
    negatives = NegativeCaptions(tokenizer, train_examples[2]) if use_negatives else None

    def train_batches(epoch, skip):
        # The same negatives for an epoch whenever it is built, so a resumed run sees what the
        # uninterrupted one would have.
        drawn = (negatives.sample(train_examples[2], np.random.default_rng([config.seed, epoch]))
                 if negatives is not None else None)
        if drawn is not None and epoch == 0 and run.verbose:
            log(f"hard negatives for {drawn[1].mean():.0%} of the {len(drawn[1])} training captions")
        return pipeline.retrieval_dataset(*train_examples, run.global_batch, seed=config.seed, epoch=epoch,
                                          skip=skip, negatives=drawn)

    val_data = (pipeline.retrieval_dataset(*examples(val_split), run.global_batch, shuffle=False)
                if val_split is not None else None)
    run.compile(trainer)
    run.fit(trainer, train_batches, val_data)

    result = RetrievalModel(full_model, tokenizer, run.model_config("dual_encoder"))
    return run.finish(
        result, splits,
        lambda r: (f"text->image R@1/5/10 {r['text_to_image_r1']:.3f}/{r['text_to_image_r5']:.3f}/"
                   f"{r['text_to_image_r10']:.3f}, image->text R@1/5/10 {r['image_to_text_r1']:.3f}/"
                   f"{r['image_to_text_r5']:.3f}/{r['image_to_text_r10']:.3f} "
                   f"({r['num_images']} images, {r['num_captions']} captions)"),
        metrics={"learned_temperature": result.temperature})

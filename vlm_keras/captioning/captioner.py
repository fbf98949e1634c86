"""`Captioner`: a trained captioning model with its tokenizer and config.

It captions images, evaluates on a dataset split, saves to / loads from a model folder and
exports a SavedModel. `train_captioner()` returns one.
The model folder layout is `vlm_keras.bundle`'s.
"""

import os
import time
import warnings

import numpy as np
import tensorflow as tf

from vlm_keras.bundle import ModelBundle
from vlm_keras.captioning.decoding import beam_search, greedy_decode
from vlm_keras.captioning.export import export_captioner
from vlm_keras.captioning.losses import CaptionLoss, MaskedTokenAccuracy  # noqa: F401  (registered for loading)
from vlm_keras.captioning.models import attention_weights_model
from vlm_keras.data.formats import coco
from vlm_keras.data.sources import caption_split_of, scenes_of
from vlm_keras.data.text import START_ID, tokenize
from vlm_keras.encoders.features import extract_features
from vlm_keras.encoders.regions import region_grid_shape
from vlm_keras.metrics import evaluate_captions, nltk_bleu_scores
from vlm_keras.metrics.coco_caption import ALL_METRICS
from vlm_keras.metrics.pointing import PointingScore, caption_pointing


COCO_CAPTION_METRICS = ALL_METRICS


def caption_metrics():
    """The COCO metrics an evaluation computes by default: all five, or those named in
    $VLM_KERAS_CAPTION_METRICS (e.g. "bleu,cider,rouge": METEOR starts a Java VM, ~10 s)."""
    chosen = os.environ.get("VLM_KERAS_CAPTION_METRICS")
    if not chosen:
        return COCO_CAPTION_METRICS
    names = tuple(name.strip() for name in chosen.split(",") if name.strip())
    unknown = sorted(set(names) - set(COCO_CAPTION_METRICS))
    if unknown:
        raise ValueError(f"VLM_KERAS_CAPTION_METRICS names {', '.join(unknown)}; expected some of "
                         f"{', '.join(COCO_CAPTION_METRICS)}")
    return names


def caption_scores(image_ids, references, generated, metrics=None):
    """Scores generated captions against their references, as the field reports them.

    Args:
        image_ids: (N,) image ids.
        references: (N,) lists of reference captions (raw strings).
        generated: (N,) generated captions.
        metrics: COCO metrics to compute (default `caption_metrics()`).

    Returns:
        {"coco_bleu1".."coco_bleu4", "coco_cider_d", "coco_rouge_l", "coco_meteor", "coco_spice":
        the COCO caption evaluation (pycocoevalcap's numbers, PTB-tokenised); "nltk_bleu1".."nltk_bleu4":
        nltk's corpus BLEU on this project's tokens (not comparable with papers);
        "unavailable_metrics": {metric: why it was not computed}}.
    """
    ids = list(image_ids)
    coco_eval = evaluate_captions(dict(zip(ids, references)), dict(zip(ids, generated)),
                                  metrics=caption_metrics() if metrics is None else metrics)
    scores = {f"coco_{name}": value for name, value in coco_eval["corpus"].items()}
    nltk = nltk_bleu_scores([tokenize(refs) for refs in references], tokenize(generated))
    scores.update({f"nltk_{name}": value for name, value in nltk.items()})
    scores["unavailable_metrics"] = coco_eval["unavailable"]
    return scores


class Captioner(ModelBundle):
    """A trained captioner.

    Args:
        model: the end-to-end Keras model with sub-models "image_encoder" and "caption_decoder".
        tokenizer: the `Tokenizer` it was trained with.
        config: a JSON-serialisable dict; must hold "image_size".
        history: per-epoch training metrics, if it was trained in this process.
        metrics: evaluation figures.
    """

    TASK = "captioning"

    def __init__(self, model, tokenizer, config, history=None, metrics=None, checkpoint_dir=None):
        super().__init__(model, config, history, metrics, checkpoint_dir)
        self.tokenizer = tokenizer
        self._generate_fn = None
        self._attention_model = None
        self._jit_compile = "auto"
        self._xla_failed = None

    @property
    def jit_compile(self):
        """Whether generation is compiled with XLA: "auto" (the default), True or False.

        "auto" compiles with XLA and falls back to graph mode, with a warning, where XLA cannot
        compile on this device (e.g. a GPU plugin without an XLA compiler). Measured on a 2-core
        CPU, batch 64, all 23 steps (`benchmarks/decode_speed.py`): the step-at-a-time decoders run
        1.05x (LSTM), 1.3x (attention) and 2.0x (Transformer) faster under XLA, 1.8-5.2x at batch 1.
        XLA compiles once per batch shape (under a second here), so batches are padded to a power
        of two (at most `batch_size`) and a few shapes serve every call. The SavedModel export
        stays in graph mode, which every TensorFlow runtime serves.
        """
        return self._jit_compile

    @jit_compile.setter
    def jit_compile(self, value):
        if value not in ("auto", True, False):
            raise ValueError(f'jit_compile must be "auto", True or False, got {value!r}')
        self._jit_compile = value
        self._generate_fn = None  # retrace in the new mode

    def _uses_xla(self):
        return self._jit_compile is True or (self._jit_compile == "auto" and self._xla_failed is None)

    @property
    def decoder(self):
        return self.model.get_layer("caption_decoder")

    @property
    def max_steps(self):
        """Most tokens generated per caption: the longest training caption plus the end token."""
        return self.tokenizer.max_length + 1

    def _sizes(self):
        sizes = super()._sizes() + [("vocabulary size", self.tokenizer.vocab_size,
                                     int(self.decoder.output_shape[-1]))]
        positions = getattr(self.decoder.get_layer("token_embedding"), "sequence_length", None)
        if positions is not None:  # the transformer's learned positions: start + words + end
            sizes.append(("caption length + 2", self.tokenizer.max_length + 2, int(positions)))
        return sizes

    # -- generation -------------------------------------------------------------------------
    def _generate_functions(self, xla):
        decoder, steps = self.decoder, self.max_steps
        return {"greedy": tf.function(lambda f: greedy_decode(decoder, f, steps), reduce_retracing=True,
                                      jit_compile=xla),
                "beam": tf.function(lambda f, k: beam_search(decoder, f, steps, beam_size=k),
                                    reduce_retracing=True, jit_compile=xla)}

    def _generate(self, features, beam_size):
        """One compiled graph per decoding mode; the beam size is a tensor, so one trace serves all."""
        if self._generate_fn is None:
            self._generate_fn = self._generate_functions(self._uses_xla())
        features = tf.convert_to_tensor(features, tf.float32)

        def run(functions):
            if beam_size == 1:
                return functions["greedy"](features)
            return functions["beam"](features, tf.constant(beam_size, tf.int32))

        try:
            return run(self._generate_fn)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError, tf.errors.InternalError) as error:
            if self._jit_compile != "auto" or self._xla_failed is not None:
                raise
            graph = self._generate_functions(False)
            result = run(graph)  # fails too when the input, not XLA, is at fault
            self._xla_failed = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            warnings.warn(f"XLA could not compile caption generation here ({self._xla_failed}); "
                          "generating in graph mode from now on", RuntimeWarning, stacklevel=3)
            self._generate_fn = graph
            return result

    def generate_tokens(self, features, batch_size=128, beam_size=1):
        """Encoder features (N, h, w, c) -> (token ids (N, max_steps), log-probabilities (N,))."""
        if int(beam_size) < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        tokens, log_probs = [], []
        for start in range(0, len(features), batch_size):
            batch = np.asarray(features[start:start + batch_size], np.float32)
            rows = len(batch)
            padded = self._padded_rows(rows, batch_size)   # under XLA a few shapes, each compiled once:
            if padded > rows:                               # pad with copies of the last row (ending with it)
                batch = np.concatenate([batch, np.repeat(batch[-1:], padded - rows, axis=0)])
            t, lp = self._generate(batch, int(beam_size))
            tokens.append(t.numpy()[:rows])
            log_probs.append(lp.numpy()[:rows])
        if not tokens:
            return np.zeros((0, self.max_steps), np.int32), np.zeros((0,), np.float32)
        return np.concatenate(tokens), np.concatenate(log_probs)

    def _padded_rows(self, rows, batch_size):
        """The rows a batch of `rows` features runs as: under XLA the next power of two (at most
        `batch_size`), so that few shapes are compiled; in graph mode `rows`."""
        return min(batch_size, 1 << (rows - 1).bit_length()) if self._uses_xla() else rows

    def _compile_for(self, features, batch_size, beam_size):
        """Traces (and under XLA compiles) generation for every batch shape a run over `features` uses."""
        last = len(features) % batch_size
        for rows in {self._padded_rows(n, batch_size) for n in (min(batch_size, len(features)), last) if n}:
            self.generate_tokens(np.repeat(np.asarray(features[:1]), rows, axis=0), batch_size, beam_size)

    def caption_features(self, features, batch_size=128, beam_size=1):
        return self.tokenizer.decode(self.generate_tokens(features, batch_size, beam_size)[0])

    def caption(self, images, batch_size=32, beam_size=1):
        """Captions images given as file paths, encoded bytes or preprocessed (N, S, S, 3) arrays."""
        return self.caption_features(self.encode_images(images, batch_size), beam_size=beam_size)

    def _attention_weights(self):
        """The model giving the decoder's weights over regions, built once (ValueError without)."""
        if self._attention_model is None:
            self._attention_model = attention_weights_model(self.decoder)
        return self._attention_model

    def attention(self, images, beam_size=1):
        """Captions images and returns, for each generated word, its weights over image regions.

        Returns one dict per image: {"caption": str, "words": [str, ...], "weights": (n_words, h, w)
        array (row t: the regions attended to while word t was chosen; each row sums to 1)}.
        Raises ValueError for the lstm captioner, which has no attention.
        """
        return self.attention_features(self.encode_images(images), beam_size=beam_size)

    def attention_features(self, features, beam_size=1, tokens=None):
        """`attention` from encoder features (N, h, w, c); `tokens` (N, max_steps), when given, are
        the captions already generated from them (not generated again)."""
        attention_model = self._attention_weights()
        if tokens is None:
            tokens, _ = self.generate_tokens(features, beam_size=beam_size)
        prefix = np.concatenate([np.full((len(tokens), 1), START_ID, np.int32), tokens[:, :-1]], axis=1)
        weights = attention_model.predict([features, prefix], verbose=0)                # (N, T, R)
        grid = region_grid_shape(self.decoder)                                          # (h', w')
        results = []
        for caption, row in zip(self.tokenizer.decode(tokens), weights):
            words = caption.split()
            results.append({"caption": caption, "words": words,
                            "weights": row[:len(words)].reshape((len(words),) + grid)})
        return results

    def pointing(self, data="scenes", split="test", beam_size=1, verbose=1, **data_kwargs):
        """The pointing game on a split of the synthetic scenes (`metrics.pointing`): for each
        generated colour or shape word of an object in the image, whether the attention maximum
        lies on that object. `evaluate(..., pointing=True)` gives it with the caption metrics,
        from one pass over the images.

        Args:
            data: "scenes" or a scenes folder (their annotations record where every object is).
            split: the split's name.
            **data_kwargs: num_images, seed, data_root, as for `evaluate`.

        Returns:
            {"pointing": hit rate, "pointing_uniform": a uniform map's rate on the same words,
            "pointing_count": words scored, "pointing_ambiguous": object phrases left out}.

        Raises:
            ValueError: for the lstm captioner, which has no attention.
            DatasetError: when `data` is not the synthetic scenes.
        """
        self._attention_weights()      # no attention: say so before any work
        scenes = scenes_of(data, split, verbose=bool(verbose), **data_kwargs)
        caption_split = caption_split_of(data, split, verbose=False, **data_kwargs)
        features = extract_features(self.encoder, caption_split.image_paths, self.image_size,
                                    verbose=verbose, what=f"{caption_split.name} images")
        return self._pointing_score(caption_split, scenes, self.attention_features(features, beam_size))

    @staticmethod
    def _pointing_score(caption_split, scenes, maps):
        score = PointingScore()
        for image_id, result in zip(caption_split.image_ids, maps):
            caption_pointing(result["words"], result["weights"], scenes[image_id], score)
        return score.report()

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, data="scenes", split="test", predictions=None, batch_size=64, verbose=1,
                 beam_size=1, metrics=None, pointing=False, **data_kwargs):
        """The COCO caption metrics on a split, with every reference of each image.

        Args:
            data: "scenes", a COCO-format folder, or a loaded `CaptionSplit` (then `split` is unused).
            split: the split's name.
            predictions: optional path; the captions are written there in the COCO results format.
                It is checked before any work (never a file the evaluation reads).
            beam_size: 1 for greedy decoding, k > 1 for beam search of width k.
            metrics: the COCO metrics to compute (default `caption_metrics()`: all, METEOR and
                SPICE when pycocoevalcap and Java can run them).
            pointing: also play the pointing game (`pointing`) on the same features and captions.

        Returns:
            `caption_scores`' dict (coco_bleu1..4, coco_cider_d, coco_rouge_l [, coco_meteor,
            coco_spice], nltk_bleu1..4, unavailable_metrics), "num_images" and "ms_per_caption";
            with `pointing`, `pointing`'s keys too.
        """
        if int(beam_size) < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if pointing:           # before any work: a captioner without attention, data without scenes
            self._attention_weights()
            scenes = scenes_of(data, split, verbose=bool(verbose), **data_kwargs)
        caption_split = caption_split_of(data, split, verbose=bool(verbose), **data_kwargs)
        if predictions:
            self.check_predictions_path(predictions, caption_split)
        features = extract_features(self.encoder, caption_split.image_paths, self.image_size, batch_size,
                                    verbose=verbose, what=f"{caption_split.name} images")
        self._compile_for(features, batch_size, beam_size)  # trace and compile first: time generation alone
        start = time.perf_counter()
        tokens, _ = self.generate_tokens(features, batch_size=batch_size, beam_size=beam_size)
        generated = self.tokenizer.decode(tokens)
        seconds = time.perf_counter() - start
        scores = caption_scores(caption_split.image_ids, caption_split.captions, generated, metrics)
        scores["num_images"] = len(caption_split)
        scores["ms_per_caption"] = 1000.0 * seconds / max(1, len(caption_split))
        if pointing:
            scores.update(self._pointing_score(caption_split, scenes, self.attention_features(features, tokens=tokens)))
        if predictions:
            coco.write_coco_results(predictions, caption_split.image_ids, generated)
        return scores

    # -- persistence ------------------------------------------------------------------------
    def export(self, path, overwrite=True):
        """Exports a SavedModel: encoded image bytes in, caption strings out. See `export_captioner`."""
        return export_captioner(self, path, overwrite=overwrite)

"""`RetrievalModel`: a trained dual encoder for image-text retrieval, with its tokenizer.

It embeds images and texts into one space, scores them against each other, evaluates Recall@K
in both directions, saves to / loads from a model folder (`vlm_keras.bundle`) and exports a
SavedModel. `train_retrieval()` returns one; `vlm_keras.retrieval.index` searches a folder of images with it.
"""

import numpy as np
import tensorflow as tf

from vlm_keras.bundle import ModelBundle
from vlm_keras.data.scenes.captions import caption_matches
from vlm_keras.data.sources import caption_split_of, scenes_of
from vlm_keras.encoders.features import extract_features
from vlm_keras.metrics import retrieval_report
from vlm_keras.retrieval.export import export_retrieval


class RetrievalModel(ModelBundle):
    """A trained image-text retrieval model.

    Args:
        model: the end-to-end Keras model with sub-models "image_encoder" and "dual_encoder"
            (which holds "image_tower", "text_tower" and the "similarity" layer).
        tokenizer: the `Tokenizer` for captions and queries.
        config, history, metrics, checkpoint_dir: as `ModelBundle`.
    """

    TASK = "retrieval"

    def __init__(self, model, tokenizer, config, history=None, metrics=None, checkpoint_dir=None):
        super().__init__(model, config, history, metrics, checkpoint_dir)
        self.tokenizer = tokenizer

    @property
    def dual_encoder(self):
        return self.model.get_layer("dual_encoder")

    @property
    def image_tower(self):
        return self.dual_encoder.get_layer("image_tower")

    @property
    def text_tower(self):
        return self.dual_encoder.get_layer("text_tower")

    @property
    def embed_dim(self):
        return int(self.text_tower.output_shape[-1])

    @property
    def temperature(self):
        """The learned temperature (1 / the similarity's scale)."""
        return float(1.0 / self.dual_encoder.get_layer("similarity").scale())

    def _sizes(self):
        names = [layer.name for layer in self.text_tower.layers]
        # With bound words the embedding also holds one row per word group, after the vocabulary.
        vocab_size = (self.text_tower.get_layer("grouped_tokens").vocab_size if "grouped_tokens" in names
                      else self.text_tower.get_layer("word_embedding").input_dim)
        return super()._sizes() + [("vocabulary size", self.tokenizer.vocab_size, int(vocab_size))]

    # -- embedding ----------------------------------------------------------------------------
    def embed_image_features(self, features, batch_size=256):
        """Encoder features (N, h, w, c) -> (N, D) unit vectors."""
        if not len(features):
            return np.zeros((0, self.embed_dim), np.float32)
        return self.image_tower.predict(features, batch_size=batch_size, verbose=0)

    def embed_images(self, images, batch_size=32):
        """Image file paths, encoded bytes or preprocessed (N, S, S, 3) arrays -> (N, D) unit vectors."""
        return self.embed_image_features(self.encode_images(images, batch_size))

    def embed_texts(self, texts, batch_size=256):
        """Strings (N,) -> (N, D) unit vectors. Raises ValueError naming an empty or non-string text."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text #{i} is {text!r}; expected a non-empty string")
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        tokens = self.tokenizer.encode(tf.constant(texts, tf.string)).numpy()
        return self.text_tower.predict(tokens, batch_size=batch_size, verbose=0)

    def similarity(self, images, texts):
        """Cosine similarities (N_images, N_texts) in [-1, 1]; rank by them."""
        return self.embed_images(images) @ self.embed_texts(texts).T

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, data="scenes", split="test", verbose=1, true_matches=False, **data_kwargs):
        """Recall@1/5/10 both ways and the median rank, every image against every caption of a split.

        Args:
            data: "scenes", a COCO-format folder, or a loaded `CaptionSplit`.
            split: the split's name.
            true_matches: also score with every true pair counted as right (synthetic scenes only,
                whose annotations say which captions are true of which images): a caption as true
                of another image of the pool is no longer a wrong answer for it
                (`vlm_keras.data.scenes.captions.caption_matches`).

        Returns:
            `vlm_keras.metrics.retrieval_report`'s dict: image -> text (any of an image's
            captions is right), text -> image (each caption has one right image); with
            `true_matches`, under "true_matches" the same figures counting every true pair.

        Raises:
            DatasetError: `true_matches` for data that are not the synthetic scenes.
        """
        scenes = (scenes_of(data, split, verbose=bool(verbose), purpose="counting every true match", **data_kwargs)
                  if true_matches else None)
        caption_split = caption_split_of(data, split, verbose=bool(verbose), **data_kwargs)
        features = extract_features(self.encoder, caption_split.image_paths, self.image_size,
                                             verbose=verbose, what=f"{caption_split.name} images")
        image_index, captions = [], []
        for i, refs in enumerate(caption_split.captions):
            image_index.extend([i] * len(refs))
            captions.extend(refs)
        similarity = self.embed_image_features(features) @ self.embed_texts(captions).T   # (I, C)
        report = retrieval_report(similarity, np.asarray(image_index))
        if scenes is not None:
            matches = caption_matches(captions, [scenes[i] for i in caption_split.image_ids])
            report["true_matches"] = retrieval_report(similarity, np.asarray(image_index), matches=matches)
        return report

    # -- persistence --------------------------------------------------------------------------
    def export(self, path, overwrite=True):
        """Exports a SavedModel with `embed_image` and `embed_text` signatures. See `export_retrieval`."""
        return export_retrieval(self, path, overwrite=overwrite)

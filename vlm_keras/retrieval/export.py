"""The retrieval model's SavedModel: `embed_image` and `embed_text` into one space."""

import tensorflow as tf

from vlm_keras.encoders.vgg16 import image_inputs
from vlm_keras.export import write_export


def export_retrieval(retrieval, path, overwrite=True):
    """Writes a SavedModel with two signatures that embed into the retrieval model's space.

    - `embed_image`: `images` (B,) tf.string of encoded images -> `embeddings` (B, D) float32;
      also the `serving_default` signature;
    - `embed_text`: `texts` (B,) tf.string -> `embeddings` (B, D) float32, tokenised in the graph
      with the model's own vocabulary.

    The embeddings are unit vectors, so `image_embeddings @ text_embeddings.T` is the cosine
    similarity to rank by (the learned temperature, in the export's `assets/vlm_keras.json`, only
    rescales it). Written atomically, as `export_captioner`.
    """
    encoder, image_tower, text_tower = retrieval.encoder, retrieval.image_tower, retrieval.text_tower
    tokenizer, image_size = retrieval.tokenizer, retrieval.image_size

    def embed_image(images):
        features = encoder(image_inputs(images, image_size), training=False)   # (B, h, w, 512)
        return {"embeddings": image_tower(features, training=False)}             # (B, D)

    def embed_text(texts):
        return {"embeddings": text_tower(tokenizer.encode(texts), training=False)}  # (B, D)

    # The first endpoint is also exported as "serving_default".
    endpoints = [("embed_image", embed_image, [tf.TensorSpec([None], tf.string, name="images")]),
                 ("embed_text", embed_text, [tf.TensorSpec([None], tf.string, name="texts")])]
    dim = retrieval.embed_dim
    info = {"task": "retrieval",
            "signatures": {"embed_image": {"inputs": {"images": "tf.string (B,)"}},
                           "embed_text": {"inputs": {"texts": "tf.string (B,)"}},
                           "serving_default": "embed_image"},
            "outputs": {"embeddings": f"float32 (B, {dim}), unit vectors"},
            "temperature": retrieval.temperature, "config": retrieval.config}
    return write_export(path, retrieval.model, endpoints, info, overwrite, track=[tokenizer.lookup_table])

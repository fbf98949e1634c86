"""The captioner's SavedModel: encoded images in, captions out (greedy and beam search)."""

import tensorflow as tf

from vlm_keras.captioning.decoding import beam_search, greedy_decode, tokens_to_text
from vlm_keras.encoders.vgg16 import image_inputs
from vlm_keras.export import write_export


def export_captioner(captioner, path, overwrite=True):
    """Writes a SavedModel with two signatures that caption encoded images.

    - `serving_default`: `images` (B,) tf.string of JPEG/PNG/BMP/GIF bytes -> `captions` (B,)
      tf.string and `log_probs` (B,) float32 (the greedy caption's summed token log-probabilities);
    - `beam_search`: `images` as above and `beam_size` (scalar int32 >= 1) -> the same outputs, by
      beam search with length normalisation.

    The export is written to a temporary sibling folder and moved into place at the end: an
    interrupted export never replaces a good one. An existing SavedModel at `path` is replaced only
    with `overwrite=True`; a non-empty folder that is not a SavedModel is never touched.
    """
    encoder, decoder = captioner.encoder, captioner.decoder
    image_size, max_steps = captioner.image_size, captioner.max_steps
    id_to_token = list(captioner.tokenizer.id_to_token)

    def outputs(tokens, log_probs):
        return {"captions": tokens_to_text(tokens, id_to_token), "log_probs": log_probs}

    def serve(images):
        features = encoder(image_inputs(images, image_size), training=False)   # (B, h, w, 512)
        return outputs(*greedy_decode(decoder, features, max_steps))

    def serve_beam(images, beam_size):
        features = encoder(image_inputs(images, image_size), training=False)
        return outputs(*beam_search(decoder, features, max_steps, beam_size=beam_size))

    images_spec = tf.TensorSpec([None], tf.string, name="images")
    endpoints = [("serving_default", serve, [images_spec]),
                 ("beam_search", serve_beam, [images_spec, tf.TensorSpec([], tf.int32, name="beam_size")])]
    info = {"task": "captioning",
            "signatures": {"serving_default": {"inputs": {"images": "tf.string (B,)"}},
                           "beam_search": {"inputs": {"images": "tf.string (B,)", "beam_size": "int32 ()"}}},
            "outputs": {"captions": "tf.string (B,)", "log_probs": "float32 (B,)"},
            "config": captioner.config}
    return write_export(path, captioner.model, endpoints, info, overwrite)

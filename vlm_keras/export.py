"""SavedModel export with serving signatures, and loading of exports.

An exported captioner is self-contained: image decoding, VGG16, the decoder's greedy loop and the
vocabulary are all in the graph, so it runs with TensorFlow alone (no vlm_keras import):

```python
import tensorflow as tf
serve = tf.saved_model.load("saved_models/captioner").signatures["serving_default"]
serve(images=tf.constant([open("cat.png", "rb").read()]))["captions"]   # (B,) tf.string
```
or `saved_model_cli run --dir saved_models/captioner --tag_set serve --signature_def serving_default
--input_exprs 'images=["..."]'`. A VQA export answers (image, question) pairs; a retrieval export
embeds images (`embed_image`) and texts (`embed_text`) into one space.
"""

import json
import os
import pathlib
import shutil
import tempfile

import keras
import tensorflow as tf

from vlm_keras.data.pipeline import decode_images
from vlm_keras.decoding import beam_search, greedy_decode, tokens_to_text

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_INFO_FILE = "vlm_keras.json"


class ExportError(ValueError):
    """The export target is unsafe to write, or a folder is not a SavedModel."""


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
    path = pathlib.Path(path)
    _check_target(path, overwrite)
    encoder, decoder = captioner.encoder, captioner.decoder
    image_size, max_steps = captioner.image_size, captioner.max_steps
    id_to_token = list(captioner.tokenizer.id_to_token)

    def outputs(tokens, log_probs):
        return {"captions": tokens_to_text(tokens, id_to_token), "log_probs": log_probs}

    def serve(images):
        features = encoder(decode_images(images, image_size), training=False)   # (B, h, w, 512)
        return outputs(*greedy_decode(decoder, features, max_steps))

    def serve_beam(images, beam_size):
        features = encoder(decode_images(images, image_size), training=False)
        return outputs(*beam_search(decoder, features, max_steps, beam_size=beam_size))

    images_spec = tf.TensorSpec([None], tf.string, name="images")
    archive = keras.export.ExportArchive()
    archive.track(captioner.model)
    archive.add_endpoint("serving_default", serve, input_signature=[images_spec])
    archive.add_endpoint("beam_search", serve_beam,
                         input_signature=[images_spec, tf.TensorSpec([], tf.int32, name="beam_size")])
    info = {"task": "captioning",
            "signatures": {"serving_default": {"inputs": {"images": "tf.string (B,)"}},
                           "beam_search": {"inputs": {"images": "tf.string (B,)", "beam_size": "int32 ()"}}},
            "outputs": {"captions": "tf.string (B,)", "log_probs": "float32 (B,)"},
            "config": captioner.config}
    return _write_atomically(path, lambda tmp: archive.write_out(str(tmp), verbose=False), info)


def export_vqa(vqa, path, overwrite=True, top_k=5):
    """Writes a SavedModel whose `serving_default` signature answers questions about images.

    Signature: `images` (B,) tf.string of encoded images and `questions` (B,) tf.string, one
    question per image -> `answer` (B,) tf.string, `probability` (B,) float32, `top_k_answers`
    (B, k) tf.string and `top_k_probabilities` (B, k) float32. Question tokenisation runs in the
    graph with the model's own vocabulary. Written atomically, as `export_captioner`.
    """
    path = pathlib.Path(path)
    _check_target(path, overwrite)
    encoder, head, tokenizer = vqa.encoder, vqa.head, vqa.question_tokenizer
    image_size = vqa.image_size
    answers = list(vqa.answers)
    k = min(top_k, len(answers))

    def serve(images, questions):
        features = encoder(decode_images(images, image_size), training=False)    # (B, h, w, 512)
        probabilities = tf.nn.softmax(head([features, tokenizer.encode(questions)], training=False))
        top_p, top_i = tf.math.top_k(probabilities, k=k)                           # (B, k)
        words = tf.gather(tf.constant(answers, tf.string), top_i)
        return {"answer": words[:, 0], "probability": top_p[:, 0], "top_k_answers": words,
                "top_k_probabilities": top_p}

    archive = keras.export.ExportArchive()
    archive.track(vqa.model)
    archive.track(tokenizer.lookup_table)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([None], tf.string, name="images"), tf.TensorSpec([None], tf.string, name="questions")])
    info = {"task": "vqa",
            "signatures": {"serving_default": {"inputs": {"images": "tf.string (B,)",
                                                          "questions": "tf.string (B,)"}}},
            "outputs": {"answer": "tf.string (B,)", "probability": "float32 (B,)",
                        "top_k_answers": f"tf.string (B, {k})", "top_k_probabilities": f"float32 (B, {k})"},
            "config": vqa.config}
    return _write_atomically(path, lambda tmp: archive.write_out(str(tmp), verbose=False), info)


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
    path = pathlib.Path(path)
    _check_target(path, overwrite)
    encoder, image_tower, text_tower = retrieval.encoder, retrieval.image_tower, retrieval.text_tower
    tokenizer, image_size = retrieval.tokenizer, retrieval.image_size

    def embed_image(images):
        features = encoder(decode_images(images, image_size), training=False)   # (B, h, w, 512)
        return {"embeddings": image_tower(features, training=False)}             # (B, D)

    def embed_text(texts):
        return {"embeddings": text_tower(tokenizer.encode(texts), training=False)}  # (B, D)

    archive = keras.export.ExportArchive()
    archive.track(retrieval.model)
    archive.track(tokenizer.lookup_table)
    # The first endpoint is also exported as "serving_default".
    archive.add_endpoint("embed_image", embed_image,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.add_endpoint("embed_text", embed_text,
                         input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    dim = retrieval.embed_dim
    info = {"task": "retrieval",
            "signatures": {"embed_image": {"inputs": {"images": "tf.string (B,)"}},
                           "embed_text": {"inputs": {"texts": "tf.string (B,)"}},
                           "serving_default": "embed_image"},
            "outputs": {"embeddings": f"float32 (B, {dim}), unit vectors"},
            "temperature": retrieval.temperature, "config": retrieval.config}
    return _write_atomically(path, lambda tmp: archive.write_out(str(tmp), verbose=False), info)


def _check_target(path, overwrite):
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"export path '{path}' exists and is not a folder")
        if any(path.iterdir()):
            if not (path / SAVED_MODEL_FILE).is_file():
                raise ExportError(f"refusing to export into '{path}': it is not empty and is not a SavedModel")
            if not overwrite:
                raise ExportError(f"'{path}' already holds a SavedModel; pass overwrite=True to replace it")


def _write_atomically(path, write, info):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    backup = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        write(tmp)
        (tmp / "assets").mkdir(exist_ok=True)
        with open(tmp / "assets" / EXPORT_INFO_FILE, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        if path.exists():
            os.replace(path, backup)
        try:
            os.replace(tmp, path)
        except OSError:
            if backup.exists() and not path.exists():
                os.replace(backup, path)  # put the previous export back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(backup, ignore_errors=True)
    return path


def is_saved_model(path):
    return (pathlib.Path(path) / SAVED_MODEL_FILE).is_file()


def load_saved_model(path):
    """Loads an export; returns (the loaded object, its serving_default signature, the info dict)."""
    path = pathlib.Path(path)
    if not is_saved_model(path):
        raise ExportError(f"'{path}' is not a SavedModel (no {SAVED_MODEL_FILE})")
    loaded = tf.saved_model.load(str(path))
    info = {}
    info_file = path / "assets" / EXPORT_INFO_FILE
    if info_file.is_file():
        with open(info_file, encoding="utf-8") as f:
            info = json.load(f)
    return loaded, loaded.signatures["serving_default"], info

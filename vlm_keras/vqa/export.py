"""The VQA model's SavedModel: (encoded image, question) pairs in, answers out."""

import tensorflow as tf

from vlm_keras.encoders.vgg16 import image_inputs
from vlm_keras.export import write_export


def export_vqa(vqa, path, overwrite=True, top_k=5):
    """Writes a SavedModel whose `serving_default` signature answers questions about images.

    Signature: `images` (B,) tf.string of encoded images and `questions` (B,) tf.string, one
    question per image -> `answer` (B,) tf.string, `probability` (B,) float32, `top_k_answers`
    (B, k) tf.string and `top_k_probabilities` (B, k) float32. Question tokenisation runs in the
    graph with the model's own vocabulary. Written atomically, as `export_captioner`.
    """
    encoder, head, tokenizer = vqa.encoder, vqa.head, vqa.question_tokenizer
    image_size = vqa.image_size
    answers = list(vqa.answers)
    k = min(top_k, len(answers))

    def serve(images, questions):
        features = encoder(image_inputs(images, image_size), training=False)    # (B, h, w, 512)
        probabilities = tf.nn.softmax(head([features, tokenizer.encode(questions)], training=False))
        top_p, top_i = tf.math.top_k(probabilities, k=k)                           # (B, k)
        words = tf.gather(tf.constant(answers, tf.string), top_i)
        return {"answer": words[:, 0], "probability": top_p[:, 0], "top_k_answers": words,
                "top_k_probabilities": top_p}

    endpoints = [("serving_default", serve, [tf.TensorSpec([None], tf.string, name="images"),
                                             tf.TensorSpec([None], tf.string, name="questions")])]
    info = {"task": "vqa",
            "signatures": {"serving_default": {"inputs": {"images": "tf.string (B,)",
                                                          "questions": "tf.string (B,)"}}},
            "outputs": {"answer": "tf.string (B,)", "probability": "float32 (B,)",
                        "top_k_answers": f"tf.string (B, {k})", "top_k_probabilities": f"float32 (B, {k})"},
            "config": vqa.config}
    return write_export(path, vqa.model, endpoints, info, overwrite, track=[tokenizer.lookup_table])

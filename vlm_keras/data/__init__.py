"""Data: text, images, tf.data pipelines, annotation formats, and the synthetic scenes.

    text.py      the one tokenizer
    images.py    the one image decoder, and file checks with clear errors
    pipeline.py  tf.data training examples for every task
    sources.py   what `data=` means: "scenes", a folder, or a TFDS name
    tfds.py      a TFDS dataset written once as a folder
    formats/     COCO captions and VQA v2, validated
    scenes/      the synthetic scenes generator
"""

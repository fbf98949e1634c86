"""Image captioning: the three decoders, generation, `Captioner`, `train_captioner`, the export.

    models.py     the lstm / attention / transformer decoders and the end-to-end model
    losses.py     the caption loss and token accuracy (global-batch means under tf.distribute)
    decoding.py   greedy and beam-search generation as graph code
    captioner.py  `Captioner`: caption, attention maps, evaluate, save / load, export
    train.py      `train_captioner()`
    export.py     the SavedModel: encoded images in, captions out
"""

from vlm_keras.captioning.captioner import Captioner
from vlm_keras.captioning.train import train_captioner

__all__ = ["Captioner", "train_captioner"]

"""Image-text retrieval: the dual encoder, `RetrievalModel`, `train_retrieval`, the export, and
searching a folder of images by text.

    models.py           the image and text towers, the dual encoder, the contrastive loss and trainer
    retrieval_model.py  `RetrievalModel`: embed images / texts, similarity, evaluate, save / load
    train.py            `train_retrieval()`
    export.py           the SavedModel: `embed_image` and `embed_text`
    index.py            embed a folder of images once; search it by text
"""

from vlm_keras.retrieval.retrieval_model import RetrievalModel
from vlm_keras.retrieval.train import train_retrieval

__all__ = ["RetrievalModel", "train_retrieval"]

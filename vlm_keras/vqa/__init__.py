"""Visual question answering: the concat, attention, graph and question-only heads, `VQAModel`,
`train_vqa`, the export.

    models.py        the heads (image branch + answer branch) and the grouped trainer
    scene_graphs.py  the scenes' annotated objects as graph nodes (the oracle visual input)
    vqa_model.py     `VQAModel`: answer, attention maps, graph edges, evaluate (official VQA
                     accuracy), save / load
    train.py         `train_vqa()`
    export.py        the SavedModel: (encoded image, question) in, answer out
"""

from vlm_keras.vqa.train import train_vqa
from vlm_keras.vqa.vqa_model import VQAModel, build_answer_vocabulary

__all__ = ["VQAModel", "build_answer_vocabulary", "train_vqa"]

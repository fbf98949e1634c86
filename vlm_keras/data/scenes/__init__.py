"""The synthetic scenes: the project's offline dataset, for every task.

    scenes.py     a scene of coloured shapes: sampling and rendering
    captions.py   its reference captions (a varied grammar) and which captions are true of it
    questions.py  questions with human-like answers about it (VQA v2 style)
    dataset.py    writing the splits to disk (COCO captions + VQA v2 layouts)
    tfds.py       the TFDS builder "vlm_scenes" (`import vlm_keras.data.scenes.tfds` registers it)
"""

"""Annotation formats: one validated reader (and writer) per published layout, sharing
`reader.py`'s JSON checks.

    reader.py  the validated JSON reader, `DatasetError`
    coco.py    COCO captions (`captions_<split>.json`) and the COCO results file
    vqa.py     VQA v2 questions and annotations, and the VQA results file
"""

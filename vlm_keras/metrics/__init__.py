"""Evaluation metrics as small pure functions on Python lists and numpy arrays.

- `captions`: corpus BLEU (nltk's);
- `vqa`: the official VQA accuracy and its answer normalisation;
- `retrieval`: Recall@K both ways and the median rank.
"""

from vlm_keras.metrics.captions import BLEU_WEIGHTS, bleu_scores
from vlm_keras.metrics.retrieval import RECALL_KS, recall_at_k, retrieval_ranks, retrieval_report
from vlm_keras.metrics.vqa import check_answer_counts, normalize_answer, vqa_accuracy, vqa_accuracy_report

__all__ = ["BLEU_WEIGHTS", "RECALL_KS", "bleu_scores", "check_answer_counts", "normalize_answer", "recall_at_k",
           "retrieval_ranks", "retrieval_report", "vqa_accuracy", "vqa_accuracy_report"]

"""Evaluation metrics as small pure functions on Python lists and numpy arrays.

- `coco_caption`: the COCO caption evaluation (BLEU-1..4, CIDEr-D, ROUGE-L as pycocoevalcap
  computes them, with its PTB tokenisation, in pure Python; METEOR and SPICE through pycocoevalcap
  when it and Java are installed);
- `nltk_bleu`: nltk's corpus BLEU on the project's tokens (not the COCO number; kept by that name);
- `vqa`: the official VQA accuracy and its answer normalisation;
- `retrieval`: Recall@K both ways and the median rank.
"""

from vlm_keras.metrics.coco_caption import evaluate_captions, ptb_tokenize, tokenize_captions
from vlm_keras.metrics.nltk_bleu import BLEU_WEIGHTS, nltk_bleu_scores
from vlm_keras.metrics.retrieval import RECALL_KS, recall_at_k, retrieval_ranks, retrieval_report
from vlm_keras.metrics.vqa import check_answer_counts, normalize_answer, vqa_accuracy, vqa_accuracy_report

__all__ = ["BLEU_WEIGHTS", "RECALL_KS", "check_answer_counts", "evaluate_captions", "nltk_bleu_scores",
           "normalize_answer", "ptb_tokenize", "recall_at_k", "retrieval_ranks", "retrieval_report",
           "tokenize_captions", "vqa_accuracy", "vqa_accuracy_report"]

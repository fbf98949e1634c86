"""Image-text retrieval: Recall@K and median rank, as pure numpy functions."""

import numpy as np

# As COCO and Flickr30k retrieval are reported (Karpathy & Fei-Fei 2015; Faghri et al. 2018,
# VSE++; CLIP): every image has several captions. Text -> image: each caption is a query with one
# right answer, its image. Image -> text: each image is a query and any of its captions is a right
# answer, so the rank that counts is that of its best-ranked caption.

RECALL_KS = (1, 5, 10)


def retrieval_ranks(similarity, caption_image_index, matches=None):
    """1-based ranks of the right answers, in both directions.

    Ties count against the model: a wrong item that scores the same as the right one is ranked
    before it, so a model that scores everything alike gets the worst ranks, never the best.

    Args:
        similarity: (num_images, num_captions) scores; higher is more similar.
        caption_image_index: (num_captions,) ints, the image (row) that each caption describes.
            Every image needs at least one caption.
        matches: optional (num_images, num_captions) bools, the pairs that are right besides each
            caption and its own image: a caption that is just as true of another image of the pool
            (a false negative of the one-right-image protocol, as ECCV Caption (Chun et al. 2022)
            counts them for COCO). Each query's rank is then that of its best-ranked right answer.

    Returns:
        (image_to_text_ranks (num_images,), text_to_image_ranks (num_captions,)) int arrays:
        for each image the rank of its best-ranked caption among all captions, and for each
        caption the rank of its image among all images.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(caption_image_index)
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be (num_images, num_captions); got shape {similarity.shape}")
    num_images, num_captions = similarity.shape
    if owner.shape != (num_captions,):
        raise ValueError(f"caption_image_index has shape {owner.shape}; expected ({num_captions},), "
                         "one image index per caption (column of similarity)")
    if not np.issubdtype(owner.dtype, np.integer) or (num_captions and (owner.min() < 0 or owner.max() >= num_images)):
        raise ValueError(f"caption_image_index must hold ints in [0, {num_images}); got {owner[:5].tolist()}...")
    uncaptioned = np.setdiff1d(np.arange(num_images), owner)
    if uncaptioned.size:
        raise ValueError(f"image(s) {uncaptioned[:5].tolist()} have no caption; every image needs one")
    if not np.all(np.isfinite(similarity)):
        raise ValueError("similarity holds NaN or infinite values")

    right = owner[None, :] == np.arange(num_images)[:, None]                   # (I, C)
    if matches is not None:
        matches = np.asarray(matches)
        if matches.shape != similarity.shape or matches.dtype != bool:
            raise ValueError(f"matches must be bools shaped like similarity {similarity.shape}; got "
                             f"{matches.dtype} {matches.shape}")
        right = right | matches
    right_only = np.where(right, similarity, -np.inf)                          # (I, C)
    # Text -> image: wrong images scoring >= the caption's best-ranked right image.
    right_scores = right_only.max(axis=0)                                      # (C,)
    text_to_image = 1 + np.sum((similarity >= right_scores[None, :]) & ~right, axis=0)
    # Image -> text: wrong captions scoring >= the image's best right caption.
    best_right = right_only.max(axis=1)                                        # (I,)
    image_to_text = 1 + np.sum((similarity >= best_right[:, None]) & ~right, axis=1)
    return image_to_text.astype(np.int64), text_to_image.astype(np.int64)


def recall_at_k(ranks, k):
    """The fraction of queries whose right answer is ranked k or better."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("recall_at_k needs at least one rank")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an int >= 1; got {k!r}")
    return float(np.mean(ranks <= k))


def retrieval_report(similarity, caption_image_index, ks=RECALL_KS, matches=None):
    """Recall@K in both directions and the median and mean ranks.

    Args:
        similarity, caption_image_index, matches: as `retrieval_ranks`.
        ks: the K of Recall@K.

    Returns:
        {"image_to_text_r1", ..., "text_to_image_r1", ..., "image_to_text_median_rank",
         "text_to_image_median_rank", "image_to_text_mean_rank", "text_to_image_mean_rank",
         "num_images", "num_captions"}: recalls in [0, 1], ranks 1-based.
    """
    image_to_text, text_to_image = retrieval_ranks(similarity, caption_image_index, matches)
    report = {}
    for direction, ranks in (("image_to_text", image_to_text), ("text_to_image", text_to_image)):
        for k in ks:
            report[f"{direction}_r{k}"] = recall_at_k(ranks, k)
        report[f"{direction}_median_rank"] = float(np.median(ranks))
        report[f"{direction}_mean_rank"] = float(np.mean(ranks))
    report["num_images"], report["num_captions"] = len(image_to_text), len(text_to_image)
    return report

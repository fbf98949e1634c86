"""Retrieval: the contrastive loss by hand, Recall@K and median rank on constructed cases, the
similarity layer, and how specific the scenes captions are."""

import math

import numpy as np
import pytest

import keras
from vlm_keras.layers import ScaledCosineSimilarity
from vlm_keras.metrics import recall_at_k, retrieval_ranks, retrieval_report
from vlm_keras.retrieval.models import contrastive_loss


def _ce(logits, target):
    """Cross-entropy of one row of logits, by hand."""
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


# --- the loss ---------------------------------------------------------------------------------

def test_contrastive_loss_2x2_by_hand():
    # Images x captions; (i, i) are the positives.
    logits = np.array([[2.0, 0.0],
                       [1.0, 1.0]], "float32")
    # image -> text, rows: -2 + log(e^2 + e^0) = log(1 + e^-2); -1 + log(2 e) = log 2
    image_to_text = (math.log(1 + math.exp(-2)) + math.log(2)) / 2                  # 0.41004
    # text -> image, columns [2, 1] and [0, 1]: log(1 + e^-1) both
    text_to_image = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-1))) / 2    # 0.31326
    expected = (image_to_text + text_to_image) / 2
    assert expected == pytest.approx(0.361650, abs=1e-6)
    assert float(contrastive_loss(logits)) == pytest.approx(expected, abs=1e-6)
    # Not symmetric in its argument: the transpose swaps the two directions' roles, same total here.
    assert float(contrastive_loss(logits.T)) == pytest.approx(expected, abs=1e-6)


def test_contrastive_loss_is_log_batch_for_uniform_logits_and_falls_with_the_margin():
    assert float(contrastive_loss(np.zeros((4, 4), "float32"))) == pytest.approx(math.log(4), abs=1e-6)
    sharp = float(contrastive_loss(10 * np.eye(4, dtype="float32")))
    assert sharp == pytest.approx(math.log(1 + 3 * math.exp(-10)), abs=1e-6)


def test_two_captions_of_one_image_are_not_negatives():
    logits = np.array([[3.0, 3.0, 0.0],
                       [3.0, 3.0, 0.0],
                       [0.0, 0.0, 3.0]], "float32")
    ids = np.array([7, 7, 9])
    # Masking the off-diagonal same-image pairs leaves rows [3, -inf, 0], [-inf, 3, 0], [0, 0, 3].
    row = _ce([3.0, 0.0], 0)
    last = _ce([0.0, 0.0, 3.0], 2)
    expected = ((row + row + last) / 3 + (row + row + last) / 3) / 2
    assert float(contrastive_loss(logits, ids)) == pytest.approx(expected, abs=1e-6)
    # Unmasked, rows 0 and 1 split their mass between the two captions of image 7.
    unmasked = (2 * _ce([3.0, 3.0, 0.0], 0) + _ce([0.0, 0.0, 3.0], 2)) / 3
    assert float(contrastive_loss(logits)) == pytest.approx(unmasked, abs=1e-6)


def test_hard_negative_captions_join_the_image_to_text_half_only():
    logits = np.array([[2.0, 0.0],
                       [1.0, 1.0]], "float32")
    negative_logits = np.array([[1.0, 5.0],
                                [4.0, 0.0]], "float32")                            # images x negatives
    has_negative = np.array([True, False])
    # image -> text: each row also sees the negatives that exist (column 0 only here).
    image_to_text = (_ce([2.0, 0.0, 1.0], 0) + _ce([1.0, 1.0, 4.0], 1)) / 2
    text_to_image = (_ce([2.0, 1.0], 0) + _ce([0.0, 1.0], 1)) / 2                  # unchanged: no image
    expected = (image_to_text + text_to_image) / 2
    assert float(contrastive_loss(logits, None, negative_logits, has_negative)) == pytest.approx(expected, abs=1e-6)
    # Every negative present: all four columns count.
    both = (_ce([2.0, 0.0, 1.0, 5.0], 0) + _ce([1.0, 1.0, 4.0, 0.0], 1)) / 2
    assert float(contrastive_loss(logits, None, negative_logits)) == pytest.approx(
        (both + text_to_image) / 2, abs=1e-6)
    # No negative present: the plain loss.
    assert float(contrastive_loss(logits, None, negative_logits, np.zeros(2, bool))) == pytest.approx(
        float(contrastive_loss(logits)), abs=1e-6)


def test_contrastive_loss_rejects_non_square_logits():
    with pytest.raises(ValueError, match=r"\(B, B\) logits.*\(2, 3\)"):
        contrastive_loss(np.zeros((2, 3), "float32"))


# --- the similarity layer ---------------------------------------------------------------------

def test_scaled_cosine_similarity_by_hand_and_round_trip():
    layer = ScaledCosineSimilarity(temperature=0.5)
    images = np.array([[3.0, 4.0], [1.0, 0.0]], "float32")        # unit after normalising: [.6, .8]
    texts = np.array([[0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]], "float32")
    logits = np.asarray(layer(images, texts))
    expected = 2.0 * np.array([[0.8, 1.4 / math.sqrt(2), -0.6],
                               [0.0, 1 / math.sqrt(2), -1.0]])
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    clone = ScaledCosineSimilarity.from_config(layer.get_config())
    clone(images, texts)
    assert float(clone.scale()) == pytest.approx(2.0)
    layer.logit_scale.assign(10.0)  # exp(10) > max_scale: clipped at 100
    assert float(layer.scale()) == pytest.approx(100.0)


def test_scaled_cosine_similarity_errors():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ScaledCosineSimilarity(temperature=0.0)
    with pytest.raises(ValueError, match="8 dimensions but text embeddings have 4"):
        ScaledCosineSimilarity()(keras.Input((8,)), keras.Input((4,)))


# --- Recall@K and median rank -----------------------------------------------------------------

def _owners(num_images, per_image):
    return np.repeat(np.arange(num_images), per_image)


def test_perfect_embeddings_score_one():
    images = np.eye(20)                                   # 20 images, 5 captions each
    owner = _owners(20, 5)
    texts = images[owner] + 0.01 * np.random.default_rng(0).normal(size=(100, 20))
    report = retrieval_report(images @ texts.T, owner)
    for direction in ("image_to_text", "text_to_image"):
        for k in (1, 5, 10):
            assert report[f"{direction}_r{k}"] == 1.0
        assert report[f"{direction}_median_rank"] == 1.0
    assert report["num_images"] == 20 and report["num_captions"] == 100


def test_a_known_permutation_gives_known_ranks():
    # Each caption of image i is closest to image (i + 1) % 10, then to its own image i.
    num = 10
    owner = _owners(num, 2)
    similarity = np.zeros((num, 2 * num))
    for c, i in enumerate(owner):
        similarity[(i + 1) % num, c] = 1.0
        similarity[i, c] = 0.5
    image_to_text, text_to_image = retrieval_ranks(similarity, owner)
    assert text_to_image.tolist() == [2] * (2 * num)
    # Image i: its two captions score 0.5; the two captions of image i - 1 score 1.0 above them.
    assert image_to_text.tolist() == [3] * num
    report = retrieval_report(similarity, owner)
    assert report["text_to_image_r1"] == 0.0 and report["text_to_image_r5"] == 1.0
    assert report["image_to_text_r1"] == 0.0 and report["image_to_text_r5"] == 1.0
    assert report["text_to_image_median_rank"] == 2.0 and report["image_to_text_median_rank"] == 3.0


def test_image_to_text_counts_the_best_of_several_captions():
    # Image 0's first caption ranks 1st; its others rank last: a hit at K=1 (COCO / Flickr30k).
    owner = np.array([0, 0, 0, 1, 1, 1])
    similarity = np.array([[0.9, 0.1, 0.0, 0.5, 0.4, 0.3],
                           [0.2, 0.8, 0.7, 0.1, 0.6, 0.0]])
    image_to_text, text_to_image = retrieval_ranks(similarity, owner)
    # Image 1: best own caption 0.6; captions of image 0 scoring >= 0.6: 0.8, 0.7 -> rank 3.
    assert image_to_text.tolist() == [1, 3]
    # Caption columns: the other image wins for captions 1 (0.8 > 0.1), 2 (0.7 > 0.0),
    # 3 (0.5 > 0.1) and 5 (0.3 > 0.0): rank 2; captions 0 and 4 find their image first.
    assert text_to_image.tolist() == [1, 2, 2, 2, 1, 2]
    assert recall_at_k(image_to_text, 1) == 0.5 and recall_at_k(text_to_image, 1) == pytest.approx(2 / 6)


def test_matches_count_other_true_images_and_captions_as_right():
    # test_image_to_text_counts_the_best_of_several_captions' scores, with caption 1 (image 0's)
    # just as true of image 1, and caption 5 (image 1's) of image 0.
    owner = np.array([0, 0, 0, 1, 1, 1])
    similarity = np.array([[0.9, 0.1, 0.0, 0.5, 0.4, 0.3],
                           [0.2, 0.8, 0.7, 0.1, 0.6, 0.0]])
    matches = np.zeros((2, 6), bool)
    matches[1, 1] = matches[0, 5] = True
    image_to_text, text_to_image = retrieval_ranks(similarity, owner, matches)
    # Image 1's best right caption is now caption 1 (0.8): nothing wrong scores >= 0.8. Image 0: 0.9.
    assert image_to_text.tolist() == [1, 1]
    # Caption 1 finds image 1 (right now) first; caption 5 finds image 0 (0.3 > 0.0) first; the
    # others as without matches.
    assert text_to_image.tolist() == [1, 1, 2, 2, 1, 1]
    report = retrieval_report(similarity, owner, matches=matches)
    assert report["text_to_image_r1"] == pytest.approx(4 / 6) and report["image_to_text_r1"] == 1.0
    # A wrong image scoring as high as a right one still ranks before it (ties against the model).
    assert retrieval_ranks(np.zeros((2, 2)), np.array([0, 1]), np.array([[True, False], [False, True]]))[1].tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"matches must be bools shaped like similarity \(2, 6\)"):
        retrieval_ranks(similarity, owner, np.zeros((6, 2), bool))


def test_ties_count_against_the_model():
    owner = _owners(4, 2)
    image_to_text, text_to_image = retrieval_ranks(np.zeros((4, 8)), owner)
    assert text_to_image.tolist() == [4] * 8          # last among 4 images
    assert image_to_text.tolist() == [7] * 4          # behind the 6 captions of other images
    assert retrieval_report(np.ones((4, 8)), owner)["text_to_image_r1"] == 0.0


def test_random_scores_give_chance_recall():
    rng = np.random.default_rng(0)
    owner = _owners(200, 5)
    report = retrieval_report(rng.normal(size=(200, 1000)), owner)
    assert report["text_to_image_r10"] == pytest.approx(10 / 200, abs=0.02)
    assert report["text_to_image_median_rank"] == pytest.approx(100, rel=0.15)


def test_metric_errors_name_the_bad_input():
    with pytest.raises(ValueError, match=r"caption_image_index has shape \(2,\); expected \(3,\)"):
        retrieval_ranks(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"image\(s\) \[2\] have no caption"):
        retrieval_ranks(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"ints in \[0, 2\)"):
        retrieval_ranks(np.zeros((2, 2)), np.array([0, 5]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(np.array([[np.nan, 0.0]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        recall_at_k([1, 2], 0)


# --- the scenes captions are specific enough for retrieval ------------------------------------

def test_every_reference_is_a_possible_caption_and_few_scenes_share_one():
    from vlm_keras.data.scenes.captions import (caption_ambiguity, caption_matches, describe_scene,
                                                possible_captions)
    from vlm_keras.data.scenes.scenes import sample_scene

    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(300)]
    references = [describe_scene(scene, rng) for scene in scenes]
    for scene, refs in zip(scenes, references):
        assert set(refs) <= possible_captions(scene)
    counts = caption_ambiguity([c for refs in references for c in refs], scenes)
    assert counts.min() >= 1                         # true of its own scene at least
    assert np.median(counts) == 1 and counts.max() <= 10
    # The same truths as a matrix: caption j is true of scene i.
    matches = caption_matches([c for refs in references for c in refs], scenes)
    assert matches.shape == (300, 1500) and matches.dtype == bool
    assert matches.sum(axis=0).tolist() == counts.tolist()
    assert all(matches[i, 5 * i:5 * i + 5].all() for i in range(300))
    assert matches[0].sum() == sum(c in possible_captions(scenes[0]) for refs in references for c in refs)


def test_the_written_dataset_captions_are_true_of_their_scenes(shapes_dir):
    from vlm_keras.data.formats import coco
    from vlm_keras.data.scenes.captions import possible_captions
    from vlm_keras.data.scenes.dataset import load_scenes

    for split in ("test", "compositional"):
        captions = coco.load_caption_split(shapes_dir, split)
        scenes = load_scenes(shapes_dir, split)
        assert sorted(scenes) == sorted(captions.image_ids)
        for image_id, refs in zip(captions.image_ids, captions.captions):
            assert set(refs) <= possible_captions(scenes[image_id])
    with pytest.raises(ValueError, match="scenes_nope.json' does not exist"):
        load_scenes(shapes_dir, "nope")

"""Hard negative captions (`vlm_keras.retrieval.negatives`): the swaps by hand, no unseen pair ever
written, the same negatives from the same seed, a tiny dual encoder that learns to rank a caption
above its swapped copy, and train_retrieval with them."""

import numpy as np
import pytest

import keras
from vlm_keras.data.text import Tokenizer
from vlm_keras.retrieval.models import ContrastiveTrainer, adapt_image_tower, build_dual_encoder, build_image_tower, build_text_tower
from vlm_keras.retrieval.negatives import SCENES_SWAP_GROUPS, NegativeCaptions

GROUPS = (("red", "blue", "green"), ("circle", "square"), ("above", "below"))
ATTRIBUTES = GROUPS[:2]


def _tokenizer():
    return Tokenizer(["a", "red", "blue", "green", "circle", "square", "above", "below", "picture"], max_length=8)


def _texts(tokenizer, ids):
    return sorted(tokenizer.decode(np.asarray(ids)[:, 1:]))


def test_swaps_by_hand_and_no_pair_training_never_shows():
    tokenizer = _tokenizer()
    # Seen side by side: red circle, blue square, blue circle, red square. Never: anything green.
    train = tokenizer.encode(["a red circle above a blue square", "a blue circle", "a red square", "a green"]).numpy()
    negatives = NegativeCaptions(tokenizer, train, groups=GROUPS, attributes=ATTRIBUTES)
    exchanges, replacements = negatives.candidates(train[0])
    assert _texts(tokenizer, exchanges) == ["a blue circle above a red square",      # colours bound the other way
                                            "a red square above a blue circle"]      # shapes likewise
    assert _texts(tokenizer, replacements) == sorted([
        "a blue circle above a blue square", "a red circle above a red square", "a red circle above a blue circle",
        "a red circle below a blue square", "a red square above a blue square"])
    # "green circle" and "green square" were never seen side by side, so no green is written.
    assert not any("green" in text for text in _texts(tokenizer, exchanges + replacements))
    # Only one colour-shape pair allowed around a swap: "a blue circle" has replacements red (seen) only.
    exchanges, replacements = negatives.candidates(train[1])
    assert exchanges == [] and _texts(tokenizer, replacements) == ["a blue square", "a red circle"]


def test_sample_is_seeded_and_flags_captions_without_a_swap():
    tokenizer = _tokenizer()
    ids = tokenizer.encode(["a red circle above a blue square", "a picture", "a blue circle", "a red square"]).numpy()
    negatives = NegativeCaptions(tokenizer, ids, groups=GROUPS, attributes=ATTRIBUTES)
    first, has = negatives.sample(ids, np.random.default_rng(3))
    again, _ = negatives.sample(ids, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert has.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(first[1], ids[1])                                  # no swap: its own ids, flagged
    for row in (0, 2, 3):
        assert (first[row] != ids[row]).sum() in (1, 2)                              # one word replaced, or two exchanged
    # Over many draws both kinds come up for the caption that has both.
    kinds = {int((negatives.sample(ids[:1], np.random.default_rng(s))[0][0] != ids[0]).sum()) for s in range(20)}
    assert kinds == {1, 2}


def test_the_scenes_groups_never_write_a_held_out_pair(tmp_path):
    from vlm_keras.data.formats import coco
    from vlm_keras.data.scenes.dataset import write_scenes_dataset

    folder = write_scenes_dataset(tmp_path / "scenes", num_images=300, seed=0, progress=False)
    train = [c for refs in coco.load_caption_split(folder, "train").captions for c in refs]
    held_out = [c for refs in coco.load_caption_split(folder, "compositional").captions for c in refs]
    tokenizer = Tokenizer.from_texts(train + held_out)
    train_ids = tokenizer.encode(train).numpy()
    negatives = NegativeCaptions(tokenizer, train_ids)
    drawn, has = negatives.sample(train_ids, np.random.default_rng(0))
    assert has.mean() > 0.95
    colours, shapes = SCENES_SWAP_GROUPS[0], SCENES_SWAP_GROUPS[1]

    def pairs(texts):
        words = [text.split() for text in texts]
        return {(a, b) for w in words for a, b in zip(w, w[1:]) if a in colours and b in shapes}

    unseen = pairs(held_out) - pairs(train)
    assert len(unseen) >= 1                                                          # the split holds some
    assert not pairs(tokenizer.decode(drawn[has][:, 1:])) & unseen


def test_without_swappable_words_it_says_so():
    tokenizer = Tokenizer(["a", "dog", "cat"], max_length=4)
    with pytest.raises(ValueError, match="two words of one swap group"):
        NegativeCaptions(tokenizer, tokenizer.encode(["a dog"]).numpy())


def test_a_tiny_dual_encoder_trained_with_hard_negatives_learns_which_colour_is_where():
    """Two cells, each holding one of 3 colours (6 ordered pairs); a caption names the left colour,
    then the right. The swapped caption names the same colours the other way round: only a model
    that binds each colour to its cell ranks the true caption above it."""
    tokenizer = Tokenizer(["red", "blue", "green"], max_length=2)
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]

    def draw(seed, copies):
        rng = np.random.default_rng(seed)
        kind = np.tile(np.arange(len(pairs)), copies)
        features = rng.normal(scale=0.1, size=(len(kind), 2, 2, 8)).astype("float32")
        for n, k in enumerate(kind):
            left, right = pairs[k]
            features[n, 0, 0, left] += 1.0
            features[n, 0, 1, right] += 1.0
        texts = [f"{tokenizer.vocabulary[pairs[k][0]]} {tokenizer.vocabulary[pairs[k][1]]}" for k in kind]
        return features, tokenizer.encode(texts).numpy(), kind

    features, tokens, kind = draw(0, copies=16)
    negatives = NegativeCaptions(tokenizer, tokens, groups=[tokenizer.vocabulary], attributes=[])
    keras.utils.set_random_seed(0)
    image_tower = build_image_tower((2, 2, 8), embed_dim=16, pooling="flatten", hidden_dim=32, dropout=0.0)
    dual = build_dual_encoder(image_tower, build_text_tower(tokenizer.vocab_size, embed_dim=16, word_dim=8, units=16),
                              temperature=0.1)
    adapt_image_tower(image_tower, features)
    trainer = ContrastiveTrainer(dual)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    for epoch in range(30):
        negative_ids, has = negatives.sample(tokens, np.random.default_rng(epoch))
        trainer.fit({"image_features": features, "caption_tokens": tokens, "negative_tokens": negative_ids,
                     "has_negative": has.astype("float32")}, kind, batch_size=32, verbose=0)   # copies are not negatives

    features, tokens, _ = draw(1, copies=4)
    swapped = tokens.copy()
    swapped[:, [1, 2]] = tokens[:, [2, 1]]
    images = dual.get_layer("image_tower")(features).numpy()
    right = np.sum(images * dual.get_layer("text_tower")(tokens).numpy(), axis=1)
    wrong = np.sum(images * dual.get_layer("text_tower")(swapped).numpy(), axis=1)
    assert np.mean(right > wrong) >= 0.95                                            # chance 0.5


TINY = dict(embed_dim=16, hidden_dim=32, attention_dim=16, word_dim=8, units=16)


def _record_negatives(monkeypatch):
    """What `train_retrieval` passes as `negatives` to each epoch's training batches."""
    from vlm_keras.data import pipeline

    fed, original = [], pipeline.retrieval_dataset

    def recording(*args, negatives=None, **kwargs):
        if kwargs.get("shuffle", True):                                # the training batches
            fed.append(negatives)
        return original(*args, negatives=negatives, **kwargs)

    monkeypatch.setattr(pipeline, "retrieval_dataset", recording)
    return fed


def test_train_retrieval_with_bound_words_reloads_and_serves(shapes_dir, tmp_path, monkeypatch):
    """`bound_words="scenes"` end to end: trained with hard negatives (the default here), reloaded from
    its folder, and its SavedModel's text embeddings in a fresh process without vlm_keras."""
    import textwrap

    from vlm_keras import load_model, train_retrieval
    from vlm_keras.data.formats import coco

    from tests.helpers import run_python

    fed = _record_negatives(monkeypatch)
    result = train_retrieval(data=str(shapes_dir), epochs=1, batch_size=32, seed=0, verbose=0, out=tmp_path / "model",
                             eval_splits=(), bound_words="scenes", **TINY)
    assert fed[0] is not None and fed[0][1].mean() > 0.95             # the scenes: negatives by default
    assert result.model.get_layer("dual_encoder").get_layer("text_tower").get_layer("bound_words").word_groups
    texts = [refs[0] for refs in coco.load_caption_split(shapes_dir, "test").captions[:3]]
    np.testing.assert_allclose(load_model(tmp_path / "model").embed_texts(texts), result.embed_texts(texts), atol=1e-5)
    export = result.export(tmp_path / "export")
    got = run_python(textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load({str(export)!r})
        texts = loaded.signatures["embed_text"](texts=tf.constant({texts!r}))["embeddings"].numpy()
        print(json.dumps({{"texts": texts.tolist(), "vlm_keras": "vlm_keras" in sys.modules}}))
    """), cwd=tmp_path)
    assert not got["vlm_keras"]
    np.testing.assert_allclose(got["texts"], result.embed_texts(texts), atol=1e-5)
    with pytest.raises(ValueError, match="bound_words names 'mauve'"):
        train_retrieval(data=str(shapes_dir), epochs=1, verbose=0, eval_splits=(), bound_words="red,mauve")
    with pytest.raises(ValueError, match="bound_words ';' names no words"):
        train_retrieval(data=str(shapes_dir), epochs=1, verbose=0, bound_words=";")


def test_hard_negatives_are_the_default_on_the_scenes_only(shapes_dir, tmp_path, monkeypatch):
    import json
    import shutil

    from vlm_keras import train_retrieval

    other = tmp_path / "captions"
    shutil.copytree(shapes_dir, other)
    for scenes_file in (other / "annotations").glob("scenes_*.json"):
        scenes_file.unlink()                                          # the same captions, not a scenes folder
    fed = _record_negatives(monkeypatch)
    train_retrieval(data=str(other), epochs=1, batch_size=32, seed=0, verbose=0, eval_splits=(), **TINY)
    assert fed == [None]                                               # unmeasured there: off by default
    captions = other / "annotations" / "captions_train.json"
    coco = json.loads(captions.read_text())
    for annotation in coco["annotations"]:
        annotation["caption"] = "a photo of a thing"
    captions.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="hard_negatives=True, but the training captions of .* hold no two"):
        train_retrieval(data=str(other), epochs=1, verbose=0, eval_splits=(), hard_negatives=True)


def test_negative_tokens_without_their_flags_are_refused():
    keras.utils.set_random_seed(0)
    dual = build_dual_encoder(build_image_tower((2, 2, 8), embed_dim=8, hidden_dim=8, dropout=0.0),
                              build_text_tower(12, embed_dim=8, word_dim=4, units=4))
    tokens = np.array([[2, 5, 3]], "int32")
    with pytest.raises(ValueError, match="negative_tokens come with has_negative"):
        ContrastiveTrainer(dual)({"image_features": np.zeros((1, 2, 2, 8), "float32"), "caption_tokens": tokens,
                                  "negative_tokens": tokens})

"""The COCO caption metrics where captions are scored: evaluate, the score command, and picking the
epoch by validation CIDEr-D."""

import json
import shutil

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run_cli
from vlm_keras.captioning.captioner import COCO_CAPTION_METRICS, caption_metrics, caption_scores
from vlm_keras.data.formats import coco


def test_caption_scores_on_a_hand_checked_case():
    scores = caption_scores([1, 2], [["a red circle", "a red ball"], ["two blue squares"]],
                            ["a red circle", "two squares"], metrics=("bleu", "cider", "rouge"))
    assert scores["coco_bleu1"] == pytest.approx(5 / 5 * np.exp(1 - 6 / 5))  # 5 of 5 words match; BP 6/5
    assert scores["nltk_bleu1"] == pytest.approx(scores["coco_bleu1"])
    assert scores["coco_rouge_l"] > 0.8 and scores["coco_cider_d"] > 0
    assert scores["unavailable_metrics"] == {}
    assert set(scores) == {"coco_bleu1", "coco_bleu2", "coco_bleu3", "coco_bleu4", "coco_cider_d", "coco_rouge_l",
                           "nltk_bleu1", "nltk_bleu2", "nltk_bleu3", "nltk_bleu4", "unavailable_metrics"}


def test_the_default_metric_set(monkeypatch):
    monkeypatch.delenv("VLM_KERAS_CAPTION_METRICS", raising=False)
    assert caption_metrics() == COCO_CAPTION_METRICS == ("bleu", "cider", "rouge", "meteor", "spice")
    monkeypatch.setenv("VLM_KERAS_CAPTION_METRICS", "cider, bleu")
    assert caption_metrics() == ("cider", "bleu")
    monkeypatch.setenv("VLM_KERAS_CAPTION_METRICS", "bleu,cidr")
    with pytest.raises(ValueError, match="names cidr; expected some of bleu, cider"):
        caption_metrics()


def test_meteor_and_spice_are_computed_or_named_unavailable(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no java: both are reported, nothing raises
    scores = caption_scores([1], [["a red circle"]], ["a red circle"], metrics=COCO_CAPTION_METRICS)
    assert "coco_meteor" not in scores and "java" in scores["unavailable_metrics"]["meteor"]
    assert set(scores["unavailable_metrics"]) == {"meteor", "spice"}


def test_score_command_equals_pycocoevalcap(capsys, tiny_model_dir, shapes_dir, tmp_path):
    """A results file written by `evaluate --predictions`, scored by `vlm-keras score captions` and by
    pycocoevalcap's own tokenizer and scorers: the same BLEU-1..4, CIDEr-D and ROUGE-L."""
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: pycocoevalcap's PTB tokenizer is a Java program")
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    results = tmp_path / "results.json"
    code, out, _ = run_cli(capsys, "evaluate", "captioner", "--model", tiny_model_dir, "--data", shapes_dir,
                           "--split", "test", "--predictions", results)
    assert code == 0
    evaluated = json.loads(out)
    annotations = shapes_dir / "annotations" / "captions_test.json"
    code, out, _ = run_cli(capsys, "score", "captions", annotations, results, "--metrics", "bleu,cider,rouge",
                           "--per-image", tmp_path / "per_image.json")
    assert code == 0
    ours = json.loads(out)
    for key in ("coco_bleu4", "coco_cider_d", "coco_rouge_l"):
        assert ours[key] == pytest.approx(evaluated[key], abs=1e-12)  # evaluate and score agree

    content = json.loads(annotations.read_text())
    generated = json.loads(results.read_text())
    gts = {r["image_id"]: [{"caption": a["caption"]} for a in content["annotations"] if a["image_id"] == r["image_id"]]
           for r in generated}
    res = {r["image_id"]: [{"caption": r["caption"]}] for r in generated}
    gts, res = PTBTokenizer().tokenize(gts), PTBTokenizer().tokenize(res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, per_image_cider = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    for n in range(4):
        assert ours[f"coco_bleu{n + 1}"] == pytest.approx(bleu[n], abs=1e-9)
    assert ours["coco_cider_d"] == pytest.approx(cider, abs=1e-9)
    assert ours["coco_rouge_l"] == pytest.approx(rouge, abs=1e-9)
    per_image = json.loads((tmp_path / "per_image.json").read_text())
    np.testing.assert_allclose([per_image[str(i)]["cider_d"] for i in res], per_image_cider, atol=1e-9)


def test_score_command_errors(capsys, shapes_dir, tmp_path):
    annotations = shapes_dir / "annotations" / "captions_test.json"
    image_id = coco.load_caption_split(shapes_dir, "test").image_ids[0]
    cases = [([{"image_id": 999999, "caption": "a"}], "result #0 (image_id 999999) is about image_id 999999"),
             ([{"image_id": image_id, "caption": "a"}] * 2, f"captions image_id {image_id} again"),
             ({"image_id": image_id}, "top level is a dict; expected a list"),
             ([{"image_id": image_id, "caption": 3}], 'has no str "caption"')]
    for content, message in cases:
        (tmp_path / "r.json").write_text(json.dumps(content))
        code, _, err = run_cli(capsys, "score", "captions", annotations, tmp_path / "r.json")
        assert_one_line_error(code, err, message)
    code, _, err = run_cli(capsys, "score", "captions", annotations, tmp_path / "r.json", "--metrics", "bleu,bert")
    assert_one_line_error(code, err, "--metrics 'bleu,bert'")
    code, _, err = run_cli(capsys, "score", "captions", annotations, tmp_path / "r.json", "--per-image", annotations)
    assert_one_line_error(code, err, "which this run reads")


def test_the_kept_epoch_can_be_the_best_validation_cider(shapes_dir, tmp_path):
    from vlm_keras import train_captioner

    result = train_captioner(data=str(shapes_dir), epochs=3, image_size=32, units=16, embed_dim=8, num_layers=1,
                             batch_size=16, seed=2, verbose=0, eval_splits=("val",), checkpoint_metric="val_cider_d",
                             learning_rate=1e-2)
    history = result.history["val_cider_d"]
    assert len(history) == 3 and len(result.history["val_loss"]) == 3
    assert result.metrics["best_val_cider_d"] == max(history)
    # The weights kept are those of that epoch: evaluated again, the val split gives that CIDEr-D.
    assert result.metrics["coco_cider_d_val"] == pytest.approx(max(history), abs=1e-9)
    with pytest.raises(ValueError, match="unknown checkpoint_metric 'bleu'"):
        train_captioner(data=str(shapes_dir), checkpoint_metric="bleu")

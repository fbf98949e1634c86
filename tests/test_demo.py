"""`vlm-keras demo`: every stage runs and reports, at a tiny size."""

import json
import os

from tests.helpers import run_cli


def test_captioning_demo_at_a_tiny_size(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VLM_KERAS_CAPTION_METRICS", raising=False)
    code, out, err = run_cli(capsys, "demo", "--workdir", tmp_path, "--num-images", 40, "--epochs", 1,
                             "--image-size", 32)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["stage_seconds"]) == {"scenes", "train and evaluate", "export", "use the export"}
    assert "[4/4]" in err and "done in" in err
    for split in ("test", "compositional"):
        assert 0.0 <= summary[f"coco_bleu4_{split}"] <= 1.0 and summary[f"coco_cider_d_{split}"] >= 0.0
        assert f"coco_meteor_{split}" not in summary     # the demo's metrics leave METEOR out
    assert len(summary["samples"]) == 4 and all(isinstance(s["caption"], str) for s in summary["samples"])
    assert (tmp_path / "saved_models" / "captioner" / "saved_model.pb").is_file()
    assert "VLM_KERAS_CAPTION_METRICS" not in os.environ     # restored after the demo

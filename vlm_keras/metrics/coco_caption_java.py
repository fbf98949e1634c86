"""METEOR and SPICE through pycocoevalcap's Java tools, when they can run.

Both metrics exist only as Java programs shipped with (METEOR) or downloaded by
(SPICE: Stanford CoreNLP models, on first use) pycocoevalcap.  They are run in
a child Python process so that a hung JVM can be killed after a time limit,
and so that the Java tools' own console output cannot mix with the results.
Every failure becomes a reason string, never an exception.

vlm_keras starts no download: SPICE counts as available only once its
Stanford CoreNLP models are in pycocoevalcap's folder (about 400 MB, fetched by
`python -m pycocoevalcap.spice.get_stanford_models`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import List, Sequence, Tuple, Union

# Runs inside the child: scores the payload with pycocoevalcap and writes
# {"corpus": float, "per_image": [float]} to the result file.  Image keys are
# zero-padded positions because SPICE returns its scores in sorted-key order.
_CHILD_SCRIPT = r"""
import json, sys
payload_path, result_path = sys.argv[1], sys.argv[2]
with open(payload_path, encoding="utf-8") as f:
    payload = json.load(f)
keys = ["%09d" % i for i in range(len(payload["hyps"]))]
gts = dict(zip(keys, payload["refs"]))
res = {k: [h] for k, h in zip(keys, payload["hyps"])}
if payload["metric"] == "meteor":
    from pycocoevalcap.meteor.meteor import Meteor
    corpus, scores = Meteor().compute_score(gts, res)
    per_image = [float(s) for s in scores]
else:
    from pycocoevalcap.spice.spice import Spice
    corpus, scores = Spice().compute_score(gts, res)
    per_image = [float(s["All"]["f"]) for s in scores]
with open(result_path, "w", encoding="utf-8") as f:
    json.dump({"corpus": float(corpus), "per_image": per_image}, f)
"""

_FAILURE_HINTS = {
    "spice": " (SPICE needs the Stanford CoreNLP 3.6.0 models, which pycocoevalcap downloads"
             " from nlp.stanford.edu on first use)"}

_LINE_BREAKS = str.maketrans({c: " " for c in "\r\n\u000b\u000c\u0085\u2028\u2029"})


def java_metric_unavailable_reason() -> Union[str, None]:
    """Why METEOR/SPICE cannot run here at all, or None when they may.

    Returns:
        A reason string when pycocoevalcap is not importable or ``java`` is
        not on PATH; None otherwise.
    """
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "pycocoevalcap is not installed (pip install pycocoevalcap)"
    if shutil.which("java") is None:
        return "java is not on PATH (METEOR and SPICE are Java programs)"
    return None


def _spice_models_missing() -> Union[str, None]:
    """Why SPICE cannot run without a download, or None once its models are in place."""
    spec = importlib.util.find_spec("pycocoevalcap")
    # pycocoevalcap may install as a namespace package (no __init__.py, so no origin).
    folder = os.path.join(list(spec.submodule_search_locations)[0], "spice", "lib")
    if os.path.isfile(os.path.join(folder, "stanford-corenlp-3.6.0-models.jar")):
        return None
    return ("SPICE needs the Stanford CoreNLP 3.6.0 models in %s (about 400 MB; "
            "python -m pycocoevalcap.spice.get_stanford_models fetches them); "
            "vlm_keras starts no download" % folder)


def _single_line(text: str) -> str:
    """METEOR's line protocol breaks on a line break inside a caption."""
    return text.translate(_LINE_BREAKS)


def _last_error_line(stderr: bytes) -> str:
    """The most telling line of a failed child's stderr (usually the exception)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
             if line.strip()]
    return lines[-1] if lines else "no error output"


def _run_child(payload_path: str, result_path: str, timeout_s: float) -> Tuple[int, bytes]:
    """Run the child script; kill its whole process group on timeout.

    Returns:
        (exit status, stderr bytes).

    Raises:
        subprocess.TimeoutExpired: the child ran past ``timeout_s``.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD_SCRIPT, payload_path, result_path],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=(os.name == "posix"))
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # The JVM is a grandchild: end the child's own process group, not just it.
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.communicate()
        raise
    return process.returncode, stderr


def run_java_metric(metric: str, refs: Sequence[Sequence[str]], hyps: Sequence[str],
                    timeout_s: float) -> Union[Tuple[float, List[float]], str]:
    """Score with pycocoevalcap's METEOR or SPICE, or say why it could not.

    Args:
        metric: "meteor" or "spice".
        refs: N lists of reference strings (already tokenised if wanted).
        hyps: N hypothesis strings.
        timeout_s: wall-clock limit for the child process (JVM start-up,
            model download and scoring together).

    Returns:
        (corpus score, N per-image scores) on success; otherwise a reason
        string.  METEOR's corpus score is the jar's own aggregate, not the
        mean of the per-image scores; SPICE's is the mean F-score.
    """
    reason = java_metric_unavailable_reason() or (_spice_models_missing() if metric == "spice" else None)
    if reason is not None:
        return reason
    payload = {"metric": metric,
               "refs": [[_single_line(r) for r in image_refs] for image_refs in refs],
               "hyps": [_single_line(h) for h in hyps]}
    try:
        with tempfile.TemporaryDirectory(prefix="coco_caption_") as workdir:
            payload_path = os.path.join(workdir, "payload.json")
            result_path = os.path.join(workdir, "result.json")
            with open(payload_path, "w", encoding="utf-8") as f:
                json.dump(payload, f)
            status, stderr = _run_child(payload_path, result_path, timeout_s)
            if status != 0 or not os.path.exists(result_path):
                return "pycocoevalcap %s failed: %s%s" % (
                    metric.upper(), _last_error_line(stderr), _FAILURE_HINTS.get(metric, ""))
            with open(result_path, encoding="utf-8") as f:
                result = json.load(f)
    except subprocess.TimeoutExpired:
        return "pycocoevalcap %s did not finish within %.0f s" % (metric.upper(), timeout_s)
    except Exception as error:  # never let an optional metric break an evaluation
        return "pycocoevalcap %s could not run: %r" % (metric.upper(), error)
    return result["corpus"], result["per_image"]

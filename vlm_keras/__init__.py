"""vlm_keras: vision-language models in TensorFlow / Keras 3.

Quick start:
```python
from vlm_keras import train_captioner
result = train_captioner(data="scenes", epochs=10)
result.model, result.history, result.metrics
result.export("saved_models/captioner")
```

The TFDS dataset "vlm_scenes" is registered by `import vlm_keras.data.scenes.tfds`.
"""

__version__ = "0.2.0"

# Resolved on first use (PEP 562): `import vlm_keras` stays light, and the CLI builds its parser
# without importing TensorFlow.
_PUBLIC = {
    "Captioner": "vlm_keras.captioning",
    "CaptionerConfig": "vlm_keras.config",
    "RetrievalConfig": "vlm_keras.config",
    "RetrievalModel": "vlm_keras.retrieval",
    "RunConfig": "vlm_keras.config",
    "VQAConfig": "vlm_keras.config",
    "VQAModel": "vlm_keras.vqa",
    "load_model": "vlm_keras.load",
    "train_captioner": "vlm_keras.captioning",
    "train_retrieval": "vlm_keras.retrieval",
    "train_vqa": "vlm_keras.vqa",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'vlm_keras' has no attribute {name!r}")

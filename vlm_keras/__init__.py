"""vlm_keras: vision-language models in TensorFlow / Keras 3.

Quick start:
```python
from vlm_keras import train_captioner
result = train_captioner(data="shapes", epochs=10, image_size=64)
result.model, result.history, result.metrics
result.export("saved_models/captioner")
```
"""

__version__ = "0.1.0"

# Resolved on first use (PEP 562) so that `import vlm_keras.data.shapes` stays light.
_PUBLIC = {
    "Captioner": "vlm_keras.captioning",
    "RetrievalModel": "vlm_keras.retrieval",
    "VQAModel": "vlm_keras.vqa",
    "load_model": "vlm_keras.bundle",
    "train_captioner": "vlm_keras.train",
    "train_retrieval": "vlm_keras.train",
    "train_vqa": "vlm_keras.train",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'vlm_keras' has no attribute {name!r}")

"""vlm_keras: vision-language models in TensorFlow / Keras 3.

Quick start:
```python
from vlm_keras import train_captioner
result = train_captioner(data="shapes", epochs=10, image_size=64)
result.model, result.history, result.metrics
result.export("saved_models/captioner")
```

Importing the package also registers the TFDS builder "vlm_scenes" (`vlm_keras.data.tfds_scenes`),
so that `tfds.load("vlm_scenes")` works, without importing TFDS here (see `_register_tfds_builder`).
"""

import sys
import warnings

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


def _import_tfds_builder():
    try:
        from vlm_keras.data import tfds_scenes  # noqa: F401  (TFDS registers VlmScenes on import)
    except Exception as error:  # never break the user's `import tensorflow_datasets`
        warnings.warn(f"vlm_keras: the TFDS dataset 'vlm_scenes' is not registered: {error!r}",
                      stacklevel=2)


class _AfterTfdsImport:
    """A `sys.meta_path` finder that imports the builder module right after `tensorflow_datasets`.

    It finds nothing itself: it asks the other finders for TFDS's spec, wraps the loader's
    `exec_module`, and leaves `sys.meta_path`.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow_datasets":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_then_register(module):
            try:
                exec_module(module)
            finally:
                del loader.exec_module  # the loader's own method again
            _import_tfds_builder()

        loader.exec_module = exec_then_register
        return spec


def _register_tfds_builder():
    """Registers "vlm_scenes" with TFDS now if TFDS is imported, else as soon as it is.

    Importing TFDS takes about a second, `import vlm_keras` a tenth of that: the builder module,
    which needs TFDS, is imported only once the user (or vlm_keras) has imported TFDS.
    """
    if "tensorflow_datasets" in sys.modules:
        _import_tfds_builder()
    elif not any(isinstance(finder, _AfterTfdsImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTfdsImport())


_register_tfds_builder()

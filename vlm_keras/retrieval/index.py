"""A searchable index of a folder of images: embedded once by a retrieval model, searched by text.

An index is one `.npz` file:

    embeddings  (N, D) float32 unit vectors, one per image
    paths       (N,) the images' absolute paths
    info        a JSON string: the model that built it (a model folder or an exported SavedModel),
                the folder, the files skipped and why, and the model's embedding of `PROBE_TEXT`

A search embeds the query with the same model and ranks the images by cosine similarity (a matrix
product). The probe embedding catches a search run with another model than the index was built
with, which would otherwise return confident nonsense.
"""

import contextlib
import dataclasses
import json
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from vlm_keras.data.images import ImageError, read_image_bytes
from vlm_keras.errors import VlmKerasError
from vlm_keras.export import is_saved_model, load_saved_model
from vlm_keras.io import atomic_write, log
from vlm_keras.retrieval.retrieval_model import RetrievalModel

PROBE_TEXT = "a red circle above a blue square"
INDEX_VERSION = 1


class ImageIndexError(VlmKerasError, ValueError):
    """A file is not a vlm_keras image index, or does not fit the model used with it."""


@dataclasses.dataclass
class ImageIndex:
    """A loaded index: `embeddings` (N, D), `paths` (N,) and the `info` dict."""

    embeddings: np.ndarray
    paths: list
    info: dict

    def __len__(self):
        return len(self.paths)


class SavedModelEmbedder:
    """The `embed_images` / `embed_texts` interface of `RetrievalModel`, over an exported SavedModel."""

    def __init__(self, path):
        loaded, _, info = load_saved_model(path)
        if info.get("task") != "retrieval" or "embed_text" not in loaded.signatures:
            raise ImageIndexError(f"'{path}' is a SavedModel of a {info.get('task', 'unknown')} model, "
                              "not of a retrieval model (no embed_text signature)")
        self._loaded = loaded

    def embed_images(self, encoded_images):
        images = tf.constant(list(encoded_images), tf.string)
        return self._loaded.signatures["embed_image"](images=images)["embeddings"].numpy()

    def embed_texts(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self._loaded.signatures["embed_text"](texts=tf.constant(texts))["embeddings"].numpy()


def open_embedder(model_path):
    """A retrieval model folder or its exported SavedModel -> an object with `embed_images(encoded
    image bytes)` and `embed_texts(strings)`, both returning (N, D) unit vectors."""
    if is_saved_model(model_path):
        return SavedModelEmbedder(model_path)
    return RetrievalModel.load(model_path)


def list_files(images_dir):
    """Every file under `images_dir` (recursively, hidden ones left out), sorted."""
    root = pathlib.Path(images_dir)
    if not root.is_dir():
        raise ValueError(f"images folder '{images_dir}' does not exist or is not a folder")
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def build_index(embedder, images_dir, batch_size=32, progress=True):
    """Embeds every readable image under `images_dir`.

    Every file is checked with `check_image_file` (fully decoded) first; one that is not an image
    TensorFlow can decode (a text file, a truncated PNG, a WEBP) is skipped and listed, not fatal.

    Args:
        embedder: from `open_embedder` (a `RetrievalModel` or a `SavedModelEmbedder`).
        images_dir: the folder.
        batch_size: images embedded per call.
        progress: show a `keras.utils.Progbar` on stderr.

    Returns:
        (embeddings (N, D) float32, absolute paths (N,), skipped [{"path", "error"}, ...]).

    Raises:
        ValueError: when the folder is missing or holds no readable image.
    """
    files = list_files(images_dir)
    if not files:
        raise ValueError(f"images folder '{images_dir}' holds no files")
    bar = None
    if progress:
        log(f"Indexing {len(files)} files in '{images_dir}'")
        bar = keras.utils.Progbar(len(files), unit_name="file")
    embeddings, paths, skipped = [], [], []
    for start in range(0, len(files), batch_size):
        encoded = []
        for file in files[start:start + batch_size]:
            try:
                encoded.append(read_image_bytes(file))
                paths.append(str(file.resolve()))
            except ImageError as error:
                skipped.append({"path": str(file), "error": str(error)})
        if encoded:
            embeddings.append(np.asarray(embedder.embed_images(encoded), np.float32))
        if bar is not None:
            with contextlib.redirect_stdout(sys.stderr):  # stdout is for results
                bar.update(min(start + batch_size, len(files)))
    if not paths:
        raise ValueError(f"images folder '{images_dir}' holds no readable image ({len(skipped)} files "
                         f"skipped; the first: {skipped[0]['error']})")
    return np.concatenate(embeddings), paths, skipped


def write_index(path, embeddings, paths, info):
    """Writes an index file atomically (a temporary file renamed over `path`)."""
    path = _check_index_path(path)

    def write(tmp):
        with open(tmp, "xb") as f:  # a file object: numpy adds no ".npz" to the name
            np.savez(f, embeddings=np.asarray(embeddings, np.float32), paths=np.asarray(paths, dtype=str),
                     info=np.asarray(json.dumps(dict(info, version=INDEX_VERSION))))

    return atomic_write(path, write)


def _check_index_path(path):
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"index path '{path}' is a folder; expected a file name, e.g. images.npz")
    return path


def load_index(path):
    """Reads an index file; ImageIndexError naming the file when it is missing or not an index."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ImageIndexError(f"index '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            embeddings, paths, info = data["embeddings"], data["paths"].tolist(), json.loads(str(data["info"]))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ImageIndexError(f"'{path}' is not a vlm_keras image index ({type(error).__name__}: "
                          f"{str(error)[:200]}); build one with `vlm-keras index`") from error
    if embeddings.ndim != 2 or len(embeddings) != len(paths):
        raise ImageIndexError(f"index '{path}' is inconsistent: {embeddings.shape} embeddings for {len(paths)} paths")
    return ImageIndex(embeddings, paths, info)


def index_folder(model_path, images_dir, out, batch_size=32, progress=True):
    """`vlm-keras index`: embeds a folder with a model and writes the index. Returns a summary dict."""
    started = time.perf_counter()
    _check_index_path(out)  # before the work, not after
    embedder = open_embedder(model_path)
    embeddings, paths, skipped = build_index(embedder, images_dir, batch_size, progress)
    info = {"model": str(pathlib.Path(model_path).resolve()), "images_dir": str(pathlib.Path(images_dir).resolve()),
            "skipped": skipped, "probe_text": PROBE_TEXT,
            "probe_embedding": np.asarray(embedder.embed_texts([PROBE_TEXT]))[0].tolist()}
    write_index(out, embeddings, paths, info)
    return {"index": str(out), "num_images": len(paths), "embed_dim": int(embeddings.shape[1]),
            "skipped": skipped, "seconds": time.perf_counter() - started}


def search(index, query, k=5, embedder=None, model_path=None):
    """Ranks the index's images by cosine similarity to a text query.

    Args:
        index: an `ImageIndex` (or the path of an index file).
        query: the text.
        k: how many results (at most the index's size).
        embedder: the model to embed the query with; default: opened from `model_path`, else from
            the model recorded in the index.

    Returns:
        [{"rank", "path", "score"}, ...], best first; scores are cosine similarities in [-1, 1].
    """
    if not isinstance(index, ImageIndex):
        index = load_index(index)
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"the query is {query!r}; expected a non-empty text")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an int >= 1; got {k!r}")
    if embedder is None:
        model_path = model_path or index.info.get("model")
        if not model_path or not pathlib.Path(model_path).exists():
            raise ImageIndexError(f"the index's model '{model_path}' does not exist; pass the model (--model)")
        embedder = open_embedder(model_path)
    probe = np.asarray(embedder.embed_texts([index.info.get("probe_text", PROBE_TEXT)]))[0]
    expected = np.asarray(index.info.get("probe_embedding", []), np.float32)
    if probe.shape != expected.shape or np.abs(probe - expected).max() > 1e-3:
        raise ImageIndexError("the model does not match the one that built the index (it embeds the probe text "
                          f"{index.info.get('probe_text', PROBE_TEXT)!r} differently); use the index's model, "
                          f"{index.info.get('model')!r}")
    scores = index.embeddings @ np.asarray(embedder.embed_texts([query]))[0]       # (N,)
    order = np.argsort(-scores, kind="stable")[:int(k)]
    return [{"rank": r + 1, "path": index.paths[i], "score": float(scores[i])} for r, i in enumerate(order)]

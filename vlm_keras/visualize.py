"""Attention maps: the image regions each generated word attended to, drawn with matplotlib."""

import math

import numpy as np
from PIL import Image


def plot_attention_map(image, words, weights, path, title=None, columns=5):
    """Writes a PNG grid: the image, then one panel per word with its attention as a heatmap.

    Args:
        image: path of an image file, or an (H, W, 3) uint8 array.
        words: the generated words.
        weights: (len(words), h, w) attention over the encoder grid (rows sum to 1), as returned
            by `Captioner.attention`.
        path: where to write the PNG.
        title: optional figure title (default: the caption).
        columns: panels per row.
    """
    # A bare Figure, not pyplot: it never opens a window and leaves the session's backend alone
    # (`matplotlib.use("Agg")` here would stop a notebook's inline plots from showing).
    from matplotlib.figure import Figure

    weights = np.asarray(weights, np.float32)
    if weights.ndim != 3 or len(weights) != len(words):
        raise ValueError(f"weights must be (len(words), h, w) = ({len(words)}, h, w); got shape {weights.shape}")
    if isinstance(image, np.ndarray):
        picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    else:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    picture = picture.resize((224, 224), Image.BILINEAR)
    panels = len(words) + 1
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(2.2 * columns, 2.4 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(picture)
    axes.flat[0].set_title("image", fontsize=9)
    for ax, word, grid in zip(axes.flat[1:], words, weights):
        # Upsample the (h, w) grid to the picture; bilinear reads as regions, not tiles.
        heat = Image.fromarray(grid / max(float(grid.max()), 1e-8)).resize(picture.size, Image.BILINEAR)
        ax.imshow(picture)
        ax.imshow(np.asarray(heat), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        ax.set_title(f"{word} ({grid.max():.2f})", fontsize=9)
    fig.suptitle(title if title is not None else " ".join(words), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path

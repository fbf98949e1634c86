"""Attention maps (the image regions each generated word attended to) and a graph head's edges,
drawn with matplotlib."""

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


def plot_graph_edges(image, edges, grid_shape, path, top_k=8, title=None, rows=None):
    """Writes a PNG: the image with the strongest edges of a graph head drawn between region centres.

    Args:
        image: path of an image file, or an (H, W, 3) uint8 array.
        edges: (R, R) weights, row i how region i weighed region j (`VQAModel.graph_edges`, one
            round), R = h * w regions, row-major.
        grid_shape: (h, w) of the region grid.
        path: where to write the PNG.
        top_k: how many edges to draw, the strongest first; self-edges (i -> i) are left out.
        title: optional figure title.
        rows: optional region indices: draw only the edges these regions gather along (e.g. the
            region the question's attention peaks on); default every region's.

    Each edge is an arrow from the region that gathers (i) to the one it reads (j), its width and
    opacity its weight relative to the strongest drawn.
    """
    from matplotlib.figure import Figure

    edges = np.asarray(edges, np.float32)
    height, width = (int(n) for n in grid_shape)
    if edges.shape != (height * width, height * width):
        raise ValueError(f"edges must be (h*w, h*w) = ({height * width}, {height * width}) for grid {grid_shape}; "
                         f"got shape {edges.shape}")
    if isinstance(image, np.ndarray):
        picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    else:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    side = 224
    picture = picture.resize((side, side), Image.BILINEAR)
    off_diagonal = edges * (1.0 - np.eye(len(edges), dtype=np.float32))
    if rows is not None:
        rows = [int(r) for r in np.atleast_1d(rows)]
        if any(not 0 <= r < len(edges) for r in rows):
            raise ValueError(f"rows {rows} are not all region indices in 0..{len(edges) - 1}")
        keep = np.zeros(len(edges), bool)
        keep[rows] = True
        off_diagonal = off_diagonal * keep[:, None]
    order = [flat for flat in np.argsort(-off_diagonal, axis=None)[:top_k] if off_diagonal.flat[flat] > 0]
    strongest = max(float(off_diagonal.flat[order[0]]), 1e-8) if len(order) else 1.0

    def centre(index):
        row, column = divmod(int(index), width)
        return (column + 0.5) * side / width, (row + 0.5) * side / height

    fig = Figure(figsize=(3.2, 3.4))
    ax = fig.subplots()
    ax.imshow(picture)
    ax.axis("off")
    for flat in order:
        i, j = divmod(int(flat), len(edges))
        strength = float(off_diagonal[i, j]) / strongest
        (x0, y0), (x1, y1) = centre(i), centre(j)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color="white", lw=0.5 + 2.5 * strength, alpha=0.3 + 0.7 * strength))
        ax.plot([x0], [y0], "o", color="yellow", markersize=3)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


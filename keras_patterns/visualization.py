"""Turning maps into pictures. Computation returns arrays; this module is the separate step that
draws them (matplotlib is imported only when a figure is made)."""

import numpy as np


def _reduce_channels(a, axis=-1):
    a = np.asarray(a, dtype="float64")
    return a.sum(axis=axis) if a.ndim >= 3 else a


def heatmap(a, cmap="seismic"):
    """RGB heat map of attributions: channels summed, scaled by the max-abs, 0 maps to white.

    Args:
        a: one map (H, W, C) or (H, W), or a batch (N, H, W, C).
        cmap: a matplotlib colormap name. Defaults to `"seismic"`.

    Returns:
        float array (..., H, W, 3) in [0, 1].
    """
    import matplotlib

    a = _reduce_channels(a)
    scale = np.abs(a).reshape(a.shape[0], -1).max(1) if a.ndim == 3 else np.abs(a).max()
    scale = np.where(np.asarray(scale) == 0, 1.0, scale)
    norm = a / (scale[:, None, None] if a.ndim == 3 else scale)
    return matplotlib.colormaps[cmap]((norm + 1) / 2)[..., :3]


def graymap(a):
    """Gray map of absolute attributions (channels summed), scaled to [0, 1] per map."""
    a = np.abs(_reduce_channels(a))
    flat = a.reshape(a.shape[0], -1) if a.ndim == 3 else a.reshape(1, -1)
    scale = flat.max(1)
    scale = np.where(scale == 0, 1.0, scale)
    out = a / (scale[:, None, None] if a.ndim == 3 else scale[0])
    return np.repeat(out[..., None], 3, axis=-1)


def project(a):
    """Signal-method display of the paper (Fig. 6): x / (2 max|x|) + 1/2 per map, channels kept."""
    a = np.asarray(a, dtype="float64")
    axes = tuple(range(1, a.ndim)) if a.ndim == 4 else None
    scale = np.abs(a).max(axis=axes, keepdims=True) if axes else np.abs(a).max()
    scale = np.where(scale == 0, 1.0, scale)
    return a / (2 * scale) + 0.5


def plot_grid(images, row_labels=None, col_labels=None, path=None, cell=1.6):
    """Draws a grid of images (a list of rows, each a list of (H, W) or (H, W, 3) arrays).

    Args:
        images: list of rows of images.
        row_labels: text left of each row. Defaults to `None`.
        col_labels: title of each column. Defaults to `None`.
        path: write a PNG there (and close the figure) if given. Defaults to `None`.
        cell: inches per image. Defaults to `1.6`.

    Returns:
        The matplotlib Figure (None when written to ``path``).
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(images), max(len(r) for r in images)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows), squeeze=False)
    for i, row in enumerate(images):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                img = np.asarray(row[j])
                if img.ndim == 3 and img.shape[-1] == 1:
                    img = img[..., 0]
                if img.ndim == 3:
                    ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
                else:
                    ax.imshow(img, cmap="gray", interpolation="nearest")
            else:
                ax.axis("off")
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return None
    return fig

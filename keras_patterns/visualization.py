"""Turning maps into pictures. Computation returns arrays; this module is the separate step that
draws them (matplotlib is imported only when a colormap or a figure is needed).

Conventions: one map is ``(H, W, C)`` (or ``(H, W)``, no channel axis), a batch is
``(N, H, W, C)``; per-map scalings (max-abs, quantiles) are taken over each map of a batch.

Example:

```python
from keras_patterns import visualization as vis
maps = kp.create_analyzer("lrp.epsilon", model).analyze(x)
rgb = vis.heatmap(maps, clip_quantile=0.99)              # (N, H, W, 3) in [0, 1]
vis.plot_grid({"lrp.epsilon": maps}, images=x, predicted=preds, path="grid.png")
```
"""

from collections.abc import Mapping

import numpy as np

#: Channel reductions accepted by ``reduce=``.
REDUCTIONS = ("sum", "abs_sum", "max_abs", "l2")
#: Values of an analyzer's ``output_kind``.
OUTPUT_KINDS = ("attribution", "signal")


def _batch_axes(a):
    """Axes of one map: all but the first for a batch (rank >= 3 after reduction), else all."""
    return tuple(range(1, a.ndim)) if a.ndim >= 3 else None


def reduce_channels(a, reduce="sum", axis=-1):
    """Reduces the channel axis of maps of rank >= 3; ``(H, W)`` maps are returned unchanged.

    Args:
        a: one map (H, W, C) or (H, W), or a batch (N, H, W, C).
        reduce: ``"sum"``, ``"abs_sum"`` (sum of absolute values), ``"max_abs"`` (largest absolute
            value) or ``"l2"`` (Euclidean norm over channels). Defaults to `"sum"`.
        axis: the channel axis. Defaults to `-1`.

    Returns:
        float64 array without the channel axis (``"sum"`` keeps signs, the others are >= 0).

    Raises:
        ValueError: an unknown ``reduce``.

    Example:

    ```python
    reduce_channels(np.array([[[1.0, -3.0]]]), "max_abs")   # array([[3.]])
    ```
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}. Received: reduce={reduce!r}")
    a = np.asarray(a, dtype="float64")
    if a.ndim < 3:
        return a
    if reduce == "sum":
        return a.sum(axis=axis)
    if reduce == "abs_sum":
        return np.abs(a).sum(axis=axis)
    if reduce == "max_abs":
        return np.abs(a).max(axis=axis)
    return np.sqrt(np.square(a).sum(axis=axis))


def clip_quantile(a, q=0.99):
    """Clips each map symmetrically at the ``q``-quantile of its absolute values.

    A few extreme pixels otherwise set the colour scale and wash out the rest of the map.

    Args:
        a: one map (H, W) or a batch (N, H, W) (channels already reduced).
        q: the quantile in (0, 1]; 1 leaves the map unchanged. Defaults to `0.99`.

    Returns:
        float64 array shaped like ``a`` with values in [-t, t], t the quantile of ``|a|``.

    Raises:
        ValueError: ``q`` outside (0, 1].
    """
    if isinstance(q, bool) or not (isinstance(q, (int, float, np.floating)) and 0 < q <= 1):
        raise ValueError(f"`q` must be a number in (0, 1]. Received: q={q!r}")
    a = np.asarray(a, dtype="float64")
    axes = _batch_axes(a)
    t = np.quantile(np.abs(a), q, axis=axes, keepdims=True) if axes else np.quantile(np.abs(a), q)
    return np.clip(a, -t, t)


def normalize_symmetric(a, reduce="sum", clip_quantile=None):
    """Maps scaled into [-1, 1] by their max-abs value (0 stays 0; an all-zero map stays 0).

    Args:
        a: one map or a batch (see :func:`reduce_channels`).
        reduce: channel reduction. Defaults to `"sum"`.
        clip_quantile: if given, clip at this quantile of ``|a|`` first (see
            :func:`clip_quantile`). Defaults to `None`.

    Returns:
        float64 array without channel axis, in [-1, 1].
    """
    a = reduce_channels(a, reduce)
    if clip_quantile is not None:
        a = globals()["clip_quantile"](a, clip_quantile)
    axes = _batch_axes(a)
    scale = np.abs(a).max(axis=axes, keepdims=True) if axes else np.abs(a).max(initial=0.0)
    scale = np.where(scale == 0, 1.0, scale)
    return a / scale


def heatmap(a, cmap="seismic", reduce="sum", clip_quantile=None):
    """RGB heat map of attributions: a diverging colormap, symmetric around 0 (0 is its centre).

    Each map is scaled by its max-abs value, so +max is the colormap's top, -max its bottom and 0
    its middle (white for ``"seismic"`` and ``"bwr"``).

    Args:
        a: one map (H, W, C) or (H, W), or a batch (N, H, W, C).
        cmap: a matplotlib colormap name (a diverging one). Defaults to `"seismic"`.
        reduce: channel reduction (see :func:`reduce_channels`). Defaults to `"sum"`.
        clip_quantile: clip each map at this quantile of its absolute values first. Defaults to
            `None`.

    Returns:
        float array (..., H, W, 3) in [0, 1].

    Example:

    ```python
    rgb = heatmap(maps, clip_quantile=0.99)
    ```
    """
    import matplotlib

    norm = normalize_symmetric(a, reduce, clip_quantile)
    return matplotlib.colormaps[cmap]((norm + 1) / 2)[..., :3]


def graymap(a, reduce="sum", clip_quantile=None):
    """Gray map of absolute attributions, 0 black and each map's max-abs white.

    Args:
        a: one map (H, W, C) or (H, W), or a batch (N, H, W, C).
        reduce: channel reduction before the absolute value. Defaults to `"sum"` (the absolute value of the channel sum).
        clip_quantile: clip each map at this quantile of its absolute values first. Defaults to
            `None`.

    Returns:
        float array (..., H, W, 3) in [0, 1] (three equal channels).
    """
    out = np.abs(normalize_symmetric(a, reduce, clip_quantile))
    return np.repeat(out[..., None], 3, axis=-1)


def project(a):
    """Signal-method display of the paper (Kindermans et al. 2018, Fig. 6): x / (2 max|x|) + 1/2.

    Per map, channels kept, so 0 is mid-gray and the sign of the signal stays visible. Use it for
    PatternNet, deconvnet and guided backprop (``output_kind == "signal"``) and for inputs.

    Args:
        a: one map (H, W, C) or (H, W), or a batch (N, H, W, C).

    Returns:
        float64 array shaped like ``a``, in [0, 1].
    """
    a = np.asarray(a, dtype="float64")
    axes = tuple(range(1, a.ndim)) if a.ndim == 4 else None
    scale = np.abs(a).max(axis=axes, keepdims=True) if axes else np.abs(a).max(initial=0.0)
    scale = np.where(scale == 0, 1.0, scale)
    return a / (2 * scale) + 0.5


signal_image = project


def to_image(x):
    """Inputs as displayable images in [0, 1]: each image min-max scaled, one channel as gray RGB.

    Args:
        x: one image (H, W, C) or (H, W), or a batch (N, H, W, C).

    Returns:
        float64 array (..., H, W, 3) in [0, 1] (channels other than 1 and 3 are summed to gray).
    """
    x = np.asarray(x, dtype="float64")
    batch = x.ndim == 4
    if not batch:
        x = x[None] if x.ndim == 3 else x[None, ..., None]
    if x.shape[-1] != 3:
        x = np.repeat(x.sum(-1, keepdims=True), 3, axis=-1)
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = x.max(axis=(1, 2, 3), keepdims=True) - lo
    out = (x - lo) / np.where(span == 0, 1.0, span)
    return out if batch else out[0]


def overlay(a, image, alpha=0.6, cmap="seismic", reduce="sum", clip_quantile=None):
    """A heat map blended over the gray version of the input image.

    Each pixel is ``(1 - w) * gray + w * heat`` with ``w = alpha * |normalized map|``, so pixels
    without relevance show the image and strongly relevant ones the heat-map colour.

    Args:
        a: maps (H, W, C) or a batch (N, H, W, C).
        image: the input(s), same spatial shape as ``a``.
        alpha: largest weight of the heat map, in [0, 1]. Defaults to `0.6`.
        cmap, reduce, clip_quantile: as in :func:`heatmap`.

    Returns:
        float array (..., H, W, 3) in [0, 1].

    Raises:
        ValueError: ``alpha`` outside [0, 1], or maps and images of different spatial shape.
    """
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float, np.floating)) and 0 <= alpha <= 1):
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    heat = heatmap(a, cmap, reduce, clip_quantile)
    gray = to_image(image).mean(axis=-1, keepdims=True)
    if gray.shape[:-1] != heat.shape[:-1]:
        raise ValueError(
            f"`a` and `image` must have the same spatial shape. Received: maps {np.shape(a)} and "
            f"images {np.shape(image)}"
        )
    w = alpha * np.abs(normalize_symmetric(a, reduce, clip_quantile))[..., None]
    return (1 - w) * gray + w * heat


def output_kind(method):
    """``"signal"`` or ``"attribution"`` for an analyzer, analyzer class or registry name.

    Reads the analyzer's capability flag ``output_kind`` (for a name, the registry's
    :func:`~keras_patterns.registry.capabilities`), so callers never hard-code method names.
    Unknown names and objects without the flag are attributions.
    """
    if isinstance(method, str):
        from keras_patterns import registry

        try:
            kind = registry.capabilities(method)["output_kind"]
        except KeyError:
            kind = "attribution"
    else:
        kind = getattr(method, "output_kind", "attribution")
    return kind if kind in OUTPUT_KINDS else "attribution"


def render(maps, kind="attribution", **kwargs):
    """Maps as RGB pictures: :func:`project` for signals, :func:`heatmap` for attributions.

    Args:
        maps: a batch (N, H, W, C).
        kind: ``"signal"`` or ``"attribution"`` (an analyzer's ``output_kind``). Defaults to
            `"attribution"`.
        **kwargs: passed to :func:`heatmap` (attributions only).

    Returns:
        float array (N, H, W, 3) in [0, 1].
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"`kind` must be one of {OUTPUT_KINDS}. Received: kind={kind!r}")
    if kind == "signal":
        pics = project(maps)
        return pics if pics.shape[-1] == 3 else np.repeat(project(reduce_channels(maps)[..., None]), 3, -1)
    return heatmap(maps, **kwargs)


def _label(k, class_names):
    k = int(k)
    return str(class_names[k]) if class_names is not None and 0 <= k < len(class_names) else str(k)


def plot_grid(maps_by_method, images=None, row_labels=None, col_labels=None, path=None, cell=1.6,
              titles=None, title=None, predicted=None, target=None, class_names=None, kinds=None,
              colorbar=False, clip_quantile=None, cmap="seismic", dpi=100):
    """Draws a methods x samples grid of explanations, or a plain grid of pictures.

    With a dict ``{method: maps}``, one row per method (plus a first row with the ``images``), one
    column per sample; signals are drawn with :func:`project`, attributions with :func:`heatmap`
    (the kind is read from the analyzer class's ``output_kind``, or from ``kinds``). Column titles
    give the sample, the predicted and the target class. With a list of rows of pictures
    ((H, W) or (H, W, 3) arrays), the pictures are drawn as they are.

    Args:
        maps_by_method: ``{method name: maps (N, H, W, C)}``, or a list of rows of pictures.
        images: the inputs (N, H, W, C) shown in the first row. Defaults to `None`.
        row_labels: text left of each row. Defaults to the method names (and ``"input"``).
        col_labels: title of each column. Defaults to the sample number and classes.
        path: write a PNG there (and close the figure) if given. Defaults to `None`.
        cell: inches per picture. Defaults to `1.6`.
        titles: alias of ``col_labels``. Defaults to `None`.
        title: a title above the grid (e.g. the epoch). Defaults to `None`.
        predicted: predicted class per sample, shown in the column titles. Defaults to `None`.
        target: target class per sample, shown in the column titles. Defaults to `None`.
        class_names: names of the classes indexed by ``predicted``/``target``. Defaults to `None`.
        kinds: ``{method: "signal" | "attribution"}`` overriding the registry. Defaults to `None`.
        colorbar: add one colour bar (``relevance / max |relevance|``, -1 to 1) at the right, the scale
            of the attribution rows (drawn only if there is one). Defaults to `False`.
        clip_quantile: passed to :func:`heatmap`. Defaults to `None`.
        cmap: the heat-map colormap. Defaults to `"seismic"`.
        dpi: resolution of the PNG. Defaults to `100`.

    Returns:
        The matplotlib Figure (None when written to ``path``).

    Example:

    ```python
    plot_grid({"gradient": g, "pattern.net": s}, images=x, predicted=logits.argmax(1),
              target=y, class_names=CLASS_NAMES, title="epoch 3", path="grid.png")
    ```
    """
    col_labels = col_labels if col_labels is not None else titles
    if not isinstance(maps_by_method, Mapping):
        return _draw(list(maps_by_method), row_labels, col_labels, path, cell, title, None, dpi)
    if not maps_by_method:
        raise ValueError("`maps_by_method` must hold at least one method. Received: an empty dict")
    kinds = dict(kinds or {})
    rows, labels, cbar_rows = [], [], []
    if images is not None:
        rows.append(list(to_image(np.asarray(images))))
        labels.append("input")
    for name, maps in maps_by_method.items():
        kind = kinds.get(name, output_kind(name))
        if kind == "attribution":
            cbar_rows.append(len(rows))
        extra = {"clip_quantile": clip_quantile, "cmap": cmap} if kind == "attribution" else {}
        rows.append(list(render(np.asarray(maps), kind, **extra)))
        labels.append(f"{name}\n({kind})")
    n = max(len(r) for r in rows)
    if col_labels is None:
        col_labels = []
        for i in range(n):
            text = f"#{i}"
            if predicted is not None and i < len(predicted):
                text += f"\npred {_label(predicted[i], class_names)}"
            if target is not None and i < len(target):
                text += f"\ntrue {_label(target[i], class_names)}"
            col_labels.append(text)
    return _draw(rows, row_labels or labels, col_labels, path, cell, title,
                 cbar_rows if colorbar else None, dpi, cmap)


def _as_rgb(img):
    """One picture as RGB in [0, 1]: RGB is clipped, a 2-D (or 1-channel) picture min-max scaled."""
    img = np.asarray(img, dtype="float64")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        return np.clip(img[..., :3], 0, 1)
    lo, span = (img.min(), np.ptp(img)) if img.size else (0.0, 0.0)
    return np.repeat(((img - lo) / (span if span > 0 else 1.0))[..., None], 3, axis=-1)


def _row_label_inches(row_labels):
    """Width of the left margin: at least 1.2 in, more for long labels (8 pt text, at most
    0.075 in per character, plus 4 pt of offset and a margin)."""
    if row_labels is None:
        return 0.05
    longest = max([len(line) for t in row_labels for line in str(t).split("\n")] or [0])
    return max(1.2, 0.075 * longest + 0.15)


def _draw(images, row_labels, col_labels, path, cell, title, cbar_rows, dpi, cmap="seismic"):
    """Draws the grid as one mosaic image with text around it (one matplotlib Axes: fast)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(images), max(len(r) for r in images)
    pics = [[_as_rgb(p) for p in row] for row in images]
    h = max(p.shape[0] for row in pics for p in row)
    w = max(p.shape[1] for row in pics for p in row)
    gap = max(1, round(0.06 * max(h, w)))
    canvas = np.ones((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap, 3))
    for i, row in enumerate(pics):
        for j, p in enumerate(row):
            top, left = i * (h + gap) + (h - p.shape[0]) // 2, j * (w + gap) + (w - p.shape[1]) // 2
            canvas[top:top + p.shape[0], left:left + p.shape[1]] = p
    n_title_lines = max([str(t).count("\n") + 1 for t in (col_labels or [])] or [0])
    top_in = 0.15 * n_title_lines + (0.35 if title else 0.05)
    left_in = _row_label_inches(row_labels)
    right_in = 0.7 if cbar_rows else 0.05
    fig_w, fig_h = cell * n_cols + left_in + right_in, cell * n_rows * h / w + top_in + 0.05
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes([left_in / fig_w, 0.05 / fig_h, cell * n_cols / fig_w, cell * n_rows * h / w / fig_h])
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    # Text offsets in points, not picture pixels: the same distance whatever the picture size.
    above = matplotlib.transforms.offset_copy(ax.transData, fig=fig, y=2, units="points")
    left_of = matplotlib.transforms.offset_copy(ax.transData, fig=fig, x=-4, units="points")
    for j, text in enumerate((col_labels or [])[:n_cols]):
        ax.text(j * (w + gap) + w / 2, -0.5, str(text), ha="center", va="bottom", fontsize=8, transform=above)
    for i, text in enumerate((row_labels or [])[:n_rows]):
        ax.text(-0.5, i * (h + gap) + h / 2, str(text), ha="right", va="center", fontsize=8, transform=left_of)
    if cbar_rows:
        mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-1, 1), cmap)
        bar_ax = fig.add_axes([(fig_w - right_in + 0.1) / fig_w, 0.05 / fig_h + 0.1 * cell * n_rows * h / w / fig_h,
                               0.12 / fig_w, 0.8 * cell * n_rows * h / w / fig_h])
        bar = fig.colorbar(mappable, cax=bar_ax, ticks=[-1, 0, 1])
        bar.ax.tick_params(labelsize=6)
        bar.set_label("relevance / max |relevance|", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / fig_h, va="top")
    if path is not None:
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return None
    return fig

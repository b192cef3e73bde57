"""Ground-truth localization metrics (Arras, Osman & Samek 2022, "CLEVR-XAI")."""

import numpy as np

from keras_patterns.evaluation._validate import as_float_array, channel_summed


def localization(maps, masks):
    """How much of each map's positive relevance lies on the ground-truth region.

    Arras, Osman & Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
    neural network explanations", Information Fusion 81, 2022 (arXiv 2003.07258).

    Maps with a channel axis (channels last, one more axis than ``masks``) are summed over it
    first; then only the positive part ``R = max(map, 0)`` counts.

    - ``"relevance_mass_accuracy"``: ``sum(R on the mask) / sum(R)``; 0 for a map without
      positive relevance (none of it lies on the mask).
    - ``"relevance_rank_accuracy"``: with ``K`` the number of mask pixels, the fraction of the
      ``K`` pixels of largest ``R`` that lie on the mask. Only pixels with ``R > 0`` can count, so
      a map with fewer than ``K`` positive pixels cannot reach 1, whatever the order of its zeros.
      Ties are broken by pixel index (row-major), deterministically.
    - ``"pointing_game"``: 1.0 when the pixel of largest ``R`` lies on the mask (the first such
      pixel on ties), 0.0 otherwise or when ``R`` is all zero (Zhang et al. 2018).

    Args:
        maps: ``(n, ...)`` relevance maps, shaped like ``masks`` or with one trailing channel axis.
        masks: ``(n, ...)`` ground-truth masks, boolean or 0/1, each with at least one pixel set.

    Returns:
        A dict of float64 arrays ``(n,)``: ``"relevance_mass_accuracy"``,
        ``"relevance_rank_accuracy"``, ``"pointing_game"``.

    Raises:
        ValueError: mismatched shapes, non-binary masks, an empty mask, non-finite maps.

    Example:

    ```python
    scores = kp.evaluation.localization(analyzer.analyze(x), masks)
    scores["relevance_mass_accuracy"].mean()
    ```
    """
    masks = np.asarray(masks.numpy() if hasattr(masks, "numpy") else masks)
    if masks.dtype.kind not in "biuf":
        raise TypeError(f"`masks` must be boolean or 0/1 numbers. Received: dtype {masks.dtype}")
    if masks.ndim < 2:
        raise ValueError(f"`masks` must have shape (n, ...), one mask per sample. Received: shape {masks.shape}")
    if not np.all((masks == 0) | (masks == 1)):
        bad = masks[(masks != 0) & (masks != 1)].flat[0].item()
        raise ValueError(f"`masks` must be boolean or 0/1. Received: a value {bad!r}")
    m = masks.astype(bool).reshape(len(masks), -1)
    empty = np.flatnonzero(~m.any(axis=1))
    if empty.size:
        raise ValueError(
            f"Every mask must mark at least one pixel (the rank accuracy divides by its size). "
            f"Received: empty masks at samples {empty.tolist()}"
        )
    r = channel_summed("maps", as_float_array("maps", maps), masks.shape, ref_arg="masks")
    r = np.maximum(r.reshape(len(r), -1), 0.0)
    n = len(r)
    total = r.sum(axis=1)
    inside = np.where(m, r, 0.0).sum(axis=1)
    mass = np.divide(inside, total, out=np.zeros(n), where=total > 0)
    k = m.sum(axis=1)
    order = np.argsort(-r, axis=1, kind="stable")
    ranked_hits = np.take_along_axis(m & (r > 0), order, axis=1)
    rank = np.array([ranked_hits[i, :k[i]].sum() / k[i] for i in range(n)], dtype="float64")
    top = order[:, 0] if r.shape[1] else np.zeros(n, int)
    pointing = np.where(total > 0, m[np.arange(n), top], False).astype("float64")
    return {"relevance_mass_accuracy": mass, "relevance_rank_accuracy": rank, "pointing_game": pointing}

"""A slow NumPy replica of the pattern statistics and estimator, with explicit patches.

Written independently of keras_patterns.patterns (no filter-gradient trick): every convolution
output position is turned into an explicit patch row (zero padding included as observations, TF's
SAME split floor(total / 2) before), then the estimator of innvestigate-spec.md section 1.4 /
DESIGN.md section 4 is applied unit by unit in float64.
"""

import itertools

import numpy as np


def conv_patches(x, ksize, strides, dilation, padding):
    """Patches of a channels_last input: (rows, prod(ksize), C), rows in (sample, position) order."""
    x = np.asarray(x, dtype="float64")
    n, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    nd = len(ksize)
    pads, out = [], []
    for i in range(nd):
        eff = (ksize[i] - 1) * dilation[i] + 1
        if padding == "valid":
            pads.append((0, 0))
            out.append((spatial[i] - eff) // strides[i] + 1)
        elif padding == "same":
            o = -(-spatial[i] // strides[i])
            total = max((o - 1) * strides[i] + eff - spatial[i], 0)
            pads.append((total // 2, total - total // 2))
            out.append(o)
        elif padding == "causal":
            pads.append((eff - 1, 0))
            out.append((spatial[i] - 1) // strides[i] + 1)
        else:
            raise ValueError(padding)
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    rows = np.zeros((n,) + tuple(out) + tuple(ksize) + (c,))
    for opos in itertools.product(*[range(o) for o in out]):
        for kpos in itertools.product(*[range(k) for k in ksize]):
            idx = tuple(opos[i] * strides[i] + kpos[i] * dilation[i] for i in range(nd))
            rows[(slice(None),) + opos + kpos] = xp[(slice(None),) + idx]
    return rows.reshape(n * int(np.prod(out)), int(np.prod(ksize)), c)


def unit_estimator(rows, w, y0, mask):
    """The pattern of one unit: rows (R, D), w (D,), y0 (R,), mask (R,) -> a (D,)."""
    cnt = mask.sum()
    if cnt == 0:
        ex = exy = np.zeros(rows.shape[1])
    else:
        ex = (rows * mask[:, None]).sum(0) / cnt
        exy = (rows * (y0 * mask)[:, None]).sum(0) / cnt
    ey = y0.mean()
    cov = exy - ex * ey
    d = float(w @ cov)
    return cov / (d if d != 0 else 1.0)


def _mask(out, pattern_type):
    if pattern_type == "linear":
        return np.ones_like(out)
    if pattern_type in ("relu", "relu.positive"):
        return (out > 0).astype("float64")
    return (out <= 0).astype("float64")


def replica_pattern(kind, kernel, x, out, pattern_type, conv=None):
    """The pattern of one layer.

    Args:
        kind: "dense", "conv" or "depthwise".
        kernel: the layer kernel.
        x: the layer input (channels_last).
        out: the tensor whose sign gives the mask (layer output after its activation), shaped like
            the layer output.
        pattern_type: "linear", "relu" or "relu.negative".
        conv: dict(ksize, strides, dilation, padding) for convolutions.

    Returns:
        An array shaped like ``kernel`` (float64).
    """
    kernel = np.asarray(kernel, dtype="float64")
    out = np.asarray(out, dtype="float64")
    if kind == "depthwise":
        rows3 = conv_patches(x, **conv)
        k = rows3.shape[1]
        cin, mult = kernel.shape[-2], kernel.shape[-1]
        out2 = out.reshape(-1, cin * mult)
        a = np.zeros((k, cin, mult))
        for c in range(cin):
            for j in range(mult):
                w = kernel[..., c, j].reshape(k)
                rows = rows3[:, :, c]
                a[:, c, j] = unit_estimator(rows, w, rows @ w, _mask(out2[:, c * mult + j], pattern_type))
        return a.reshape(kernel.shape)
    if kind == "dense":
        rows = np.asarray(x, dtype="float64").reshape(-1, kernel.shape[0])
    else:
        rows3 = conv_patches(x, **conv)
        rows = rows3.reshape(rows3.shape[0], -1)
    w2 = kernel.reshape(rows.shape[1], -1)
    out2 = out.reshape(-1, w2.shape[1])
    y0 = rows @ w2
    a = np.zeros_like(w2)
    for j in range(w2.shape[1]):
        a[:, j] = unit_estimator(rows, w2[:, j], y0[:, j], _mask(out2[:, j], pattern_type))
    return a.reshape(kernel.shape)

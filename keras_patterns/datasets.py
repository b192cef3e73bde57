"""Built-in synthetic data (no download): images whose class is carried by a shape, hidden under a
structured distractor, in the spirit of the paper's signal + distractor example."""

import numpy as np

CLASS_NAMES = ("horizontal bar", "vertical bar", "square")


def make_shapes(n=2000, size=24, seed=0, distractor=1.0, noise=0.1):
    """Grayscale images with one shape each (the signal) on a random ramp background (the distractor).

    Class 0 is a horizontal bar, 1 a vertical bar, 2 a square outline, each at a random position.
    The background is a random linear ramp plus a random blob, which a classifier must learn to
    cancel: the filters it learns follow the distractor, the patterns follow the shapes.

    Args:
        n: number of images. Defaults to `2000`.
        size: image side in pixels (at least 12). Defaults to `24`.
        seed: RNG seed. Defaults to `0`.
        distractor: scale of the background. Defaults to `1.0`.
        noise: standard deviation of white noise. Defaults to `0.1`.

    Returns:
        ``(x, y, signal)``: images (n, size, size, 1) float32, labels (n,) int32, and the shapes
        alone (n, size, size, 1), the ground-truth signal.

    Raises:
        ValueError: for ``size < 12`` or ``n < 0``.
    """
    if size < 12:
        raise ValueError(f"`size` must be at least 12. Received: size={size}")
    if n < 0:
        raise ValueError(f"`n` must be >= 0. Received: n={n}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype("int32")
    signal = np.zeros((n, size, size), "float32")
    length = size // 3
    for i in range(n):
        r, c = rng.integers(1, size - length - 1, 2)
        if y[i] == 0:
            signal[i, r + length // 2, c:c + length] = 1.0
        elif y[i] == 1:
            signal[i, r:r + length, c + length // 2] = 1.0
        else:
            signal[i, r, c:c + length] = signal[i, r + length - 1, c:c + length] = 1.0
            signal[i, r:r + length, c] = signal[i, r:r + length, c + length - 1] = 1.0
    grid = np.linspace(-1, 1, size, dtype="float32")
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    slopes = rng.normal(0, distractor, (n, 2, 1, 1)).astype("float32")
    centers = rng.uniform(-1, 1, (n, 2, 1, 1)).astype("float32")
    blob = np.exp(-((rows - centers[:, 0]) ** 2 + (cols - centers[:, 1]) ** 2) / 0.2)
    background = slopes[:, 0] * rows + slopes[:, 1] * cols
    background += rng.normal(0, distractor, (n, 1, 1)).astype("float32") * blob
    x = signal + background + rng.normal(0, noise, signal.shape).astype("float32")
    return x[..., None].astype("float32"), y, signal[..., None]

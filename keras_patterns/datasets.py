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
        ValueError: ``n`` not an int >= 0, ``size`` not an int >= 12, ``distractor`` or ``noise``
            not a finite number >= 0.
    """
    from keras_patterns import validation

    n = validation.non_negative_int("n", n)
    size = validation.integer("size", size, minimum=12)
    distractor = validation.finite_number("distractor", distractor, minimum=0)
    noise = validation.finite_number("noise", noise, minimum=0)
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


#: A 5x7 bitmap font of the digits 0-9 (``#`` = ink), for :func:`make_digits`.
DIGIT_FONT = (
    (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),  # 0
    ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),  # 1
    (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),  # 2
    ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),  # 3
    ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),  # 4
    ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),  # 5
    ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),  # 6
    ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),  # 7
    (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),  # 8
    (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),  # 9
)


def _digit_glyphs():
    """The font as a float32 array (10, 14, 10): each 5x7 glyph scaled 2x."""
    glyphs = np.array([[[c == "#" for c in row] for row in g] for g in DIGIT_FONT], "float32")
    return glyphs.repeat(2, axis=1).repeat(2, axis=2)


def make_digits(n=1000, seed=0, size=16, noise=0.2, max_shift=2):
    """Grayscale images of the digits 0-9 drawn from a built-in bitmap font (no download).

    Each image holds one digit (a 5x7 glyph scaled to 10x14 pixels) at a random position in a
    ``size`` x ``size`` frame, with a random stroke intensity in [0.7, 1.0], a random constant
    background offset and Gaussian pixel noise. A tiny stand-in for MNIST that a small CNN learns
    in a few seconds.

    Args:
        n: number of images. Defaults to `1000`.
        seed: RNG seed. Defaults to `0`.
        size: image side in pixels (at least 16). Defaults to `16`.
        noise: standard deviation of the pixel noise. Defaults to `0.2`.
        max_shift: largest shift of the digit from the frame's center, in pixels, per axis (the
            shift is also clipped to the frame). Defaults to `2`.

    Returns:
        ``(x, y)``: images (n, size, size, 1) float32 and labels (n,) int32, the digit shown.

    Raises:
        ValueError: for ``n < 0``, ``size < 16``, ``noise < 0`` or ``max_shift < 0``.

    Example:

    ```python
    x, y = kp.datasets.make_digits(2000, seed=0)   # x.shape == (2000, 16, 16, 1)
    ```
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"`n` must be an int >= 0. Received: n={n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"`size` must be an int >= 16. Received: size={size!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be a finite number >= 0. Received: noise={noise!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"`max_shift` must be an int >= 0. Received: max_shift={max_shift!r}")
    glyphs = _digit_glyphs()
    gh, gw = glyphs.shape[1:]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype("int32")
    x = np.zeros((n, size, size), "float32")
    r0, c0 = (size - gh) // 2, (size - gw) // 2
    dr = np.clip(rng.integers(-max_shift, max_shift + 1, n), -r0, size - gh - r0)
    dc = np.clip(rng.integers(-max_shift, max_shift + 1, n), -c0, size - gw - c0)
    ink = rng.uniform(0.7, 1.0, n).astype("float32")
    for i in range(n):
        r, c = r0 + dr[i], c0 + dc[i]
        x[i, r:r + gh, c:c + gw] = ink[i] * glyphs[y[i]]
    x += rng.uniform(-0.1, 0.1, (n, 1, 1)).astype("float32")
    x += rng.normal(0, noise, x.shape).astype("float32")
    return x[..., None], y

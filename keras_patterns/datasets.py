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


# ------------------------------------------------------------------------------------------------
# XAI-TRIS-style tetromino benchmark (Clark, Wilming and Haufe 2024, arXiv 2306.12816)
# ------------------------------------------------------------------------------------------------

import collections  # noqa: E402  (kept next to the code that uses it)

#: What :func:`make_tetrominoes` returns: images, labels and the ground-truth masks.
TetrominoData = collections.namedtuple("TetrominoData", ["x", "y", "masks"])

TETROMINO_SCENARIOS = ("linear", "multiplicative", "translations_rotations", "xor")
TETROMINO_BACKGROUNDS = ("white", "correlated")

#: The tetrominoes of XAI-TRIS as 3x2 cell grids (rows, columns): "T" (class 0) and "L" (class 1).
TETROMINO_T = ((1, 0), (1, 1), (1, 0))
TETROMINO_L = ((1, 0), (1, 0), (1, 1))

#: XAI-TRIS's signal weights alpha per (image side, scenario, background), from their published
#: data configuration (8x8 and 64x64 modes); used when ``snr=None``.
TETROMINO_SNR = {
    8: {"linear": {"white": 0.18, "correlated": 0.0125},
        "multiplicative": {"white": 0.7, "correlated": 0.1},
        "translations_rotations": {"white": 0.65, "correlated": 0.2},
        "xor": {"white": 0.35, "correlated": 0.15}},
    64: {"linear": {"white": 0.03, "correlated": 0.02},
         "multiplicative": {"white": 0.2, "correlated": 0.65},
         "translations_rotations": {"white": 0.575, "correlated": 0.375},
         "xor": {"white": 0.35, "correlated": 0.15}},
}


def gaussian_smooth(images, sigma, truncate=4.0):
    """Gaussian smoothing of the two leading image axes, as ``scipy.ndimage.gaussian_filter``.

    Separable correlation with a normalised Gaussian kernel of radius ``int(truncate * sigma +
    0.5)`` and scipy's default border mode ``"reflect"`` (half-sample symmetric: ``d c b a | a b c
    d``), repeated for kernels wider than the image.

    Args:
        images: array (n, H, W); every image is smoothed on its own.
        sigma: standard deviation in pixels (> 0).
        truncate: kernel radius in standard deviations. Defaults to `4.0`.

    Returns:
        float64 array (n, H, W).
    """
    images = np.asarray(images, dtype="float64")
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype="float64")
    kernel = np.exp(-0.5 * (offsets / float(sigma)) ** 2)
    kernel /= kernel.sum()
    out = images
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        length = out.shape[axis]
        acc = np.zeros_like(out)
        for k, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(k, k + length), axis=axis)
        out = acc
    return out


def _tetromino(shape, cell):
    """A tetromino (3x2 cells) scaled to ``cell`` x ``cell`` pixels per cell, float64 0/1."""
    return np.kron(np.array(shape, dtype="float64"), np.ones((cell, cell)))


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


def make_tetrominoes(n=1000, size=64, scenario="linear", background="white", snr=None, seed=0,
                     smoothing_sigma=None):
    """Two-class images with tetromino signals and known ground truth, in the style of XAI-TRIS.

    Follows the generative model of XAI-TRIS (Clark, Wilming and Haufe, "XAI-TRIS: non-linear image
    benchmarks to quantify false positive post-hoc attribution of feature importance", Machine
    Learning 2024, arXiv 2306.12816). Each image mixes a signal pattern ``P`` (tetrominoes "T" and
    "L" of 3x2 cells) with a background ``B`` drawn from a Gaussian:

    - ``"linear"``: class 0 has a T at the first position, class 1 an L at the second;
      ``x = c * (alpha * P / ||P||_F + (1 - alpha) * B / ||B||_F)``.
    - ``"multiplicative"``: the same patterns, ``x = c * (1 - alpha * P) * B`` (the tetromino
      dims the background).
    - ``"translations_rotations"``: a T (class 0) or an L (class 1), rotated by a random multiple
      of 90 degrees and placed at a random position; additive as ``"linear"``.
    - ``"xor"``: both tetrominoes in every image, with signs ``(s_T, s_L)`` from
      ``{(+,+), (-,-)}`` for class 0 and ``{(+,-), (-,+)}`` for class 1 (each a quarter of the
      images); additive as ``"linear"``.

    ``||.||_F`` is the Frobenius norm over the whole data set (as XAI-TRIS's ``normalise_data``),
    so ``alpha`` sets the ratio of total signal to total background energy, and ``c`` scales the
    data set to ``max |x| = 1``. The background is white Gaussian noise (``"white"``) or that
    noise smoothed by a Gaussian kernel (``"correlated"``, ``sigma`` 3 pixels at 8x8 and 10 at
    64x64, scipy's ``gaussian_filter`` with border mode ``"reflect"``).

    Geometry (XAI-TRIS's two modes): at ``size=8`` a cell is one pixel and the tetrominoes sit at
    (row, column) (1, 1) and (4, 5); at ``size=64`` a cell is 8x8 pixels (4x4 for
    ``"translations_rotations"``), the positions are (8, 8) and (32, 40), and every pattern is
    smoothed by a Gaussian of sigma 1.5 pixels. Other multiples of 8 scale these numbers by
    ``size / 64`` (cells ``size // 8``, pattern smoothing when a cell is larger than 3 pixels,
    background sigma ``10 * size / 64``): an extension of ours, not part of XAI-TRIS.

    Ground-truth masks (binary): for ``"linear"``, ``"multiplicative"`` and ``"xor"`` the union of
    both tetromino positions, the same for every image, as XAI-TRIS's evaluation uses (a pixel at
    either position is associated with the class in every image: its absence of a T is as
    informative as the presence of an L); for ``"translations_rotations"`` the image's own
    tetromino. Smoothed patterns are thresholded at 0.05 (of a peak of 1), as in XAI-TRIS.

    Deviations from XAI-TRIS: the labels are shuffled by ``seed`` instead of split off sorted
    halves (their train/validation/test splitting is left to the user); a single ``seed`` drives
    one ``numpy.random.Generator``, so values differ from their files; any ``n`` is allowed: the
    classes (and for ``"xor"`` the two sign pairs within each class) are balanced up to one
    image; the ImageNet backgrounds and the distractor variants of their later code are not
    included; images are float32 (their files are float16).

    Args:
        n: number of images (>= 1). Defaults to `1000`.
        size: image side in pixels, a multiple of 8 (XAI-TRIS uses 8 and 64). Defaults to `64`.
        scenario: ``"linear"``, ``"multiplicative"``, ``"translations_rotations"`` or ``"xor"``.
            Defaults to `"linear"`.
        background: ``"white"`` or ``"correlated"``. Defaults to `"white"`.
        snr: the signal weight ``alpha`` in [0, 1]; `None` takes XAI-TRIS's value for the
            scenario and background (:data:`TETROMINO_SNR`; the 64x64 table for sizes other
            than 8). Defaults to `None`.
        seed: RNG seed. Defaults to `0`.
        smoothing_sigma: the background's smoothing in pixels for ``"correlated"`` (`None`: the
            default above). Must be `None` for ``"white"``. Defaults to `None`.

    Returns:
        A :data:`TetrominoData` namedtuple ``(x, y, masks)``: images (n, size, size, 1) float32 in
        [-1, 1], labels (n,) int32 in {0, 1}, and the ground-truth masks (n, size, size, 1)
        float32 with values 0 and 1.

    Raises:
        ValueError: for an unknown ``scenario`` or ``background``, ``n < 1``, ``size`` not a
            positive multiple of 8, ``snr`` outside [0, 1], a non-positive ``smoothing_sigma``,
            or a ``smoothing_sigma`` with the white background.

    Example:

    ```python
    x, y, masks = kp.datasets.make_tetrominoes(2000, size=8, scenario="xor")
    ```
    """
    n = _check_int("n", n, 1)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8 or size % 8:
        raise ValueError(f"`size` must be a positive multiple of 8 (XAI-TRIS uses 8 and 64). "
                         f"Received: size={size!r}")
    size = int(size)
    if scenario not in TETROMINO_SCENARIOS:
        raise ValueError(f"`scenario` must be one of {list(TETROMINO_SCENARIOS)}. "
                         f"Received: scenario={scenario!r}")
    if background not in TETROMINO_BACKGROUNDS:
        raise ValueError(f"`background` must be one of {list(TETROMINO_BACKGROUNDS)}. "
                         f"Received: background={background!r}")
    if snr is None:
        snr = TETROMINO_SNR[8 if size == 8 else 64][scenario][background]
    if isinstance(snr, bool) or not isinstance(snr, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(snr) <= 1.0:
        raise ValueError(f"`snr` must be a number in [0, 1] (the signal weight alpha). "
                         f"Received: snr={snr!r}")
    alpha = float(snr)
    if smoothing_sigma is not None:
        if background != "correlated":
            raise ValueError("`smoothing_sigma` only applies to background='correlated'. Received: "
                             f"smoothing_sigma={smoothing_sigma!r} with background={background!r}")
        if not np.isfinite(smoothing_sigma) or smoothing_sigma <= 0:
            raise ValueError(f"`smoothing_sigma` must be a finite number > 0. "
                             f"Received: smoothing_sigma={smoothing_sigma!r}")
    elif background == "correlated":
        smoothing_sigma = 3.0 if size == 8 else 10.0 * size / 64

    rng = np.random.default_rng(seed)
    scale = size // 8
    rigid = scenario == "translations_rotations"
    cell = max(1, scale // 2) if rigid else scale
    pattern_sigma = 1.5 * size / 64 if cell > 3 else None
    shapes = (_tetromino(TETROMINO_T, cell), _tetromino(TETROMINO_L, cell))
    positions = ((1 * scale, 1 * scale), (4 * scale, 5 * scale))

    def placed(shape, pos):
        img = np.zeros((size, size))
        img[pos[0]:pos[0] + shape.shape[0], pos[1]:pos[1] + shape.shape[1]] = shape
        return img

    def smooth(imgs):
        return imgs if pattern_sigma is None else gaussian_smooth(imgs, pattern_sigma)

    fixed = smooth(np.stack([placed(s, p) for s, p in zip(shapes, positions)]))  # (2, size, size)
    union = (np.abs(fixed).max(axis=0) >= 0.05).astype("float64")
    if scenario == "xor":
        y = rng.permutation(np.arange(n) % 2).astype("int32")
        combo = 2 * y  # 0: (+,+), 1: (-,-) for class 0; 2: (+,-), 3: (-,+) for class 1
        for label in (0, 1):
            members = np.flatnonzero(y == label)
            combo[members] += rng.permutation(np.arange(members.size) % 2)
        signs = np.array([(1, 1), (-1, -1), (1, -1), (-1, 1)], dtype="float64")[combo]
        signal = signs[:, 0, None, None] * fixed[0] + signs[:, 1, None, None] * fixed[1]
        masks = np.broadcast_to(union, (n, size, size))
    else:
        y = rng.permutation(np.arange(n) % 2).astype("int32")
        if rigid:
            signal = np.zeros((n, size, size))
            turns = rng.integers(0, 4, n)
            for i in range(n):
                shape = np.rot90(shapes[y[i]], k=turns[i])
                r = rng.integers(0, size - shape.shape[0] + 1)
                c = rng.integers(0, size - shape.shape[1] + 1)
                signal[i] = placed(shape, (r, c))
            signal = smooth(signal)
            masks = (signal >= 0.05).astype("float64")
        else:
            signal = fixed[y]
            masks = np.broadcast_to(union, (n, size, size))

    noise = rng.normal(0.0, 0.5, (n, size, size))
    if background == "correlated":
        noise = gaussian_smooth(noise, smoothing_sigma)

    def fro(a):
        norm = np.linalg.norm(a.ravel())
        return a if norm == 0 else a / norm

    if scenario == "multiplicative":
        x = (1.0 - alpha * signal) * noise
    else:
        x = alpha * fro(signal) + (1.0 - alpha) * fro(noise)
    peak = np.abs(x).max()
    if peak > 0:
        x = x / peak
    return TetrominoData(x[..., None].astype("float32"), y,
                         np.ascontiguousarray(masks[..., None], dtype="float32"))

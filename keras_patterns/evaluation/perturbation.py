"""Region perturbation curves (Samek et al. 2017), AOPC, deletion and insertion AUCs.

The image is cut into non-overlapping square patches; a map ranks the patches by the sum of its
values inside each; the patches are replaced one after the other (most relevant first, "MoRF")
and the model's output for the selected class is recorded after each step. A good map makes the
output fall fast. The paper of PatternNet/PatternAttribution (Kindermans et al. 2018, Fig. 4) uses
9x9 patches replaced by a mean per colour channel.

All perturbed images of a batch (every sample, every step) are built in NumPy and sent through one
compiled model call per ``batch_size`` rows; the compiled call is cached per model.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_patterns.evaluation._validate import (
    as_float_array, channel_summed, check_choice, check_positive_int,
)
from keras_patterns.graph.layers import layer_activation

ORDERS = ("morf", "lerf", "random")
REPLACEMENTS = ("mean", "patch_mean", "zeros", "uniform", "blur")
OUTPUTS = ("logit", "probability")

#: model -> {(input shape, dtype, softmax): compiled call}; weak, so that models can be freed.
_COMPILED = weakref.WeakKeyDictionary()


def region_perturbation(model, x, maps, patch_size=9, steps=None, order="morf", replacement="mean",
                        output="logit", neuron_selection=None, batch_size=64, seed=0):
    """Region-perturbation (deletion) curves: the output after replacing 0, 1, ..., ``steps`` patches.

    Samek, Binder, Montavon, Lapuschkin & Müller, "Evaluating the visualization of what a deep
    neural network has learned", IEEE TNNLS 2017 (arXiv 1509.06321).

    Images are channels last, ``(n, height, width, channels)`` (or ``(n, height, width)`` for a
    model whose input has no channel axis). The patches are the cells of a grid of
    ``patch_size`` x ``patch_size`` pixels starting at the top-left corner; when the height or
    width is not a multiple of ``patch_size`` the last row/column of patches is smaller (every
    pixel belongs to exactly one patch; nothing is cropped or padded). A patch's score is the sum
    of the map over its pixels (and channels: maps with a channel axis are summed over it).

    Args:
        model: a Keras model with one input and one output, ``(n, classes)`` (or any shape,
            flattened per sample).
        x: the images, a NumPy array shaped like the model input.
        maps: one map per image, shaped like ``x`` or like ``x`` without its channel axis.
        patch_size: side of the square patches (an int) or ``(height, width)``. Defaults to `9`.
        steps: the number of patches replaced at the end of the curve. Defaults to `None` (all
            patches).
        order: ``"morf"`` (most relevant first: decreasing patch score), ``"lerf"`` (least
            relevant first) or ``"random"`` (a random permutation per image, drawn from ``seed``;
            the map is ignored). Ties keep the patch order (row-major), so the result is
            deterministic. Defaults to `"morf"`.
        replacement: what a replaced patch becomes. ``"mean"``: the image's mean per channel (over
            the whole image); ``"patch_mean"``: the patch's own mean per channel (iNNvestigate's
            ``"mean"`` perturbation; the paper's "their mean per colour channel" reads either way);
            ``"zeros"``; ``"uniform"``: uniform noise in [min, max] of the image per channel, one
            noise image per sample drawn from ``seed`` (so a replaced patch keeps its values at
            later steps); ``"blur"``: the image blurred with a Gaussian of standard deviation
            ``patch_size / 3`` (truncated at 3 sigma, reflected at the borders). Defaults to
            `"mean"`.
        output: ``"logit"``: the model's output for the selected class, as is (the model must
            not end in a softmax: pass :func:`keras_patterns.model_wo_softmax`);
            ``"probability"``: its softmax over the classes (taken as is when the model ends in a
            softmax). Defaults to `"logit"`.
        neuron_selection: the class followed along the curve: an int for all images or one per
            image. Defaults to `None` (the class of the largest output on the unperturbed image).
        batch_size: images per compiled model call. Defaults to `64`.
        seed: seed of ``order="random"`` and ``replacement="uniform"``. Defaults to `0`.

    Returns:
        A float64 array ``(n, steps + 1)``: column ``k`` is the selected output after ``k``
        patches were replaced (column 0: the unperturbed image).

    Raises:
        ValueError: mismatched shapes, unknown options, ``steps`` above the number of patches,
            non-finite input, a softmax model with ``output="logit"``, a bad ``neuron_selection``.

    Example:

    ```python
    maps = kp.create_analyzer("lrp.epsilon", model).analyze(x)
    curves = kp.evaluation.region_perturbation(model, x, maps, steps=100)
    kp.evaluation.aopc(curves).mean()
    ```
    """
    return _curves(model, x, maps, patch_size, steps, order, replacement, output, neuron_selection,
                   batch_size, seed, insertion=False)


def region_insertion(model, x, maps, patch_size=9, steps=None, order="morf", replacement="mean",
                     output="logit", neuron_selection=None, batch_size=64, seed=0):
    """Insertion curves: from the fully replaced image, the patches restored one after the other.

    The counterpart of :func:`region_perturbation` (xplique's and Petsiuk et al.'s "insertion"):
    column 0 is the image with *every* patch replaced, column ``k`` the image with the first ``k``
    patches of ``order`` restored to their original values. A good map makes the output rise
    fast (:func:`insertion`: higher is better). The arguments are those of
    :func:`region_perturbation`; the default class is still that of the unperturbed image.

    Returns:
        A float64 array ``(n, steps + 1)``.

    Example:

    ```python
    curves = kp.evaluation.region_insertion(model, x, maps, replacement="blur")
    kp.evaluation.insertion(curves).mean()
    ```
    """
    return _curves(model, x, maps, patch_size, steps, order, replacement, output, neuron_selection,
                   batch_size, seed, insertion=True)


def aopc(curves):
    """Area over the perturbation curve per sample (Samek et al. 2017, eq. 12 without the mean).

    ``AOPC = 1/(L+1) * sum_{k=0..L} (f(x_0) - f(x_k))`` for a curve of ``L + 1`` points. Higher is
    better for MoRF curves. Averaging over samples (the ``<.>_{p(x)}`` of the paper) is left to the
    caller: ``aopc(curves).mean()``.

    Args:
        curves: ``(n, L + 1)`` curves from :func:`region_perturbation`.

    Returns:
        A float64 array ``(n,)``.
    """
    c = _check_curves(curves)
    return (c[:, :1] - c).mean(axis=1)


def deletion(curves):
    """Area under deletion (:func:`region_perturbation`) curves per sample; lower is better.

    The x axis is normalised to [0, 1] (the fraction of the ``L`` steps), the area is the
    trapezoidal rule over the ``L + 1`` points, as xplique's ``Deletion``.

    Args:
        curves: ``(n, L + 1)`` curves, ``L >= 1``.

    Returns:
        A float64 array ``(n,)``.
    """
    return _auc(_check_curves(curves, min_points=2))


def insertion(curves):
    """Area under insertion (:func:`region_insertion`) curves per sample; higher is better.

    Computed as :func:`deletion` (normalised x axis, trapezoidal rule).

    Args:
        curves: ``(n, L + 1)`` curves, ``L >= 1``.

    Returns:
        A float64 array ``(n,)``.
    """
    return _auc(_check_curves(curves, min_points=2))


# ---------------------------------------------------------------------------------- internals
def _auc(c):
    return ((c[:, 1:] + c[:, :-1]) / 2).sum(axis=1) / (c.shape[1] - 1)


def _check_curves(curves, min_points=1):
    c = as_float_array("curves", curves)
    if c.ndim != 2 or c.shape[1] < min_points:
        raise ValueError(
            f"`curves` must have shape (n, steps + 1) with at least {min_points} point(s) per curve. "
            f"Received: shape {c.shape}"
        )
    return c


def _patch_pair(patch_size):
    if isinstance(patch_size, (tuple, list)) and len(patch_size) == 2:
        return tuple(check_positive_int("patch_size", p) for p in patch_size)
    try:
        p = check_positive_int("patch_size", patch_size)
    except ValueError:
        raise ValueError(
            f"`patch_size` must be a positive int or a pair of them. Received: patch_size={patch_size!r}"
        ) from None
    return p, p


def _ends_in_softmax(model):
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(layer, keras.Model):
        return _ends_in_softmax(layer)
    return layer is not None and layer_activation(layer) == "softmax"


def _compiled_call(model, shape, dtype, softmax):
    key = (tuple(shape), str(dtype), softmax)
    try:
        cache = _COMPILED.setdefault(model, {})
    except TypeError:  # an unhashable model: no caching
        cache = {}
    fn = cache.get(key)
    if fn is None:
        ref = weakref.ref(model)  # the cache must not keep the model alive

        def call(xb):
            y = ref()(xb, training=False)
            y = tf.reshape(y, [tf.shape(y)[0], -1])
            return tf.nn.softmax(y, axis=-1) if softmax else y

        fn = tf.function(call, input_signature=[tf.TensorSpec((None,) + tuple(shape[1:]), dtype)])
        cache[key] = fn
    return fn


def _selection(neuron_selection, n, n_classes):
    if neuron_selection is None:
        return None
    idx = np.asarray(neuron_selection)
    if idx.dtype.kind not in "iu" or not (idx.ndim == 0 or idx.shape == (n,)):
        raise ValueError(
            f"`neuron_selection` must be None, an int or {n} ints (one per image). "
            f"Received: neuron_selection={neuron_selection!r}"
        )
    idx = np.broadcast_to(idx, (n,)).astype("int64")
    if np.any((idx < 0) | (idx >= n_classes)):
        raise ValueError(
            f"`neuron_selection` must be in [0, {n_classes}) for a model with {n_classes} outputs. "
            f"Received: neuron_selection={neuron_selection!r}"
        )
    return idx


def _gaussian_blur(x, sigma):
    """Separable Gaussian blur of ``(n, H, W, C)`` over H and W, reflected borders, float64."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = x
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")  # the edge pixel repeated, then mirrored
        acc = np.zeros_like(out)
        length = out.shape[axis]
        for k, w in enumerate(kernel):
            acc += w * np.take(padded, np.arange(k, k + length), axis=axis)
        out = acc
    return out


def _replacement_images(x4, kind, ph, pw, rng, sigma):
    n, h, w, c = x4.shape
    if kind == "zeros":
        return np.zeros_like(x4)
    if kind == "mean":
        return np.broadcast_to(x4.mean(axis=(1, 2), keepdims=True), x4.shape).copy()
    if kind == "patch_mean":
        gh, gw = -(-h // ph), -(-w // pw)
        padded = np.zeros((n, gh * ph, gw * pw, c))
        padded[:, :h, :w] = x4
        counts = np.zeros((gh * ph, gw * pw))
        counts[:h, :w] = 1
        sums = padded.reshape(n, gh, ph, gw, pw, c).sum(axis=(2, 4))
        cnt = counts.reshape(gh, ph, gw, pw).sum(axis=(1, 3))
        means = sums / cnt[None, :, :, None]
        return np.repeat(np.repeat(means, ph, axis=1), pw, axis=2)[:, :h, :w]
    if kind == "uniform":
        lo = x4.min(axis=(1, 2), keepdims=True)
        hi = x4.max(axis=(1, 2), keepdims=True)
        return lo + (hi - lo) * rng.uniform(size=x4.shape)
    return _gaussian_blur(x4, sigma)


def _patch_ranks(maps2d, patch_size, order, seed):
    """The position of every pixel's patch in the perturbation order, ``(n, H, W)`` ints, and the
    number of patches: pixel ``(i, r, c)`` is replaced at step ``k`` iff its rank is ``< k``."""
    ph, pw = patch_size
    n, h, w = maps2d.shape
    gh, gw = -(-h // ph), -(-w // pw)
    padded = np.zeros((n, gh * ph, gw * pw))
    padded[:, :h, :w] = maps2d
    scores = padded.reshape(n, gh, ph, gw, pw).sum(axis=(2, 4)).reshape(n, gh * gw)
    if order == "morf":
        perm = np.argsort(-scores, axis=1, kind="stable")
    elif order == "lerf":
        perm = np.argsort(scores, axis=1, kind="stable")
    else:
        rng = np.random.default_rng(seed)
        perm = np.stack([rng.permutation(gh * gw) for _ in range(n)]) if n else np.zeros((0, gh * gw), int)
    position = np.empty_like(perm)
    np.put_along_axis(position, perm, np.arange(gh * gw)[None, :].repeat(n, axis=0), axis=1)
    patch_id = (np.arange(h)[:, None] // ph) * gw + (np.arange(w)[None, :] // pw)
    return position[:, patch_id], gh * gw


def _curves(model, x, maps, patch_size, steps, order, replacement, output, neuron_selection,
            batch_size, seed, insertion):
    check_choice("order", order, ORDERS)
    check_choice("replacement", replacement, REPLACEMENTS)
    check_choice("output", output, OUTPUTS)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_positive_int("seed", seed, allow_zero=True)
    ph, pw = _patch_pair(patch_size)
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    outputs = getattr(model, "outputs", None) if isinstance(model, keras.Model) else None
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "`model` must be a built Keras model with one input and one output. Received: "
            f"{type(model).__name__} with inputs {inputs!r} and outputs {outputs!r}"
        )
    in_shape = tuple(model.inputs[0].shape)
    in_dtype = model.inputs[0].dtype
    xa = as_float_array("x", x)
    if xa.ndim not in (3, 4) or xa.ndim != len(in_shape) or any(
        s is not None and s != a for s, a in zip(in_shape[1:], xa.shape[1:])
    ):
        raise ValueError(
            "`x` must be images (n, height, width, channels), channels last (or (n, height, width)), "
            f"shaped like the model input {('n',) + in_shape[1:]}. Received: x of shape {xa.shape}"
        )
    x4 = xa if xa.ndim == 4 else xa[..., None]
    m2 = channel_summed("maps", as_float_array("maps", maps), x4.shape[:3],
                        channels=x4.shape[3] if xa.ndim == 4 else None)
    softmax_model = _ends_in_softmax(model)
    if output == "logit" and softmax_model:
        raise ValueError(
            f"output='logit' needs the model's logits, but model {model.name!r} ends in a softmax. "
            "Pass kp.model_wo_softmax(model), or output='probability'."
        )
    ranks, n_patches = _patch_ranks(m2, (ph, pw), order, seed)
    if steps is None:
        steps = n_patches
    steps = check_positive_int("steps", steps, allow_zero=True)
    if steps > n_patches:
        raise ValueError(
            f"`steps` must be at most the number of patches, {n_patches} for images of "
            f"{x4.shape[1]}x{x4.shape[2]} and patch_size {(ph, pw)}. Received: steps={steps}"
        )
    rng = np.random.default_rng([seed, 1])  # the uniform noise: independent of a random order
    repl = _replacement_images(x4, replacement, ph, pw, rng, max(ph, pw) / 3.0)
    call = _compiled_call(model, in_shape, in_dtype, output == "probability" and not softmax_model)
    n = x4.shape[0]

    def run(images):
        return call(tf.constant(images.reshape((-1,) + xa.shape[1:]), dtype=in_dtype)).numpy()

    first = np.concatenate([run(x4[s:s + batch_size]) for s in range(0, n, batch_size)]) if n else None
    n_classes = first.shape[1] if n else 0
    idx = _selection(neuron_selection, n, n_classes)
    if n == 0:
        return np.zeros((0, steps + 1))
    if idx is None:
        idx = first.argmax(axis=1)
    curves = np.empty((n, steps + 1))
    if not insertion:
        curves[:, 0] = first[np.arange(n), idx]
    ks = np.arange(1 if not insertion else 0, steps + 1)
    rows_i = np.repeat(np.arange(n), len(ks))
    rows_k = np.tile(ks, n)
    # Built directly in the model's dtype: no float64 images to convert on every call.
    np_dtype = np.dtype(tf.as_dtype(in_dtype).as_numpy_dtype)
    x_in, repl_in = x4.astype(np_dtype), repl.astype(np_dtype)
    src_a, src_b = (x_in, repl_in) if insertion else (repl_in, x_in)  # rank < k: from src_a
    for s in range(0, len(rows_i), batch_size):
        i, k = rows_i[s:s + batch_size], rows_k[s:s + batch_size]
        hit = (ranks[i] < k[:, None, None])[..., None]
        images = np.where(hit, src_a[i], src_b[i])
        out = run(images)
        curves[i, k] = out[np.arange(len(i)), idx[i]]
    return curves

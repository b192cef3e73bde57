"""Occlusion: the drop of the selected output when a patch of the input is covered."""

import numpy as np
import tensorflow as tf

from keras_patterns import selection, validation
from keras_patterns.analyzers import base, streaming
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.analyzers.cam import _no_canonizers
from keras_patterns.canonizers import prepare_graph
from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.graph import _keras_internals as ki
from keras_patterns.registry import register


def _per_axis(name, value, spatial):
    """``value`` (an int or one int per spatial axis) as a tuple of positive ints, each at most
    the axis' size."""
    k = len(spatial)
    items = [value] * k if validation._is_int(value) else value
    try:
        items = list(items)
    except TypeError:
        items = None
    if items is None or len(items) != k or not all(validation._is_int(v) and v >= 1 for v in items):
        raise ValueError(
            f"`{name}` must be a positive int or {k} positive ints (one per spatial axis of an input "
            f"shaped {tuple(spatial)} + channels). Received: {name}={value!r}"
        )
    if any(v > s for v, s in zip(items, spatial)):
        raise ValueError(
            f"`{name}` must be at most the input's spatial size {tuple(spatial)} on every axis. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(v) for v in items)


def patch_masks(spatial, size, stride):
    """The occluded positions of every patch, shape ``(P, *spatial)`` (bool).

    Along each axis the patches start at ``0, stride, 2 stride, ...`` (every start inside the
    axis) and cover ``[start, min(start + size, length))``: patches at the far border are cut,
    so that with ``stride <= size`` every position is covered. Patches are ordered as
    ``np.ndindex`` over the starts.
    """
    starts = [range(0, n, st) for n, st in zip(spatial, stride)]
    grid = np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(spatial), -1).T
    masks = np.zeros((len(grid),) + tuple(spatial), dtype=bool)
    for p, corner in enumerate(grid):
        masks[(p,) + tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
    return masks


@register("occlusion")
class Occlusion(Analyzer):
    """Occlusion sensitivity: the drop of the selected output when a patch is covered.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
    (arXiv 1311.2901), section 4.2; as xplique's ``Occlusion`` and tf-explain's
    ``OcclusionSensitivity``.

    A patch of ``patch_size`` positions slides over the spatial axes with ``patch_stride`` (see
    :func:`patch_masks`) and sets all channels inside it to ``occlusion_value``. With ``S`` the
    selected output (chosen once per sample on the clean input; in ``"all"`` mode the sum of the
    outputs), patch ``p`` has the drop ``d_p = S(x) - S(x with patch p occluded)``, and the map at
    a position is the mean drop of the patches covering it (0 where none does), repeated over the
    input's channels (the maps are shaped like the input). For a linear model ``S = w . x + b``,
    ``d_p = sum_{i in p} w_i (x_i - occlusion_value)`` over the patch's positions and channels.

    All occluded copies of all samples of an :meth:`analyze` call are run as one stream of rows,
    ``batch_size`` rows per model call (the clean samples included): ``ceil(n (P + 1) /
    batch_size)`` calls for ``n`` samples and ``P`` patches. Deterministic; a sample's map does
    not depend on the other samples (up to float32 rounding of differently batched kernels).

    Args:
        model: a Keras model with one float input of shape ``(batch, *spatial, channels)``, 1 to
            3 spatial axes of fixed size, no softmax.
        patch_size: the patch's extent, an int for every spatial axis or one per axis. Defaults
            to `3`.
        patch_stride: the step between patches, likewise. Defaults to `None` (= ``patch_size``:
            patches that tile the input).
        occlusion_value: the value of the occluded inputs. Defaults to `0.0`.
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (rows per model call; see
            :class:`~keras_patterns.analyzers.Analyzer`).

    Raises:
        NotAnalyzeableModelError: several inputs, an integer input, an input without spatial
            axes (``(batch, features)``: a vector has no patches) or with unknown spatial size.
        ValueError: a bad ``patch_size``, ``patch_stride`` or ``occlusion_value``.

    Example:

    ```python
    analyzer = kp.create_analyzer("occlusion", model, patch_size=4, patch_stride=2)
    maps = analyzer.analyze(x, batch_size=256)
    ```
    """

    #: Occlusion only calls the model: any model works, subclassed ones included (one graph node).
    _unknown_layers = "gradient"

    def __init__(self, model, patch_size=3, patch_stride=None, occlusion_value=0.0, **kwargs):
        _no_canonizers(type(self).__name__, kwargs)
        super().__init__(model, **kwargs)
        who = self.name or type(self).__name__
        if len(self._input_specs) != 1:
            raise NotAnalyzeableModelError(
                f"{who} occludes patches of one input; model {model.name!r} has "
                f"{len(self._input_specs)} inputs {self.graph.input_names}."
            )
        shape, dtype = self._input_specs[0]
        spatial = shape[1:-1]
        if not tf.as_dtype(dtype).is_floating or not 1 <= len(spatial) <= 3 or None in spatial:
            raise NotAnalyzeableModelError(
                f"{who} needs a float input shaped (batch, *spatial, channels) with 1 to 3 spatial "
                f"axes of fixed size, to slide patches over. Received: model {model.name!r} with "
                f"input shape {shape} and dtype {dtype}."
            )
        self.patch_size = _per_axis("patch_size", patch_size, spatial)
        stride = self.patch_size if patch_stride is None else patch_stride
        self.patch_stride = _per_axis("patch_stride", stride, spatial)
        self.occlusion_value = validation.finite_number("occlusion_value", occlusion_value)
        self.masks = patch_masks(spatial, self.patch_size, self.patch_stride)
        self._coverage = np.maximum(self.masks.sum(axis=0), 1)
        self._config.update(
            patch_size=list(self.patch_size),
            patch_stride=None if patch_stride is None else list(self.patch_stride),
            occlusion_value=self.occlusion_value,
        )

    def _prepare_graph(self, model):
        return prepare_graph(model, (), opaque=True)

    def _forward(self, x):
        y = self.graph([x])[0]
        return tf.reshape(y, [tf.shape(y)[0], -1])

    def _function(self):
        if self._compiled is None:
            with base._COMPILE_LOCK:
                if self._compiled is None:
                    shape, dtype = self._input_specs[0]
                    compiled = tf.function(
                        self._forward, input_signature=[tf.TensorSpec((None,) + shape[1:], dtype)],
                        autograph=False)
                    ki.omit_frequent_tracing_warning(compiled)
                    self._compiled = compiled
        return self._compiled

    def _outputs(self, x, batch_size):
        """The model outputs ``(n (P + 1), n_out)`` of the clean samples, then of the occluded
        copies (sample-major), ``batch_size`` rows per call."""
        n, n_patches = len(x), len(self.masks)
        total = n * (n_patches + 1)
        forward = self._function()
        chunks = []
        for start in range(0, total, batch_size):
            rows = np.arange(start, min(total, start + batch_size))
            occluded = rows >= n
            sample = np.where(occluded, (rows - n) // n_patches, rows)
            mask = np.zeros((len(rows),) + self.masks.shape[1:], dtype=bool)
            mask[occluded] = self.masks[(rows[occluded] - n) % n_patches]
            batch = np.where(mask[..., None], np.asarray(self.occlusion_value, x.dtype), x[sample])
            chunks.append(forward(batch).numpy().astype(np.float64))
        return np.concatenate(chunks, axis=0)

    def analyze(self, x, neuron_selection=None, batch_size=None, on_batch=None, out=None):
        """Occlusion maps (see :meth:`Analyzer.analyze`: arrays, datasets and generators;
        ``on_batch`` and ``out`` as there). ``batch_size`` counts model rows, clean and occluded:
        a dataset is cut into pieces of ``max(1, batch_size // (P + 1))`` samples for ``P``
        patches."""
        self._check_ready()
        if batch_size is not None:
            batch_size = validation.positive_int("batch_size", batch_size)
        self._call_rows = batch_size or self.batch_size
        if on_batch is not None or out is not None or streaming.is_stream(x):
            return self._analyze_general(x, neuron_selection, batch_size, on_batch, out)
        x = self._prepare_inputs(x)[0]
        idx = selection.normalize_indices(
            neuron_selection, self.neuron_selection_mode, len(x), self.n_outputs or np.iinfo("int32").max)
        out = self._maps(x, idx)
        self._check_finite([out])
        return out

    def _rows_per_call(self, batch_size):
        return max(1, batch_size // (len(self.masks) + 1))

    def _get_compiled(self):
        return None  # the model is called row block by row block on the host (see _outputs)

    def _run_piece(self, compiled, xs, idx, extras):
        return [self._maps(xs[0], idx)]

    def _maps(self, x, idx):
        """The maps of samples ``x`` (one array) for the selection indices ``idx``."""
        n = len(x)
        dtype = np.float64 if x.dtype == np.float64 else np.float32
        if n == 0:
            return np.zeros(x.shape, dtype=dtype)
        y = self._outputs(x, self._call_rows)
        clean, occluded = y[:n], y[n:].reshape(n, len(self.masks), -1)
        sel = selection.selection_mask(tf.constant(clean), self.neuron_selection_mode, idx).numpy()
        drops = np.sum(sel * clean, axis=1)[:, None] - np.einsum("npo,no->np", occluded, sel)
        maps = np.tensordot(drops, self.masks.astype(np.float64), axes=1) / self._coverage
        return np.broadcast_to(maps[..., None], x.shape).astype(dtype)

"""Streaming pattern statistics: one training-free pass over data, one training step's cost per batch.

For every kernel layer (Dense, Conv1D/2D/3D, DepthwiseConv1D/2D, Conv1D/2D/3DTranspose,
EinsumDense, e.g. the projections of MultiHeadAttention; SeparableConv is split into its depthwise
and pointwise parts by the canonizer) :class:`PatternStatistics` accumulates, per output unit and
per pattern type:

* ``count``: the number of rows where the mask is on, sum(M);
* ``sum_x``: the masked input sums, sum(x M), kernel-shaped;
* ``sum_xy``: the masked cross moments, sum(x y M), kernel-shaped;

and, shared by all types, ``sum_y`` (unmasked sum of the bias-free output y = W^T x) and
``n_rows``. A "row" is one sample for Dense, one output position for a convolution (zero padding
included as observations) and one position for Dense on inputs of rank > 2. For EinsumDense the
output units are the kernel axes that appear in the output (``(heads, dim)`` for the query
projection ``"abc,cde->abde"``, ``e`` for the output projection ``"abcd,cde->abe"``), the input
row is the contracted input axes and a row is one position of the remaining output axes (batch,
tokens); the filter gradient is then one einsum (``"x,out->kernel"``). Equations with a kernel
axis that is neither contracted nor an output axis are refused (:func:`check_pattern_kernels`).

No patches are materialised. The sums over rows of ``x_patch * g`` for a per-position signal g are
what the filter gradient of the same (bias-free) convolution computes
(:meth:`~keras_patterns.linear.LinearView.filter_sums`: with a local ``tf.GradientTape`` watching
a kernel-shaped tensor K, ``tape.gradient(apply_kernel(layer, x, K), K, output_gradients=g)`` is
``sum_rows x_patch g``).
With g = M that is ``sum_x``, with g = y M it is ``sum_xy``. This works for every kernel kind,
stride, dilation and padding, at the cost of a backprop-filter per statistic.

Per-batch sums are computed in the layer's compute dtype (float16/bfloat16 are promoted to float32)
and added to float64 ``tf.Variable`` totals inside one ``tf.function``; nothing is copied to the host
until :meth:`PatternStatistics.result`. Each layer has two variables, each updated by one cast and
one ``assign_add`` per batch: all kernel-shaped sums of all pattern types as the one filter
gradient produces them (split only when read), and the vector of ``n_rows``, ``sum_y`` and the
counts. On a small model the cost per batch is the number of ops, not the arithmetic;
``tests/patterns/test_statistics_ops.py`` pins it. Statistics are collected in inference mode
(Dropout off, BatchNormalization with its moving statistics).

Built under a ``tf.distribute`` strategy's scope, the totals are ``ON_READ`` variables with ``SUM``
aggregation (as Keras metrics): every replica adds its share of each batch to its own copy, with no
communication per batch, and reading the totals all-reduces them (over all workers for
``MultiWorkerMirroredStrategy``). Sums of disjoint parts of the data simply add, so the patterns
equal the single-device ones up to the float32 rounding of the per-batch sums.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_patterns import validation
from keras_patterns.errors import NotAnalyzeableModelError, NotFittedError
from keras_patterns.graph.layers import (
    EINSUM_DENSE,
    KERNEL_LAYERS,
    MASK_PASS_THROUGH,
    layer_activation,
)
from keras_patterns.linear import (
    LinearView,
    einsum_kernel_problems,
    from_unit_matrix,
    node_params,
    to_unit_matrix,
)
from keras_patterns.patterns import distribution
from keras_patterns.patterns.data import input_tensors
from keras_patterns.patterns.estimators import (
    canonical_pattern_type,
    pattern_from_statistics,
)


def check_pattern_kernels(graph):
    """Raises for kernel layers the pattern statistics cannot fit: EinsumDense layers whose
    equation has a kernel axis that is neither contracted with the input nor an output axis
    (e.g. ``"abc,bcd->abd"``: ``b`` is in the input, the kernel and the output, a different
    kernel per position; or an axis in the kernel only).

    Raises:
        NotAnalyzeableModelError: naming every such layer, its equation and the axis.
    """
    bad = []
    for n in graph.nodes:
        if isinstance(n.layer, EINSUM_DENSE):
            problems = einsum_kernel_problems(n.layer.equation)
            if problems:
                bad.append(f"{n.name} ({n.class_name}, equation {n.layer.equation!r}: {'; '.join(problems)})")
    if bad:
        raise NotAnalyzeableModelError(
            "PatternNet/PatternAttribution fit a pattern per output unit of an EinsumDense layer "
            "when each kernel axis is either contracted with the input (in the input, not the "
            "output) or an output-unit axis (in the output, not the input). Received: "
            f"{', '.join(bad)}. Use a gradient or LRP method on this model."
        )


def mask_source(graph, node):
    """The tensor whose sign gives the relu mask of a kernel node.

    Starting at the kernel node's output, follows single-consumer chains through shape-preserving
    layers that do not change which unit is which (Dropout and friends, stand-alone
    BatchNormalization, Add, Identity, linear Activation) to the first non-linearity (a ReLU
    ``Activation``, ``ReLU``, ``LeakyReLU``, ...) and returns that node's output tensor. When the
    chain ends anywhere else (pooling, a fan-out, the end of the graph, a reshape) the kernel
    node's own output is used, so a linear output layer gets the mask [logit > 0], as in
    iNNvestigate.

    Args:
        graph: a canonized graph.
        node: a kernel node of ``graph``.

    Returns:
        A tensor id of ``graph``.
    """
    own = node.outputs[0]
    shape = graph.tensors[own].shape
    cur = own
    while True:
        consumers = graph.consumers(cur)
        if len(consumers) != 1 or cur in graph.outputs:
            return own
        (nxt,) = consumers
        if len(nxt.outputs) != 1 or tuple(graph.tensors[nxt.outputs[0]].shape) != tuple(shape):
            return own
        if isinstance(nxt.layer, KERNEL_LAYERS):
            return own
        if layer_activation(nxt.layer) != "linear":
            return nxt.outputs[0]
        if isinstance(nxt.layer, MASK_PASS_THROUGH) or (
            isinstance(nxt.layer, keras.layers.Activation) and layer_activation(nxt.layer) == "linear"
        ):
            cur = nxt.outputs[0]
            continue
        return own


def pattern_keys(graph):
    """``{node_name: key}`` for every kernel node of a canonized graph.

    The key is the node's layer key (the layer name; ``"<name>/depthwise"``/``"<name>/pointwise"``
    for a split SeparableConv; calls of a shared layer share it). A shared layer whose calls were
    folded with different BatchNormalizations has different effective kernels per call; those
    calls are keyed by node name (``"<name>@1"``, ...) instead.
    """
    by_key = {}
    for node in graph.nodes:
        if isinstance(node.layer, KERNEL_LAYERS):
            by_key.setdefault(node.key, []).append(node)
    out = {}
    for key, nodes in by_key.items():
        split = len(nodes) > 1 and any(n.folded for n in nodes)
        for n in nodes:
            out[n.name] = n.name if split else key
    return out


class PatternStatistics:
    """A Keras-style accumulator of the per-layer statistics the pattern estimators need.

    Kindermans et al., "Learning how to explain neural networks: PatternNet and
    PatternAttribution", ICLR 2018 (arXiv 1705.05598).

    Args:
        graph: a canonized :class:`~keras_patterns.graph.Graph` (as ``analyzer.graph``).
        pattern_types: one pattern type or a sequence of them: ``"linear"`` (mask all ones),
            ``"relu"``/``"relu.positive"`` (mask [output after the activation > 0]) or
            ``"relu.negative"`` ([... <= 0]). Defaults to `"relu"`.
        strategy: the ``tf.distribute`` strategy to run under. Defaults to `None`: the strategy
            whose scope is entered at construction, if any (as ``model.fit``), else none.

    Example:

    ```python
    stats = PatternStatistics(analyzer.graph, "relu")
    for x in batches:
        stats.update_state(x)
    patterns = stats.result()["relu"]      # {layer_name: array shaped like the kernel}
    ```
    """

    def __init__(self, graph, pattern_types="relu", strategy=None):
        if isinstance(pattern_types, str):
            pattern_types = (pattern_types,)
        types = []
        for t in pattern_types:
            t = canonical_pattern_type(t)
            if t not in types:
                types.append(t)
        if not types:
            raise ValueError("`pattern_types` must name at least one pattern type. Received: []")
        check_pattern_kernels(graph)
        self.graph = graph
        self.pattern_types = tuple(types)
        self.kernel_nodes = [n for n in graph.nodes if isinstance(n.layer, KERNEL_LAYERS)]
        if not self.kernel_nodes:
            raise ValueError(
                "The model has no kernel layer (Dense, ConvND, DepthwiseConvND, SeparableConvND); "
                "there is nothing to fit a pattern to."
            )
        self.keys = pattern_keys(graph)
        self.mask_sources = {n.name: mask_source(graph, n) for n in self.kernel_nodes}
        #: ``{key: first kernel node with that key}``: the node whose live parameters give the
        #: layer's kernel when the patterns are estimated.
        self.key_nodes = {}
        for n in self.kernel_nodes:
            self.key_nodes.setdefault(self.keys[n.name], n)
        #: the ``tf.distribute`` strategy the sums live under (None: a single device).
        self.strategy = distribution.current_strategy() if strategy is None else strategy
        self._vars = {}
        with distribution.scope(self.strategy):
            self._make_variables()
        self._specs = [
            tf.TensorSpec((None,) + tuple(graph.tensors[t].shape[1:]), graph.tensors[t].dtype)
            for t in graph.inputs
        ]
        self._update = tf.function(self._update_fn, input_signature=[self._specs], autograph=False)
        self._update_finite = tf.function(
            self._update_finite_fn, input_signature=[self._specs], autograph=False
        )
        if self.strategy is not None:
            self._update_replicas = tf.function(
                lambda inputs: self.strategy.run(self._replica_update, args=(inputs,)),
                autograph=False, reduce_retracing=True,
            )

    def _make_variables(self):
        """Two float64 variables per layer key.

        ``kernel_sums`` holds every kernel-shaped sum: for pattern type i of
        :attr:`pattern_types`, ``sum_x`` is signal 2i and ``sum_xy`` signal 2i + 1 of
        :meth:`~keras_patterns.linear.LinearView.filter_sums_packed` (concatenated on the last
        kernel axis or stacked on a new one, as the layer's filter gradient produces them).
        ``unit_sums`` is ``[n_rows, sum_y (C), count (C) of each masked type]``: the count of the
        "linear" type is ``n_rows`` for every unit and is not stored.
        """
        for key, node in self.key_nodes.items():
            params = node_params(node)
            shape = LinearView(node).packed_shape(2 * len(self.pattern_types))
            n_units = 1 + params.n_units * (1 + len(self._masked_types))
            self._vars[key] = {
                "kernel_sums": self._var(shape, key, "kernel_sums"),
                "unit_sums": self._var((n_units,), key, "unit_sums"),
            }

    @property
    def _masked_types(self):
        return [t for t in self.pattern_types if t != "linear"]

    def _var(self, shape, key, what):
        name = "pattern_stats_" + "".join(c if c.isalnum() else "_" for c in f"{key}_{what}")
        if self.strategy is None:
            return tf.Variable(tf.zeros(shape, tf.float64), trainable=False, name=name)
        return tf.Variable(
            tf.zeros(shape, tf.float64), trainable=False, name=name,
            synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.SUM,
        )

    def _unpack(self, key, kernel_sums, unit_sums):
        """The NumPy values of a key's two variables as ``{"n_rows", "sum_y", type: {"count",
        "sum_x", "sum_xy"}}`` (views, kernel-shaped sums in the kernel's shape)."""
        node = self.key_nodes[key]
        params = node_params(node)
        kshape = tuple(params.kernel_shape)
        c = params.n_units
        k = 2 * len(self.pattern_types)
        if LinearView(node).concatenates_signals:
            signals = kernel_sums.reshape(kshape[:-1] + (k, kshape[-1]))
            signal = lambda i: signals[..., i, :]  # noqa: E731
        else:
            signal = lambda i: kernel_sums[..., i]  # noqa: E731
        n_rows = unit_sums[0]
        out = {"n_rows": n_rows, "sum_y": unit_sums[1:1 + c].copy()}
        masked = self._masked_types
        for i, t in enumerate(self.pattern_types):
            if t == "linear":
                count = np.full((c,), n_rows, dtype=unit_sums.dtype)
            else:
                j = 1 + c * (1 + masked.index(t))
                count = unit_sums[j:j + c].copy()
            out[t] = {"count": count, "sum_x": signal(2 * i), "sum_xy": signal(2 * i + 1)}
        return out

    # ---------------------------------------------------------------------------- accumulation
    def _node_updates(self, node, values):
        """Adds one node's sums: one filter gradient of every signal, one AssignAdd per variable."""
        key = self.keys[node.name]
        x = values[node.inputs[0]]
        z = values[node.outputs[0]]
        out = values[self.mask_sources[node.name]]
        dtype = x.dtype if x.dtype not in (tf.float16, tf.bfloat16) else tf.float32
        x, z, out = tf.cast(x, dtype), tf.cast(z, dtype), tf.cast(out, dtype)
        view = LinearView(node)
        y = view.remove_bias(z)
        v = self._vars[key]
        signals, unit_parts = [], [view.unit_sums(y)]
        for t in self.pattern_types:
            if t == "linear":
                signals += [tf.ones_like(y), y]
            else:
                m = tf.cast(out > 0 if t == "relu" else out <= 0, dtype)
                signals += [m, y * m]
                unit_parts.append(view.unit_sums(m))
        # In float64 directly where the layer allows (Dense on samples: 200 MB less at the peak
        # of a VGG16 fit than casting a float32 result of both halves at once).
        sums = view.filter_sums_packed(x, signals, dtype=tf.float64)
        unit_sums = unit_parts[0] if len(unit_parts) == 1 else tf.concat(unit_parts, axis=0)
        rows = tf.reshape(view.n_rows(y), [1])
        return [
            v["kernel_sums"].assign_add(sums),
            v["unit_sums"].assign_add(tf.concat([rows, tf.cast(unit_sums, tf.float64)], axis=0)),
        ]

    def _update_fn(self, inputs):
        values = self.graph.run(list(inputs))
        for node in self.kernel_nodes:
            self._node_updates(node, values)
        return tf.constant(0)

    def _update_finite_fn(self, inputs):
        """Adds the samples whose float inputs are all finite; returns one flag per sample."""
        inputs = list(inputs)
        finite = tf.ones([tf.shape(inputs[0])[0]], tf.bool)
        for x in inputs:
            if x.dtype.is_floating:
                flat = tf.reshape(x, [tf.shape(x)[0], -1])
                finite = finite & tf.reduce_all(tf.math.is_finite(flat), axis=1)
        kept = tf.cond(
            tf.reduce_all(finite), lambda: inputs,
            lambda: [tf.boolean_mask(x, finite) for x in inputs],
        )
        # Nothing to add for an empty batch (all samples non-finite, or a replica past the end of
        # the data); TensorFlow's CPU convolutions return wrongly shaped outputs for 0 samples.
        tf.cond(tf.shape(kept[0])[0] > 0, lambda: self._update_fn(kept), lambda: tf.constant(0))
        return finite

    def _replica_update(self, inputs):
        """One replica's update. Its batch size is made dynamic first: a replica past the end of
        the data gets a batch of static size 0, which Keras' layers would turn into outputs of
        the wrong static shape."""
        inputs = [
            tf.compat.v1.placeholder_with_default(x, [None] + x.shape.as_list()[1:]) for x in inputs
        ]
        return self._update_finite_fn(inputs)

    def _to_inputs(self, x):
        return input_tensors(x, self.graph.input_names, self._specs)

    def update_state(self, x):
        """Adds one batch.

        Args:
            x: a batch of model inputs (an array or tensor; a list or a dict by input name for
                multi-input models). Under a strategy it is split over the local replicas.
        """
        if self.strategy is not None:
            self.update_state_finite(x)
            return
        self._update(self._to_inputs(x))

    def update_state_finite(self, x):
        """Adds the samples of one batch whose inputs hold no NaN or Inf, and says which those were.

        The check runs inside the compiled update, on the device that holds the batch: only one
        flag per sample comes back to the host.

        Args:
            x: a batch of model inputs, as for :meth:`update_state`.

        Returns:
            A boolean NumPy array, one entry per sample: False for a sample holding NaN or Inf in
            any of its float inputs (it was left out of the sums).
        """
        inputs = self._to_inputs(x)
        if self.strategy is None:
            return self._update_finite(inputs).numpy()
        with self.strategy.scope():
            return self.update_state_replicas(distribution.split_batch(self.strategy, inputs))

    def update_state_replicas(self, inputs):
        """Adds one distributed batch: every replica adds its part to its own copy of the sums.

        Args:
            inputs: a per-replica list of model-input tensors (an element of
                ``strategy.experimental_distribute_dataset(...)`` or of
                ``distribute_datasets_from_function``), already checked and cast.

        Returns:
            The finite flags of this worker's samples, its replicas' parts in order (see
            :meth:`update_state_finite`).
        """
        return distribution.local_results(self.strategy, self._update_replicas(inputs))

    def reset_state(self):
        """Sets every accumulated sum back to zero."""
        with distribution.scope(self.strategy):
            self._reset()

    def _reset(self):
        for v in self._vars.values():
            for var in v.values():
                var.assign(tf.zeros_like(var))

    @property
    def n_rows(self):
        """Rows seen per layer key (a dict of floats)."""
        return {k: float(v["n_rows"]) for k, v in self._totals().items()}

    def statistics(self):
        """The raw float64 sums as nested dicts ``{key: {"n_rows", "sum_y", type: {...}}}``."""
        return self._totals()

    def _totals(self):
        """Every total as NumPy (under a strategy: all-reduced over the replicas and workers)."""
        # Views into one NumPy copy of each variable, read key by key (no copy of the halves).
        with distribution.scope(self.strategy):
            return {key: self._unpack(key, v["kernel_sums"].numpy(), v["unit_sums"].numpy())
                    for key, v in self._vars.items()}

    def result(self):
        """The patterns estimated from everything seen so far.

        Returns:
            ``{pattern_type: {key: pattern}}``, each pattern a numpy array shaped like (and with the
            dtype of) the canonized layer's kernel.

        Raises:
            NotFittedError: if no rows were seen yet.
        """
        out = {t: {} for t in self.pattern_types}
        totals = self._totals()
        for key, node in self.key_nodes.items():
            params = node_params(node)
            v = totals[key]
            n_rows = float(v["n_rows"])
            if n_rows == 0:
                raise NotFittedError(
                    f"No data was seen for layer {key!r}; expected at least one batch before result()."
                )
            kernel = np.asarray(params.kernel().numpy(), dtype="float64")
            dtype = np.dtype(params.dtype)
            # The estimator takes (D, C) matrices: the output units of any kernel kind as columns.
            for t in self.pattern_types:
                a = pattern_from_statistics(
                    to_unit_matrix(kernel, params), v[t]["count"], to_unit_matrix(v[t]["sum_x"], params),
                    to_unit_matrix(v[t]["sum_xy"], params), v["sum_y"], n_rows, name=key,
                )
                out[t][key] = from_unit_matrix(a, params).astype(dtype)
        return out

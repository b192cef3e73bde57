"""PatternNet and PatternAttribution analyzers (Kindermans et al. 2018, arXiv 1705.05598)."""

import warnings

import numpy as np
import tensorflow as tf

from keras_patterns import selection, validation
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method
from keras_patterns.errors import NotFittedError
from keras_patterns.fingerprint import WeightsFingerprint
from keras_patterns.graph.layers import ATTENTION, KERNEL_LAYERS
from keras_patterns.linear import node_params
from keras_patterns.mapping import resolve
from keras_patterns.mirror import Mirror
from keras_patterns.patterns.computer import PatternComputer
from keras_patterns.patterns.estimators import canonical_pattern_type
from keras_patterns.patterns.statistics import pattern_keys
from keras_patterns.rules.base import per_sample
from keras_patterns.registry import register_preset
from keras_patterns.rules.modern import SIGNAL_MODERN_RULES
from keras_patterns.rules.pattern import CONSTANT_ATTENTION_SIGNAL, PATTERN_ATTRIBUTION, PATTERN_NET
from keras_patterns._warnings import user_stacklevel

#: Per-sample signal magnitudes outside [1e-15, 1e15] make all pending backward signals rescaled.
_RESCALE_ABOVE = 1e15
_RESCALE_BELOW = 1e-15
#: log(float32 max) minus a margin: larger results saturate instead of becoming inf.
_LOG_MAX = 88.7
#: Map values at or above this are saturated.
_SATURATED = float(np.exp(np.float32(_LOG_MAX))) * 0.999


class _RescalingMirror(Mirror):
    """The mirror with overflow protection for pattern backward passes.

    The pattern backward pass is linear in the signal (the gates come from the forward pass), but
    poorly conditioned patterns (e.g. fitted on very little data) can make the raw signal of a deep
    network overflow (or underflow) float32. After every kernel node, samples whose peak signal
    leaves [1e-15, 1e15] have *all* pending signals divided by that peak (one factor per sample,
    so sums at fan-outs stay consistent) and the log of the factor is carried along; the input map
    is multiplied back at the end. Values beyond float32 range saturate at about +-3.3e38 instead
    of becoming inf/NaN, and :meth:`PatternNet.analyze` warns when that happens. Without
    rescaling the result is the plain backward pass, bit for bit.

    The division and the final multiplication run inside ``tf.cond`` s, only for a batch that needs
    them: a batch whose signal stays in range pays for the per-sample peaks and the range test
    after each kernel node (on a small CNN, dividing on every batch took a fifth of the call).
    """

    def _start(self, seed):
        # The log of the scale in float32 at least (a float16/bfloat16 signal under mixed precision).
        dtype = tf.float32 if seed.dtype in (tf.float16, tf.bfloat16) else seed.dtype
        return tf.zeros([tf.shape(seed)[0]], dtype)

    def _after_node(self, node, signals, log_scale):
        if not isinstance(node.layer, KERNEL_LAYERS):
            return signals, log_scale
        keys = [t for t, r in signals.items() if r.dtype.is_floating]
        if not keys:
            return signals, log_scale
        peak = None
        for t in keys:
            r = tf.abs(tf.cast(signals[t], log_scale.dtype))
            m = tf.reduce_max(r, axis=list(range(1, len(r.shape)))) if len(r.shape) > 1 else r
            peak = m if peak is None else tf.maximum(peak, m)
        rescale = (peak > _RESCALE_ABOVE) | ((peak < _RESCALE_BELOW) & (peak > 0))

        def rescaled():
            one = tf.ones_like(peak)
            factor = tf.where(rescale, 1.0 / tf.where(rescale, peak, one), one)
            return [signals[t] * tf.cast(per_sample(factor, signals[t]), signals[t].dtype)
                    for t in keys] + [log_scale - tf.math.log(factor)]

        out = tf.cond(tf.reduce_any(rescale), rescaled,
                      lambda: [signals[t] for t in keys] + [log_scale])
        signals = dict(signals)
        signals.update(zip(keys, out[:-1]))
        return signals, out[-1]

    def _finish(self, r, log_scale):
        def scaled():
            ls = tf.cast(per_sample(log_scale, r), r.dtype)
            big = tf.sign(r) * tf.exp(tf.minimum(tf.math.log(tf.abs(r)) + ls, _LOG_MAX))
            return tf.where(ls != 0, big, r)

        return tf.cond(tf.reduce_any(log_scale != 0), scaled, lambda: r)


def _check_pattern_type(pattern_type):
    if isinstance(pattern_type, (list, tuple)):
        raise ValueError(
            "Pattern analyzers take one pattern type; expected a string such as 'relu'. Received: "
            f"pattern_type={pattern_type!r} (use kp.PatternComputer to fit several types at once)"
        )
    return canonical_pattern_type(pattern_type)


#: PatternNet: every kernel layer's backward pass uses its pattern A in place of W.
PATTERN_NET_METHOD = Method(rules=((KERNEL_LAYERS, PATTERN_NET), (ATTENTION, CONSTANT_ATTENTION_SIGNAL))
                            + SIGNAL_MODERN_RULES, seed="value",
                            requires_relu="warn",
                            output_kind="signal", needs_fitting=True)
#: PatternAttribution: ``W * A`` in place of W.
PATTERN_ATTRIBUTION_METHOD = PATTERN_NET_METHOD.replace(
    rules=((KERNEL_LAYERS, PATTERN_ATTRIBUTION), (ATTENTION, CONSTANT_ATTENTION_SIGNAL)) + SIGNAL_MODERN_RULES,
    output_kind="attribution")


class PatternAnalyzer(ReverseAnalyzer):
    """PatternNet and PatternAttribution: a backward pass through fitted patterns.

    The registered ``pattern.net`` and ``pattern.attribution`` are this class with
    :data:`PATTERN_NET_METHOD` and :data:`PATTERN_ATTRIBUTION_METHOD` (see :func:`pattern_net`,
    :func:`pattern_attribution`).

    PatternNet: the signal of the selected output, projected back to the input through patterns.

    Kindermans, Schütt, Alber, Müller, Erhan, Kim & Dähne, "Learning how to explain neural
    networks: PatternNet and PatternAttribution", ICLR 2018 (arXiv 1705.05598).

    The backward pass starts from the selected output value and goes through every kernel layer
    with its pattern A in place of the kernel W; ReLU gates come from the real forward pass,
    max-pooling routes the signal to the forward arg-max. The result is not multiplied by the
    input. Patterns are fitted by :meth:`fit` in one streaming, training-free pass (see
    :class:`keras_patterns.PatternComputer`) or passed in.

    BatchNormalization directly after a kernel layer is folded into it (kernel ``W * s``), and that
    layer's pattern is the pattern of the folded layer (``A / s`` in terms of the unfolded one).

    What the analyzer holds: its configuration and the fitted patterns, nothing else. Every
    :meth:`analyze` computes with the model's current weights (PatternAttribution's ``W * A`` uses
    the live W), but the patterns stay as fitted until :meth:`fit` is called again: after the
    model has trained, a fitted analyzer explains the new weights with the old patterns. The
    analyzer records a fingerprint of the weights when its patterns are set, and :meth:`analyze`
    warns once when the weights have changed since (``analyzer.patterns_outdated`` tells too).
    Re-fitting reuses the compiled statistics pass and the compiled reverse pass (no retracing).

    Args:
        model: a Keras model without softmax.
        patterns: optional patterns: a dict ``{layer_name: array shaped like the kernel}`` (as
            returned by :class:`~keras_patterns.PatternComputer` and :attr:`patterns`) or a list in
            kernel-layer order (iNNvestigate's format). Defaults to `None` (call :meth:`fit`).
        pattern_type: the type :meth:`fit` estimates: ``"relu"`` (alias ``"relu.positive"``),
            ``"linear"`` or ``"relu.negative"``. Defaults to `"relu"`.
        project_bottleneck: reproduce iNNvestigate 1.x's output scaling: in
            ``"max_activation"`` and ``"all"`` modes the backward pass starts from ``sign(y_max)``
            (``"max_activation"``) and every input map of rank >= 3 is divided by its per-sample
            max-abs value (a max of 0 counts as 1); ``"index"`` mode is never projected. Defaults
            to `False` (the raw backward pass seeded with the selected output value).
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (see :class:`~keras_patterns.analyzers.Analyzer`).

    Raises:
        ValueError: a bad ``pattern_type``, patterns that do not fit the model (the first offending
            layer is named).
        NotFittedError: from :meth:`analyze` before :meth:`fit` or ``patterns=``.

    Example:

    ```python
    analyzer = kp.create_analyzer("pattern.net", kp.model_wo_softmax(model))
    analyzer.fit(x_train, batch_size=64)
    maps = analyzer.analyze(x_test)
    ```
    """

    method = PATTERN_NET_METHOD

    def __init__(self, model, patterns=None, pattern_type="relu", project_bottleneck=False, **kwargs):
        # iNNvestigate's name for the same projection (its PatternNet forces it on).
        rpbl = kwargs.pop("reverse_project_bottleneck_layers", None)
        if rpbl is not None:
            if not isinstance(rpbl, (bool, np.bool_)) or (project_bottleneck and not rpbl):
                raise ValueError(
                    "`reverse_project_bottleneck_layers` (iNNvestigate's name of `project_bottleneck`) "
                    "must be True or False and agree with `project_bottleneck`. Received: "
                    f"reverse_project_bottleneck_layers={rpbl!r}, project_bottleneck={project_bottleneck!r}"
                )
            project_bottleneck = bool(rpbl) or project_bottleneck
        self.pattern_type = _check_pattern_type(pattern_type)
        self.project_bottleneck = validation.boolean("project_bottleneck", project_bottleneck)
        super().__init__(model, **kwargs)
        self._patterns = None  # {key: tf.Variable}, created by the first _set_patterns
        self._computer = None
        self._fingerprint = None
        self._fitted_fingerprint = None
        self._warned_outdated = False
        self._config.update(pattern_type=pattern_type, project_bottleneck=self.project_bottleneck)
        if patterns is not None:
            self._set_patterns(patterns)

    # ---------------------------------------------------------------------------------- patterns
    def _kernel_params(self):
        """``{key: LinearParams}`` of the canonized kernel layers, in graph order."""
        keys = pattern_keys(self.graph)
        out = {}
        for node in self.graph.nodes:
            if node.name in keys:
                out.setdefault(keys[node.name], node_params(node))
        return out

    @property
    def patterns(self):
        """The patterns, ``{layer_name: array shaped like the layer's kernel}`` (None before fitting)."""
        if self._patterns is None:
            return None
        return {k: v.numpy() for k, v in self._patterns.items()}

    @property
    def skipped_samples(self):
        """Samples the last :meth:`fit` left out for NaN/Inf (``skip_nonfinite=True``); None
        before any fit."""
        return None if self._computer is None else self._computer.skipped_samples

    @property
    def patterns_outdated(self):
        """True when the model's weights changed since the patterns were fitted (or set).

        The check compares a fingerprint of a few fixed entries of every weight (see
        :class:`keras_patterns.fingerprint.WeightsFingerprint`). None before fitting.
        """
        if self._fitted_fingerprint is None:
            return None
        return not np.array_equal(self._fitted_fingerprint, self._fingerprint())

    def _set_patterns(self, patterns):
        params = self._kernel_params()
        keys = list(params)
        if isinstance(patterns, (list, tuple)):
            if len(patterns) != len(keys):
                raise ValueError(
                    f"Expected {len(keys)} patterns, one per kernel layer {keys}. Received: a "
                    f"{type(patterns).__name__} of {len(patterns)}"
                )
            patterns = dict(zip(keys, patterns))
        elif not isinstance(patterns, dict):
            raise TypeError(
                "`patterns` must be a dict {layer_name: array} or a list of arrays in kernel-layer "
                f"order. Received: {type(patterns).__name__}"
            )
        missing = [k for k in keys if k not in patterns]
        unknown = [k for k in patterns if k not in params]
        if missing or unknown:
            raise ValueError(
                f"`patterns` must have exactly one entry per kernel layer, expected keys {keys}. "
                f"Received: missing {missing}, unknown {unknown}"
            )
        out = {}
        for key in keys:
            arr = np.asarray(patterns[key])
            expected = params[key].kernel_shape
            if arr.shape != expected:
                raise ValueError(
                    f"The pattern of layer {key!r} must be shaped like its kernel {expected}. "
                    f"Received: shape {arr.shape}"
                )
            if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"The pattern of layer {key!r} must be finite numbers. Received: dtype {arr.dtype}"
                    + (" with NaN/Inf entries" if arr.dtype.kind == "f" else "")
                )
            out[key] = arr.astype(np.dtype(params[key].dtype))
        if self._patterns is None:
            # The analyzer's own state: variables, so that re-fitting needs no retracing.
            self._patterns = {
                key: tf.Variable(a, trainable=False, name="pattern_" + "".join(
                    c if c.isalnum() else "_" for c in key))
                for key, a in out.items()
            }
            self.mirror = _RescalingMirror(self.graph, self.plan, self._mirror_state())
            self._compiled = None
        else:
            for key, a in out.items():
                self._patterns[key].assign(a)
        if self._fingerprint is None:
            self._fingerprint = WeightsFingerprint(self.model)
        self._fitted_fingerprint = self._fingerprint()
        self._warned_outdated = False

    def _is_fitted(self):
        return self._patterns is not None

    def fit(self, data, y=None, batch_size=32, steps=None, verbose="auto", skip_nonfinite=False):
        """Fits the patterns in one streaming pass over ``data`` (in inference mode).

        ``y`` is accepted and ignored, so that Keras-style ``analyzer.fit(x_train, y_train)``
        works (patterns need no labels). Pass ``batch_size`` by keyword: an int as second
        positional argument raises a TypeError (iNNvestigate's ``fit(X, batch_size)`` order).

        Arguments and errors are those of :meth:`keras_patterns.PatternComputer.compute` (arrays,
        ``tf.data.Dataset``, ``PyDataset`` or generators; ``batch_size``, ``steps``, ``verbose``,
        ``skip_nonfinite``). A batch holding NaN or Inf raises
        :class:`~keras_patterns.NonFiniteDataError` naming it, unless ``skip_nonfinite=True``
        leaves such samples out; their number is then in ``analyzer.skipped_samples``.

        Returns:
            The analyzer (fitted), so ``create_analyzer(...).fit(x).analyze(x)`` works.
        """
        if isinstance(y, (int, np.integer)) and not isinstance(y, bool):
            raise TypeError(
                "The second argument of fit() is `y` (ignored, as in Keras' model.fit(x, y)); pass "
                f"the batch size by keyword, fit(x, batch_size={int(y)}). Received: y={y!r}"
            )
        self._check_strategy()
        if self._computer is None:
            self._computer = PatternComputer(self.model, self.pattern_type, graph=self.graph,
                                             strategy=self._strategy)
        self._set_patterns(self._computer.compute(
            data, batch_size=batch_size, steps=steps, verbose=verbose, skip_nonfinite=skip_nonfinite,
        ))
        return self

    def get_state(self):
        """The fitted patterns ``{key: array}`` (see :attr:`patterns`); ``{}`` before fitting."""
        return {} if self._patterns is None else self.patterns

    def set_state(self, state):
        """Sets the patterns from :meth:`get_state`'s dict (``{}`` leaves them as they are)."""
        if state:
            self._set_patterns(dict(state))

    # ------------------------------------------------------------------------------ the mirror
    def _mirror_state(self):
        return {"patterns": self._patterns, "keys": pattern_keys(self.graph)}

    def _build_mirror(self):
        # The plan now (unsupported layers are reported at construction); the mirror when the
        # patterns are set.
        self.plan = resolve(self.graph, self._all_rules(), method=self.name)
        self.mirror = None
        self._compiled = None

    def _check_ready(self, check_state=True):
        if self._patterns is None:
            raise NotFittedError(
                f"Analyzer {self.name!r} has no patterns yet: call analyzer.fit(data) first, or pass "
                f"patterns=... to create_analyzer({self.name!r}, model, patterns=...). Received: an "
                "unfitted analyzer."
            )
        if check_state and not self._warned_outdated and self.patterns_outdated:
            self._warn_outdated()

    def _state_probe(self):
        # The fingerprint of the weights, read in the same call as the analysis.
        return None if self._fingerprint is None else self._fingerprint.read_in_graph

    def _check_state_probe(self, value):
        if (not self._warned_outdated and self._fitted_fingerprint is not None
                and not np.array_equal(self._fitted_fingerprint, value)):
            self._warn_outdated()

    def _warn_outdated(self):
        self._warned_outdated = True
        warnings.warn(
            f"{self.name}: the model's weights changed since the patterns were fitted; the maps "
            "use the current weights with the old patterns. Call analyzer.fit(data) again to "
            "re-fit them (this warning is shown once per fit).", stacklevel=user_stacklevel(),
        )

    def analyze(self, x, neuron_selection=None, batch_size=None, on_batch=None, out=None):
        saturated = []

        def check(start, maps):
            saturated.extend(start + i for m in (maps if isinstance(maps, list) else [maps]) if len(m)
                             for i in np.nonzero(np.abs(m).reshape(len(m), -1).max(axis=1) >= _SATURATED)[0])

        if on_batch is not None or out is not None:
            # Streamed maps are checked piece by piece on their way out: reading an out= file
            # back would map all of it into memory (peak RSS growing with the data).
            maps = self._analyze_general(x, neuron_selection, batch_size, on_batch, out,
                                         inspect=check)
        else:
            maps = super().analyze(x, neuron_selection=neuron_selection, batch_size=batch_size)
            check(0, maps)
        if saturated:
            warnings.warn(
                f"{self.name}: the backward signal exceeds the float32 range for samples "
                f"{sorted({int(i) for i in saturated})} and saturates at about 3.3e38 (directions "
                "are kept, magnitudes are not). The patterns are poorly conditioned; fit them on "
                "more data.", stacklevel=user_stacklevel(),
            )
        return maps

    analyze.__doc__ = ReverseAnalyzer.analyze.__doc__

    def _analyze_batch(self, inputs, indices):
        mode = self.neuron_selection_mode
        if not self.project_bottleneck or mode == "index":
            return self._reverse(inputs, indices)

        def seed_fn(y):
            mask = selection.selection_mask(y, mode, indices)
            return mask * (tf.sign(y) if mode == "max_activation" else y)

        signals, _ = self.mirror(inputs, seed_fn)
        maps = []
        for x, r in zip(inputs, signals):
            if r is None:
                r = tf.zeros(tf.shape(x), tf.float32)
            if len(r.shape) >= 3:
                axes = list(range(1, len(r.shape)))
                m = tf.reduce_max(tf.abs(r), axis=axes, keepdims=True)
                r = tf.clip_by_value(r / tf.where(m == 0, tf.ones_like(m), m), -1.0, 1.0)
            maps.append(r)
        return maps


@register_preset("pattern.net", PatternAnalyzer)
def pattern_net():
    """PatternNet (Kindermans et al., ICLR 2018, arXiv 1705.05598): the signal of the selected
    output projected back through the patterns; not multiplied by the input. Arguments, fitting and
    options as :class:`PatternAnalyzer`.

    Example:

    ```python
    analyzer = kp.create_analyzer("pattern.net", kp.model_wo_softmax(model))
    maps = analyzer.fit(x_train).analyze(x_test)
    ```
    """
    return dict(method=PATTERN_NET_METHOD)


@register_preset("pattern.attribution", PatternAnalyzer)
def pattern_attribution():
    """PatternAttribution: the backward pass with ``W * A`` (element-wise) in place of each kernel W.

    Kindermans, Schütt, Alber, Müller, Erhan, Kim & Dähne, "Learning how to explain neural
    networks: PatternNet and PatternAttribution", ICLR 2018 (arXiv 1705.05598). A Deep Taylor
    decomposition whose root point is ``x - signal``; for a linear model the map is
    ``w * a * y``. Not multiplied by the input. Arguments, fitting and options as
    :class:`PatternAnalyzer`; ``W * A`` does not change when a BatchNormalization is folded.

    Example:

    ```python
    analyzer = kp.create_analyzer("pattern.attribution", kp.model_wo_softmax(model))
    maps = analyzer.fit(x_train).analyze(x_test)
    ```
    """
    return dict(method=PATTERN_ATTRIBUTION_METHOD)

"""Wrappers that compose: SmoothGrad, VarGrad, SquareGrad and Integrated Gradients over any
reverse analyzer, inside the same compiled function.

A wrapper runs its inner analyzer's backward pass (:meth:`ReverseAnalyzer._reverse`) on ``n``
modified copies of every sample and reduces the ``n`` maps, in one ``tf.function``. The inner
analyzer is any reverse analyzer (gradient, LRP, guided backprop, Deep Taylor, PatternNet,
PatternAttribution, ...); built from a model, it is the plain gradient, so that the registered
``smoothgrad`` and ``integrated_gradients`` are iNNvestigate's. Capability flags are forwarded
(Captum's ``NoiseTunnel`` does the same).

Example:

```python
lrp = kp.create_analyzer("lrp.epsilon", model)
smooth_lrp = kp.SmoothGrad(lrp, augment_by_n=32, noise_scale=0.1, seed=0)
maps = smooth_lrp.analyze(x)
ig_pattern = kp.IntegratedGradients(kp.create_analyzer("pattern.attribution", model), steps=32)
ig_pattern.fit(x_train)                 # fits the inner analyzer's patterns
```
"""

import numpy as np
import tensorflow as tf

from keras_patterns import validation
from keras_patterns.analyzers.base import Analyzer
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.registry import create_analyzer, register, register_preset

#: Arguments that configure the inner analyzer's graph; forwarded when the wrapper builds it.
_INNER_OPTIONS = ("disable_model_checks", "allow_lambda_layers", "canonizers", "layer_map")


class Wrapper(Analyzer):
    """Base of the wrappers: the inner analyzer's backward pass over modified copies of each sample.

    The output neuron is chosen once per sample from the unmodified input (arg-max for
    ``"max_activation"``, as iNNvestigate); every copy is explained for that neuron.

    Args:
        model_or_analyzer: a reverse analyzer to wrap, or a Keras model (then the inner analyzer
            is built from ``inner``).
        inner: with a model: the inner analyzer's registered name, or ``{"name": ..., "config":
            {...}}`` (what :meth:`get_config` writes). Defaults to `None`, the plain gradient.
        postprocess: with a model and the default inner analyzer: the gradient's ``postprocess``
            (None, "abs" or "square"), applied to each copy's map before the reduction, as in
            iNNvestigate. Set it on the inner analyzer otherwise. Defaults to `None`.
        neuron_selection_mode, batch_size: as :class:`Analyzer`; ``batch_size`` counts the
            modified copies (``batch_size // n`` samples per compiled call).
        **kwargs: with a model, ``disable_model_checks``, ``allow_lambda_layers``, ``canonizers``
            and ``layer_map`` for the inner analyzer.

    Raises:
        TypeError: an inner analyzer that is not a reverse analyzer, or inner-analyzer options
            given next to a built analyzer.
        ValueError: ``postprocess`` next to a built analyzer, or a PatternNet analyzer with
            ``project_bottleneck=True`` (its scaling is per map, not per copy).
    """

    #: copies per sample (set by the subclass's constructor).
    n = 1
    # The capability flags of the registered versions (plain gradient inside); instances set theirs.
    output_kind = "attribution"
    multiplies_by_input = False
    conserves_relevance = False
    needs_fitting = False

    def __init__(self, model_or_analyzer, inner=None, postprocess=None, neuron_selection_mode="max_activation",
                 batch_size=32, **kwargs):
        self.inner = _inner_analyzer(model_or_analyzer, inner, postprocess, kwargs)
        if getattr(self.inner, "project_bottleneck", False):
            raise ValueError(
                f"{type(self).__name__} cannot wrap a pattern analyzer with project_bottleneck=True "
                "(its output scaling is per map); wrap one with project_bottleneck=False."
            )
        super().__init__(self.inner.model, neuron_selection_mode=neuron_selection_mode,
                         batch_size=batch_size, **kwargs)
        built_here = not isinstance(model_or_analyzer, Analyzer)
        if built_here and inner is None:
            self._config["postprocess"] = postprocess
        else:
            self._config["inner"] = {"name": self.inner.name, "config": _inner_config(self.inner)}
        self.needs_fitting = self.inner.needs_fitting
        self.multiplies_by_input = self.inner.multiplies_by_input
        self.output_kind = self.inner.output_kind
        _check_float_inputs(self)

    def _prepare_graph(self, model):
        return self.inner.graph

    def _is_fitted(self):
        return self.inner._is_fitted()

    def fit(self, *args, **kwargs):
        """Fits the inner analyzer (PatternNet/PatternAttribution); see its ``fit``.

        Returns:
            The wrapper.
        """
        if not self.inner.needs_fitting:
            return super().fit(*args, **kwargs)
        self.inner.fit(*args, **kwargs)
        return self

    def get_state(self):
        """The inner analyzer's state (its patterns, for PatternNet/PatternAttribution)."""
        return self.inner.get_state()

    def set_state(self, state):
        """Restores the inner analyzer's state (see :meth:`get_state`)."""
        self.inner.set_state(state)

    def _check_ready(self, check_state=True):
        self.inner._check_ready(check_state)

    def _state_probe(self):
        return self.inner._state_probe()

    def _check_state_probe(self, value):
        self.inner._check_state_probe(value)

    def _rows_per_call(self, batch_size):
        return max(1, batch_size // self.n)

    def _modified(self, x, i, extras):
        raise NotImplementedError

    def _reduce(self, maps, x, i):
        """``maps`` of shape (batch, n, ...) -> (batch, ...)."""
        return tf.reduce_mean(maps, axis=1)

    def _analyze_batch(self, inputs, indices, *extras):
        mode = self.neuron_selection_mode
        if mode == "max_activation":
            y = self.graph(inputs)[0]
            indices = tf.argmax(tf.reshape(y, [tf.shape(y)[0], -1]), axis=1, output_type=tf.int32)
        inner_mode = "all" if mode == "all" else "index"
        n = self.n
        batch = tf.shape(inputs[0])[0]
        modified = [self._modified(x, i, extras) for i, x in enumerate(inputs)]
        maps = self.inner._reverse(modified, tf.repeat(indices, n), mode=inner_mode)
        out = []
        for i, (x, m) in enumerate(zip(inputs, maps)):
            m = tf.reshape(m, tf.concat([[batch, n], tf.shape(x)[1:]], axis=0))
            out.append(self._reduce(m, x, i))
        return out


def _inner_analyzer(first, inner, postprocess, kwargs):
    if isinstance(first, Analyzer):
        given = sorted(k for k in _INNER_OPTIONS if k in kwargs)
        if inner is not None or given:
            raise TypeError(
                "Give the inner analyzer once: a built analyzer carries its own options. Received: "
                f"an analyzer and {['inner'] * (inner is not None) + given}"
            )
        if postprocess is not None:
            raise ValueError(
                "`postprocess` is the default gradient's option; set it on the inner analyzer "
                f"instead. Received: postprocess={postprocess!r} with a {first.name!r} analyzer"
            )
        if not isinstance(first, ReverseAnalyzer):
            raise TypeError(
                "A wrapper needs a reverse analyzer (one backward pass: gradient, LRP, PatternNet, "
                f"...). Received: a {first.name!r} analyzer ({type(first).__name__})"
            )
        return first
    options = {k: kwargs.pop(k) for k in _INNER_OPTIONS if k in kwargs}
    if inner is None:
        return create_analyzer("gradient", first, postprocess=postprocess, **options)
    if postprocess is not None:
        raise ValueError(
            "`postprocess` is the default gradient's option; give it in the inner analyzer's "
            f"config instead. Received: postprocess={postprocess!r}, inner={inner!r}"
        )
    if isinstance(inner, str):
        return create_analyzer(inner, first, **options)
    if isinstance(inner, dict) and set(inner) <= {"name", "config"} and "name" in inner:
        return create_analyzer(inner["name"], first, **{**inner.get("config", {}), **options})
    raise TypeError(
        "`inner` must be an analyzer name or {'name': ..., 'config': {...}}. Received: "
        f"inner={inner!r}"
    )


def _inner_config(inner):
    try:
        return inner.get_config()
    except ValueError:
        return "<not saveable>"


def _check_float_inputs(analyzer):
    ints = [n for n, (_, dt) in zip(analyzer.graph.input_names, analyzer._input_specs)
            if not np.dtype(dt).kind == "f"]
    if ints:
        raise ValueError(
            f"{analyzer.name or type(analyzer).__name__} perturbs its inputs and needs float inputs. "
            f"Received integer inputs: {ints}"
        )


_REDUCTIONS = ("mean", "square", "variance")


@register("smoothgrad")
class SmoothGrad(Wrapper):
    """SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
    arXiv 1706.03825) over any reverse analyzer: its maps averaged over noisy copies of the input.

    ``reduce="square"`` gives SquareGrad and ``reduce="variance"`` VarGrad (Hooker et al., "A
    Benchmark for Interpretability Methods in Deep Neural Networks", NeurIPS 2019; Adebayo et al.
    2018), as in xplique.

    Args:
        model_or_analyzer: a reverse analyzer, or a Keras model (then the plain gradient, or
            ``inner``; see :class:`Wrapper`).
        augment_by_n: number of noisy copies per sample. Defaults to `64`.
        noise_scale: standard deviation of the Gaussian noise, in input units (absolute, as
            iNNvestigate; unlike iNNvestigate 2.x it is honoured). Defaults to `1.0`.
        postprocess: see :class:`Wrapper`. Defaults to `None`.
        seed: int seed of the noise; the same seed gives the same maps, and every sample gets the
            same set of noise draws (so a batch equals its samples one at a time). None draws a new
            seed per analyze() call. Defaults to `None`.
        reduce: ``"mean"`` (SmoothGrad), ``"square"`` (the mean of the squared maps, SquareGrad)
            or ``"variance"`` (VarGrad). Defaults to `"mean"`.
        **kwargs: see :class:`Wrapper`.

    Raises:
        ValueError: bad ``augment_by_n``, ``noise_scale``, ``seed`` or ``reduce``; integer inputs.

    Example:

    ```python
    smooth = kp.SmoothGrad(kp.create_analyzer("guided_backprop", model), noise_scale=0.2, seed=0)
    maps = smooth.analyze(x)
    ```
    """

    def __init__(self, model_or_analyzer, augment_by_n=64, noise_scale=1.0, postprocess=None, seed=None,
                 reduce="mean", **kwargs):
        self.n = validation.positive_int("augment_by_n", augment_by_n)
        self.noise_scale = validation.finite_number("noise_scale", noise_scale, minimum=0)
        self.seed = validation.integer("seed", seed, allow_none=True)
        reduce = validation.one_of("reduce", reduce, _REDUCTIONS)
        self.reduce = reduce
        super().__init__(model_or_analyzer, postprocess=postprocess, **kwargs)
        if reduce != "mean":  # squared and variance maps are magnitudes, not signals
            self.output_kind = "attribution"
        self._config.update(augment_by_n=self.n, noise_scale=self.noise_scale, seed=seed, reduce=reduce)

    def _extra_specs(self):
        return [tf.TensorSpec((2,), tf.int32)]

    def _extra_args(self):
        seed = self.seed if self.seed is not None else np.random.randint(0, 2**31 - 1)
        return [np.array([int(seed) % (2**31 - 1), 0], dtype="int32")]

    def _modified(self, x, i, extras):
        (seed,) = extras
        n = self.n
        shape = tf.concat([[n], tf.shape(x)[1:]], axis=0)
        noise = tf.random.stateless_normal(shape, seed=seed + tf.constant([0, 1]) * i, dtype=x.dtype)
        rep = tf.repeat(x, n, axis=0)
        tiled = tf.tile(noise, tf.concat([[tf.shape(x)[0]], tf.ones_like(tf.shape(x)[1:])], axis=0))
        return rep + self.noise_scale * tiled

    def _reduce(self, maps, x, i):
        if self.reduce == "square":
            return tf.reduce_mean(tf.square(maps), axis=1)
        if self.reduce == "variance":
            return tf.math.reduce_variance(maps, axis=1)
        return tf.reduce_mean(maps, axis=1)


@register_preset("squaregrad", SmoothGrad)
def squaregrad():
    """SquareGrad (Hooker et al., NeurIPS 2019): the mean of the squared maps over noisy copies.
    Arguments as :class:`SmoothGrad` (``reduce`` is fixed)."""
    return dict(reduce="square")


@register_preset("vargrad", SmoothGrad)
def vargrad():
    """VarGrad (Adebayo et al., "Local Explanation Methods for Deep Neural Networks Lack
    Sensitivity to Parameter Values", ICLR workshop 2018): the variance of the maps over noisy
    copies. Arguments as :class:`SmoothGrad` (``reduce`` is fixed)."""
    return dict(reduce="variance")


def SquareGrad(model_or_analyzer, **kwargs):  # noqa: N802 (named like the method, as xplique)
    """``SmoothGrad(model_or_analyzer, reduce="square", ...)``: see :class:`SmoothGrad`."""
    return SmoothGrad(model_or_analyzer, reduce="square", **kwargs)


def VarGrad(model_or_analyzer, **kwargs):  # noqa: N802
    """``SmoothGrad(model_or_analyzer, reduce="variance", ...)``: see :class:`SmoothGrad`."""
    return SmoothGrad(model_or_analyzer, reduce="variance", **kwargs)


@register("integrated_gradients")
class IntegratedGradients(Wrapper):
    """Integrated Gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017, arXiv 1703.01365) over any reverse analyzer.

    mean_k m(x_ref + (k / steps) (x - x_ref)) * (x - x_ref) for k = 0 ... steps - 1, where m is the
    inner analyzer's map (the gradient by default): a left Riemann sum that includes the reference
    and excludes x, exactly as iNNvestigate.

    Args:
        model_or_analyzer: a reverse analyzer, or a Keras model (see :class:`Wrapper`).
        steps: number of path points. Defaults to `64`.
        reference_inputs: the baseline x_ref: a scalar or an array broadcastable to one sample's
            shape (a list of those for multi-input models). Defaults to `0`.
        postprocess: see :class:`Wrapper`. Defaults to `None`.
        **kwargs: see :class:`Wrapper`.

    Raises:
        ValueError: bad ``steps``, a reference that does not broadcast or is not finite, integer
            inputs.
    """

    multiplies_by_input = True

    def __init__(self, model_or_analyzer, steps=64, reference_inputs=0, postprocess=None, **kwargs):
        self.n = validation.positive_int("steps", steps)
        super().__init__(model_or_analyzer, postprocess=postprocess, **kwargs)
        self.output_kind = "attribution"
        self.multiplies_by_input = True
        n_in = len(self._input_specs)
        if isinstance(reference_inputs, (list, tuple)) and n_in > 1:
            refs = list(reference_inputs)
        else:  # one reference (a scalar is used for every input)
            refs = [reference_inputs] * n_in if np.ndim(reference_inputs) == 0 else [reference_inputs]
        if len(refs) != n_in:
            raise ValueError(
                f"`reference_inputs` needs one entry per model input ({len(self._input_specs)}). "
                f"Received: {len(refs)} entries"
            )
        self._refs = []
        for i, (r, (shape, dtype)) in enumerate(zip(refs, self._input_specs)):
            r = np.asarray(r, dtype=dtype)
            if not np.all(np.isfinite(r)):
                raise ValueError(f"`reference_inputs` for input {i} contains NaN or Inf.")
            try:
                if r.ndim > len(shape) - 1:
                    if r.ndim != len(shape) or r.shape[0] != 1:
                        raise ValueError
                    r = r[0]
                np.broadcast_shapes(r.shape, tuple(1 if s is None else s for s in shape[1:]))
            except ValueError:
                raise ValueError(
                    f"`reference_inputs` for input {i} must broadcast to one sample of shape "
                    f"{shape[1:]}. Received: shape {np.shape(refs[i])}"
                ) from None
            self._refs.append(r)
        self._config["steps"] = self.n
        self._config["reference_inputs"] = (
            [r.tolist() for r in self._refs] if n_in > 1 else self._refs[0].tolist()
        )

    def _modified(self, x, i, extras):
        ref = tf.cast(self._refs[i], x.dtype)
        diff = x - ref
        alphas = tf.range(self.n, dtype=x.dtype) / float(self.n)
        alphas = tf.reshape(alphas, [1, self.n] + [1] * (len(x.shape) - 1))
        path = ref + alphas * diff[:, None]
        return tf.reshape(path, tf.concat([[-1], tf.shape(x)[1:]], axis=0))

    def _reduce(self, maps, x, i):
        return tf.reduce_mean(maps, axis=1) * tf.cast(x - tf.cast(self._refs[i], x.dtype), maps.dtype)


__all__ = ["IntegratedGradients", "SmoothGrad", "SquareGrad", "VarGrad", "Wrapper"]

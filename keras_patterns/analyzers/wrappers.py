"""Analyzers that average the gradient over many inputs: SmoothGrad and Integrated Gradients."""

import numpy as np
import tensorflow as tf

from keras_patterns import validation
from keras_patterns.analyzers.base import ReverseAnalyzer, check_postprocess
from keras_patterns.analyzers.registry import register


def _check_float_inputs(analyzer):
    ints = [n for n, (_, dt) in zip(analyzer.graph.input_names, analyzer._input_specs)
            if not np.dtype(dt).kind == "f"]
    if ints:
        raise ValueError(
            f"{analyzer.name} perturbs its inputs and needs float inputs. Received integer inputs: {ints}"
        )


class _AveragedGradient(ReverseAnalyzer):
    """Gradient averaged over ``n`` modified copies of every sample.

    The output neuron is chosen once per sample from the unmodified input (arg-max for
    "max_activation", as iNNvestigate).
    """

    head = "ones"
    n = 1

    def _rows_per_call(self, batch_size):
        return max(1, batch_size // self.n)

    def _modified(self, x, i, extras):
        raise NotImplementedError

    def _finish(self, mean_map, x, i):
        return mean_map

    def _analyze_batch(self, inputs, indices, *extras):
        mode = self.neuron_selection_mode
        if mode == "max_activation":
            y = self.graph(inputs)[0]
            indices = tf.argmax(tf.reshape(y, [tf.shape(y)[0], -1]), axis=1, output_type=tf.int32)
        inner_mode = "all" if mode == "all" else "index"
        n = self.n
        batch = tf.shape(inputs[0])[0]
        modified = [self._modified(x, i, extras) for i, x in enumerate(inputs)]
        maps = self._reverse(modified, tf.repeat(indices, n), mode=inner_mode)
        out = []
        for i, (x, m) in enumerate(zip(inputs, maps)):
            m = tf.reshape(m, tf.concat([[batch, n], tf.shape(x)[1:]], axis=0))
            out.append(self._finish(tf.reduce_mean(m, axis=1), x, i))
        return out


@register("smoothgrad")
class SmoothGrad(_AveragedGradient):
    """SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
    arXiv 1706.03825): the gradient averaged over noisy copies of the input.

    Args:
        model: a Keras model without softmax.
        augment_by_n: number of noisy copies per sample. Defaults to `64`.
        noise_scale: standard deviation of the Gaussian noise, in input units (absolute, as
            iNNvestigate; unlike iNNvestigate 2.x it is honoured). Defaults to `1.0`.
        postprocess: None, "abs" or "square", applied to each noisy gradient before averaging.
            Defaults to `None`.
        seed: int seed of the noise; the same seed gives the same maps, and every sample gets the
            same set of noise draws (so a batch equals its samples one at a time). None draws a new
            seed per analyze() call. Defaults to `None`.
        **kwargs: ``neuron_selection_mode``, ``batch_size`` (rows per compiled call, noisy copies
            included).
    """

    def __init__(self, model, augment_by_n=64, noise_scale=1.0, postprocess=None, seed=None, **kwargs):
        self.n = validation.positive_int("augment_by_n", augment_by_n)
        self.noise_scale = validation.finite_number("noise_scale", noise_scale, minimum=0)
        self.seed = validation.integer("seed", seed, allow_none=True)
        self.postprocess = check_postprocess(postprocess)
        super().__init__(model, **kwargs)
        _check_float_inputs(self)
        self._config.update(augment_by_n=self.n, noise_scale=self.noise_scale,
                            postprocess=postprocess, seed=seed)

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


@register("integrated_gradients")
class IntegratedGradients(_AveragedGradient):
    """Integrated Gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017, arXiv 1703.01365).

    mean_k grad(x_ref + (k / steps) (x - x_ref)) * (x - x_ref) for k = 0 ... steps - 1: a left
    Riemann sum that includes the reference and excludes x, exactly as iNNvestigate.

    Args:
        model: a Keras model without softmax.
        steps: number of path points. Defaults to `64`.
        reference_inputs: the baseline x_ref: a scalar or an array broadcastable to one sample's
            shape (a list of those for multi-input models). Defaults to `0`.
        postprocess: None, "abs" or "square", applied to each path gradient. Defaults to `None`.
        **kwargs: ``neuron_selection_mode``, ``batch_size``.
    """

    def __init__(self, model, steps=64, reference_inputs=0, postprocess=None, **kwargs):
        self.n = validation.positive_int("steps", steps)
        self.postprocess = check_postprocess(postprocess)
        super().__init__(model, **kwargs)
        _check_float_inputs(self)
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
        self._config.update(steps=self.n, postprocess=postprocess)
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

    def _finish(self, mean_map, x, i):
        return mean_map * (x - tf.cast(self._refs[i], x.dtype))

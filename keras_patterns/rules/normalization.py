"""Rules for per-sample normalizations: LayerNormalization, GroupNormalization, UnitNormalization.

Ali, Schnake, Eberle, Montavon, Müller & Wolf, "XAI for Transformers: Better Explanations through
Conservative Propagation", ICML 2022 (arXiv 2202.07304): the normalising statistics (mean, standard
deviation, norm) are held constant in the backward pass, so the layer is the linear map

    y = s * C(x) + beta

with C the centering (``x - mean(x)`` over the normalised axes, per group for GroupNormalization;
none for UnitNormalization and LayerNormalization with ``rms_scaling``), s the per-sample scale
(``gamma / sqrt(var + epsilon)``, ``1 / ||x||``) taken from the forward pass and beta the offset.

* LRP (every rule and preset): the z rule of that linear map, ``R_in = x * J^T (R / z)`` with
  ``J = s * C`` and ``z = J x + beta`` (division guarded at exact zeros as in LRP-0). This is
  CP-LRP's treatment of LayerNorm (Ali et al. 2022: gradient x input through the layer with the
  statistics detached). It conserves relevance exactly without ``beta`` (``center=False``):
  ``sum_i x_i (J^T q)_i = q . J x = sum_j R_j``. LXT's LayerNorm rule (Achtibat et al., ICML
  2024: the identity rule on the 1/std factor only, i.e. std detached) is this same rule (checked
  against LXT 2.1's golden map, tests/rules/test_zennit_golden.py). The identity rule on the whole
  layer is :data:`NORM_IDENTITY`, for a ``layer_map``.
* Signal methods (deconvnet, guided backprop, PatternNet, PatternAttribution): ``J^T r``, the
  gradient with constant statistics (:data:`NORM_CONSTANT_GRADIENT`).
* Gradient methods: the layer's true gradient (statistics differentiated), as TensorFlow computes.
"""

import tensorflow as tf

from keras_patterns.graph.layers import L
from keras_patterns.rules.base import Rule
from keras_patterns.rules.redistribution import safe_div
from keras_patterns.rules.structural import IDENTITY


def _axes(axis, rank):
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % rank for a in axes)


def affine_parts(layer, x):
    """The per-sample affine form ``y = s * center(x) + beta`` of a normalization layer at ``x``.

    Args:
        layer: a LayerNormalization, GroupNormalization or UnitNormalization layer.
        x: the layer input (float32 or float64).

    Returns:
        ``(center, s, beta)``: ``center(v)`` the (linear) centering applied to any ``v`` shaped like
        ``x``; ``s`` the scale at ``x`` (broadcastable to x); ``beta`` the offset or None.

    Raises:
        TypeError: for another layer.
    """
    rank, dtype = len(x.shape), x.dtype

    def cast(v):
        # Python floats straight to x's dtype (1e-3 through float32 would be off by 5e-11)
        return tf.constant(v, dtype) if isinstance(v, (int, float)) else tf.cast(tf.convert_to_tensor(v), dtype)

    if isinstance(layer, L.LayerNormalization):
        axes = _axes(layer.axis, rank)
        shape = [1] * rank
        for a in axes:
            shape[a] = x.shape[a]
        gamma = tf.reshape(cast(layer.gamma), shape) if layer.scale else None
        beta = tf.reshape(cast(layer.beta), shape) if layer.center and not layer.rms_scaling else None
        mean, var = tf.nn.moments(x, axes, keepdims=True)
        s = tf.math.rsqrt(var + cast(layer.epsilon))
        s = s if gamma is None else s * gamma
        if layer.rms_scaling:  # Keras: x * rsqrt(var + eps) * gamma, no centering, no beta
            return (lambda v: v), s, None
        return (lambda v: v - tf.reduce_mean(v, axes, keepdims=True)), s, beta
    if isinstance(layer, L.GroupNormalization):
        axis = layer.axis % rank
        groups = layer.groups
        dyn = tf.shape(x)
        gshape = [dyn[i] for i in range(rank)]
        gshape[axis] = x.shape[axis] // groups
        gshape.insert(axis, groups)
        # reduce over every axis of the grouped tensor but the batch and the group axis
        raxes = [i for i in range(1, rank + 1) if i != axis]

        def grouped(v):
            return tf.reshape(v, tf.stack(gshape))

        def center(v):
            g = grouped(v)
            return tf.reshape(g - tf.reduce_mean(g, raxes, keepdims=True), tf.shape(v))

        _, var = tf.nn.moments(grouped(x), raxes, keepdims=True)
        inv = tf.math.rsqrt(var + cast(layer.epsilon))
        s = tf.reshape(inv * tf.ones_like(grouped(x)), tf.shape(x))
        bshape = [1] * rank
        bshape[axis] = x.shape[axis]
        if layer.scale:
            s = s * tf.reshape(cast(layer.gamma), bshape)
        beta = tf.reshape(cast(layer.beta), bshape) if layer.center else None
        return center, s, beta
    if isinstance(layer, L.UnitNormalization):
        axes = _axes(layer.axis, rank)
        # Keras: x * min(rsqrt(sum(x**2)), 1 / 1e-12)
        inv = tf.math.rsqrt(tf.reduce_sum(tf.square(x), axes, keepdims=True))
        return (lambda v: v), tf.minimum(inv, cast(1e12)), None
    raise TypeError(
        "Normalization rules apply to LayerNormalization, GroupNormalization and UnitNormalization. "
        f"Received: {type(layer).__name__} ({layer.name})"
    )


def constant_statistics(layer, x):
    """``(z, back)``: the bias-free output ``z = s * center(x)`` and ``back(r) = J^T r``, the
    transposed linear map with the statistics held constant."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        center, s, beta = affine_parts(layer, x)
        z = tf.stop_gradient(s) * center(x)
    return z, beta, (lambda r: tape.gradient(z, x, output_gradients=r))


def _z_backward(ctx, rs):
    (x,), (r,) = ctx.xs, rs
    z, beta, back = constant_statistics(ctx.node.layer, x)
    return [x * back(safe_div(r, z if beta is None else z + beta))]


def _constant_gradient(ctx, rs):
    (x,), (r,) = ctx.xs, rs
    return [constant_statistics(ctx.node.layer, x)[2](r)]


#: LRP through a per-sample normalization (Ali et al., ICML 2022, arXiv 2202.07304): the z rule of
#: the layer's linear map with constant statistics, the offset beta in the denominator.
NORM_Z = Rule("normalization.z", _z_backward)
#: Relevance passes unchanged through the whole layer (the identity rule, Achtibat et al., ICML
#: 2024, arXiv 2402.05602, who apply it to the 1/std factor only); for
#: ``layer_map=[(kp.graph.layers.PER_SAMPLE_NORMALIZATION, NORM_IDENTITY)]``.
NORM_IDENTITY = Rule("normalization.identity", IDENTITY.backward)
#: Deconvnet, guided backprop and the pattern methods: the gradient with constant statistics,
#: ``J^T r`` (Ali et al., ICML 2022).
NORM_CONSTANT_GRADIENT = Rule("normalization.constant_gradient", _constant_gradient)

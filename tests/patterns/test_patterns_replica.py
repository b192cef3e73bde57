"""The fast pattern statistics (filter-gradient identity) against a slow NumPy replica with patches."""

import keras
import numpy as np
import pytest

import keras_patterns as kp
from pattern_replica import replica_pattern

L = keras.layers
F64 = "float64"


def _conv_cfg(layer):
    return dict(
        ksize=tuple(layer.kernel_size), strides=tuple(layer.strides),
        dilation=tuple(layer.dilation_rate), padding=layer.padding,
    )


def _kind(layer):
    if isinstance(layer, L.Dense):
        return "dense"
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return "depthwise"
    return "conv"


def _model(input_shape, layers, seed=0):
    inp = keras.Input(input_shape, dtype=F64)
    h = inp
    for layer in layers:
        h = layer(h)
    model = keras.Model(inp, h)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape) + (0.1 if w.ndim == 1 else 0) for w in model.get_weights()])
    return model


def _check(model, x, pattern_type, batch_size=5):
    fast = kp.PatternComputer(model, pattern_type=pattern_type).compute(x, batch_size=batch_size, verbose=0)
    kernel_layers = [l for l in model.layers if hasattr(l, "kernel")]
    assert sorted(fast) == sorted(l.name for l in kernel_layers)
    probe = keras.Model(model.inputs[0], [t for l in kernel_layers for t in (l.input, l.output)])
    acts = [np.asarray(a) for a in probe(x)]
    for i, layer in enumerate(kernel_layers):
        xin, out = acts[2 * i], acts[2 * i + 1]
        cfg = None if _kind(layer) == "dense" else _conv_cfg(layer)
        ref = replica_pattern(_kind(layer), layer.kernel.numpy(), xin, out, pattern_type, cfg)
        assert fast[layer.name].shape == tuple(layer.kernel.shape)
        np.testing.assert_allclose(fast[layer.name], ref, rtol=1e-6, atol=1e-9, err_msg=layer.name)


CASES = {
    "dense": ((7,), lambda: [L.Dense(6, activation="relu", dtype=F64), L.Dense(3, dtype=F64)]),
    "dense_rank3": ((4, 5), lambda: [L.Dense(6, activation="relu", dtype=F64), L.Flatten(dtype=F64),
                                     L.Dense(3, dtype=F64)]),
    "conv1d": ((11, 3), lambda: [
        L.Conv1D(4, 3, padding="same", activation="relu", dtype=F64),
        L.Conv1D(4, 3, strides=2, padding="valid", activation="relu", dtype=F64),
        L.Conv1D(3, 2, dilation_rate=2, padding="causal", activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(3, dtype=F64)]),
    "conv2d": ((9, 8, 2), lambda: [
        L.Conv2D(4, 3, strides=2, padding="same", activation="relu", dtype=F64),
        L.Conv2D(3, (2, 3), dilation_rate=(2, 1), padding="valid", activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(3, dtype=F64)]),
    "conv2d_same_dilated": ((8, 8, 2), lambda: [
        L.Conv2D(3, 3, dilation_rate=2, padding="same", activation="relu", dtype=F64),
        L.Conv2D(3, 3, strides=(2, 3), padding="valid", activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(3, dtype=F64)]),
    "depthwise": ((8, 7, 3), lambda: [
        L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", activation="relu", dtype=F64),
        L.DepthwiseConv2D(2, padding="valid", dilation_rate=2, activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(3, dtype=F64)]),
    "depthwise1d": ((9, 2), lambda: [
        L.DepthwiseConv1D(3, depth_multiplier=3, padding="same", activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(2, dtype=F64)]),
    "conv3d": ((5, 5, 4, 2), lambda: [
        L.Conv3D(3, (2, 3, 2), strides=(1, 2, 1), padding="same", activation="relu", dtype=F64),
        L.Flatten(dtype=F64), L.Dense(2, dtype=F64)]),
}


@pytest.mark.parametrize("pattern_type", ["relu", "linear", "relu.negative"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_statistics_match_numpy_replica(case, pattern_type):
    shape, layers = CASES[case]
    model = _model(shape, layers())
    x = np.random.default_rng(1).normal(0, 1, (12,) + shape)
    _check(model, x, pattern_type)


def test_separate_relu_layer_gives_the_same_mask_as_a_fused_one():
    fused = _model((6, 6, 2), [L.Conv2D(3, 3, activation="relu", dtype=F64), L.Flatten(dtype=F64),
                               L.Dense(2, dtype=F64)])
    split = _model((6, 6, 2), [L.Conv2D(3, 3, dtype=F64), L.ReLU(dtype=F64), L.Flatten(dtype=F64),
                               L.Dense(2, dtype=F64)])
    x = np.random.default_rng(2).normal(0, 1, (10, 6, 6, 2))
    pf = kp.PatternComputer(fused, "relu").compute(x, verbose=0)
    ps = kp.PatternComputer(split, "relu").compute(x, verbose=0)
    np.testing.assert_allclose(list(pf.values())[0], list(ps.values())[0], rtol=1e-10)
    # the mask comes from the ReLU layer's output
    conv, relu = split.layers[1], split.layers[2]
    ref = replica_pattern("conv", conv.kernel.numpy(), x,
                          np.asarray(keras.Model(split.inputs[0], relu.output)(x)), "relu", _conv_cfg(conv))
    np.testing.assert_allclose(ps[conv.name], ref, rtol=1e-6, atol=1e-9)

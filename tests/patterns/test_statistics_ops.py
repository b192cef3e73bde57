"""The pattern statistics update: its op budget, and its packed totals against a float64 replica.

On a small model the cost of one update is the number of ops it runs, not the arithmetic: the
update keeps two float64 variables per layer (every kernel-shaped sum of every pattern type as
one filter gradient produces them, and the vector ``[n_rows, sum_y, counts]``), each filled by
one cast and one ``assign_add``. ``test_update_op_budget_on_the_digits_cnn`` pins the op counts of
that design so that a regression is caught; the replica tests check that the packed totals
unpack to the same ``statistics()`` for every layout (signals concatenated on the kernel's last
axis, or stacked on a new one) and every order of pattern types.
"""

import collections
import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from keras_patterns.canonizers import prepare_graph
from keras_patterns.linear import LinearView, apply_kernel, einsum_specs
from keras_patterns.patterns.statistics import PatternStatistics
from paths import ROOT

L = keras.layers
F64 = "float64"


def _digits_model():
    spec = importlib.util.spec_from_file_location(
        "kp_example_digits_cnn_ops", os.path.join(ROOT, "examples", "digits_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keras.utils.set_random_seed(0)
    return kp.model_wo_softmax(module.build_model())


#: Per kernel layer with one masked pattern type (the digits CNN: 2 Conv2D, 2 Dense), the ops of
#: the bookkeeping kinds in the traced update, by design:
#: Cast: the mask, the kernel sums, the unit sums, the row count (4);
#: AssignAddVariableOp: one per variable (2);
#: ConcatV2: the signals [m, y m], the unit sums [sum_y, count], [n_rows, ...] (3);
#: Sum: sum_y and count (2); ReadVariableOp: the bias for y = z - b (1, plus the forward's 2);
#: Shape/StridedSlice/Reshape: the row count from the static shape (1 each, plus the forward's
#: Flatten). Nothing else: no Split, Transpose (tensordot), Prod/GatherV2 (tensordot's shapes),
#: Size/FloorDiv (dynamic row counts), Pack/Unpack, Fill.
BUDGET_PER_LAYER = {
    "Cast": 4, "AssignAddVariableOp": 2, "ConcatV2": 3, "Sum": 2, "ReadVariableOp": 3,
    "Shape": 1, "StridedSlice": 1, "Reshape": 1,
}
NEVER = ("Split", "SplitV", "Transpose", "Prod", "GatherV2", "Size", "FloorDiv", "Unpack", "Fill")


def _op_counts(fn):
    graph = fn.get_concrete_function().graph
    return collections.Counter(op.type for op in graph.get_operations())


def test_update_op_budget_on_the_digits_cnn():
    """The traced update of the digits CNN (4 kernel layers, "relu") runs at most the budgeted
    bookkeeping ops (74 in all; 128 before the packed variables), two float64 variables per
    layer, and the same number of filter gradients as kernel layers."""
    model = _digits_model()
    stats = PatternStatistics(prepare_graph(model), "relu")
    n_layers = len(stats.kernel_nodes)
    assert n_layers == 4
    assert all(len(v) == 2 for v in stats._vars.values())
    ops = _op_counts(stats._update)
    # the forward's Flatten; a Dense layer on samples casts its input and signals to float64
    # (its sums are taken in float64: one Cast more per Dense layer)
    extra = {"ReadVariableOp": 0, "Shape": 1, "StridedSlice": 1, "Reshape": 1, "Cast": 2}
    for kind, per_layer in BUDGET_PER_LAYER.items():
        assert ops[kind] <= per_layer * n_layers + extra.get(kind, 0), (kind, ops[kind])
    for kind in NEVER:
        assert ops[kind] == 0, (kind, ops[kind])
    assert ops["Pack"] <= 1  # the forward's Flatten
    bookkeeping = sum(ops[k] for k in list(BUDGET_PER_LAYER) + list(NEVER) + ["Pack"])
    assert bookkeeping <= 74, bookkeeping
    assert ops["Conv2DBackpropFilter"] == 2 and ops["MatMul"] == 4  # 2 forward + 2 filter sums


def test_update_op_budget_with_three_pattern_types():
    """Each extra masked type adds its mask (Greater, Cast, Mul) and one Sum; the variables and
    the casts and assignments of the sums stay two per layer."""
    model = _digits_model()
    one = _op_counts(PatternStatistics(prepare_graph(model), "relu")._update)
    three = _op_counts(PatternStatistics(prepare_graph(model), ("relu", "linear", "relu.negative"))._update)
    assert three["AssignAddVariableOp"] == one["AssignAddVariableOp"] == 8
    assert three["Cast"] == one["Cast"] + 4          # the second mask
    assert three["Sum"] == one["Sum"] + 4            # its count
    for kind in NEVER:
        assert three[kind] == 0, (kind, three[kind])


# ------------------------------------------------------------------- packed totals vs a replica
def _layer_cases():
    """``name: (input shape, kernel layer)``, all float64, covering both layouts of the packed
    kernel sums: concatenated on the last axis (Dense on rank 2 and 3, Conv2D by the
    backprop-filter op, causal Conv1D by the gradient) and stacked on a new axis (grouped,
    depthwise and transposed convolutions, EinsumDense). channels_first convolutions (stacked too)
    have no float64 CPU kernel; ``test_patterns_models.test_channels_first_conv_matches_channels_last``
    checks them against channels_last for two pattern types."""
    return {
        "dense": ((5,), lambda: L.Dense(3, dtype=F64)),
        "dense_rank3": ((4, 5), lambda: L.Dense(3, dtype=F64)),
        "conv2d": ((6, 6, 2), lambda: L.Conv2D(3, 3, strides=2, padding="same", dtype=F64)),
        "conv1d_causal": ((7, 2), lambda: L.Conv1D(3, 3, padding="causal", dilation_rate=2, dtype=F64)),
        "conv2d_groups": ((6, 6, 4), lambda: L.Conv2D(6, 3, groups=2, dtype=F64)),
        "depthwise": ((6, 6, 2), lambda: L.DepthwiseConv2D(3, depth_multiplier=2, dtype=F64)),
        "conv2d_transpose": ((4, 4, 2), lambda: L.Conv2DTranspose(3, 3, strides=2, dtype=F64)),
        "einsum": ((4, 5), lambda: L.EinsumDense("abc,cde->abde", (4, 2, 3), bias_axes="de", dtype=F64)),
    }


def _model(name):
    shape, make = _layer_cases()[name]
    keras.utils.set_random_seed(1)
    inp = keras.Input(shape, dtype=F64)
    layer = make()
    z = layer(inp)
    out = L.Flatten(dtype=F64)(L.ReLU(dtype=F64)(z))
    model = keras.Model(inp, L.Dense(2, dtype=F64)(out))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    return model, layer


def _unit_sums(layer, t):
    """Sums over the rows of an output-shaped array: one value per output unit, in the kernel's
    column order."""
    if isinstance(layer, L.EinsumDense):
        _, _, out, units = einsum_specs(layer.equation, out_rank=t.ndim)
        return np.einsum(f"{out}->{units}", t).reshape(-1)
    axis = 1 if getattr(layer, "data_format", None) == "channels_first" else t.ndim - 1
    return t.sum(axis=tuple(i for i in range(t.ndim) if i != axis))


def _filter_sums(layer, x, g):
    """``sum over rows of x_patch * g``, kernel-shaped, from the forward map alone: entry k is
    ``<g, lin(x, e_k)>`` with e_k the k-th unit kernel (the map is linear in the kernel)."""
    kshape = tuple(layer.kernel.shape)
    out = np.zeros(int(np.prod(kshape)))
    xt = tf.constant(x)
    # Traced: TensorFlow's CPU kernels run channels_first convolutions only inside a graph.
    lin = tf.function(lambda k: apply_kernel(layer, xt, k))
    for k in range(out.size):
        e = np.zeros(out.size)
        e[k] = 1.0
        out[k] = np.sum(g * lin(tf.constant(e.reshape(kshape))).numpy())
    return out.reshape(kshape)


def _replica(layer, x, z, types):
    """The float64 statistics of one kernel layer over the batch ``x`` with outputs ``z``."""
    bias = layer.bias.numpy()
    if getattr(layer, "data_format", None) == "channels_first":
        bias = bias.reshape((1, -1) + (1,) * (z.ndim - 2))
    y = z - bias
    n_units = _unit_sums(layer, y).size
    want = {"n_rows": y.size / n_units, "sum_y": _unit_sums(layer, y)}
    for t in types:
        m = np.ones_like(z) if t == "linear" else ((z > 0) if t == "relu" else (z <= 0)).astype(F64)
        want[t] = {"count": _unit_sums(layer, m), "sum_x": _filter_sums(layer, x, m),
                   "sum_xy": _filter_sums(layer, x, y * m)}
    return want


@pytest.mark.parametrize("types", [("relu", "linear", "relu.negative"), ("linear", "relu")])
@pytest.mark.parametrize("name", sorted(_layer_cases()))
def test_packed_totals_match_the_float64_replica(name, types):
    """``statistics()`` of a float64 kernel layer over two batches equals the float64 replica
    (filter sums from the forward map with unit kernels, so independent of the filter gradient):
    the counts and n_rows exactly, the sums to 1e-12 (float64 sums of a few hundred terms of
    size ~1). ``reset_state`` zeroes everything."""
    model, layer = _model(name)
    x = np.random.default_rng(3).normal(size=(5,) + tuple(model.input.shape[1:]))
    # Traced, as the update (channels_first); not predict, whose data adapter casts to float32.
    z = tf.function(keras.Model(model.input, layer.output))(tf.constant(x)).numpy()
    graph = prepare_graph(model)
    stats = PatternStatistics(graph, types)
    assert stats.pattern_types == types
    stats.update_state(x[:3])
    stats.update_state(x[3:])
    (key,) = [k for k in stats.key_nodes if k == layer.name]
    got = stats.statistics()[key]
    want = _replica(layer, x, z, types)
    assert list(got) == ["n_rows", "sum_y", *types]
    assert got["n_rows"] == want["n_rows"]
    np.testing.assert_allclose(got["sum_y"], want["sum_y"], rtol=1e-12, atol=1e-12)
    for t in types:
        np.testing.assert_array_equal(got[t]["count"], want[t]["count"])
        for s in ("sum_x", "sum_xy"):
            assert got[t][s].shape == tuple(layer.kernel.shape)
            np.testing.assert_allclose(got[t][s], want[t][s], rtol=1e-12, atol=1e-12, err_msg=f"{t} {s}")
    stats.reset_state()
    assert all(not np.any(v) for v in tf.nest.flatten(stats.statistics()))


def test_filter_sums_of_a_grouped_convolution_are_per_signal():
    """A grouped convolution cannot take its signals concatenated on the channels (the groups of
    the wider output would mix the signals): ``filter_sums_list`` equals one call per signal and
    the float64 replica. (It did not before the packed statistics: errors of order 10.)"""
    model, layer = _model("conv2d_groups")
    node = [n for n in prepare_graph(model).nodes if n.layer is layer][0]
    view = LinearView(node)
    assert not view.concatenates_signals
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 6, 4))
    gs = [rng.normal(size=(2, 4, 4, 6)) for _ in range(2)]
    got = view.filter_sums_list(tf.constant(x), [tf.constant(g) for g in gs])
    for g, s in zip(gs, got):
        np.testing.assert_allclose(s.numpy(), _filter_sums(layer, x, g), rtol=1e-12, atol=1e-12)

"""Pattern statistics, patterns and the pattern rules on EinsumDense, against float64 NumPy replicas.

The replica does not use the filter-gradient identity: it writes every EinsumDense as a Dense over
explicit rows. A row is one position of the output axes that are not kernel axes (batch, tokens,
...); its input vector is the contracted input axes there (``X``, R x D), the kernel is the
matrix of contracted axes x output-unit axes (``W``, D x C, units in kernel order) and the layer is
``Y = X W + b`` (checked against the layer first). The statistics are then sums over the rows of X
(count, X^T M, X^T (y M), sum y), the pattern is the per-unit estimator of the paper
(tests/pattern_replica.py ``unit_estimator``) and PatternNet / PatternAttribution are ``R_in = R A^T``
/ ``R (W * A)^T`` on the rows, mapped back to the input's shape.

Everything runs in float64. Measured (largest difference over the reference's max-abs): at most
9.6e-16 for the statistics, 3.8e-16 for the patterns and 4.2e-16 for the maps. Asserted at 1e-10
for the statistics (sums of at most a few hundred products) and 1e-8 for patterns and maps (the
estimator divides by w^T cov, which amplifies rounding for a poorly determined unit, so the
bound leaves room for other seeds).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import keras_patterns as kp
from keras_patterns.canonizers import prepare_graph
from keras_patterns.errors import NotAnalyzeableModelError
from keras_patterns.linear import einsum_specs
from keras_patterns.patterns.statistics import PatternStatistics, mask_source
from pattern_replica import unit_estimator

F64 = "float64"

#: name -> (equation, output_shape, bias_axes, input shape without batch). The first two are the
#: equations MultiHeadAttention uses (query/key/value projections and the output projection).
EQUATIONS = {
    "mha_qkv": ("abc,cde->abde", (None, 2, 3), None, (5, 4)),
    "mha_qkv_bias": ("abc,cde->abde", (None, 2, 3), "de", (5, 4)),
    "mha_output": ("abcd,cde->abe", (None, 4), "e", (5, 2, 3)),
    "dense_tokens_bias": ("abc,cd->abd", (None, 3), "d", (6, 4)),
    "permuted_units": ("abc,dce->aebd", (3, None, 2), "d", (4, 5)),
    "ellipsis": ("...b,bc->...c", 3, "c", (2, 3, 4)),
}


class RowMap:
    """An EinsumDense layer as a Dense over explicit rows (see the module docstring)."""

    def __init__(self, layer, x_rank, out_rank):
        self.x, self.kernel, self.out, self.units = einsum_specs(layer.equation, x_rank, out_rank)
        self.rows = "".join(c for c in self.out if c not in self.kernel)
        self.contracted = "".join(c for c in self.kernel if c not in self.out)
        self.kshape = tuple(layer.kernel.shape)
        self.dims = dict(zip(self.kernel, self.kshape))

    def x_rows(self, x):
        return np.einsum(f"{self.x}->{self.rows}{self.contracted}", x).reshape(-1, self.d)

    def y_rows(self, y):
        return np.einsum(f"{self.out}->{self.rows}{self.units}", y).reshape(-1, self.c)

    @property
    def d(self):
        return int(np.prod([self.dims[c] for c in self.contracted]))

    @property
    def c(self):
        return int(np.prod([self.dims[c] for c in self.units]))

    def matrix(self, kernel):
        return np.einsum(f"{self.kernel}->{self.contracted}{self.units}", kernel).reshape(self.d, self.c)

    def kernel_shaped(self, m):
        shape = [self.dims[c] for c in self.contracted + self.units]
        return np.einsum(f"{self.contracted}{self.units}->{self.kernel}", m.reshape(shape))

    def back_to_input(self, r_rows, x_shape):
        """Rows of input signals (R, D) in the input's shape (the adjoint of :meth:`x_rows` for
        equations whose input axes are all rows or contracted)."""
        sizes = dict(zip(self.x, x_shape))
        shape = [sizes[c] for c in self.rows + self.contracted]
        return np.einsum(f"{self.rows}{self.contracted}->{self.x}", r_rows.reshape(shape))


def einsum_model(name, seed=0):
    equation, output_shape, bias_axes, in_shape = EQUATIONS[name]
    inp = keras.Input(in_shape, dtype=F64)
    layer = L.EinsumDense(equation, output_shape, bias_axes=bias_axes, dtype=F64)
    model = keras.Model(inp, layer(inp))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.7, w.shape) + (0.2 if i else 0.0)
                       for i, w in enumerate(layer.get_weights())])
    return model, layer


def replica_statistics(lin, kernel, x, z, bias):
    """The relu statistics and pattern (mask [own output > 0]) over explicit rows, kernel-shaped."""
    xr = lin.x_rows(x)
    zr = lin.y_rows(z)
    w = lin.matrix(kernel)
    y0 = xr @ w                                              # bias-free output per row
    np.testing.assert_allclose(y0 + lin.y_rows(np.broadcast_to(bias, z.shape)), zr, rtol=1e-12, atol=1e-12)
    mask = (zr > 0).astype(F64)
    a = np.stack([unit_estimator(xr, w[:, j], y0[:, j], mask[:, j]) for j in range(w.shape[1])], axis=1)
    return {
        "count": mask.sum(0), "sum_x": lin.kernel_shaped(xr.T @ mask),
        "sum_xy": lin.kernel_shaped(xr.T @ (y0 * mask)), "sum_y": y0.sum(0), "n_rows": xr.shape[0],
        "pattern": lin.kernel_shaped(a), "w": w, "a": a,
    }


@pytest.mark.parametrize("name", sorted(EQUATIONS))
def test_einsum_statistics_and_patterns_match_explicit_rows(name):
    """count, sum_x, sum_xy, sum_y, n_rows and the relu pattern of one EinsumDense equal the
    explicit-row replica; ``w_j^T a_j = 1`` for every unit."""
    model, layer = einsum_model(name)
    x = np.random.default_rng(1).normal(size=(7,) + EQUATIONS[name][3])
    z = model(x).numpy()
    graph = prepare_graph(model)
    stats = PatternStatistics(graph, "relu")
    stats.update_state(x[:4])
    stats.update_state(x[4:])                                  # sums over batches add
    got = stats.statistics()[graph.nodes[0].key]
    bias = layer.bias.numpy() if layer.bias is not None else 0.0
    lin = RowMap(layer, x.ndim, z.ndim)
    want = replica_statistics(lin, layer.kernel.numpy(), x, z, bias)
    assert float(got["n_rows"]) == want["n_rows"]
    np.testing.assert_array_equal(got["relu"]["count"], want["count"])
    np.testing.assert_allclose(got["sum_y"], want["sum_y"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["relu"]["sum_x"], want["sum_x"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["relu"]["sum_xy"], want["sum_xy"], rtol=1e-10, atol=1e-12)
    a = stats.result()["relu"][graph.nodes[0].key]
    assert a.shape == tuple(layer.kernel.shape)
    np.testing.assert_allclose(a, want["pattern"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.sum(want["w"] * lin.matrix(a), axis=0), 1.0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(EQUATIONS))
def test_linear_pattern_type_on_einsum(name):
    """The "linear" type (mask all ones): count = n_rows for every unit, the pattern the replica's."""
    model, layer = einsum_model(name, seed=3)
    x = np.random.default_rng(4).normal(size=(6,) + EQUATIONS[name][3])
    a = kp.PatternComputer(model, pattern_type="linear").compute(x, batch_size=4, verbose=0)[layer.name]
    lin = RowMap(layer, x.ndim, model.outputs[0].ndim)
    xr = lin.x_rows(x)
    w = lin.matrix(layer.kernel.numpy())
    want = np.stack([unit_estimator(xr, w[:, j], xr @ w[:, j], np.ones(len(xr))) for j in range(w.shape[1])], 1)
    np.testing.assert_allclose(a, lin.kernel_shaped(want), rtol=1e-8, atol=1e-10)


def _flat_head(name, seed=0):
    """One EinsumDense followed by Flatten (a vector output for the neuron selection)."""
    model, layer = einsum_model(name, seed)
    return keras.Model(model.inputs, L.Flatten(dtype=F64)(model.outputs[0])), layer


@pytest.mark.parametrize("method", ["pattern.net", "pattern.attribution"])
@pytest.mark.parametrize("name", ["mha_qkv_bias", "mha_output", "permuted_units"])
def test_pattern_methods_on_one_einsum_dense_match_replica(name, method):
    """PatternNet (``R A^T`` on the rows) and PatternAttribution (``R (W * A)^T``), seeded with the
    selected output's value (max_activation), equal the replica with the replica's pattern."""
    model, layer = _flat_head(name)
    rng = np.random.default_rng(5)
    fit_x = rng.normal(size=(9,) + EQUATIONS[name][3])
    x = rng.normal(size=(3,) + EQUATIONS[name][3])
    analyzer = kp.create_analyzer(method, model)
    analyzer.fit(fit_x, batch_size=4, verbose=0)
    got = analyzer.analyze(x)
    z_fit = layer(fit_x).numpy()
    lin = RowMap(layer, x.ndim, z_fit.ndim)
    bias = layer.bias.numpy() if layer.bias is not None else 0.0
    ref = replica_statistics(lin, layer.kernel.numpy(), fit_x, z_fit, bias)
    np.testing.assert_allclose(analyzer.patterns[layer.name], ref["pattern"], rtol=1e-8, atol=1e-10)
    k = ref["a"] if method == "pattern.net" else ref["a"] * ref["w"]
    z = layer(x).numpy()
    flat = z.reshape(3, -1)
    seed = np.zeros_like(flat)
    top = flat.argmax(1)
    seed[np.arange(3), top] = flat[np.arange(3), top]
    want = lin.back_to_input(lin.y_rows(seed.reshape(z.shape)) @ k.T, x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


def test_einsum_pattern_node_masks_come_from_its_own_output():
    """No ReLU follows an EinsumDense in a transformer block: the relu mask is [own output > 0]
    (as for a linear output layer), also when an Add (residual) follows."""
    inp = keras.Input((4, 6))
    mha = L.MultiHeadAttention(2, 3)
    h = L.Add()([inp, mha(inp, inp)])
    h = L.LayerNormalization()(h)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    graph = prepare_graph(model)
    einsum = [n for n in graph.nodes if isinstance(n.layer, L.EinsumDense)]
    assert [n.name.split("/")[-1] for n in einsum] == ["query", "key", "value", "output"]
    for n in einsum:
        assert mask_source(graph, n) == n.outputs[0], n.name


def test_mha_projection_patterns_match_replica():
    """Inside a MultiHeadAttention the query, key, value and output projections get the
    replica's patterns fitted on their own inputs (the canonized graph's intermediate values)."""
    rng = np.random.default_rng(8)
    inp = keras.Input((5, 6), dtype=F64)
    mha = L.MultiHeadAttention(2, 3, value_dim=4, output_shape=7, dtype=F64)
    model = keras.Model(inp, mha(inp, inp))
    mha.set_weights([rng.normal(0, 0.7, w.shape) for w in mha.get_weights()])
    x = rng.normal(size=(6, 5, 6))
    patterns = kp.PatternComputer(model, "relu").compute(x, batch_size=3, verbose=0)
    graph = prepare_graph(model)
    values = graph.run([tf.constant(x)])
    for n in graph.nodes:
        if not isinstance(n.layer, L.EinsumDense):
            continue
        xin, z = values[n.inputs[0]].numpy(), values[n.outputs[0]].numpy()
        lin = RowMap(n.layer, xin.ndim, z.ndim)
        ref = replica_statistics(lin, n.layer.kernel.numpy(), xin, z, n.layer.bias.numpy())
        np.testing.assert_allclose(patterns[n.key], ref["pattern"], rtol=1e-8, atol=1e-10, err_msg=n.name)


@pytest.mark.parametrize("equation,out_shape,in_shape,axis", [
    ("abc,bcd->abd", (5, 3), (5, 4), "'b' is in the input, the kernel and the output"),
])
def test_einsum_equations_the_statistics_cannot_fit_are_refused(equation, out_shape, in_shape, axis):
    inp = keras.Input(in_shape)
    model = keras.Model(inp, L.Flatten()(L.EinsumDense(equation, out_shape, name="per_token")(inp)))
    for method in ("pattern.net", "pattern.attribution"):
        with pytest.raises(NotAnalyzeableModelError, match=rf"per_token \(EinsumDense, equation "
                                                           rf"'{equation}': kernel axis {axis}"):
            kp.create_analyzer(method, model).fit(np.zeros((2,) + in_shape, "float32"), verbose=0)
    # the other families still explain it (the kernel rules need no unit axis)
    assert np.isfinite(kp.create_analyzer("lrp.epsilon", model).analyze(np.ones((1,) + in_shape, "float32"))).all()


def test_fused_relu_of_an_einsum_dense_gives_its_mask():
    """EinsumDense(activation="relu") is split into a linear node and a ReLU node; the mask is
    taken after the ReLU, [relu(z) > 0] = [z > 0]: the same pattern as the linear layer's own
    output mask, and the replica's."""
    x = np.random.default_rng(11).normal(size=(7, 5, 4))
    got = {}
    for act in ("relu", "linear"):
        inp = keras.Input((5, 4), dtype=F64)
        layer = L.EinsumDense("abc,cde->abde", (5, 2, 3), bias_axes="de", activation=act, dtype=F64,
                              name="proj")
        h = layer(inp)
        model = keras.Model(inp, L.Dense(2, dtype=F64)(L.Flatten(dtype=F64)(h)) if act == "relu" else h)
        rng = np.random.default_rng(0)
        layer.set_weights([rng.normal(0, 0.7, w.shape) + (0.2 if i else 0.0)
                           for i, w in enumerate(layer.get_weights())])
        graph = prepare_graph(model)
        (node,) = [n for n in graph.nodes if n.key == "proj"]
        if act == "relu":
            assert mask_source(graph, node) == graph.consumers(node.outputs[0])[0].outputs[0]
        got[act] = kp.PatternComputer(model, "relu").compute(x, batch_size=4, verbose=0)["proj"]
        if act == "linear":
            z = model(x).numpy()
            lin = RowMap(layer, x.ndim, z.ndim)
            want = replica_statistics(lin, layer.kernel.numpy(), x, z, layer.bias.numpy())["pattern"]
    np.testing.assert_allclose(got["relu"], got["linear"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["linear"], want, rtol=1e-8, atol=1e-10)


def test_signal_quality_refuses_einsum_dense_by_name():
    """signal_quality's per-unit regressions assume the units on the last kernel axis: it names an
    EinsumDense layer instead of measuring it wrongly."""
    from keras_patterns.evaluation import signal_quality

    model, _ = _flat_head("mha_qkv_bias")
    x = np.random.default_rng(12).normal(size=(40, 5, 4))
    with pytest.raises(ValueError, match=r"EinsumDense layer 'einsum_dense.*' out with `layers=`.*"
                                         r"equation='abc,cde->abde'"):
        signal_quality(model, x, x, x, estimators=("S_w",))

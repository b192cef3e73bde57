"""Numerical robustness of pattern fitting: dead units, degenerate and extreme data, NaN/Inf, long runs.

Every test asserts numbers against a float64 NumPy reference (``pattern_replica.py`` or sums
computed here) or an analytic value. Tolerances for float32 models are derived, not tuned: see
:func:`_pattern_error_bound` and :func:`test_a_million_rows_match_float64_sums`.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from keras_patterns.patterns.estimators import pattern_from_statistics
from keras_patterns.patterns.statistics import PatternStatistics
from pattern_replica import conv_patches, replica_pattern

import builders

L = keras.layers
#: Unit roundoff of float32 and float64.
U32, U64 = 2.0 ** -24, 2.0 ** -53


def _gamma(n, u=U32):
    """Higham's gamma_n = n u / (1 - n u): a sum or dot product of n terms, in any order, is off by
    at most gamma_{n-1} times the sum of the absolute terms (Accuracy and Stability of Numerical
    Algorithms, 2nd ed., eq. 3.5)."""
    return n * u / (1 - n * u)


# ------------------------------------------------------------------------------------------ helpers
def _dense_model(n_in, units, seed=0, scale=1.0, dead=(), out=3):
    """x -> Dense(units, relu) -> Dense(out), float32, random weights; biases times ``scale`` (so the
    model is homogeneous in (x, b): data times s gives the same masks); ``dead`` units get bias
    -1000 (they never fire)."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((n_in,))
    d1, d2 = L.Dense(units, activation="relu"), L.Dense(out)
    model = keras.Model(inp, d2(d1(inp)))
    b1 = rng.normal(0, 0.5, units) * scale
    b1[list(dead)] = -1000.0
    d1.set_weights([rng.normal(0, 0.5, (n_in, units)), b1])
    d2.set_weights([rng.normal(0, 0.5, (units, out)), rng.normal(0, 0.5, out) * scale])
    return model, d1, d2


def _probe(model, layers, x):
    """Each layer's (input, output) for ``x``, float64 copies of the float32 forward pass."""
    probe = keras.Model(model.inputs[0], [t for l in layers for t in (l.input, l.output)])
    acts = [np.asarray(a, dtype="float64") for a in probe(x)]
    return [(acts[2 * i], acts[2 * i + 1]) for i in range(len(layers))]


def _mask(out, pattern_type):
    if pattern_type == "linear":
        return np.ones_like(out)
    return (out > 0).astype("float64") if pattern_type == "relu" else (out <= 0).astype("float64")


def _pattern_error_bound(rows, w, b, mask, rows_per_batch, a_ref):
    """A first-order bound on |a_fast - a_ref| for float32 statistics, elementwise (D, C).

    The fast path forms, per batch of ``B = rows_per_batch`` rows and in float32: the bias-free
    output ``y = (x w + b) - b`` (error <= gamma_{D+2} A_r with ``A_r = sum_k |x_rk w_k| + 2|b|``,
    which also bounds |y_r|), then ``sum x m`` and ``sum x y m`` over the batch (a further
    gamma_B of the absolute terms) and ``sum y``; the float64 totals and the estimator add only
    float64 rounding. So, with ``g = gamma_{B+D+4}``:

        |d E_M[x y]| <= g E_M[|x| A],   |d E_M[x]| <= g E_M[|x|],   |d E[y]| <= g E[A]
        |d cov| <= |d E_M[xy]| + |d E_M[x]| |E[y]| + |E_M[x]| |d E[y]|
        |d d_j| <= sum_i |w_ij| |d cov_ij|
        |d a|   <= 2 (|d cov| + |a| |d d_j|) / |d_j|     (first order; valid while |d d_j| < |d_j| / 2,
                                                          asserted)
    """
    absx = np.abs(rows)
    big_a = absx @ np.abs(w) + 2 * np.abs(b)[None, :]
    y = rows @ w
    cnt = np.maximum(mask.sum(0), 1)
    mean_x, mean_y = (rows.T @ mask) / cnt, y.mean(0)
    cov = (rows.T @ (y * mask)) / cnt - mean_x * mean_y
    d = (w * cov).sum(0)
    g = _gamma(rows_per_batch + rows.shape[1] + 4)
    dcov = g * ((absx.T @ (big_a * mask)) / cnt + (absx.T @ mask) / cnt * np.abs(mean_y)
                + np.abs(mean_x) * big_a.mean(0)) + 8 * U64 * np.abs(cov)
    dd = (np.abs(w) * dcov).sum(0)
    live = d != 0
    assert np.all(dd[live] < 0.5 * np.abs(d[live])), "the first-order bound does not apply"
    bound = np.where(live, 2 * (dcov + np.abs(a_ref) * dd) / np.where(live, np.abs(d), 1), dcov)
    return bound


def _assert_dense_patterns(model, layers, x, pattern_type, batch_size, patterns):
    """Every Dense layer's fitted pattern equals the float64 replica within the derived bound."""
    for layer, (xin, out) in zip(layers, _probe(model, layers, x)):
        w, b = (np.asarray(v, dtype="float64") for v in layer.get_weights())
        ref = replica_pattern("dense", w, xin, out, pattern_type)
        bound = _pattern_error_bound(xin, w, b, _mask(out, pattern_type), batch_size, ref)
        err = np.abs(patterns[layer.name] - ref)
        assert np.all(err <= bound), (layer.name, pattern_type, float((err - bound).max()))


def _numpy_maps(x, model, d1, d2, patterns, attribution):
    """PatternNet / PatternAttribution maps of x -> Dense(relu) -> Dense in float64, seeded with the
    model's own float32 max output (neuron_selection_mode="max_activation")."""
    w1, w2 = d1.kernel.numpy().astype("float64"), d2.kernel.numpy().astype("float64")
    a1, a2 = patterns[d1.name].astype("float64"), patterns[d2.name].astype("float64")
    k1, k2 = (w1 * a1, w2 * a2) if attribution else (a1, a2)
    y = np.asarray(model(x), dtype="float64")
    h = np.asarray(keras.Model(model.inputs[0], d1.output)(x), dtype="float64")
    j = y.argmax(1)
    seed = y[np.arange(len(x)), j]
    r1 = seed[:, None] * k2[:, j].T * (h > 0)
    abs_r1 = np.abs(seed)[:, None] * np.abs(k2[:, j]).T * (h > 0)
    return r1 @ k1.T, abs_r1 @ np.abs(k1).T


def _assert_maps_match_numpy(x, model, d1, d2, patterns):
    """Both analyzers' maps equal the float64 backward pass; the float32 one rounds at most 8 times
    per term (W*A, seed*k2, the 4-term dot product), so |error| <= gamma_8 * (the absolute pass)."""
    for name, attribution in (("pattern.net", False), ("pattern.attribution", True)):
        maps = kp.create_analyzer(name, model, patterns=patterns).analyze(x)
        ref, abs_ref = _numpy_maps(x, model, d1, d2, patterns, attribution)
        assert np.all(np.isfinite(maps))
        assert np.all(np.abs(maps - ref) <= _gamma(8) * abs_ref), name


# --------------------------------------------------------------------------------- 1. dead units
@pytest.mark.parametrize("pattern_type", ["relu", "linear", "relu.negative"])
def test_dead_dense_unit_gets_an_exactly_zero_pattern_and_finite_maps(pattern_type):
    """Units 0 and 2 have bias -1000 and never fire. "relu": their mask is never on, so their
    pattern is exactly 0; "linear" and "relu.negative" see them on every row (ordinary patterns).
    For every type all patterns match the float64 replica and both analyzers' maps match a float64
    backward pass (where the closed ReLU gates stop the dead units)."""
    model, d1, d2 = _dense_model(5, 4, dead=(0, 2))
    x = np.random.default_rng(0).normal(0, 1, (64, 5)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pats = kp.PatternComputer(model, pattern_type).compute(x, batch_size=16, verbose=0)
    if pattern_type == "relu":  # never on: count = 0, so cov = 0 and the pattern is 0, exactly
        np.testing.assert_array_equal(pats[d1.name][:, [0, 2]], 0.0)
    _assert_dense_patterns(model, [d1, d2], x, pattern_type, 16, pats)
    _assert_maps_match_numpy(x, model, d1, d2, pats)


# --------------------------------------------------------------------- 6. a conv filter that never fires
def test_dead_conv_filter_gets_an_exactly_zero_pattern_and_finite_maps():
    keras.utils.set_random_seed(1)
    inp = keras.Input((7, 7, 2))
    conv = L.Conv2D(3, 3, padding="same", activation="relu")
    dense = L.Dense(2)
    model = keras.Model(inp, dense(L.Flatten()(conv(inp))))
    w, b = conv.get_weights()
    b[1] = -1000.0
    conv.set_weights([w, b])
    x = np.random.default_rng(1).normal(0, 1, (12, 7, 7, 2)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pats = kp.PatternComputer(model, "relu").compute(x, batch_size=4, verbose=0)
    np.testing.assert_array_equal(pats[conv.name][..., 1], 0.0)
    # the live filters against the float64 replica with explicit patches (49 rows per sample)
    (xin, out), = _probe(model, [conv], x)
    cfg = dict(ksize=(3, 3), strides=(1, 1), dilation=(1, 1), padding="same")
    ref = replica_pattern("conv", w, xin, out, "relu", cfg)
    rows = conv_patches(xin, **cfg).reshape(-1, w[..., 0].size)
    mask = _mask(out.reshape(-1, 3), "relu")
    bound = _pattern_error_bound(rows, w.reshape(-1, 3).astype("float64"), b.astype("float64"), mask,
                                 4 * 49, ref.reshape(-1, 3)).reshape(w.shape)
    assert np.all(np.abs(pats[conv.name] - ref) <= bound)
    # the dead filter's ReLU gate is closed on every sample: its pattern cannot reach the maps
    noisy = dict(pats)
    noisy[conv.name] = pats[conv.name].copy()
    noisy[conv.name][..., 1] = np.random.default_rng(2).normal(0, 1, w[..., 1].shape)
    for name in ("pattern.net", "pattern.attribution"):
        maps = kp.create_analyzer(name, model, patterns=pats).analyze(x)
        assert np.all(np.isfinite(maps)) and np.abs(maps).max() > 0
        np.testing.assert_array_equal(maps, kp.create_analyzer(name, model, patterns=noisy).analyze(x))


# --------------------------------------------------------------------- 2. degenerate and extreme data
def test_all_zero_inputs_give_zero_first_layer_patterns_and_zero_maps():
    """With x = 0, y = 0 on every row, so cov = 0 exactly and the first layer's pattern is 0 for
    every type; the second layer sees the constant relu(b1) (see the constant-feature test).
    PatternNet and PatternAttribution maps end in the first layer's (zero) pattern: exactly 0."""
    model, d1, d2 = _dense_model(6, 4)
    x = np.zeros((40, 6), "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pats = kp.PatternComputer(model, ["relu", "linear", "relu.negative"]).compute(
            x, batch_size=8, verbose=0)
    for t, p in pats.items():
        np.testing.assert_array_equal(p[d1.name], 0.0, err_msg=t)
        assert np.all(np.isfinite(p[d2.name])), t
    for name in ("pattern.net", "pattern.attribution"):
        maps = kp.create_analyzer(name, model, patterns=pats["relu"]).analyze(x)
        np.testing.assert_array_equal(maps, 0.0)


@pytest.mark.parametrize("scale", [1e4, 1e-4])
@pytest.mark.parametrize("pattern_type", ["relu", "linear"])
def test_data_of_large_and_small_magnitude_matches_the_float64_replica(scale, pattern_type):
    """Data and biases times ``scale``: the masks do not change and, in exact arithmetic, neither
    do the patterns (x -> s x, y -> s y, cov -> s^2 cov, a = cov / (w^T cov)). The fast float32
    patterns match the float64 replica within the derived bound, and the float64 replica on the
    scaled data matches it on the unscaled data to float64 rounding."""
    x1 = np.random.default_rng(3).normal(0.3, 1, (96, 6))
    model, d1, d2 = _dense_model(6, 5, seed=3, scale=scale)
    x = (x1 * scale).astype("float32")
    pats = kp.PatternComputer(model, pattern_type).compute(x, batch_size=32, verbose=0)
    _assert_dense_patterns(model, [d1, d2], x, pattern_type, 32, pats)
    w, b = (v.astype("float64") for v in d1.get_weights())
    at_scale = replica_pattern("dense", w, x1 * scale, x1 * scale @ w + b, pattern_type)
    at_one = replica_pattern("dense", w, x1, x1 @ w + b / scale, pattern_type)
    np.testing.assert_allclose(at_scale, at_one, rtol=1e-9, atol=1e-12 * np.abs(at_one).max())


@pytest.mark.parametrize("pattern_type", ["relu", "linear"])
def test_a_constant_feature_gets_a_finite_pattern_as_documented(pattern_type):
    """Feature k constant (x_k = c): cov_kj = c (E_M[y_j] - E[y_j]). For "linear" that is zero up
    to rounding, so |a_kj| stays within the float32 error bound of zero; for "relu" it is
    a_kj = c (E_M[y_j] - E[y_j]) / d_j, checked against that formula in float64."""
    k, c = 2, 3.0
    model, d1, d2 = _dense_model(6, 4, seed=4)
    x = np.random.default_rng(4).normal(0, 1, (80, 6)).astype("float32")
    x[:, k] = c
    pats = kp.PatternComputer(model, pattern_type).compute(x, batch_size=16, verbose=0)
    assert all(np.all(np.isfinite(p)) for p in pats.values())
    _assert_dense_patterns(model, [d1, d2], x, pattern_type, 16, pats)
    (xin, out), = _probe(model, [d1], x)
    w = d1.kernel.numpy().astype("float64")
    ref = replica_pattern("dense", w, xin, out, pattern_type)
    m = _mask(out, pattern_type)
    y = xin @ w
    emy = (y * m).sum(0) / np.maximum(m.sum(0), 1)
    cov = (xin.T @ (y * m)) / np.maximum(m.sum(0), 1) - (xin.T @ m) / np.maximum(m.sum(0), 1) * y.mean(0)
    on = m.sum(0) > 0  # a unit that is never on has cov = 0 and a zero pattern
    analytic = np.where(on, c * (emy - y.mean(0)), 0.0) / np.where(on, (w * cov).sum(0), 1.0)
    if pattern_type == "linear":
        assert np.all(np.abs(analytic) < 1e-12)          # exactly 0 in exact arithmetic
        bound = _pattern_error_bound(xin, w, d1.bias.numpy(), m, 16, ref)
        assert np.all(np.abs(pats[d1.name][k]) <= bound[k])
    else:
        assert np.abs(analytic).max() > 0.01              # a real, non-zero entry
    np.testing.assert_allclose(ref[k], analytic, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------ 3. a million rows
def test_a_million_rows_match_float64_sums():
    """10^6 rows, 8 inputs, 4 ReLU units, batches of B = 8192 from a generator: the float64 totals
    of ``PatternStatistics.statistics()`` equal float64 NumPy sums computed batch by batch.

    Bound, derived (not tuned). Per batch the fast path works in float32: the bias-free output
    ``y = (x w + b) - b`` is off by at most gamma_{D+2} A_r, with A_r = sum_k |x_rk w_k| + 2|b|
    (D = 8), and a batch sum of B terms, in whatever order the kernels add them, by at most
    gamma_{B-1} times the sum of the absolute terms (Higham, eq. 3.5). Adding the ~123 batch sums
    in float64 costs gamma_123 in float64, negligible but included. So, elementwise:

        |sum_x  - ref| <= gamma_B              * sum_rows |x| M
        |sum_y  - ref| <= gamma_{B+D+3}        * sum_rows A
        |sum_xy - ref| <= gamma_{B+D+4}        * sum_rows |x| A M      (+ float64 terms)

    gamma_{B+D+4} ~ 4.9e-4 relative to the absolute sums (a worst case; typical errors are
    ~sqrt(B) u ~ 5e-6). The bound still has teeth: leaving out the first batch's share of the
    reference is checked to break it for every statistic. ``count`` and ``n_rows`` are integers
    below 2^24 per batch: exact, compared exactly. Rows with a pre-activation within 1e-3 of 0 are
    left out of the data so the float32 and float64 masks agree.
    """
    n_rows, batch, d_in, units = 10 ** 6, 8192, 8, 4
    rng = np.random.default_rng(5)
    inp = keras.Input((d_in,))
    dense = L.Dense(units, activation="relu")
    model = keras.Model(inp, dense(inp))
    w = rng.normal(0.25, 0.5, (d_in, units)).astype("float32")
    b = rng.normal(0, 0.5, units).astype("float32")
    dense.set_weights([w, b])
    w64, b64 = w.astype("float64"), b.astype("float64")
    keys = ("n_rows", "sum_y", "abs_y", "count", "sum_x", "abs_x", "sum_xy", "abs_xy", "lin_x", "lin_abs_x",
            "lin_xy", "lin_abs_xy")
    ref, first = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)

    def batches():
        done = 0
        while done < n_rows:
            x = rng.normal(0.5, 1, (int(batch * 1.2), d_in))
            x = x[np.all(np.abs(x @ w64 + b64) > 1e-3, axis=1)][:min(batch, n_rows - done)]
            x = x.astype("float32")
            _add_reference(ref, x.astype("float64"), w64, b64)
            if done == 0:
                _add_reference(first, x.astype("float64"), w64, b64)
            done += len(x)
            yield x

    computer = kp.PatternComputer(model, ["relu", "linear"])
    computer.compute(batches(), verbose=0)
    (got,) = computer.statistics.statistics().values()
    n_batches = -(-n_rows // batch)
    assert got["n_rows"] == ref["n_rows"] == n_rows
    np.testing.assert_array_equal(got["relu"]["count"], ref["count"])
    np.testing.assert_array_equal(got["linear"]["count"], np.full(units, n_rows))
    f64 = 2 * _gamma(n_batches + 1, U64)
    checks = [
        (got["sum_y"], "sum_y", "abs_y", _gamma(batch + d_in + 3)),
        (got["relu"]["sum_x"], "sum_x", "abs_x", _gamma(batch)),
        (got["relu"]["sum_xy"], "sum_xy", "abs_xy", _gamma(batch + d_in + 4)),
        (got["linear"]["sum_x"], "lin_x", "lin_abs_x", _gamma(batch)),
        (got["linear"]["sum_xy"], "lin_xy", "lin_abs_xy", _gamma(batch + d_in + 4)),
    ]
    for fast, exact, absolute, g in checks:
        bound = (g + f64) * ref[absolute]
        assert np.all(np.abs(fast - ref[exact]) <= bound), exact
        assert np.any(np.abs(fast - (ref[exact] - first[exact])) > bound), exact  # a lost batch shows


def _add_reference(ref, x, w, b):
    """Adds one batch to the float64 reference sums (and the absolute sums that bound the error)."""
    y = x @ w
    big_a = np.abs(x) @ np.abs(w) + 2 * np.abs(b)
    m = (y + b > 0).astype("float64")
    ax = np.abs(x)
    ref["n_rows"] += len(x)
    ref["sum_y"] = ref["sum_y"] + y.sum(0)
    ref["abs_y"] = ref["abs_y"] + big_a.sum(0)
    ref["count"] = ref["count"] + m.sum(0)
    ref["sum_x"] = ref["sum_x"] + x.T @ m
    ref["abs_x"] = ref["abs_x"] + ax.T @ m
    ref["sum_xy"] = ref["sum_xy"] + x.T @ (y * m)
    ref["abs_xy"] = ref["abs_xy"] + ax.T @ (big_a * m)
    ref["lin_x"] = ref["lin_x"] + x.sum(0)[:, None]
    ref["lin_abs_x"] = ref["lin_abs_x"] + ax.sum(0)[:, None]
    ref["lin_xy"] = ref["lin_xy"] + x.T @ y
    ref["lin_abs_xy"] = ref["lin_abs_xy"] + ax.T @ big_a


# ------------------------------------------------------------------------------ 4. NaN and Inf
@pytest.fixture(scope="module")
def small():
    model, d1, d2 = _dense_model(6, 4, seed=6)
    x = np.random.default_rng(6).normal(0, 1, (64, 6)).astype("float32")
    return model, d1, x


def _dirty(x):
    """x with NaN in sample 37 and -Inf in sample 45 (batch 2, samples 5 and 13, at batch size 16)."""
    x = x.copy()
    x[37, 1] = np.nan
    x[45, 4] = -np.inf
    return x


def test_nonfinite_data_raises_naming_the_batch_and_samples(small):
    model, _, x = small
    dirty = _dirty(x)
    kinds = {
        "array": dirty,
        "generator": (dirty[i:i + 16] for i in range(0, 64, 16)),
        "dataset_xy": tf.data.Dataset.from_tensor_slices((dirty, np.zeros(64))).batch(16),
    }
    for kind, data in kinds.items():
        match = r"Batch 2 .* samples \[5, 13\] \(samples \[37, 45\]"
        with pytest.raises(kp.NonFiniteDataError, match=match) as info:
            kp.PatternComputer(model, "relu").compute(data, batch_size=16, verbose=0)
        assert info.value.batch == 2 and info.value.samples == [5, 13], kind
        assert isinstance(info.value, ValueError) and isinstance(info.value, kp.KerasPatternsError)
        assert "Received: 2 non-finite sample(s) in batch 2, 1 of them with NaN" in str(info.value)
    with pytest.raises(kp.NonFiniteDataError, match="skip_nonfinite=True"):
        kp.create_analyzer("pattern.net", model).fit(dirty, batch_size=16, verbose=0)


def test_skip_nonfinite_leaves_the_samples_out_and_counts_them(small):
    model, d1, x = small
    dirty = _dirty(x)
    clean_batches = [np.delete(dirty[i:i + 16], np.flatnonzero(~np.isfinite(dirty[i:i + 16]).all(1)), 0)
                     for i in range(0, 64, 16)]
    ref = kp.PatternComputer(model, "relu").compute(iter(clean_batches), verbose=0)
    computer = kp.PatternComputer(model, "relu")
    with pytest.warns(UserWarning, match=r"Skipped 2 sample\(s\) holding NaN or Inf values, from 1 batch"):
        got = computer.compute(dirty, batch_size=16, verbose=0, skip_nonfinite=True)
    assert computer.skipped_samples == 2
    for k in ref:  # the same batches reach the statistics: the same numbers, bit for bit
        np.testing.assert_array_equal(got[k], ref[k])
    analyzer = kp.create_analyzer("pattern.attribution", model)
    with pytest.warns(UserWarning, match="Skipped 2 sample"):
        analyzer.fit(dirty, batch_size=16, verbose=0, skip_nonfinite=True)
    assert analyzer.skipped_samples == 2
    np.testing.assert_array_equal(analyzer.patterns[d1.name], ref[d1.name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert analyzer.fit(x, batch_size=16, verbose=0, skip_nonfinite=True).skipped_samples == 0
    with pytest.raises(ValueError, match=r"no finite sample: all 16 sample\(s\) of its 1 batch"):
        computer.compute(np.full((16, 6), np.nan, "float32"), verbose=0, skip_nonfinite=True)
    with pytest.raises(ValueError, match="Received: skip_nonfinite='yes'"):
        computer.compute(x, verbose=0, skip_nonfinite="yes")


def test_nonfinite_values_in_a_second_input_are_found():
    model = builders.two_inputs()
    xa = np.ones((10, 3), "float32")
    xb = np.ones((10, 2), "float32")
    xb[7, 0] = np.inf
    with pytest.raises(kp.NonFiniteDataError, match=r"Batch 1 .* samples \[3\] \(samples \[7\]"):
        kp.PatternComputer(model, "linear").compute([xa, xb], batch_size=4, verbose=0)
    with pytest.warns(UserWarning, match=r"Skipped 1 sample"):
        kp.PatternComputer(model, "linear").compute({"a": xa, "b": xb}, batch_size=4, verbose=0,
                                                   skip_nonfinite=True)


def test_statistics_fed_nan_directly_raise_instead_of_returning_nan(small):
    """PatternStatistics used in a custom loop has no data check; the estimator still refuses NaN
    statistics with a clear error (and no NumPy RuntimeWarning)."""
    model, _, x = small
    stats = PatternStatistics(kp.create_analyzer("pattern.net", model).graph, "relu")
    stats.update_state(_dirty(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kp.NonFiniteDataError, match=r"are not finite.*Received: .*NaN"):
            stats.result()


# ------------------------------------------------------------------- 5. no RuntimeWarning reaches the user
def test_float32_overflow_of_the_statistics_is_an_error_not_a_runtime_warning(small):
    """Finite data of magnitude 1e20: x y ~ 1e40 overflows the float32 per-batch sums of a
    convolution. The estimator used to emit "invalid value encountered in reduce" (np.sum of
    w * cov with +-inf) and "... in divide" (inf / inf) and return NaN patterns; now it raises a
    clear error. A Dense layer on samples takes its per-batch sums in float64 (memory-bound, no
    time lost), so the same data fits there, finite and without a warning."""
    import keras

    inp = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(2, 3, activation="relu")(inp)
    conv = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    xc = np.random.default_rng(3).normal(0, 1, (16, 6, 6, 1)).astype("float32")
    model, _, x = small
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kp.NonFiniteDataError, match="float32 per-batch sums overflowed"):
            kp.PatternComputer(conv, "relu").compute(xc * np.float32(1e20), verbose=0)
        patterns = kp.PatternComputer(model, "relu").compute(x * np.float32(1e20), verbose=0)
    assert patterns and all(np.all(np.isfinite(p)) for p in patterns.values())


def test_degenerate_data_fits_without_any_warning(small):
    model, _, x = small
    rng = np.random.default_rng(7)
    cases = {
        "zeros": np.zeros_like(x), "constant": np.full_like(x, 2.5), "one sample": x[:1],
        "tiny": x * np.float32(1e-30), "huge": x * np.float32(1e15),
        "constant column": np.concatenate([x[:, :5], np.full((64, 1), -1.0, "float32")], 1),
        "repeated rows": np.repeat(x[:3], 20, 0), "sparse": x * (rng.random(x.shape) < 0.05),
    }
    for name, data in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pats = kp.PatternComputer(model, ["relu", "linear", "relu.negative"]).compute(
                data.astype("float32"), batch_size=16, verbose=0)
        assert all(np.all(np.isfinite(p)) for t in pats.values() for p in t.values()), name


@pytest.mark.parametrize("exponent", [507, -505])
def test_the_estimator_is_scale_free_over_the_whole_float64_range(exponent):
    """x -> s x scales sum_x and sum_y by s and sum_xy by s^2, and leaves the pattern unchanged.
    Statistics of 4 zero-mean rows of 4096 inputs (a wide Dense layer fitted on little data: the
    denominator w^T cov ~ Var(y) is 2^4 times the largest sum_xy). With s = 2^507 every statistic
    is finite but the old estimator's denominator overflowed ("overflow encountered in reduce")
    and unit 1's pattern silently became 0 (s = 2^-505, near the other end, it already handled).
    Power-of-two scaling is exact, so the result must be bit-identical to the unscaled one, without
    any warning."""
    rng = np.random.default_rng(9)
    x = rng.normal(0, 1, (4, 4096))
    w = rng.normal(0, 1, (4096, 2))
    y = x @ w
    count, n_rows = np.full(2, 4.0), 4.0
    sum_x, sum_xy, sum_y = np.repeat(x.sum(0)[:, None], 2, 1), x.T @ y, y.sum(0)
    plain = pattern_from_statistics(w, count, sum_x, sum_xy, sum_y, n_rows)
    s = 2.0 ** exponent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = pattern_from_statistics(w, count, sum_x * s, sum_xy * s * s, sum_y * s, n_rows)
    np.testing.assert_array_equal(scaled, plain)
    # and the plain pattern is the float64 covariance estimator, unit by unit
    cov = sum_xy / 4 - sum_x / 4 * (sum_y / 4)
    np.testing.assert_allclose(plain, cov / (w * cov).sum(0), rtol=1e-12)


def test_update_state_finite_drops_the_nonfinite_samples_inside_the_compiled_update(small):
    """The NaN/Inf check runs in the compiled update: the flags name the samples left out, and the
    sums equal those of the clean samples fed directly (bit for bit: the same batch size)."""
    model, _, x = small
    graph = kp.create_analyzer("pattern.net", model).graph
    dirty = _dirty(x)[32:48]  # samples 5 and 13 hold NaN / -Inf
    flags = PatternStatistics(graph, "relu")
    finite = flags.update_state_finite(tf.constant(dirty))
    np.testing.assert_array_equal(finite, np.isfinite(dirty).all(axis=1))
    assert list(np.flatnonzero(~finite)) == [5, 13]
    clean = PatternStatistics(graph, "relu")
    clean.update_state(dirty[np.isfinite(dirty).all(axis=1)])
    got, ref = flags.statistics(), clean.statistics()
    for key in ref:
        np.testing.assert_array_equal(got[key]["n_rows"], ref[key]["n_rows"])
        for name, value in ref[key]["relu"].items():
            np.testing.assert_array_equal(got[key]["relu"][name], value)
    flags.update_state_finite(x[:16])
    assert flags._update_finite.experimental_get_tracing_count() == 1

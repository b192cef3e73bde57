"""kp.evaluation.signal_quality: rho(S) of Kindermans et al. 2018 (Sec. 4.1, eq. 1).

Checked against the paper's toy problem (analytic values) and against a float64 NumPy replica
with explicit patches, explicit residuals and a min-norm least-squares v (no moment algebra).
"""

import sys

import keras
import numpy as np
import pytest

import keras_patterns as kp
from pattern_replica import conv_patches, replica_pattern

L = keras.layers
F64 = "float64"


# ------------------------------------------------------------------------------------------ toy
def _toy(n, seed):
    """x = (1, 0) y + (1, 1) e / sqrt(2), y and e standard normal: Cov(x) = [[1.5, .5], [.5, .5]]."""
    rng = np.random.default_rng(seed)
    y, e = rng.standard_normal(n), rng.standard_normal(n)
    return np.outer(y, [1.0, 0.0]) + np.outer(e, [1.0, 1.0]) / np.sqrt(2)


def _toy_model():
    model = keras.Sequential([keras.Input((2,), dtype=F64), L.Dense(1, use_bias=False, dtype=F64, name="dense")])
    model.layers[0].set_weights([np.array([[1.0], [-1.0]])])
    return model


#: Samples per data set in the toy test.
N_TOY = 200_000
#: The deviation bound: the sample correlation of two variables has a standard deviation of at
#: most (1 - rho^2) / sqrt(n) <= 1 / sqrt(n); rho_hat carries three such estimation errors (the
#: pattern from fit_data, v from v_data, the correlation on test_data), each bounded at 4
#: standard deviations: 4 * 3 / sqrt(2e5) = 0.027. (Measured errors: S_w 0.0021, S_a 0.0056.)
TOY_TOL = 4 * 3 / np.sqrt(N_TOY)


def test_toy_problem_analytic_rho():
    # S_a: a = Cov(x) w / var(y) = (1, 0), the residual is the distractor alone: rho = 1.
    # S_w: S(x) = w y / 2, the residual (x1 + x2) / 2 (1, 1) = (y / 2 + e / sqrt(2)) (1, 1) has
    # correlation (1/2) / sqrt(1/4 + 1/2) = 1 / sqrt(3) with y: rho = 1 - 1 / sqrt(3) = 0.4226.
    rho = kp.evaluation.signal_quality(
        _toy_model(), _toy(N_TOY, 0), _toy(N_TOY, 1), _toy(N_TOY, 2),
        estimators=("S_w", "S_a", "S_a+-"), batch_size=50_000,
    )
    assert set(rho) == {"S_w", "S_a", "S_a+-"}
    assert rho["S_a"]["dense"].shape == (1,)
    np.testing.assert_allclose(rho["S_a"]["dense"], 1.0, atol=TOY_TOL)
    np.testing.assert_allclose(rho["S_w"]["dense"], 1 - 1 / np.sqrt(3), atol=TOY_TOL)
    # The relation is linear, so S_a+- reduces to S_a (paper, Sec. 4.3).
    np.testing.assert_allclose(rho["S_a+-"]["dense"], 1.0, atol=TOY_TOL)


def test_toy_closed_form_in_sample():
    # With fit = v = test data the max correlation has the closed form
    # corr^2 = 1 - 1 / (var(y) s^T Cov(x)^-1 s) for S(x) = s y, w^T s = 1 (the residual spans
    # the complement of s); for S_w on the sample this holds to float64 rounding of the solve.
    x = _toy(5000, 3)
    rho = kp.evaluation.signal_quality(_toy_model(), x, x, x, estimators=("S_w", "random"), seed=4)
    cov = np.cov(x.T, bias=True)
    w = np.array([1.0, -1.0])
    var_y = w @ cov @ w
    for est, s in [("S_w", w / 2), ("random", None)]:
        if s is None:
            u = np.random.default_rng(4).standard_normal((2, 1))[:, 0]
            s = u / (w @ u)
        corr = np.sqrt(1 - 1 / (var_y * s @ np.linalg.solve(cov, s)))
        np.testing.assert_allclose(rho[est]["dense"], 1 - corr, atol=1e-7)


# --------------------------------------------------------------------------- NumPy replica
def _conv_cfg(layer):
    return dict(ksize=tuple(layer.kernel_size), strides=tuple(layer.strides),
                dilation=tuple(layer.dilation_rate), padding=layer.padding)


def _rows(kind, layer, x):
    """Rows (R, D) per unit group: Dense/conv (R, D); depthwise (R, kk, cin)."""
    if kind == "dense":
        return np.asarray(x, F64).reshape(-1, layer.kernel.shape[0])
    p = conv_patches(x, **_conv_cfg(layer))
    return p if kind == "depthwise" else p.reshape(p.shape[0], -1)


def _unit_rows(kind, rows, j, mult):
    return rows[:, :, j // mult] if kind == "depthwise" else rows


def _replica_rho(kind, layer, kernel, bias, xs, dirs):
    """rho per unit for each estimator from explicit patches; xs = (fit, v, test) layer inputs."""
    depthwise = kind == "depthwise"
    if depthwise:
        kk, cin, mult = int(np.prod(kernel.shape[:-2])), kernel.shape[-2], kernel.shape[-1]
        w2 = kernel.reshape(kk, cin * mult)
    else:
        mult = 1
        w2 = kernel.reshape(-1, kernel.shape[-1])
    rows = [_rows(kind, layer, x) for x in xs]

    def outputs(r):  # (R, C) bias-free y and the relu gate of y + b
        y = np.stack([_unit_rows(kind, r, j, mult) @ w2[:, j] for j in range(w2.shape[1])], 1)
        return y, (y + bias > 0).astype(F64)

    # patterns via the independent replica of tests/pattern_replica.py (fit data)
    fx = np.asarray(xs[0], F64)
    conv = None if kind == "dense" else _conv_cfg(layer)
    z = kp.linear.apply_kernel(layer, fx, kernel).numpy() + bias
    pats = {t: replica_pattern(kind, kernel, fx, np.maximum(z, 0), t, conv=conv).reshape(w2.shape)
            for t in ("linear", "relu", "relu.negative")}
    (yv, mv), (yt, mt) = outputs(rows[1]), outputs(rows[2])
    out = {}
    for est in ("random", "S_w", "S_a", "S_a+-"):
        if est == "random":
            p = q = dirs / np.sum(w2 * dirs, 0)
        elif est == "S_w":
            p = q = w2 / np.sum(w2 * w2, 0)
        elif est == "S_a":
            p = q = pats["linear"]
        else:
            p, q = pats["relu"], pats["relu.negative"]
        rho = []
        for j in range(w2.shape[1]):
            def residual(r, y, m):
                xr = _unit_rows(kind, r, j, mult)
                return xr - y[:, j:j + 1] * (m[:, j:j + 1] * p[:, j] + (1 - m[:, j:j + 1]) * q[:, j])
            rv, rt = residual(rows[1], yv, mv), residual(rows[2], yt, mt)
            v = np.linalg.lstsq(rv - rv.mean(0), yv[:, j] - yv[:, j].mean(), rcond=None)[0]
            rho.append(1 - np.corrcoef(rt @ v, yt[:, j])[0, 1])
        out[est] = np.array(rho)
    return out


def _small_model(kind):
    inp = keras.Input((9, 2) if kind == "conv1d" else (6, 6, 2), dtype=F64)
    if kind == "conv1d":
        first = L.Conv1D(3, 3, dilation_rate=2, padding="causal", activation="relu", dtype=F64, name="first")
    elif kind == "conv":
        first = L.Conv2D(3, 3, strides=2, padding="same", activation="relu", dtype=F64, name="first")
    else:
        first = L.DepthwiseConv2D(2, depth_multiplier=2, activation="relu", dtype=F64, name="first")
    h = first(inp)
    out = L.Dense(2, dtype=F64, name="head")(L.Flatten(dtype=F64)(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape) + (0.1 if w.ndim == 1 else 0) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("kind", ["conv", "depthwise", "conv1d"])
def test_against_numpy_replica(kind):
    model = _small_model(kind)
    rng = np.random.default_rng(7)
    shape = (9, 2) if kind == "conv1d" else (6, 6, 2)
    xs = [rng.normal(0.2, 1.0, (n,) + shape) for n in (150, 120, 90)]
    rho = kp.evaluation.signal_quality(model, *xs, layers="first", batch_size=16, seed=3)
    assert list(rho["S_a"]) == ["first"]
    layer = model.get_layer("first")
    kernel, bias = (np.asarray(w, F64) for w in layer.get_weights())
    d = int(np.prod(kernel.shape[:-2])) if kind == "depthwise" else int(np.prod(kernel.shape[:-1]))
    dirs = np.random.default_rng(3).standard_normal((d, bias.shape[0]))  # first kernel layer drawn first
    expected = _replica_rho("conv" if kind == "conv1d" else kind, layer, kernel, bias, xs, dirs)
    for est, want in expected.items():
        assert rho[est]["first"].shape == (bias.shape[0],)
        # The ridge (1e-9 of the mean eigenvalue) perturbs v relative to the min-norm solution by
        # at most 1e-9 times the condition number of Cov(r) on its range (< 1e4 here) and the
        # moment formulas lose a few digits to cancellation: 1e-6 is far above both.
        np.testing.assert_allclose(rho[est]["first"], want, atol=1e-6, err_msg=est)


def test_dense_layer_against_replica_and_seed_independent_of_layers():
    model = _small_model("conv")
    rng = np.random.default_rng(8)
    xs = [rng.normal(0.2, 1.0, (n, 6, 6, 2)) for n in (120, 100, 80)]
    everything = kp.evaluation.signal_quality(model, *xs, estimators=("random", "S_a+-"), seed=5)
    head_only = kp.evaluation.signal_quality(model, *xs, layers=["head"], estimators=("random", "S_a+-"), seed=5)
    np.testing.assert_array_equal(everything["random"]["head"], head_only["random"]["head"])
    feature = keras.Model(model.inputs, model.layers[-2].output)  # the Flatten output
    hx = [feature(x).numpy() for x in xs]
    layer = model.get_layer("head")
    kernel, bias = (np.asarray(w, F64) for w in layer.get_weights())
    rng = np.random.default_rng(5)
    rng.standard_normal((18, 3))  # the conv layer's draw comes first
    dirs = rng.standard_normal(kernel.shape)
    # the head has no ReLU: its gate is [logit > 0], as the pattern statistics use
    expected = _replica_rho("dense", layer, kernel, bias, hx, dirs)
    for est in ("random", "S_a+-"):
        np.testing.assert_allclose(everything[est]["head"], expected[est], atol=1e-6, err_msg=est)


def test_model_not_modified_and_float32_model():
    model = _toy_model()
    before = [w.copy() for w in model.get_weights()]
    x = _toy(400, 0).astype("float32")
    rho = kp.evaluation.signal_quality(model, x, x, x)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(r["dense"].dtype == np.float64 and np.isfinite(r["dense"]).all() for r in rho.values())


# ---------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def conv_model():
    return _small_model("conv")


def _x(n, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, 6, 6, 2))


def test_unknown_estimator(conv_model):
    with pytest.raises(ValueError, match=r"`estimators` must name .*Received: estimators=\('S_x',\)"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), estimators="S_x")
    with pytest.raises(ValueError, match="`estimators` must name"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), estimators=[])


def test_unknown_layer(conv_model):
    with pytest.raises(ValueError, match=r"`layers` must name kernel layers.*Received: 'flatten'"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), layers=["flatten"])
    with pytest.raises(ValueError, match=r"Received: layers=\[\]"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), layers=[])


def test_mismatched_shapes(conv_model):
    with pytest.raises(ValueError, match=r"Reading `v_data` failed.*shape \('batch', 6, 6, 2\).*\(30, 5, 5, 2\)"):
        kp.evaluation.signal_quality(conv_model, _x(30), np.zeros((30, 5, 5, 2)), _x(30))
    with pytest.raises(ValueError, match=r"Reading `test_data` failed"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), np.zeros((30, 6, 6, 3)))


def test_too_little_data(conv_model):
    # the head sees 27 = 3 * 3 * 3 inputs per unit, so 20 v samples are too few
    with pytest.raises(ValueError, match=r"`v_data` must give more rows than the 27 inputs per unit of layer 'head'.*Received: 20 rows"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(20), _x(30))
    with pytest.raises(ValueError, match=r"`test_data` must give at least 2 rows.*Received: 1 row"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(40), _x(1), layers="head")
    with pytest.raises(ValueError, match=r"Reading `fit_data` failed: The data yielded no batches"):
        kp.evaluation.signal_quality(conv_model, _x(0), _x(40), _x(30))
    with pytest.raises(ValueError, match=r"`fit_data` must give at least 2 rows.*Received: 1 row"):
        kp.evaluation.signal_quality(conv_model, _x(1), _x(40), _x(30), layers="head")


def test_bad_arguments_and_nonfinite(conv_model):
    with pytest.raises(ValueError, match=r"`seed` must be an int >= 0. Received: seed=-1"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), seed=-1)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive int"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), batch_size=0)
    bad = _x(40)
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(kp.NonFiniteDataError, match=r"Reading `v_data` failed.*samples \[3\]"):
        kp.evaluation.signal_quality(conv_model, _x(30), bad, _x(30))


def test_patch_dimension_limit(conv_model, monkeypatch):
    # the module (its name is shadowed in keras_patterns.evaluation by the function)
    monkeypatch.setattr(sys.modules["keras_patterns.evaluation.signal_quality"], "MAX_PATCH_DIM", 20)
    with pytest.raises(ValueError, match=r"Layer 'head' has 27 inputs per unit, more than MAX_PATCH_DIM=20"):
        kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30))
    # leaving the layer out works
    rho = kp.evaluation.signal_quality(conv_model, _x(30), _x(30), _x(30), layers="first")
    assert list(rho["S_w"]) == ["first"]


def test_dead_unit_is_nan_with_warning():
    model = _toy_model()
    model.layers[0].set_weights([np.zeros((2, 1))])
    x = _toy(200, 0)
    with pytest.warns(UserWarning, match=r"1 unit\(s\) of layer 'dense' have a constant output"):
        rho = kp.evaluation.signal_quality(model, x, x, x, estimators=("S_w",))
    assert np.isnan(rho["S_w"]["dense"]).all()


def test_transposed_convolution_is_named_not_measured():
    """A transposed convolution's output unit sees a different input patch at each stride phase:
    rho(S) has no one patch per unit there, so the layer is refused by name (it used to be read
    with its input channels taken as units)."""
    inp = keras.Input((4, 4, 2))
    h = keras.layers.Conv2DTranspose(3, 3, strides=2, name="up")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).normal(size=(30, 4, 4, 2)).astype("float32")
    with pytest.raises(ValueError, match=r"Conv2DTranspose layer 'up' out with `layers=`.*kernel shape \(3, 3, 3, 2\)"):
        kp.evaluation.signal_quality(model, x, x, x)
    rho = kp.evaluation.signal_quality(model, x, x, x, layers=[model.layers[-1].name], estimators=("S_w",))
    assert list(rho["S_w"]) == [model.layers[-1].name]

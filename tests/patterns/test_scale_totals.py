"""Dataset scale: the running float64 totals of a streamed fit, and streamed maps, on the digits CNN.

The data are the benchmark's (``benchmarks/bench_scale.py``): a ``tf.data`` pipeline that draws
every batch from a seed (``stateless_normal``), never materialised. ``test_patterns_robustness``
checks 10^6 rows of one Dense layer from a Python generator; here the four kernel layers of the
digits CNN (two 3x3 convolutions, whose sums come from filter gradients, and two Dense layers) are
checked against a float64 NumPy replica computed batch by batch on the same stream.
"""

import importlib.util
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from paths import ROOT

N, BATCH = 8192, 512
U32 = 2.0 ** -24  # unit roundoff of float32


def _module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _module("kp_bench_scale", os.path.join(ROOT, "benchmarks", "bench_scale.py"))
digits = _module("kp_example_digits_cnn", os.path.join(ROOT, "examples", "digits_cnn.py"))


def _dyadic_digits_cnn():
    """The digits CNN (softmax removed) with dyadic weights: kernels k/8 (k in -2..2), biases an
    odd multiple of half the resolution of the layer's products.

    With inputs on a grid of 1/2, every product and partial sum of the forward pass is a multiple
    of the layer's resolution (1/16, 1/256, 1/4096, 1/65536 for the products) smaller than 2^24
    times it (checked on the data below), so float32 computes the pre-activations exactly, in any
    order; and the odd half-step bias keeps every pre-activation away from 0. The masks of the
    float32 pass and of the float64 replica are then identical, and the only difference between the
    two is the float32 rounding of the per-batch sums, which is what is bounded.
    """
    keras.utils.set_random_seed(0)
    model = kp.model_wo_softmax(digits.build_model())
    rng = np.random.default_rng(3)
    layers, res = [], 1 / 2  # resolution of the layer's input
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        res_in = res
        w = rng.choice([-2, -1, 0, 0, 1, 2], size=layer.kernel.shape) / 8
        res = res / 8
        b = (rng.integers(-4, 5, layer.bias.shape) + 0.5) * res
        layer.set_weights([w.astype("float32"), b.astype("float32")])
        layers.append((layer, w, b, res, res_in))
        res = res / 2  # the next layer's input: relu(z), z an odd multiple of res / 2
    return model, layers


def _quantized(ds):
    """The benchmark's stream on a grid of 1/2, clipped to [-3, 3]."""
    return ds.map(lambda x: tf.clip_by_value(tf.round(2 * x) / 2, -3.0, 3.0))


def _patches(x):
    """3x3 'same' patches as rows ``(B*H*W, 9*C)``, ordered as a (3, 3, C, F) kernel reshaped."""
    b, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    v = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # (B, H, W, C, 3, 3)
    return v.transpose(0, 1, 2, 4, 5, 3).reshape(b * h * w, 9 * c)


def _reference(stream, layers):
    """Float64 totals, one batch at a time: ``{layer: {stat: total}}`` with the sums of absolute
    terms (for the bound), the largest row sum of |x w| + |b| over the resolution (for the
    exactness premise) and the share of the first batch (to show the bound has teeth)."""
    ref = {}
    for k, xb in enumerate(stream):
        a = xb.numpy().astype("float64")
        for layer, w, b, res, res_in in layers:
            conv = len(w.shape) == 4
            rows = _patches(a) if conv else a.reshape(len(a), -1)
            w2 = w.reshape(-1, w.shape[-1])
            y = rows @ w2                              # bias-free output
            z = y + b
            m = (z > 0).astype("float64")              # mask: output after the relu (or logit) > 0
            abs_rows = np.abs(rows)
            terms = {
                "n_rows": (float(len(rows)), 0.0),
                "sum_y": (y.sum(0), (abs_rows @ np.abs(w2)).sum(0)),
                "count": (m.sum(0), 0.0),
                "sum_x": (rows.T @ m, abs_rows.T @ m),
                "sum_xy": (rows.T @ (y * m), abs_rows.T @ np.abs(y * m)),
                "lin_x": (np.outer(rows.sum(0), np.ones(w2.shape[1])),
                          np.outer(abs_rows.sum(0), np.ones(w2.shape[1]))),
                "lin_xy": (rows.T @ y, abs_rows.T @ np.abs(y)),
            }
            r = ref.setdefault(layer.name, {"rows_per_batch": len(rows), "premise": 0.0})
            r["premise"] = max(r["premise"], float(((abs_rows @ np.abs(w2)) + np.abs(b)).max() / res))
            for key, (val, absval) in terms.items():
                r[key] = r.get(key, 0.0) + val
                r["abs_" + key] = r.get("abs_" + key, 0.0) + absval
                r["batchmax_" + key] = np.maximum(r.get("batchmax_" + key, 0.0), absval)
                if k == 0:
                    r["first_" + key] = val
            h = np.maximum(z, 0)
            if conv:
                h = h.reshape(a.shape[:3] + (w.shape[-1],))
                n, hh, ww, c = h.shape
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))  # MaxPooling2D(2)
            a = h
    return ref


@pytest.fixture(scope="module")
def fitted():
    model, layers = _dyadic_digits_cnn()
    stream = _quantized(bench.generated_dataset(N, BATCH, (16, 16, 1)))
    computer = kp.PatternComputer(model, ["relu", "linear"])
    computer.compute(stream, verbose=0)
    return computer, layers, _reference(stream, layers)


def test_streamed_totals_equal_a_float64_reference_computed_in_chunks(fitted):
    """The float64 totals of a fit over the generated stream (16 batches of 512) equal the float64
    NumPy replica, layer by layer and statistic by statistic.

    Bound, derived (not tuned). The forward pass is exact in float32 (see _dyadic_digits_cnn; the
    premise is asserted), so the masks and the bias-free outputs y agree exactly. Per batch, each
    statistic is a float32 sum of R rows (R = samples x positions: 131072 for the first
    convolution, 32768 for the second, 512 for the Dense layers) of the terms x M, y, x y M (and
    x, x y for "linear"); only the product x y is rounded, once. Whatever the order of the sum
    (tree, blocked GEMM, filter gradient), its error is at most gamma_{R+1} = (R+1) u / (1 - (R+1)
    u) times the sum of the absolute terms (Higham, eq. 3.5); the per-batch result is widened to
    float64 exactly, and the 16 float64 additions cost 16 * 2^-53 relative, negligible and covered.
    Summed over the batches: |total - ref| <= gamma_{R+1} * sum over all rows of |terms|,
    elementwise. (Not n_batch * u: the rounding is per batch, over its R rows.)

    Where a statistic's terms are all multiples of a resolution r (r = the input's grid for x, the
    layer's product grid for y, their product for x y) and a batch's sum of |terms| stays below
    2^24 r, every term and partial sum is a float32 number: the sum is exact and compared exactly
    (measured: every statistic of the first convolution and the x sums of the other layers; the
    y and x y sums of the later layers go 0-52% exact, the rest under the bound, largest error 0.5%
    of its bound: typical rounding is ~sqrt(R) u, far below the worst case). count and n_rows are
    sums of 0/1 below 2^24 per batch: exact. Where the bound applies it has teeth: leaving the
    first batch (1/16 of the data) out of the reference breaks it.
    """
    computer, layers, ref = fitted
    got = computer.statistics.statistics()
    assert list(got) == [layer.name for layer, *_ in layers]
    rounded = worst = 0
    shares = []  # the share of exact entries, per layer and statistic
    for (layer, w, b, res, res_in), key in zip(layers, got):
        g, r = got[key], ref[layer.name]
        assert r["premise"] < 2 ** 24, (layer.name, r["premise"])  # float32 forward pass exact
        assert g["n_rows"] == r["n_rows"] == N * r["rows_per_batch"] / BATCH
        np.testing.assert_array_equal(g["relu"]["count"], r["count"])
        np.testing.assert_array_equal(g["linear"]["count"], np.full(w.shape[-1], r["n_rows"]))
        assert np.any((0 < r["count"]) & (r["count"] < r["n_rows"]))  # masks on and off
        rows = r["rows_per_batch"]
        gamma = (rows + 1) * U32 / (1 - (rows + 1) * U32)
        grid = {"sum_y": res, "sum_x": res_in, "lin_x": res_in,  # the grid of each statistic's terms
                "sum_xy": res_in * res, "lin_xy": res_in * res}
        pairs = [("sum_y", g["sum_y"]), ("sum_x", g["relu"]["sum_x"]), ("sum_xy", g["relu"]["sum_xy"]),
                 ("lin_x", g["linear"]["sum_x"]), ("lin_xy", g["linear"]["sum_xy"])]
        for stat, value in pairs:
            value = np.asarray(value).reshape(np.shape(r[stat]))
            exact = r["batchmax_" + stat] < 2 ** 24 * grid[stat]
            shares.append(f"{layer.name}/{stat} {exact.mean():.0%}")
            np.testing.assert_array_equal(value[exact], r[stat][exact], err_msg=f"{layer.name} {stat}")
            if exact.all():
                continue
            bound = gamma * r["abs_" + stat][~exact]
            err = np.abs(value - r[stat])[~exact]
            assert np.all(err <= bound), (layer.name, stat, float((err / bound).max()))
            worst = max(worst, float((err / bound).max()))
            rounded += int((~exact).sum())
            # teeth: the reference without the first batch is outside the bound
            without_first = (r[stat] - r["first_" + stat])[~exact]
            assert np.any(np.abs(value[~exact] - without_first) > bound), (layer.name, stat)
    assert rounded > 0  # the bound is exercised, not only exact sums
    print(f"exact: {', '.join(shares)}; entries under the rounding bound: {rounded}; "
          f"largest error / bound: {worst:.2e}")


def test_analyze_with_out_over_the_stream_equals_the_in_memory_maps(tmp_path):
    """pattern.attribution over the generated stream, written to a .npy file batch by batch, gives
    the maps of the same samples analyzed in memory (same pieces of 256: the same computation;
    rtol 1e-6 as in test_analyze_streaming)."""
    model = _dyadic_digits_cnn()[0]
    n = 1000  # 3 full batches of 256 and one of 232
    analyzer = kp.create_analyzer("pattern.attribution", model, batch_size=256)
    stream = bench.generated_dataset(n, 256, (16, 16, 1), seed=7)
    analyzer.fit(stream, verbose=0)
    got = analyzer.analyze(stream, out=tmp_path / "maps.npy")
    x = np.concatenate([b.numpy() for b in stream])
    ref = analyzer.analyze(x)
    assert isinstance(got, np.memmap) and got.shape == (n, 16, 16, 1) == ref.shape
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("how", ["out", "on_batch"])
def test_saturation_is_found_in_streamed_maps_without_reading_them_back(how, tmp_path):
    """The saturation warning of the pattern methods, for maps streamed to a file or a writer: the
    check runs on each piece on its way out (the .npy file is not mapped back into memory)."""
    inp = keras.Input((4,))
    h = inp
    for _ in range(12):
        h = keras.layers.Dense(4, activation="relu", kernel_initializer="ones", bias_initializer="ones")(h)
    model = keras.Model(inp, keras.layers.Dense(2, kernel_initializer="ones")(h))
    pats = {layer.name: np.full(tuple(layer.kernel.shape), 1e5, "float32") for layer in model.layers[1:]}
    analyzer = kp.create_analyzer("pattern.net", model, patterns=pats, batch_size=2)
    x = np.ones((5, 4), "float32")
    x[3] = 0  # still saturates (biases of ones)
    pieces = []
    kwargs = {"out": tmp_path / "m.npy"} if how == "out" else {"on_batch": lambda s, m: pieces.append(m)}
    with pytest.warns(UserWarning, match=r"exceeds the float32 range for samples \[0, 1, 2, 3, 4\]"):
        got = analyzer.analyze(tf.data.Dataset.from_tensor_slices(x).batch(3), **kwargs)
    maps = np.load(tmp_path / "m.npy") if how == "out" else np.concatenate(pieces)
    assert got is None if how == "on_batch" else got.shape == (5, 4)
    np.testing.assert_allclose(np.abs(maps), np.exp(np.float32(88.7)), rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a map that does not saturate: no warning
        kp.create_analyzer("pattern.net", model, batch_size=2).fit(x, verbose=0).analyze(
            tf.data.Dataset.from_tensor_slices(x).batch(3), out=tmp_path / "ok.npy")

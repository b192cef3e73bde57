"""The demo: the paper's 2-D toy example against a float64 replica, and a quick run of ``run_demo``
(files, picture sizes, the numbers it returns and prints)."""

import contextlib
import io
import math

import matplotlib.image
import numpy as np
import pytest

from keras_patterns import visualization as vis
from keras_patterns.datasets import CLASS_NAMES
from keras_patterns.demo import METHODS, build_model, run_demo, toy_example

N_TEST = 500  # run_demo's test set: make_shapes(500, seed=seed + 1)


def _toy_replica(n=2000, seed=0):
    """Float64 replica of toy_example's data and linear pattern a = cov(x, y) / (w^T cov(x, y))."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, n)
    eps = rng.normal(0, 1, n)
    x = (np.outer(y, [1.0, 0.0]) + np.outer(eps, [1.0, 1.0])).astype("float32").astype("float64")
    w = np.array([1.0, -1.0])
    out = x @ w
    cov = (x * out[:, None]).mean(0) - x.mean(0) * out.mean()
    return cov / (w @ cov), eps, y


def test_toy_example_pattern_equals_the_replica(tmp_path):
    path = tmp_path / "toy.png"
    toy = toy_example(str(path))
    a, eps, y = _toy_replica()
    np.testing.assert_array_equal(toy["w"], [1.0, -1.0])
    # a is returned in float32: one float32 ulp at 1 (measured difference 2.5e-8)
    np.testing.assert_allclose(toy["a"], a, rtol=0, atol=2.0**-23)
    # analytic: x = (y + eps, eps) and w^T x = y, so a = (1 + d, d) with d = cov(eps, y) / var(y)
    # (exactly for the data, up to the float32 rounding of x: measured 3.5e-9); w^T a = 1 exactly
    d = np.cov(eps, y)[0, 1] / np.var(y, ddof=1)
    np.testing.assert_allclose(a, [1 + d, d], rtol=0, atol=1e-7)
    assert a[0] - a[1] == pytest.approx(1.0, abs=1e-12)
    assert abs(d) < 5 / math.sqrt(2000 * np.var(y))  # d ~ N(0, 1 / (n var y)): sampling noise only
    assert toy["cosine"] == pytest.approx(toy["a"][0] / np.linalg.norm(toy["a"]), rel=1e-6)
    assert toy["cosine"] > 0.9999  # the pattern points along the signal (1, 0), the filter does not
    assert abs(toy["w"] @ [1.0, 0.0] / np.linalg.norm(toy["w"]) - math.sqrt(0.5)) < 1e-12
    assert matplotlib.image.imread(path).shape[:2] == (500, 500)  # 5 x 5 inches at 100 dpi
    again = toy_example()  # no path: nothing drawn, same numbers
    np.testing.assert_array_equal(again["a"], toy["a"])


def test_build_model_parameter_count():
    model = build_model()
    # conv 3*3*1*16+16, conv 3*3*16*32+32, dense (6*6*32)*64+64, dense 64*3+3
    assert model.count_params() == 160 + 4640 + 73792 + 195
    assert model.output_shape == (None, 3)
    probs = np.asarray(model(np.zeros((2, 24, 24, 1), "float32")))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)  # softmax head


def test_demo_draws_signals_by_the_analyzers_output_kind():
    # The demo lists no kinds: each map is drawn by its analyzer's capability flag.
    assert all(len(entry) == 2 for entry in METHODS)
    assert {name for name, _ in METHODS if vis.output_kind(name) == "signal"} == {
        "deconvnet", "guided_backprop", "pattern.net"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """run_demo on 128 images, one epoch, two images shown: (result, printed text, folder)."""
    out = tmp_path_factory.mktemp("demo")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        result = run_demo(str(out), n_train=128, epochs=1, n_show=2, seed=0, verbose=1)
    return result, text.getvalue(), out


def test_quick_demo_writes_the_pictures(quick):
    result, _, out = quick
    assert result["files"] == [str(out / "demo_grid.png"), str(out / "toy_example.png")]
    grid = matplotlib.image.imread(result["files"][0])
    # plot_grid: 2 rows x 13 columns (input, true signal, 11 methods) of 1.6 in at 100 dpi, the row
    # labels' margin (1.2 in at least, 0.075 in per character of the longest label line plus 0.15 in
    # at most), 0.05 in on the right, one line of column titles (0.15 + 0.05 in) and 0.05 in below
    columns = 2 + len(METHODS)
    widest = vis._row_label_inches([f"x\n(pred {name})" for name in CLASS_NAMES])
    margin = grid.shape[1] / 100 - 1.6 * columns - 0.05
    assert 1.2 - 0.01 <= margin <= widest + 0.01
    assert abs(grid.shape[0] - 100 * (1.6 * 2 + 0.25)) <= 1
    assert matplotlib.image.imread(result["files"][1]).shape[:2] == (500, 500)


def test_quick_demo_numbers(quick):
    result, text, _ = quick
    accuracy = result["accuracy"]
    assert 0.0 <= accuracy <= 1.0
    assert abs(accuracy * N_TEST - round(accuracy * N_TEST)) < 1e-4  # a count of 500 test images
    assert f"test accuracy: {accuracy:.3f}" in text
    assert list(result["seconds"]) == [name for name, _ in METHODS]
    for name, seconds in result["seconds"].items():
        assert seconds > 0 and f"{name}: {seconds:.2f}s" in text
    assert "pattern.net: patterns fitted on 128 images" in text
    assert "pattern.attribution: patterns fitted on 128 images" in text
    np.testing.assert_array_equal(result["toy"]["a"], toy_example()["a"])
    assert f"fitted pattern a = {np.round(result['toy']['a'], 3)}" in text


def test_quick_demo_is_silent_with_verbose_0(tmp_path, monkeypatch):
    """verbose=0 prints nothing (Keras' fit included); without methods, to be quick."""
    import keras_patterns.demo as demo

    calls = []
    monkeypatch.setattr(demo, "METHODS", ())
    monkeypatch.setattr(demo, "toy_example", lambda path: calls.append(path) or toy_example())
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        demo.run_demo(str(tmp_path), n_train=16, epochs=1, n_show=1, verbose=0)
    assert text.getvalue() == ""
    assert calls == [str(tmp_path / "toy_example.png")]

"""The examples run (``--quick``) and give the numbers they promise; ``make_digits`` is sound."""

import importlib.util
import os

import numpy as np
import pytest

from keras_patterns.datasets import DIGIT_FONT, _digit_glyphs, make_digits
import paths  # noqa: E402

EXAMPLES = os.path.join(paths.ROOT, "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"kp_example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ make_digits
def test_make_digits_shapes_labels_and_determinism():
    x, y = make_digits(300, seed=3)
    assert x.shape == (300, 16, 16, 1) and x.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int32
    assert set(np.unique(y)) == set(range(10))
    x2, y2 = make_digits(300, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(make_digits(300, seed=4)[0], x)
    assert make_digits(0)[0].shape == (0, 16, 16, 1)
    assert make_digits(5, size=20)[0].shape == (5, 20, 20, 1)


def test_make_digits_draws_the_labelled_glyph():
    x, y = make_digits(200, seed=1, noise=0.0, max_shift=0)
    glyphs = _digit_glyphs()
    assert glyphs.shape == (10, 14, 10) and len(DIGIT_FONT) == 10
    crop = x[:, 1:15, 3:13, 0]  # centered glyph of a 16x16 frame
    ink = crop - np.median(x[:, :, :, 0].reshape(200, -1), axis=1)[:, None, None]  # minus the offset
    nearest = np.argmin(((ink[:, None] > 0.5) != (glyphs[None] > 0.5)).sum((2, 3)), axis=1)
    np.testing.assert_array_equal(nearest, y)
    # The ten glyphs are pairwise distinct.
    flat = glyphs.reshape(10, -1)
    assert len({row.tobytes() for row in flat}) == 10


def test_make_digits_shifts_stay_in_the_frame():
    x, _ = make_digits(500, seed=0, noise=0.0, max_shift=5)
    ink = x[..., 0] > 0.5
    assert ink.any(axis=(1, 2)).all()
    glyph_pixels = (_digit_glyphs() > 0.5).sum((1, 2))
    _, y = make_digits(500, seed=0, noise=0.0, max_shift=5)
    np.testing.assert_array_equal(ink.sum((1, 2)), glyph_pixels[y])  # never cropped


@pytest.mark.parametrize("kwargs, match", [
    ({"n": -1}, r"`n` must be an int >= 0. Received: n=-1"),
    ({"n": 2.5}, r"`n` must be an int >= 0. Received: n=2.5"),
    ({"size": 12}, r"`size` must be an int >= 16. Received: size=12"),
    ({"noise": -0.1}, r"`noise` must be a finite number >= 0. Received: noise=-0.1"),
    ({"max_shift": -1}, r"`max_shift` must be an int >= 0. Received: max_shift=-1"),
])
def test_make_digits_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_digits(**kwargs)


# ----------------------------------------------------------------------------------- examples
def test_toy_problem():
    out = _example("toy_problem").main(["--quick"])
    assert out["cosine"] > 0.99  # the pattern points along the signal direction (1, 0)
    assert out["a"][0] > 0.9 and abs(out["a"][1]) < 0.1
    assert out["patternnet_mse"] < 0.01
    assert out["gradient_mse"] > 10 * out["patternnet_mse"]  # the filter is not the signal


def test_digits_cnn():
    out = _example("digits_cnn").main(["--quick"])
    assert out["accuracy"] > 0.7
    assert 0.15 < out["ink_fraction"] < 0.35
    shares = out["ink_share"]
    assert set(shares) == {"gradient", "lrp.epsilon", "pattern.attribution"}
    assert shares["lrp.epsilon"] > out["ink_fraction"] + 0.3
    assert shares["pattern.attribution"] > out["ink_fraction"] + 0.1


def test_residual_bn():
    out = _example("residual_bn").main(["--quick"])
    assert out["accuracy"] > 0.8
    for name in ("lrp.epsilon", "lrp.sequential_preset_a", "pattern.attribution"):
        assert out["signal_share"][name] > out["signal_fraction"] + 0.1, (name, out)


def test_text_tokens_relevance_on_the_key_token():
    out = _example("text_tokens").main(["--quick"])
    assert out["accuracy"] > 0.95
    for name in ("input_t_gradient", "lrp.epsilon", "lrp.alpha_1_beta_0"):
        assert out["key_share"][name] > 0.5, (name, out)  # 1 token of 24 gets most of it
        assert out["key_top1"][name] > 0.9, (name, out)


def test_training_callback(tmp_path):
    pytest.importorskip(
        "keras_patterns.callbacks",
        reason="keras_patterns.callbacks (AnalysisCallback) is not in this checkout yet",
    )
    out = _example("training_callback").main(["--quick", "--log-dir", str(tmp_path)])
    assert out["epochs"] == [0, 1]
    assert set(out["ink_share"]) == {"gradient", "pattern.attribution"}
    for values in out["ink_share"].values():
        assert len(values) == 2 and all(0.0 < v < 1.0 for v in values)
    assert any(f.endswith(".png") for f in out["files"])
    assert any(f.endswith(".npz") for f in out["files"])


def test_reproduce_paper(tmp_path):
    import keras_patterns as kp

    out = _example("reproduce_paper").main(["--quick", "--out", str(tmp_path)])
    # rho: the paper's ordering S_a >> S_w ~ random holds on every reported layer (measured in the
    # quick run: S_a 0.97-0.99, S_w <= 0.06, random <= 0.01)
    rho = out["rho"]
    assert rho["layers"] == ["conv1", "out"]
    for i, layer in enumerate(rho["layers"]):
        assert rho["mean"]["S_a"][i] > rho["mean"]["S_w"][i] + 0.5, (layer, rho["mean"])
        assert rho["mean"]["S_a+-"][i] > rho["mean"]["random"][i] + 0.5, (layer, rho["mean"])
    # degradation: the AOPC of a mean curve is the mean AOPC (AOPC is linear in the curve)
    d = out["degradation"]
    for name, curve in d["curves"].items():
        c = np.asarray(curve)
        assert d["aopc"][name] == pytest.approx((c[0] - c).mean(), rel=1e-9, abs=1e-12), name
        assert d["aopc"][name] == pytest.approx(np.mean(d["aopc_per_sample"][name]), rel=1e-12, abs=1e-15)
        assert len(c) == 17  # 36x36 in 9x9 patches: 16 steps + the start
    assert d["aopc"]["lrp.epsilon"] > d["aopc"]["random order"]  # measured 0.082 vs 0.025
    # sanity: the gradient decorrelates once every layer is random (measured |rho| < 0.1)
    assert out["sanity"]["layers"] == ["out", "fc1", "conv3", "conv2", "conv1"]
    assert abs(out["sanity"]["similarity"]["gradient"][-1]) < 0.3
    # ground truth: every registered analyzer is measured or skipped with a reason
    names = set(kp.list_analyzers())
    assert set(out["ground_truth"]) | set(out["skipped"]) == names
    assert set(out["skipped"]) == {"lrp", "lrp.alpha_beta"}
    assert set(out["tetromino"]) == names - set(out["skipped"])
    for row in out["tetromino"].values():
        assert row["emd_score"] is None or 0.0 <= row["emd_score"] <= 1.0
        assert 0 <= row["zero_maps"] <= 4 and (row["emd_score"] is None) == (row["zero_maps"] == 4)
    assert out["tetromino"]["gradient"]["precision"] > out["tetromino"]["random"]["precision"]
    assert [os.path.basename(f) for f in out["files"]] == [
        "reproduce_rho.png", "reproduce_degradation.png", "reproduce_degradation_probability.png",
        "reproduce_sanity.png"]
    dp = out["degradation_probability"]
    assert dp["settings"]["output"] == "probability" and set(dp["aopc"]) == set(d["aopc"])
    assert all(0.0 <= v <= 1.0 for c in dp["curves"].values() for v in c)

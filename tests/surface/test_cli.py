"""The keras-patterns command: results, and one-line errors (never a traceback) for user mistakes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_patterns.cli import main

import builders
import paths  # noqa: E402

ROOT = paths.ROOT


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    img = builders.small_cnn((6, 6, 1), 3, 10, pool=None, head="softmax")
    mlp = builders.mlp((5, 4, 3))
    img.save(d / "img.keras")
    mlp.save(d / "mlp.keras")
    np.save(d / "x_img.npy", rng.normal(size=(4, 6, 6, 1)).astype("float32"))
    np.savez(d / "fit_img.npz", x=rng.normal(size=(12, 6, 6, 1)).astype("float32"))
    np.savez(d / "two.npz", a=np.zeros((2, 5), "float32"), b=np.zeros((2, 5), "float32"))
    np.save(d / "x_mlp.npy", rng.normal(size=(3, 5)).astype("float32"))
    return {p.name: str(p) for p in d.iterdir()} | {"dir": str(d)}


def _error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("keras-patterns: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_help_does_not_import_tensorflow():
    code = ("import sys; from keras_patterns.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert "usage: keras-patterns" in out.stdout


def test_version_and_list(capsys):
    import keras_patterns as kp

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"keras-patterns {kp.__version__}"
    assert main(["list"]) == 0
    assert "pattern.attribution" in capsys.readouterr().out.split()


def test_missing_file(files, capsys):
    err = _error(capsys, ["analyze", os.path.join(files["dir"], "nope.keras"), files["x_img.npy"],
                          "-o", os.path.join(files["dir"], "o.npz")], 2)
    assert "nope.keras' does not exist" in err


def test_unknown_method(files, capsys):
    err = _error(capsys, ["analyze", files["img.keras"], files["x_img.npy"], "--method", "gradiant",
                          "-o", os.path.join(files["dir"], "o.npz")], 2)
    assert "unknown method 'gradiant'" in err


def test_index_out_of_range(files, capsys):
    out = os.path.join(files["dir"], "index.npz")
    err = _error(capsys, ["analyze", files["img.keras"], files["x_img.npy"], "--method", "gradient",
                          "--index", "42", "-o", out], 2)
    assert "--index 42 is out of range: the model has 10 outputs" in err
    assert not os.path.exists(out)


def test_png_on_non_image_model_refused_before_writing(files, capsys):
    out = os.path.join(files["dir"], "mlp.npz")
    err = _error(capsys, ["analyze", files["mlp.keras"], files["x_mlp.npy"], "--method", "gradient",
                          "--png", os.path.join(files["dir"], "g.png"), "-o", out], 2)
    assert "--png draws images" in err and "('batch', 5)" in err
    assert not os.path.exists(out)


def test_usage_error_is_one_line(files, capsys):
    _error(capsys, ["analyze", files["img.keras"]], 2)
    _error(capsys, ["analyze", files["img.keras"], files["two.npz"], "--method", "gradient",
                    "-o", os.path.join(files["dir"], "o.npz")], 2)  # two arrays, no --key
    _error(capsys, ["analyze", files["img.keras"], files["x_img.npy"], "--method", "gradient",
                    "--set", "foo=1", "-o", os.path.join(files["dir"], "o.npz")], 2)


def test_runtime_error_is_one_line_exit_1(files, capsys):
    # Inputs of the wrong shape: the analyzer's ValueError, as one line.
    err = _error(capsys, ["analyze", files["img.keras"], files["x_mlp.npy"], "--method", "gradient",
                          "-o", os.path.join(files["dir"], "o.npz")], 1)
    assert "Received: shape (3, 5)" in err


def test_fit_on_npz_then_analyze_kpa_with_png(files, capsys):
    import keras_patterns as kp

    kpa = os.path.join(files["dir"], "a.kpa")
    assert main(["fit", files["img.keras"], files["fit_img.npz"], "-o", kpa, "--batch-size", "5"]) == 0
    out = capsys.readouterr().out
    assert "3/3" in out and "samples: 12" in out and "12.0000" not in out
    maps_path, png = os.path.join(files["dir"], "maps.npz"), os.path.join(files["dir"], "grid.png")
    assert main(["analyze", kpa, files["x_img.npy"], "--index", "2", "-o", maps_path, "--png", png]) == 0
    saved = kp.load_analyzer(kpa)
    with np.load(maps_path) as z:
        assert z.files == saved.graph.input_names
        expected = kp.create_analyzer(
            "pattern.attribution", saved.model, neuron_selection_mode="index", patterns=saved.patterns
        ).analyze(np.load(files["x_img.npy"]), neuron_selection=2)
        np.testing.assert_allclose(z[z.files[0]], expected, rtol=1e-6)
    assert os.path.getsize(png) > 0


def test_set_values_are_json(files, capsys):
    out = os.path.join(files["dir"], "eps.npz")
    assert main(["analyze", files["img.keras"], files["x_img.npy"], "--method", "lrp.epsilon",
                 "--set", "epsilon=0.5", "--set", "bias=false", "-o", out]) == 0
    from keras_patterns.cli import _parse_sets

    assert _parse_sets(["a=1", "b=[1, 2]", "c=true", "d=relu", "e=1e-3"]) == {
        "a": 1, "b": [1, 2], "c": True, "d": "relu", "e": 1e-3}


# ------------------------------------------------------------------------- results and more errors
def test_demo_command_forwards_its_arguments(monkeypatch, tmp_path):
    import keras_patterns.demo as demo

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: calls.append((a, k)))
    assert main(["demo", "--out", str(tmp_path / "d"), "--epochs", "2", "--n-train", "64"]) == 0
    assert calls == [((str(tmp_path / "d"),), {"n_train": 64, "epochs": 2})]
    calls.clear()
    assert main(["demo"]) == 0  # the defaults of the command are run_demo's
    assert calls == [(("demo_out",), {"n_train": 3000, "epochs": 4})]


def test_analyze_gradient_equals_a_numpy_replica(files, capsys):
    """gradient of output 1 of Dense(4, relu) -> Dense(3): W1[:, active] @ W2[active, 1] per sample."""
    import keras

    out = os.path.join(files["dir"], "g.npy")
    assert main(["analyze", files["mlp.keras"], files["x_mlp.npy"], "--method", "gradient",
                 "--index", "1", "-o", out]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out} ((3, 5))"
    model = keras.models.load_model(files["mlp.keras"])
    (w1, b1), (w2, _) = [[w.astype("float64") for w in layer.get_weights()] for layer in model.layers]
    x = np.load(files["x_mlp.npy"]).astype("float64")
    active = (x @ w1 + b1 > 0).astype("float64")  # (3, 4)
    expected = (active * w2[:, 1]) @ w1.T
    # float32 sums of 4 products: at most ~4 * 2^-23 * max|w1| * max|w2| (measured 2.3e-8 of 6.4e-7)
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-6 * np.abs(w1).max() * np.abs(w2).max())


def test_analyze_strips_the_softmax_and_writes_one_array_per_input(files, capsys):
    import keras

    import keras_patterns as kp

    out = os.path.join(files["dir"], "eps")  # no suffix: refused, --out must be .npz/.npy
    _error(capsys, ["analyze", files["img.keras"], files["x_img.npy"], "--method", "lrp.epsilon",
                    "-o", out], 2)
    out += ".npz"
    assert main(["analyze", files["img.keras"], files["x_img.npy"], "--method", "lrp.epsilon",
                 "--set", "epsilon=0.25", "--batch-size", "3", "-o", out]) == 0
    logits = kp.model_wo_softmax(keras.models.load_model(files["img.keras"]))
    expected = kp.create_analyzer("lrp.epsilon", logits, epsilon=0.25).analyze(np.load(files["x_img.npy"]))
    with np.load(out) as z:
        assert len(z.files) == 1
        np.testing.assert_allclose(z[z.files[0]], expected, rtol=1e-6, atol=1e-7)


def test_png_grid_size(files, capsys, tmp_path):
    png = str(tmp_path / "g.png")
    assert main(["analyze", files["img.keras"], files["x_img.npy"], "--method", "gradient",
                 "-o", str(tmp_path / "g.npz"), "--png", png]) == 0
    assert capsys.readouterr().out.strip().endswith(f"and {png}")
    import matplotlib.image

    # 4 images x (input, map): 2 cells of 1.6 in + 0.1 in of margins wide; 4 cells + one title
    # line (0.15 + 0.05 in) + 0.05 in high; 100 dpi
    shape = matplotlib.image.imread(png).shape
    assert abs(shape[1] - 100 * (2 * 1.6 + 0.1)) <= 1 and abs(shape[0] - 100 * (4 * 1.6 + 0.25)) <= 1


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be a positive integer, received 0"),
    (["--index", "-1"], "--index must be >= 0, received -1"),
    (["--key", "x"], "--key is only for .npz files"),
    (["--set", "neuron_selection_mode=max_activation", "--index", "1"],
     "--index needs neuron_selection_mode='index'"),
    (["--method", "pattern.net"], "pattern.net needs --fit-data"),
])
def test_analyze_usage_errors(files, capsys, argv, message):
    out = os.path.join(files["dir"], "never.npz")
    base = ["analyze", files["img.keras"], files["x_img.npy"], "-o", out]
    if "--method" not in argv:
        base += ["--method", "gradient"]
    err = _error(capsys, base + argv, 2)
    assert message in err
    assert not os.path.exists(out)


def test_data_file_errors(files, capsys, tmp_path):
    strings = tmp_path / "s.npy"
    np.save(strings, np.array(["a", "b"]))
    garbage = tmp_path / "g.npy"
    garbage.write_bytes(b"not an array")
    several = tmp_path / "several.npz"
    np.savez(several, x=np.zeros((2, 5), "float32"), y=np.ones(2))
    out = str(tmp_path / "o.npz")
    cases = [
        ([str(strings)], "must hold numbers, received dtype <U1"),
        ([str(garbage)], "cannot read inputs file"),
        ([files["two.npz"], "--key", "c"], "has no array 'c'; it holds ['a', 'b']"),
        ([str(tmp_path / "x.csv")], "does not exist"),
    ]
    for inputs, message in cases:
        err = _error(capsys, ["analyze", files["mlp.keras"], *inputs, "--method", "gradient", "-o", out], 2)
        assert message in err, err
    # several arrays, one named x: x is taken
    assert main(["analyze", files["mlp.keras"], str(several), "--method", "gradient", "-o", out]) == 0
    with np.load(out) as z:
        assert z[z.files[0]].shape == (2, 5)


def test_fit_errors(files, capsys, tmp_path):
    kpa = str(tmp_path / "a.kpa")
    err = _error(capsys, ["fit", files["img.keras"], files["fit_img.npz"], "-o", kpa, "--method", "gradient"], 2)
    assert "method 'gradient' needs no fitting" in err
    err = _error(capsys, ["fit", files["img.keras"], files["fit_img.npz"], "-o", kpa, "--steps", "0"], 2)
    assert "--steps must be a positive integer, received 0" in err
    assert not os.path.exists(kpa)
    assert main(["fit", files["img.keras"], files["fit_img.npz"], "-o", kpa, "--method", "pattern.net"]) == 0
    err = _error(capsys, ["analyze", kpa, files["x_img.npy"], "--method", "gradient",
                          "-o", str(tmp_path / "o.npz")], 2)
    assert "holds a 'pattern.net' analyzer; received --method 'gradient'" in err


# ------------------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def eval_files(files):
    d = files["dir"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 6, 6, 1)).astype("float32")
    masks = np.zeros((6, 6, 6), "float32")
    masks[:, 1:4, 2:5] = 1
    np.save(os.path.join(d, "x_eval.npy"), x)
    np.save(os.path.join(d, "masks.npy"), masks)
    # 200 samples: rho fits v on the second half (100 rows > 48 inputs of the Dense layer)
    np.save(os.path.join(d, "fit_eval.npy"), rng.normal(size=(200, 6, 6, 1)).astype("float32"))
    return {"x": os.path.join(d, "x_eval.npy"), "masks": os.path.join(d, "masks.npy"),
            "fit": os.path.join(d, "fit_eval.npy")}


def test_evaluate_numbers_equal_the_library(files, eval_files, capsys, tmp_path):
    """Every number of results.json is the evaluation function's, recomputed here."""
    import json

    import keras

    import keras_patterns as kp
    from keras_patterns import evaluation as ev

    out = str(tmp_path / "ev")
    assert main(["evaluate", files["img.keras"], eval_files["x"], "--methods", "gradient,pattern.attribution",
                 "--fit-data", eval_files["fit"], "--masks", eval_files["masks"], "--patch-size", "3",
                 "--sanity-samples", "4", "--emd", "-o", out]) == 0
    printed = capsys.readouterr().out
    with open(os.path.join(out, "results.json")) as f:
        result = json.load(f)
    assert result["measures"] == ["rho", "degradation", "sanity", "ground_truth"]
    assert result["methods"] == ["gradient", "pattern.attribution"] and result["skipped"] == {}
    for png in ("rho.png", "degradation.png", "sanity.png"):
        assert os.path.getsize(os.path.join(out, png)) > 0 and png in printed

    logits = kp.model_wo_softmax(keras.models.load_model(files["img.keras"]))
    x, fit, masks = (np.load(eval_files[k]) for k in ("x", "fit", "masks"))
    grad = kp.create_analyzer("gradient", logits)
    maps = grad.analyze(x)
    curves = ev.region_perturbation(logits, x, maps, patch_size=3)  # mean replacement, logit, morf
    d = result["degradation"]
    assert d["aopc"]["gradient"] == pytest.approx(ev.aopc(curves).mean(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(d["curves"]["gradient"], curves.mean(axis=0), rtol=1e-12)
    assert len(d["curves"]["random order"]) == 5  # 6x6 in 3x3 patches: 4 steps + the start
    rnd = ev.region_perturbation(logits, x, maps, patch_size=3, order="random")
    assert d["aopc"]["random order"] == pytest.approx(ev.aopc(rnd).mean(), rel=1e-12, abs=1e-12)
    assert f"AOPC gradient: {d['aopc']['gradient']:.4f}" in printed

    sanity = ev.randomization_check(grad, logits, x[:4], seed=0)
    assert result["sanity"]["layers"] == sanity["layers"]
    np.testing.assert_allclose(result["sanity"]["similarity"]["gradient"], sanity["similarity"].mean(axis=1),
                               rtol=1e-12)

    loc = ev.localization(maps[..., 0], masks > 0)
    g = result["ground_truth"]["gradient"]
    for key, values in loc.items():
        assert g[key] == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
    assert g["precision"] == pytest.approx(ev.precision(maps[..., 0], masks).mean(), rel=1e-12)
    assert g["emd_score"] == pytest.approx(ev.emd_score(maps[..., 0], masks).mean(), rel=1e-9)

    rho = ev.signal_quality(logits, fit[:100], fit[100:], x, batch_size=32, seed=0)
    for est, by_layer in rho.items():
        assert result["rho"]["layers"] == list(by_layer)
        np.testing.assert_allclose(result["rho"]["mean"][est], [v.mean() for v in by_layer.values()], rtol=1e-9)


def test_evaluate_defaults_skip_what_the_files_do_not_allow(files, eval_files, capsys, tmp_path):
    """Without --fit-data: no rho, the pattern methods skipped with a reason; without --masks: no ground truth."""
    import json

    out = str(tmp_path / "ev")
    assert main(["evaluate", files["img.keras"], eval_files["x"], "--measures", "degradation",
                 "--patch-size", "3", "-o", out]) == 0
    printed = capsys.readouterr().out
    assert "skipped pattern.attribution: needs fitting data" in printed
    with open(os.path.join(out, "results.json")) as f:
        result = json.load(f)
    from keras_patterns.evaluation import suite

    assert result["methods"] == [m for m in suite.PAPER_METHODS if not m.startswith("pattern.")]
    assert set(result["degradation"]["aopc"]) == set(result["methods"]) | {"random order"}
    assert "rho" not in result and "sanity" not in result and "ground_truth" not in result
    assert result["arguments"]["smoothgrad"]["noise_scale"] == pytest.approx(
        0.15 * float(np.ptp(np.load(eval_files["x"]))), rel=1e-6)


def test_evaluate_copies_of_the_suite_names_agree():
    """cli.py keeps copies (it must not import TensorFlow at import time): they equal the library's."""
    from keras_patterns import cli
    from keras_patterns.evaluation import perturbation, suite

    assert cli._PAPER_METHODS == suite.PAPER_METHODS
    assert cli._MEASURES == suite.MEASURES
    assert cli._REPLACEMENTS == perturbation.REPLACEMENTS


@pytest.mark.parametrize("argv, message", [
    (["--measures", "rho"], "the measure rho needs --fit-data"),
    (["--measures", "ground_truth"], "the measure ground_truth needs --masks"),
    (["--measures", "degradation,speed"], "unknown measure 'speed' in --measures"),
    (["--methods", "gradient,gradiant"], "unknown method 'gradiant' in --methods"),
    (["--methods", "pattern.net"], "pattern.net needs --fit-data"),
    (["--methods", "lrp.alpha_beta"], "method 'lrp.alpha_beta' needs arguments that cannot be inferred"),
    (["--replacement", "noise"], "--replacement must be one of mean, patch_mean, zeros, uniform, blur"),
    (["--output", "softmax"], "--output must be logit or probability, received 'softmax'"),
    (["--patch-size", "0"], "--patch-size must be a positive integer, received 0"),
    (["--emd"], "--emd is part of the measure ground_truth"),
    (["--set", "epsilon=0.1"], "--set expects METHOD:KEY=VALUE"),
    (["--methods", "gradient", "--set", "lrp.epsilon:epsilon=0.1"], "--set names method 'lrp.epsilon', which is not evaluated"),
    (["--masks", "MASKS3"], "--masks must hold one (H, W) or (H, W, 1) mask per input"),
    (["--masks", "MASKS2"], "--masks must hold 0/1 values"),
])
def test_evaluate_usage_errors(files, eval_files, capsys, tmp_path, argv, message):
    bad3 = tmp_path / "m3.npy"
    np.save(bad3, np.ones((3, 6, 6)))  # 3 masks for 6 inputs
    bad2 = tmp_path / "m2.npy"
    np.save(bad2, np.full((6, 6, 6), 2.0))
    argv = [{"MASKS3": str(bad3), "MASKS2": str(bad2)}.get(a, a) for a in argv]
    out = str(tmp_path / "never")
    err = _error(capsys, ["evaluate", files["img.keras"], eval_files["x"], "-o", out] + argv, 2)
    assert message in err, err
    assert not os.path.exists(out)


def test_evaluate_runtime_error_is_one_line(files, capsys, tmp_path):
    # An MLP's inputs are not images: region_perturbation's ValueError, one line, exit 1.
    err = _error(capsys, ["evaluate", files["mlp.keras"], files["x_mlp.npy"], "--methods", "gradient",
                          "--measures", "degradation", "-o", str(tmp_path / "o")], 1)
    assert "`x` must be images" in err


def test_evaluate_per_method_arguments(files, eval_files, capsys, tmp_path):
    """--set METHOD:KEY=VALUE reaches that method (over the inferred arguments), is recorded in
    results.json, and makes a method that needs arguments (lrp.alpha_beta) evaluable; a wrong
    argument is an error, not a skip."""
    import json

    import keras

    import keras_patterns as kp
    from keras_patterns import evaluation as ev

    out = str(tmp_path / "ev")
    assert main(["evaluate", files["img.keras"], eval_files["x"], "--methods", "lrp.epsilon,lrp.alpha_beta",
                 "--set", "lrp.epsilon:epsilon=0.25", "--set", "lrp.alpha_beta:alpha=3",
                 "--set", "lrp.alpha_beta:beta=2", "--measures", "degradation", "--patch-size", "3",
                 "-o", out]) == 0
    capsys.readouterr()
    with open(os.path.join(out, "results.json")) as f:
        result = json.load(f)
    assert result["arguments"]["lrp.epsilon"]["epsilon"] == 0.25
    assert result["arguments"]["lrp.alpha_beta"] == {"alpha": 3, "beta": 2}
    logits = kp.model_wo_softmax(keras.models.load_model(files["img.keras"]))
    x = np.load(eval_files["x"])
    maps = kp.create_analyzer("lrp.alpha_beta", logits, alpha=3, beta=2).analyze(x)
    curves = ev.region_perturbation(logits, x, maps, patch_size=3)
    assert result["degradation"]["aopc"]["lrp.alpha_beta"] == pytest.approx(ev.aopc(curves).mean(), rel=1e-12, abs=1e-12)
    err = _error(capsys, ["evaluate", files["img.keras"], eval_files["x"], "--methods", "lrp.epsilon",
                          "--set", "lrp.epsilon:epsilom=0.25", "--measures", "degradation",
                          "-o", str(tmp_path / "bad")], 1)
    assert "lrp.epsilon with the arguments {'epsilom': 0.25}" in err and "epsilom" in err

"""The keras-patterns command: results, and one-line errors (never a traceback) for user mistakes."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_patterns.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    img = keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    mlp = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
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

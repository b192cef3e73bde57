"""Fitting and analysis under tf.distribute equal the single-device results.

* ``MirroredStrategy`` over 3 logical CPU devices, in a child process (``distribute_child.py``):
  the logical devices must be configured before TensorFlow initialises its devices;
* ``MultiWorkerMirroredStrategy`` with two local worker processes on loopback (``TF_CONFIG``),
  running ``examples/distributed_fit.py``, the code shown on the "Scaling out" page;
* the strategy checks, in process, with a one-replica ``MirroredStrategy``.

Tolerances. Each replica adds float32 per-batch sums of its part of a batch to float64 totals, so
a distributed fit differs from the single-device one exactly as two single-device fits with
different batch sizes do: by the float32 rounding of the per-batch sums, amplified where the
covariance cancels. Measured: at most 4.8e-7 of a layer's largest pattern entry (3 replicas), 4.1e-7
(2 workers); two single-device fits at batch 32 and 64 differ by as much (per unit up to 1.4e-6 in
both cases). Hence ``max|a - a_ref| <= 1e-6 max|a_ref|`` per layer. Maps are computed per sample
and agree to float32 rounding (measured <= 1.5e-8 absolute, maps of order 1): rtol 1e-6.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import paths

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = paths.ROOT
TYPES = ("linear", "relu")
LAYERS = ("conv", "depthwise", "hidden", "logits")
ANALYZERS = ("gradient", "lrp_epsilon", "pattern_attribution", "smoothgrad")


def _env(**extra):
    path = os.pathsep.join([ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def assert_pattern_close(got, ref, what):
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert err <= 1e-6, f"{what}: max|a - a_ref| / max|a_ref| = {err:.2e}"


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirrored")
    out = subprocess.run([sys.executable, os.path.join(HERE, "distribute_child.py"), str(folder)],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    with open(folder / "errors.json") as f:
        errors = json.load(f)
    return dict(np.load(folder / "results.npz")), errors


@pytest.mark.parametrize("source", ["array", "dataset", "generator", "dataset_fn", "array_b2"])
def test_mirrored_fit_equals_single_device(mirrored, source):
    res, _ = mirrored
    assert int(res["replicas"]) == 3
    ref = "b2" if source == "array_b2" else "b16"  # b2: a replica without data in every step
    for t in TYPES:
        for k in LAYERS:
            assert_pattern_close(res[f"fit_{source}_{t}_{k}"], res[f"fit_ref_{ref}_{t}_{k}"], f"{source} {t} {k}")


def test_mirrored_fit_counts_every_sample_once_and_skips_nonfinite(mirrored):
    res, errors = mirrored
    # 'hidden' is a Dense layer: one row per sample; the last compute skipped 1 of 70 samples.
    assert float(res["n_rows_hidden"]) == 69.0 and int(res["skipped"]) == 1
    assert_pattern_close(res["fit_skip_relu_conv"], res["fit_ref_skip_relu_conv"], "skip_nonfinite")
    assert errors["nan"].startswith("NonFiniteDataError: Batch 1 of the fitting data")
    assert "samples [4]" in errors["nan"] and "samples [20] counting from the first sample" in errors["nan"]


@pytest.mark.parametrize("analyzer", ANALYZERS)
def test_mirrored_analysis_equals_single_device(mirrored, analyzer):
    res, _ = mirrored
    ref = res[f"ref_{analyzer}"]
    atol = 1e-6 * np.abs(ref).max()
    for how in ("b16", "b1", "ds", "stream", "npy"):
        got = res[f"dist_{analyzer}_{how}"]
        np.testing.assert_allclose(got, ref[: len(got)], rtol=1e-6, atol=atol, err_msg=how)
    step = 10 // (4 if analyzer == "smoothgrad" else 1)  # SmoothGrad: 4 noisy copies per sample
    np.testing.assert_array_equal(res[f"dist_{analyzer}_starts"], np.arange(0, 70, step))


def test_mirrored_fitted_patterns_equal_single_device(mirrored):
    res, _ = mirrored
    assert_pattern_close(res["fitted_pattern.attribution_conv"], res["fit_ref_b16_relu_conv"], "analyzer.fit")


def test_mirrored_errors(mirrored):
    _, errors = mirrored
    scope = ("was built under no strategy but is used inside the scope of another strategy",
             "Received: a call under MirroredStrategy (3 replicas)")
    for key in ("fit_scope", "analyze_scope"):
        assert all(s in errors[key] for s in scope), errors[key]
    assert errors["analyze_scope"].startswith("The analyzer 'smoothgrad'")
    assert "Input 0 (image) must have shape ('batch', 8, 8, 2). Received: shape (None, 4, 8, 2)" in errors["shape"]
    assert "element_spec=" in errors["shape"]
    assert "Received: a tuple of 4 elements, element_spec=" in errors["structure"]


# ---------------------------------------------------------------------------------- multi-worker
def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_multi_worker_fit_equals_single_device(tmp_path):
    try:
        ports = _free_ports(2)
    except OSError as e:
        pytest.skip(f"this platform forbids local sockets, needed for two workers on loopback: {e}")
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    script = os.path.join(ROOT, "examples", "distributed_fit.py")
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, script, "--out", str(tmp_path / f"patterns_{i}.npz")],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    assert "2 replicas; patterns of 3 layers saved" in logs[0]
    assert not (tmp_path / "patterns_1.npz").exists()  # only the chief saves

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import distributed_fit as example
    finally:
        sys.path.pop(0)
    import keras_patterns as kp

    ref = kp.create_analyzer("pattern.attribution", example.build_model()).fit(
        example.load_data(), batch_size=example.GLOBAL_BATCH, verbose=0).patterns
    got = np.load(tmp_path / "patterns_0.npz")
    assert sorted(got.files) == sorted(ref) == ["conv1", "conv2", "logits"]
    for k in ref:
        assert_pattern_close(got[k], ref[k], k)


# ------------------------------------------------------------------------------------ in process
def test_strategy_is_picked_up_at_construction_and_checked(small_mlp):
    import tensorflow as tf

    import keras_patterns as kp

    x = np.random.default_rng(0).normal(size=(10, 5)).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    other = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        analyzer = kp.create_analyzer("pattern.net", small_mlp)
        computer = kp.PatternComputer(small_mlp, "relu")
    assert analyzer.strategy is strategy and computer.statistics.strategy is strategy
    ref = kp.create_analyzer("pattern.net", small_mlp).fit(x, verbose=0)
    analyzer.fit(x, verbose=0)  # outside the scope: runs under the strategy it was built under
    for k in ref.patterns:
        assert_pattern_close(analyzer.patterns[k], ref.patterns[k], k)
    np.testing.assert_allclose(analyzer.analyze(x), ref.analyze(x), rtol=1e-5, atol=1e-6)
    with other.scope():
        with pytest.raises(ValueError, match=r"The analyzer 'pattern.net' was built under MirroredStrategy "
                                             r"\(1 replicas\) but is used inside the scope of another"):
            analyzer.analyze(x)
        with pytest.raises(ValueError, match="built under MirroredStrategy"):
            analyzer.fit(x, verbose=0)
        with pytest.raises(ValueError, match="The PatternComputer of model 'small_mlp' was built under"):
            computer.compute(x, verbose=0)
    assert kp.create_analyzer("gradient", small_mlp).strategy is None

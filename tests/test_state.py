"""State: analyzers are safe to share between threads and leave the user's model and Keras alone.

Checks:

* one analyzer used from several threads gives the same maps as sequential use, both when its
  compiled function already exists and when the first calls are concurrent (then exactly one
  function is created and traced once);
* after every analyzer call, and after every failed call, the user's model (config, weights,
  variables, ``trainable`` flags, outputs) and Keras' global state (dtype policy, floatx, call
  context) are unchanged; a frozen model or frozen layers stay frozen.
"""

import functools
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
from keras import layers as L
from keras.src.backend.common import global_state

import keras_patterns as kp
import zoo
from test_contract import EXPECTED_REFUSALS, EXTRA_KWARGS, _as_list, _close, _lookup

# ------------------------------------------------------------------------------------- threads

THREADED = {
    "gradient": {},
    "lrp.epsilon": {},
    "lrp.alpha_1_beta_0": {},
    "pattern.attribution": {},
    "smoothgrad": {"seed": 0, "augment_by_n": 4},
    "integrated_gradients": {"steps": 4},
}


@pytest.fixture(scope="module")
def residual():
    model = zoo.build("residual")
    batches = [zoo.inputs_for(model, n=3, seed=10 + i) for i in range(8)]
    return model, batches, zoo.inputs_for(model, n=16, seed=2)


def _make(name, model, fit_x):
    analyzer = kp.create_analyzer(name, model, **THREADED[name])
    if analyzer.needs_fitting:
        analyzer.fit(fit_x, batch_size=8, verbose=0)
    return analyzer


def _count_traces(analyzer):
    """Makes ``analyzer`` record every Python trace of its reverse pass; returns the record."""
    traces = []
    original = analyzer._analyze_batch

    @functools.wraps(original)
    def traced(*args):
        traces.append(threading.get_ident())
        return original(*args)

    analyzer._analyze_batch = traced
    return traces


def _concurrently(analyzer, batches):
    """``analyze`` on every batch from 4 threads, the first 4 calls released at once."""
    barrier = threading.Barrier(4)

    def run(x):
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:  # fewer than 4 threads got a task
            pass
        return _as_list(analyzer.analyze(x))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(run, batches))


@pytest.fixture
def frequent_thread_switches():
    """Switches threads every microsecond (5 ms by default), to make races show up."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize("name", sorted(THREADED))
def test_threads_give_the_sequential_maps(name, residual, frequent_thread_switches):
    model, batches, fit_x = residual
    analyzer = _make(name, model, fit_x)
    sequential = [_as_list(analyzer.analyze(x)) for x in batches]
    # Warm: the compiled function exists.
    for got, want in zip(_concurrently(analyzer, batches), sequential):
        for g, w in zip(got, want):
            _close(g, w)
    assert analyzer._compiled.experimental_get_tracing_count() == 1
    # Cold: the first calls are concurrent; one function must be created and traced once.
    fresh = _make(name, model, fit_x)
    traces = _count_traces(fresh)
    for got, want in zip(_concurrently(fresh, batches), sequential):
        for g, w in zip(got, want):
            _close(g, w)
    assert len(traces) == 1, f"traced {len(traces)} times by concurrent first calls"
    assert fresh._compiled.experimental_get_tracing_count() == 1


# --------------------------------------------------------------------------------- model state


def _small(name="state_model"):
    """Dense -> BatchNormalization -> Dropout -> Dense, with deterministic non-trivial weights."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)), L.Dense(8, activation="relu", name="d1"), L.BatchNormalization(name="bn"),
        L.Dropout(0.5, name="drop"), L.Dense(5, activation="relu", name="d2"), L.Dense(3, name="out"),
    ], name=name)
    return zoo._randomize_bn(model)


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _state(model, x):
    """Everything an analyzer must leave as it found it."""
    return {
        "config": json.dumps(model.get_config(), sort_keys=True, default=str),
        "weights": [np.array(w) for w in model.get_weights()],
        "variables": [(v.path, v.trainable, str(v.dtype)) for v in model.weights],
        "trainable": model.trainable,
        "layer_trainable": [(layer.name, layer.trainable) for layer in _layers(model)],
        "trainable_weights": [v.path for v in model.trainable_weights],
        "dtype_policy": keras.config.dtype_policy().name,
        "floatx": keras.config.floatx(),
        "call_context": global_state.get_global_attribute("current_call_ctx"),
        # a training flag left on would make Dropout random and BatchNormalization use batch stats
        "output": np.array(model(x)),
        "output_inference": np.array(model(x, training=False)),
    }


def _assert_same(before, model, x, when):
    after = _state(model, x)
    assert sorted(after) == sorted(before)
    for key in before:
        if key in ("weights", "output", "output_inference"):
            assert len(after[key]) == len(before[key]), f"{key} changed {when}"
            for b, a in zip(before[key], after[key]):
                np.testing.assert_array_equal(a, b, err_msg=f"{key} changed {when}")
        else:
            assert after[key] == before[key], f"{key} changed {when}"
    np.testing.assert_array_equal(after["output"], after["output_inference"])


@pytest.fixture(scope="module")
def small():
    model = _small()
    return model, zoo.inputs_for(model, n=4, seed=1), zoo.inputs_for(model, n=16, seed=2)


@pytest.mark.parametrize("name", kp.list_analyzers())
def test_calls_and_failed_calls_leave_model_and_keras_unchanged(name, small):
    if _lookup(EXPECTED_REFUSALS, name, "dense_mlp") is not None:
        pytest.skip(f"{name} refuses MLPs (no spatial axes); tests/test_cam.py and "
                    "tests/test_occlusion.py check its failed calls")
    model, x, fit_x = small
    kwargs = dict(EXTRA_KWARGS.get(name, {}))
    before = _state(model, x)
    analyzer = kp.create_analyzer(name, model, **kwargs)
    _assert_same(before, model, x, f"by create_analyzer({name!r})")
    if analyzer.needs_fitting:
        analyzer.fit(fit_x, batch_size=8, verbose=0)
        _assert_same(before, model, x, "by fit")
    maps = _as_list(analyzer.analyze(x))
    _assert_same(before, model, x, "by analyze")

    with pytest.raises(ValueError, match="must have shape"):
        analyzer.analyze(np.zeros((2, 7), "float32"))
    _assert_same(before, model, x, "by analyze with a wrong shape")
    nan = x.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        analyzer.analyze(nan)
    _assert_same(before, model, x, "by analyze with NaN input")

    indexed = kp.create_analyzer(name, model, neuron_selection_mode="index", **kwargs)
    if indexed.needs_fitting:
        with pytest.raises(kp.NotFittedError):
            indexed.analyze(x, 0)
        _assert_same(before, model, x, "by analyze before fit")
        with pytest.raises(kp.NonFiniteDataError):
            indexed.fit(np.where(np.arange(16)[:, None] == 3, np.nan, fit_x), batch_size=8, verbose=0)
        _assert_same(before, model, x, "by fit on NaN data")
        indexed.fit(fit_x, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"Received: neuron_selection=-1 \(at sample 1\)"):
        indexed.analyze(x, [0, -1, 2, 1])
    _assert_same(before, model, x, "by analyze with a bad neuron_selection")
    # the failures left the analyzer itself working: same maps as before them
    for m, m2 in zip(maps, _as_list(analyzer.analyze(x))):
        np.testing.assert_array_equal(m2, m)


FROZEN_ANALYZERS = ["gradient", "lrp.epsilon", "pattern.attribution", "smoothgrad"]


def _maps(name, model, x, fit_x):
    analyzer = kp.create_analyzer(name, model, **EXTRA_KWARGS.get(name, {}))
    if analyzer.needs_fitting:
        analyzer.fit(fit_x, batch_size=8, verbose=0)
    return analyzer.analyze(x)


@pytest.mark.parametrize("frozen", ["model", "layers"])
def test_frozen_stays_frozen(frozen, small):
    reference, x, fit_x = small
    model = _small("frozen")
    model.set_weights(reference.get_weights())
    if frozen == "model":
        model.trainable = False
    else:
        model.get_layer("d1").trainable = False
        model.get_layer("bn").trainable = False
    before = _state(model, x)
    if frozen == "model":
        assert before["trainable_weights"] == []
        assert all(not t for _, t in before["layer_trainable"])
    else:
        assert dict(before["layer_trainable"]) == {
            "d1": False, "bn": False, "drop": True, "d2": True, "out": True}
    for name in FROZEN_ANALYZERS:
        got = _maps(name, model, x, fit_x)
        _assert_same(before, model, x, f"by {name}")
        # freezing changes nothing in the explanation
        np.testing.assert_array_equal(got, _maps(name, reference, x, fit_x))

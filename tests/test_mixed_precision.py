"""Analyzers on models built under a mixed precision policy (float32 variables, float16/bfloat16
compute).

Every registered analyzer runs on a small conv model with BatchNormalization, a Dense model and the
zoo's ``residual``; maps come back float32 and finite, pattern statistics accumulate in float64.
Patterns and maps are compared with the model's float32 twin (the same weights).

Tolerances are relative to the largest magnitude of the float32 result and are multiples of the
compute dtype's unit roundoff u (float16: 2^-11 = 4.9e-4, bfloat16: 2^-8 = 3.9e-3). The forward
activations x, y are rounded to the compute dtype, so a pattern (a ratio of sums of products of
them, summed in float32/float64) or a smooth map is off by a modest multiple of u. Measured on
these models with 16 samples (max error / max |float32 value|):

* patterns: float16 0.8u (dense), 6.8u (residual), 56u (conv+BN); bfloat16 8.8u (dense),
  7.2u (residual), 6.8u (conv+BN). The conv figure for float16 comes from relu masks that flip
  for pre-activations within rounding of 0 (a flipped row moves a pattern by far more than u).
  Bound: 128u for float16, 16u for bfloat16 (about 2x the largest measured figure).
* maps on the Dense model: lrp.epsilon (epsilon 0.1) float16 1.9u, bfloat16 3.9u; gradient
  float16 1.5u. Bound: 16u. The bfloat16 gradient differs by a ReLU gate that flips for a few
  samples (0.37 of the max there); for it the median per-sample error is checked against 16u.
  On the conv and residual models gates and max-pool arg-maxes flip, so maps are only checked
  for dtype and finiteness there.
"""

import re

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_patterns as kp
import builders
import zoo
from keras_patterns.patterns.statistics import PatternStatistics
from test_contract import EXPECTED_REFUSALS, EXTRA_KWARGS, _lookup

POLICIES = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
PATTERN_BOUND = {"mixed_float16": 128, "mixed_bfloat16": 16}
MAP_BOUND = 16


def convbn():
    return keras.Sequential([
        keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
        L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2), L.Flatten(), L.Dense(3),
    ], name="convbn")


def dense():
    return builders.mlp((10, 16, 8, 3), name="dense")


BUILDERS = {"convbn": convbn, "dense": dense, "residual": zoo.residual}
_CACHE = {}


def twins(policy, name):
    """(mixed precision model, float32 twin with the same weights)."""
    if (policy, name) not in _CACHE:
        keras.utils.set_random_seed(0)
        m32 = zoo._randomize_bn(BUILDERS[name]())
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            m = BUILDERS[name]()
        finally:
            keras.mixed_precision.set_global_policy(previous)
        m.set_weights(m32.get_weights())
        _CACHE[policy, name] = (m, m32)
    return _CACHE[policy, name]


def _rel(a, b):
    return float(np.abs(np.asarray(a, "float64") - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("model_name", sorted(BUILDERS))
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_analyzer_float32_finite(policy, model_name):
    model, _ = twins(policy, model_name)
    assert model.layers[0].compute_dtype != "float32"
    x = zoo.inputs_for(model, n=8, seed=1)
    for name in kp.list_analyzers():
        kwargs = EXTRA_KWARGS.get(name, {})
        refusal = _lookup(EXPECTED_REFUSALS, name, model_name)
        if refusal:
            with pytest.raises(refusal[0], match=refusal[1]):
                a = kp.create_analyzer(name, model, **kwargs)
                if a.needs_fitting:
                    a.fit(x, batch_size=8, verbose=0)
                a.analyze(x)
            continue
        a = kp.create_analyzer(name, model, **kwargs)
        if a.needs_fitting:
            a.fit(x, batch_size=8, verbose=0)
        m = a.analyze(x)
        assert m.dtype == np.float32, f"{name} on {model_name}: {m.dtype}"
        assert m.shape == x.shape
        assert np.all(np.isfinite(m)), f"{name} on {model_name}: non-finite values"


@pytest.mark.parametrize("model_name", sorted(BUILDERS))
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_patterns_agree_with_float32_twin(policy, model_name):
    model, m32 = twins(policy, model_name)
    x = zoo.inputs_for(model, n=16, seed=1)
    a = kp.create_analyzer("pattern.attribution", model).fit(x, batch_size=8, verbose=0)
    a32 = kp.create_analyzer("pattern.attribution", m32).fit(x, batch_size=8, verbose=0)
    stats = PatternStatistics(a.graph, "relu")
    stats.update_state(x[:8])
    for per_key in stats.statistics().values():
        for v in per_key.values():
            for arr in (v.values() if isinstance(v, dict) else [v]):
                assert np.asarray(arr).dtype == np.float64
    bound = PATTERN_BOUND[policy] * POLICIES[policy]
    assert len(a.patterns) == len(a32.patterns)
    for p, q in zip(a.patterns.values(), a32.patterns.values()):
        assert p.dtype == np.float32
        assert _rel(p, q) <= bound
    m = a.analyze(x)
    assert m.dtype == np.float32 and np.all(np.isfinite(m))


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name,kwargs", [("gradient", {}), ("lrp.epsilon", {"epsilon": 0.1})])
def test_maps_agree_with_float32_twin(policy, name, kwargs):
    model, m32 = twins(policy, "dense")
    x = zoo.inputs_for(model, n=16, seed=1)
    r = kp.create_analyzer(name, model, **kwargs).analyze(x)
    r32 = kp.create_analyzer(name, m32, **kwargs).analyze(x)
    assert r.dtype == np.float32
    bound = MAP_BOUND * POLICIES[policy]
    if name == "gradient" and policy == "mixed_bfloat16":
        per_sample = [_rel(r[i], r32[i]) for i in range(len(x))]
        assert float(np.median(per_sample)) <= bound
    else:
        assert _rel(r, r32) <= bound

"""The contract every registered analyzer meets on every zoo model.

Picked up automatically: a newly registered analyzer is tested here without any change. Checks:
output shapes equal input shapes, values are finite, two runs give the same maps, a batch gives the
same maps as its samples one at a time (and a permuted batch the permuted maps), the user's model (weights and config) is untouched, and
(on two models) save/load gives identical maps. A model an analyzer legitimately refuses (e.g.
deconvnet on a tanh network) must be refused with a clear error listed in ``EXPECTED_REFUSALS``.
"""

import json
import re

import numpy as np
import pytest

import keras_patterns as kp
import zoo

ANALYZERS = kp.list_analyzers()

#: Extra constructor arguments: seeds for the stochastic analyzers, fewer samples for speed, and
#: required arguments.
EXTRA_KWARGS = {
    "random": {"seed": 0},
    "smoothgrad": {"seed": 0, "augment_by_n": 8},
    "integrated_gradients": {"steps": 8},
    "deep_taylor.bounded": {"low": -3.0, "high": 3.0},
    "lrp": {"rule": "Z"},
    "lrp.alpha_beta": {"alpha": 2},  # iNNvestigate requires alpha or beta
}

#: (analyzer regex, model regex) -> (error class, message regex) of an expected, clear refusal.
EXPECTED_REFUSALS = {
    (r"deconvnet|guided_backprop|deep_taylor.*", r"nonrelu"):
        (kp.NotAnalyzeableModelError, r"only specified for networks with ReLU"),
    (r"smoothgrad|integrated_gradients", r"embedding"): (ValueError, r"needs float inputs"),
    # LRP-Z without bias (and epsilon 1e-7, the same in float32) on the randomly initialised deep
    # networks: relevance grows ~10x per block (MobileNetV2: 1e21 at block 7, 6e31 at block 3) and
    # overflows float32; the analyzer says so. lrp.z / lrp.epsilon with bias stay finite there.
    (r"lrp.z_IB|lrp.epsilon_IB", r"mobilenetv2|resnet50|densenet121"):
        (kp.NonFiniteResultError, r"overflowed float32"),
}

#: (analyzer regex, model regex) -> reason: pairs whose maps amplify float32 rounding so much that
#: a batch and its samples one at a time (different conv kernels for different batch sizes, forward
#: differences ~1e-6) differ beyond 1e-5 of the max. Independence of the samples is still checked
#: strictly there, with a permuted batch of the same size.
#: The figures are the measured relative differences, batch of 2 vs one at a time, at the input.
ILL_CONDITIONED = {
    (r"lrp.w_square|lrp.flat", r"resnet50"): "LRP's proportional rule at Add layers divides by "
    "x_a + x_b, near 0 at some adds of the random ResNet50 (conv2_block1_add, conv4_block4_add): "
    "forward differences of 1e-6 become 1e-2 (w_square 5e-3, flat 2.6e-2)",
    (r"lrp.gamma", r"resnet50|densenet121"): "the gamma rule's denominator (W + 0.25 W+)x + b "
    "comes near 0 in conv3 blocks: 3.6e-3 (ResNet50), 1e-4 (DenseNet121)",
    (r"lrp.flat", r"mobilenetv2"): "flat relevance through MobileNetV2's adds: 4e-5",
}

#: Analyzers whose maps depend on the sample's position in the batch by design.
POSITION_DEPENDENT = {"random"}


def _lookup(table, name, model_name):
    for (a_re, m_re), value in table.items():
        if re.fullmatch(a_re, name) and re.fullmatch(m_re, model_name):
            return value
    return None


def _snapshot(model):
    return json.dumps(model.get_config(), sort_keys=True, default=str), [
        np.array(w) for w in model.get_weights()
    ]


def _as_list(a):
    return a if isinstance(a, list) else [a]


def _take(x, i):
    return [v[i:i + 1] for v in x] if isinstance(x, list) else x[i:i + 1]


def _close(a, b):
    """Equal up to float32 rounding of differently batched kernels (1e-5 of the map's max-abs)."""
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def run_contract(name, model_name, tmp_path, save_load, n=3):
    model = zoo.cached(model_name)
    x = zoo.inputs_for(model, n=n, seed=1)
    before = _snapshot(model)
    kwargs = dict(EXTRA_KWARGS.get(name, {}))
    refusal = _lookup(EXPECTED_REFUSALS, name, model_name)
    if refusal:
        with pytest.raises(refusal[0], match=refusal[1]):
            a = kp.create_analyzer(name, model, **kwargs)
            if a.needs_fitting:
                a.fit(zoo.inputs_for(model, n=16, seed=2), verbose=0)
            a.analyze(x)
        return
    analyzer = kp.create_analyzer(name, model, **kwargs)
    if analyzer.needs_fitting:
        analyzer.fit(zoo.inputs_for(model, n=16, seed=2), batch_size=8, verbose=0)
    maps = _as_list(analyzer.analyze(x))
    xs = _as_list(x)
    assert len(maps) == len(xs)
    for m, xi in zip(maps, xs):
        assert m.shape == xi.shape
        assert np.all(np.isfinite(m)), f"{name} on {model_name}: non-finite values"
    again = _as_list(analyzer.analyze(x))
    for m, m2 in zip(maps, again):
        np.testing.assert_array_equal(m, m2)
    if name not in POSITION_DEPENDENT:
        # samples are independent: a permuted batch gives the permuted maps
        order = np.arange(n)[::-1]
        permuted = _as_list(analyzer.analyze([v[order] for v in x] if isinstance(x, list) else x[order]))
        for m, p in zip(maps, permuted):
            _close(p[order], m)
        if not _lookup(ILL_CONDITIONED, name, model_name):
            singles = [_as_list(analyzer.analyze(_take(x, i))) for i in range(n)]
            for k, m in enumerate(maps):
                _close(np.concatenate([s[k] for s in singles]), m)
    if save_load:
        path = tmp_path / "analyzer.kpa"
        analyzer.save(str(path))
        loaded = kp.load_analyzer(str(path))
        for m, m2 in zip(maps, _as_list(loaded.analyze(x))):
            np.testing.assert_array_equal(m, m2)
    after = _snapshot(model)
    assert after[0] == before[0], "model config changed"
    assert len(after[1]) == len(before[1])
    for w0, w1 in zip(before[1], after[1]):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.parametrize("model_name", sorted(zoo.ZOO))
@pytest.mark.parametrize("name", ANALYZERS)
def test_contract(name, model_name, tmp_path):
    run_contract(name, model_name, tmp_path, save_load=model_name in ("dense_mlp", "residual"))


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(zoo.SLOW_ZOO))
@pytest.mark.parametrize("name", ANALYZERS)
def test_contract_applications(name, model_name, tmp_path):
    run_contract(name, model_name, tmp_path, save_load=False, n=2)

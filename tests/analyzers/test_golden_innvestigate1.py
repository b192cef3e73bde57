"""Compare keras_patterns against golden numbers produced by iNNvestigate 1.0.9.

The golden files ``tests/golden/innvestigate1_<model>.npz`` are written by
``tools/golden_innvestigate1.py`` (TF 1.15.5 / Keras 2.2.4 / iNNvestigate 1.0.9, Python 3.7; see its
docstring). Each file holds the model weights, the fitting data ``X_fit``, the analysis inputs ``x``, the
per-sample output indices ``neuron_selection``, the 1.0.9 patterns (``pattern__<type>__<k>``, k = ordinal of
the kernel layer, i.e. of the Dense/Conv2D layers in ``model.layers`` order), the analysis maps
(``map__<analyzer>__[<pattern type>__]<mode>``) and a JSON ``manifest`` describing every key.

Max-activation maps and iNNvestigate 1.x's bottleneck projection (innvestigate-spec.md section 2.4), as
observed in the golden files and asserted by ``test_golden_projection_semantics`` below:

* ``neuron_selection_mode="index"``: never projected. map = y[i, idx[i]] * B, with B the backward pass of a
  one-hot at idx[i].
* ``"max_activation"`` with ``reverse_project_bottleneck_layers=False`` (``*_max_activation_noproject``):
  map = y_max * B (same as index mode at the argmax).
* ``"max_activation"`` with the 1.0.9 default projection on (``*_max_activation``):
  - rank-2 input (MLP): map = sign(y_max) * B. Rank-2 tensors are never rescaled; only the rank-1 head
    y_max becomes sign(y_max). Samples 2 and 3 of the MLP file have y_max < 0, so their maps are -B.
  - rank-4 input (CNN): map = sign(y_max) * B / max|B| per sample, i.e. every sample's max-abs is exactly 1.
    (All y_max of the CNN file happen to be positive.)
  keras_patterns exposes this behaviour as ``project_bottleneck=True``.
"""

import json
import os

import numpy as np
import pytest

import keras

import paths

GOLDEN = paths.GOLDEN

import sys  # noqa: E402

sys.path.insert(0, GOLDEN)
import specs  # noqa: E402

MODELS = ("mlp", "cnn_strided")
PATTERN_TYPES = ("linear", "relu", "relu.negative")
MAP_PATTERN_TYPES = ("relu", "linear")
PATTERN_METHODS = ("pattern.net", "pattern.attribution")
LRP_METHODS = ("lrp.z_IB", "lrp.epsilon_IB")
BATCH_SIZE = 16
RTOL = 1e-4


# --------------------------------------------------------------------------------------------------
# helpers and fixtures


@pytest.fixture(scope="module")
def kp():
    # A plain import (not importorskip): a broken package must fail these tests, not skip them.
    import keras_patterns

    return keras_patterns


_GOLDEN_CACHE = {}


def load_golden(name):
    if name not in _GOLDEN_CACHE:
        path = os.path.join(GOLDEN, "innvestigate1_%s.npz" % name)
        with np.load(path) as f:
            d = {k: f[k] for k in f.files}
        d["manifest"] = json.loads(str(d["manifest"]))
        _GOLDEN_CACHE[name] = d
    return _GOLDEN_CACHE[name]


def build_model(name):
    """Keras 3 Sequential model for the spec, with the weights stored in the golden file."""
    spec = specs.MODELS[name]
    g = load_golden(name)
    layers = [getattr(keras.layers, cls)(**kw) for cls, kw in spec["layers"]]
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *layers])
    for li, layer in enumerate(model.layers):
        n_w = len(layer.weights)
        if n_w:
            layer.set_weights([g["weight__%d__%d" % (li, wi)] for wi in range(n_w)])
    return model


def kernel_layers(model):
    return [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D))]


def golden_patterns(model, g, pattern_type):
    """{layer_name: golden pattern} for the kernel layers, matched by kernel-layer ordinal."""
    kls = kernel_layers(model)
    return {l.name: g["pattern__%s__%d" % (pattern_type, k)] for k, l in enumerate(kls)}


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    name = request.param
    return name, build_model(name), load_golden(name)


def assert_map_close(ours, ref, what=""):
    """assert_allclose with rtol 1e-4 and atol 1e-4 * (max-abs of the reference map, per sample)."""
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    n = ref.shape[0]
    scale = np.abs(ref).reshape(n, -1).max(axis=1)
    for i in range(n):
        np.testing.assert_allclose(ours[i], ref[i], rtol=RTOL, atol=RTOL * scale[i],
                                   err_msg="%s, sample %d" % (what, i))


def as_array(result):
    if isinstance(result, (list, tuple)):
        assert len(result) == 1
        result = result[0]
    return np.asarray(result)


# --------------------------------------------------------------------------------------------------
# tests that only read the golden files (they document what the numbers mean)


@pytest.mark.parametrize("name", MODELS)
def test_golden_manifest(name):
    g = load_golden(name)
    man = g["manifest"]
    assert man["versions"]["innvestigate"] == "1.0.9"
    assert man["versions"]["keras"] == "2.2.4"
    assert set(man["keys"]) == set(g), set(man["keys"]) ^ set(g)
    spec = specs.MODELS[name]
    np.testing.assert_array_equal(g["x"], specs.make_inputs(spec, n=4, seed=1))
    np.testing.assert_array_equal(g["X_fit"], specs.make_inputs(spec, n=64, seed=2))
    for li, w in enumerate(specs.make_weights(spec, seed=0)):
        for wi, arr in enumerate(w):
            np.testing.assert_array_equal(g["weight__%d__%d" % (li, wi)], arr)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", PATTERN_METHODS)
@pytest.mark.parametrize("pattern_type", MAP_PATTERN_TYPES)
def test_golden_projection_semantics(name, method, pattern_type):
    """What iNNvestigate 1.0.9's max_activation + bottleneck projection did (module docstring)."""
    g = load_golden(name)
    base = "map__%s__%s__" % (method, pattern_type)
    y = g["y"].astype(np.float64)
    n = y.shape[0]
    y_max = y.max(axis=1)
    raw = g[base + "max_activation_noproject"].astype(np.float64)  # = y_max * B
    proj = g[base + "max_activation"].astype(np.float64)
    bshape = (n,) + (1,) * (raw.ndim - 1)
    B = raw / y_max.reshape(bshape)
    if raw.ndim == 2:
        expected = np.sign(y_max).reshape(bshape) * B
    else:
        m = np.abs(B).reshape(n, -1).max(axis=1).reshape(bshape)
        expected = np.sign(y_max).reshape(bshape) * B / m
        np.testing.assert_allclose(np.abs(proj).reshape(n, -1).max(axis=1), 1.0, rtol=1e-6)
    assert_map_close(proj, expected, base + "max_activation")


# --------------------------------------------------------------------------------------------------
# keras_patterns against the golden numbers


def test_model_outputs(case):
    name, model, g = case
    for xk, yk in (("x", "y"), ("X_fit", "y_fit")):
        out = keras.ops.convert_to_numpy(model(g[xk]))
        np.testing.assert_allclose(out, g[yk], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pattern_type", PATTERN_TYPES)
def test_patterns(kp, case, pattern_type):
    name, model, g = case
    pats = kp.PatternComputer(model, pattern_type=pattern_type).compute(g["X_fit"], batch_size=BATCH_SIZE)
    assert isinstance(pats, dict)
    kls = kernel_layers(model)
    assert set(pats) == {l.name for l in kls}
    for k, layer in enumerate(kls):
        ours = np.asarray(pats[layer.name])
        ref = g["pattern__%s__%d" % (pattern_type, k)]
        assert ours.shape == tuple(layer.kernel.shape) == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=RTOL * np.abs(ref).max(),
                                   err_msg="%s %s pattern of kernel layer %d" % (name, pattern_type, k))


@pytest.mark.parametrize("method", PATTERN_METHODS)
def test_index_maps_fitted(kp, case, method):
    """analyzer.fit (pattern_type 'relu', the 1.0.9 analyzer default) + index-mode analyze."""
    name, model, g = case
    a = kp.create_analyzer(method, model, neuron_selection_mode="index", pattern_type="relu")
    a.fit(g["X_fit"], batch_size=BATCH_SIZE, verbose=0)
    ours = as_array(a.analyze(g["x"], neuron_selection=g["neuron_selection"]))
    assert_map_close(ours, g["map__%s__relu__index" % method], "%s %s fitted" % (name, method))


@pytest.mark.parametrize("method", PATTERN_METHODS)
@pytest.mark.parametrize("pattern_type", MAP_PATTERN_TYPES)
def test_index_maps_given_patterns(kp, case, method, pattern_type):
    name, model, g = case
    a = kp.create_analyzer(method, model, neuron_selection_mode="index",
                           patterns=golden_patterns(model, g, pattern_type))
    ours = as_array(a.analyze(g["x"], neuron_selection=g["neuron_selection"]))
    assert_map_close(ours, g["map__%s__%s__index" % (method, pattern_type)],
                     "%s %s %s index" % (name, method, pattern_type))


@pytest.mark.parametrize("method", PATTERN_METHODS)
@pytest.mark.parametrize("pattern_type", MAP_PATTERN_TYPES)
def test_max_activation_projected(kp, case, method, pattern_type):
    # iNNvestigate 1.x quirk, reproduced on purpose: 1.0.9 forces reverse_project_bottleneck_layers=True for
    # PatternNet/PatternAttribution. keras_patterns calls this option project_bottleneck=True.
    # Golden: MLP (rank-2 input) -> sign(y_max) * B (no rescaling at all, the head value becomes its sign);
    #         CNN (rank-4 input) -> sign(y_max) * B / max|B| per sample (max-abs exactly 1).
    name, model, g = case
    a = kp.create_analyzer(method, model, neuron_selection_mode="max_activation",
                           patterns=golden_patterns(model, g, pattern_type), project_bottleneck=True)
    ours = as_array(a.analyze(g["x"]))
    assert_map_close(ours, g["map__%s__%s__max_activation" % (method, pattern_type)],
                     "%s %s %s max_activation projected" % (name, method, pattern_type))


@pytest.mark.parametrize("method", PATTERN_METHODS)
@pytest.mark.parametrize("pattern_type", MAP_PATTERN_TYPES)
def test_max_activation_unprojected(kp, case, method, pattern_type):
    # Golden made with reverse_project_bottleneck_layers=False: raw backward pass scaled by y_max.
    name, model, g = case
    a = kp.create_analyzer(method, model, neuron_selection_mode="max_activation",
                           patterns=golden_patterns(model, g, pattern_type), project_bottleneck=False)
    ours = as_array(a.analyze(g["x"]))
    assert_map_close(ours, g["map__%s__%s__max_activation_noproject" % (method, pattern_type)],
                     "%s %s %s max_activation unprojected" % (name, method, pattern_type))


@pytest.mark.parametrize("method", LRP_METHODS)
@pytest.mark.parametrize("mode", ("index", "max_activation"))
def test_lrp_ignore_bias(kp, case, method, mode):
    name, model, g = case
    a = kp.create_analyzer(method, model, neuron_selection_mode=mode)
    if mode == "index":
        ours = a.analyze(g["x"], neuron_selection=g["neuron_selection"])
    else:
        ours = a.analyze(g["x"])
    assert_map_close(as_array(ours), g["map__%s__%s" % (method, mode)], "%s %s %s" % (name, method, mode))

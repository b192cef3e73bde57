"""Compare keras_patterns against golden numbers produced by iNNvestigate 2.1.2.

The golden files ``tests/golden/innvestigate2_<model>.npz`` are written by
``tools/golden_innvestigate2.py`` (TF 2.14.1 / tf.keras 2.14 / iNNvestigate 2.1.2; see its docstring for
the virtualenv). Each file holds ``x``, the model outputs ``y``, the index-mode neuron indices ``index``,
the weights ``w_<layer>_<k>`` (k = 0 kernel, 1 bias of ``spec["layers"][layer]``), one map per
(analyzer, kwargs, neuron_selection_mode) and a JSON ``manifest``. Manifest entries are keyed
``<analyzer>[<k>=<v>,...]@<mode>``; ``entry["array"]`` names the npz member holding the map
(bit-identical maps are stored once).

Two test functions keep the families apart:

* ``test_gradient_family`` (issue 2): input, gradient (+ postprocess), gradient.baseline,
  input_t_gradient, deconvnet, guided_backprop, integrated_gradients;
* ``test_lrp_family`` (issue 4): every ``lrp*`` analyzer and deep_taylor / deep_taylor.bounded.

Select one with ``-k gradient_family`` or ``-k lrp_family``; test ids read like
``cnn-lrp.alpha_beta[alpha_3+beta_2]-index`` (``@`` -> ``-``, ``=`` -> ``_``, ``,`` -> ``+``, no
parentheses).

Comparison: ``assert_allclose(ours, ref, rtol=0, atol=1e-5 * max|ref|)``. Entries whose semantics
deliberately differ in keras_patterns are listed in :data:`DELIBERATE_DIFFERENCES` and skipped with the
reason. :data:`ILL_CONDITIONED` only annotates the failure message of numerically delicate entries.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

import paths

GOLDEN = paths.GOLDEN
sys.path.insert(0, GOLDEN)
import specs  # noqa: E402

if importlib.util.find_spec("keras_patterns") is None:
    pytest.skip("keras_patterns is not importable", allow_module_level=True)

import keras  # noqa: E402

import keras_patterns as kp  # noqa: E402  (a broken package must fail here, not skip)

MODELS = tuple(specs.MODELS)
RTOL_OF_MAX = 1e-5
TINY = 1e-12

# Entries that are not compared for equality, because keras_patterns deliberately differs. The key is
# looked up by ``deliberate_difference`` below.
DELIBERATE_DIFFERENCES = {
    "alpha_beta_bias": (
        "AlphaBeta with bias: iNNvestigate adds the *full* bias to both the activator and the inhibitor "
        "denominator (b+ and b- both end up in each, innvestigate-spec.md 3.2, issues #116/#327); "
        "keras_patterns splits the bias (b+ to the activator, b- to the inhibitor)"
    ),
    "preset_conv_alpha_beta": (
        "LRPSequentialPreset A/B give Conv layers Alpha1Beta0 / Alpha2Beta1 *with bias*, whose bias "
        "handling deliberately differs (see 'alpha_beta_bias')"
    ),
    "batchnorm": (
        "BatchNormalization: iNNvestigate's fused BN surrogate has bugged parameters "
        "(innvestigate-spec.md 3.5: k = gamma/sqrt(var**2 + eps), c = beta - mean/sqrt(var**2 + eps)) and "
        "its unfused BN rule crashes on TF 2; keras_patterns deliberately does not reproduce this"
    ),
}

# (model, analyzer) -> note. These maps are numerically ill-conditioned: the comparison keeps the
# standard tolerance (keras_patterns on the TF backend matched to <= 1e-7 when this was written), but a
# failure message points at the cause, since a different float32 evaluation order can exceed it.
ILL_CONDITIONED = {
    ("cnn", "lrp.z_plus_fast"): (
        "ZPlusFast does not clip x, so first-layer denominators W+^T x come within ~3e-4 of zero; "
        "iNNvestigate's float32 map itself differs from a float64 evaluation by 1.4e-5 of its max-abs"
    ),
    ("cnn_strided", "lrp.z_plus_fast"): (
        "ZPlusFast does not clip x, so first-layer denominators W+^T x come within ~1.5e-4 of zero; "
        "iNNvestigate's float32 map itself differs from a float64 evaluation by 9.4e-5 of its max-abs"
    ),
}

_ALPHA_BETA_WITH_BIAS = ("lrp.alpha_2_beta_1", "lrp.alpha_1_beta_0")
_LRP_RULES_WITH_BIAS_SPLIT = ("AlphaBeta", "Alpha2Beta1", "Alpha1Beta0")
_PRESETS = {
    "lrp.sequential_preset_a": False,  # preset -> has input_layer_rule="Flat"
    "lrp.sequential_preset_b": False,
    "lrp.sequential_preset_a_flat": True,
    "lrp.sequential_preset_b_flat": True,
    "lrp.sequential_preset_b_flat_until_idx": True,
}


def deliberate_difference(model_name, entry):
    """The :data:`DELIBERATE_DIFFERENCES` key that applies to a manifest entry, or None."""
    layers = specs.MODELS[model_name]["layers"]
    name, kwargs = entry["analyzer"], entry["kwargs"]
    if entry["family"] == "lrp" and any(cls == "BatchNormalization" for cls, _ in layers):
        return "batchnorm"
    if name in _ALPHA_BETA_WITH_BIAS:
        return "alpha_beta_bias"
    if name == "lrp.alpha_beta" and kwargs.get("bias", True):
        return "alpha_beta_bias"
    if name == "lrp" and kwargs.get("rule") in _LRP_RULES_WITH_BIAS_SPLIT:
        return "alpha_beta_bias"
    if name in _PRESETS:
        # Which Conv layers keep the preset's alpha-beta rule? In iNNvestigate the input layer rule
        # (Flat) wins, then until_layer_idx (model.layers[0..idx], no InputLayer in a Sequential model).
        kernel = [i for i, (cls, _) in enumerate(layers) if cls in ("Dense", "Conv2D")]
        until = kwargs.get("until_layer_idx")
        for i in kernel:
            if layers[i][0] != "Conv2D":
                continue
            if _PRESETS[name] and i == kernel[0]:
                continue
            if until is not None and i <= until:
                continue
            return "preset_conv_alpha_beta"
    return None


# --------------------------------------------------------------------------------------------------
# golden data

_CACHE = {}


def load_golden(model_name):
    if model_name not in _CACHE:
        with np.load(os.path.join(GOLDEN, f"innvestigate2_{model_name}.npz")) as f:
            d = {k: f[k] for k in f.files}
        d["manifest"] = json.loads(str(d["manifest"]))
        _CACHE[model_name] = d
    return _CACHE[model_name]


def _param_id(model_name, key):
    """A ``-k``-friendly test id (see the module docstring) for a manifest key."""
    table = str.maketrans({"@": "-", "=": "_", ",": "+", "(": None, ")": None})
    return f"{model_name}-{key.translate(table)}"


def _cases(family):
    out = []
    for model_name in MODELS:
        man = load_golden(model_name)["manifest"]
        for key, entry in sorted(man["entries"].items()):
            if entry["family"] != family:
                continue
            marks = ()
            reason = deliberate_difference(model_name, entry)
            if reason is not None:
                marks = (pytest.mark.skip(reason=f"deliberate difference ({reason}): "
                                          f"{DELIBERATE_DIFFERENCES[reason]}"),)
            out.append(pytest.param(model_name, key, id=_param_id(model_name, key), marks=marks))
    return out


def build_model(model_name):
    """Keras 3 Sequential model for the spec, with the stored weights; checks the stored outputs."""
    spec = specs.MODELS[model_name]
    g = load_golden(model_name)
    layers = [getattr(keras.layers, cls)(**kw) for cls, kw in spec["layers"]]
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *layers])
    for i, layer in enumerate(model.layers):
        keys = g["manifest"]["weight_keys"][i]
        assert len(keys) == len(layer.weights), (layer.name, keys)
        if keys:
            layer.set_weights([g[k] for k in keys])
    out = keras.ops.convert_to_numpy(model(g["x"]))
    np.testing.assert_allclose(out, g["y"], rtol=1e-5, atol=1e-6,
                               err_msg=f"{model_name}: model outputs differ from the golden file "
                               "(weights loaded in another layout?)")
    return model


def run_entry(model_name, key):
    g = load_golden(model_name)
    entry = g["manifest"]["entries"][key]
    kwargs = {k: (tuple(v) if k in entry["tuple_kwargs"] else v) for k, v in entry["kwargs"].items()}
    mode = entry["mode"]
    model = build_model(model_name)
    analyzer = kp.create_analyzer(entry["analyzer"], model, neuron_selection_mode=mode, **kwargs)
    ours = analyzer.analyze(g["x"], neuron_selection=g["index"] if mode == "index" else None)
    if isinstance(ours, (list, tuple)):
        assert len(ours) == 1, len(ours)
        ours = ours[0]
    ours = np.asarray(ours)
    ref = g[entry["array"]]
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    note = ILL_CONDITIONED.get((model_name, entry["analyzer"]))
    atol = RTOL_OF_MAX * max(float(np.abs(ref).max()), TINY)
    msg = f"{model_name} {key}" + (f" (ill-conditioned: {note})" if note else "")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=atol, err_msg=msg)


# --------------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("model_name", MODELS)
def test_golden_file(model_name):
    """The golden file matches specs.py and its manifest is complete."""
    g = load_golden(model_name)
    man = g["manifest"]
    spec = specs.MODELS[model_name]
    assert man["versions"]["innvestigate"] == "2.1.2"
    np.testing.assert_array_equal(g["x"], specs.make_inputs(spec, n=man["seeds"]["n_samples"],
                                                             seed=man["seeds"]["inputs"]))
    for i, ws in enumerate(specs.make_weights(spec, seed=man["seeds"]["weights"])):
        assert len(ws) == len(man["weight_keys"][i])
        for w, k in zip(ws, man["weight_keys"][i]):
            np.testing.assert_array_equal(g[k], w)
    np.testing.assert_array_equal(g["index"], np.arange(len(g["x"])) % g["y"].shape[-1])
    for key, entry in man["entries"].items():
        assert entry["array"] in g, key
        assert g[entry["array"]].shape == g["x"].shape, key
        assert entry["family"] in ("gradient", "lrp"), key


@pytest.mark.parametrize("model_name", MODELS)
def test_model_outputs(model_name):
    build_model(model_name)  # asserts the outputs


@pytest.mark.parametrize("model_name,key", _cases("gradient"))
def test_gradient_family(model_name, key):
    """Issue 2: gradient-family analyzers against iNNvestigate 2.1.2."""
    run_entry(model_name, key)


@pytest.mark.parametrize("model_name,key", _cases("lrp"))
def test_lrp_family(model_name, key):
    """Issue 4: LRP and DeepTaylor analyzers against iNNvestigate 2.1.2."""
    run_entry(model_name, key)

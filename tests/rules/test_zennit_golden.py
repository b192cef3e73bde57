"""LRP rules against golden maps from Zennit 0.5.1 and LXT 2.1 (PyTorch), on the same float64 weights.

The golden file ``tests/golden/zennit_lxt.npz`` is written by ``tools/golden_zennit.py`` (a separate
torch venv, see its docstring; no torch is needed here). It holds three small nets as framework-
neutral layer specs, their float64 weights in Keras layout, inputs, the torch logits and one relevance
map per (net, rule); this module builds the same nets in Keras under float64 and runs keras_patterns'
analyzers with the arguments that give Zennit's/LXT's definitions:

=====================================  =============================================================
Zennit / LXT (generator)               keras_patterns
=====================================  =============================================================
Epsilon(eps)                           ``lrp.epsilon(epsilon=eps)``: both ``z + eps * sign(z)``,
                                       sign(0) = +1
ZPlus(zero_params="bias")              ``lrp.z_plus`` (alpha1beta0 without bias)
ZPlus()                                ``lrp.alpha_1_beta_0`` (b+ in the activator in both)
AlphaBeta(2, 1) / (1, 0)               ``lrp.alpha_2_beta_1`` / ``lrp.alpha_1_beta_0`` (bias split:
                                       b+ to the activator, b- to the inhibitor, in both)
AlphaBeta(2, 1, zero_params="bias")    ``lrp.alpha_2_beta_1_IB``
Flat()                                 ``lrp.flat``
WSquare(zero_params="bias")            ``lrp.w_square`` (Zennit's default WSquare adds b**2 to the
                                       denominator; keras_patterns' w^2 rule has no bias)
first ZBox(-3, 3), then Gamma(0.25)    ``lrp`` with ``rule=gamma_rule(0.25)``,
                                       ``input_layer_rule=(-3, 3)``
first Flat / WSquare, then Epsilon     ``lrp`` with ``rule=epsilon_rule(0.1)``,
                                       ``input_layer_rule="Flat"`` / ``"WSquare"``
EpsilonPlus(epsilon=0.1)               ``lrp.sequential_preset_a`` (Dense eps 0.1, Conv alpha1beta0)
EpsilonAlpha2Beta1(epsilon=0.1)        ``lrp.sequential_preset_b``
EpsilonPlusFlat(epsilon=0.1)           ``lrp.sequential_preset_a_flat``
EpsilonAlpha2Beta1Flat(epsilon=0.1)    ``lrp.sequential_preset_b_flat``
EpsilonGammaBox(-3, 3, 0.1, 0.25)      ``lrp`` with Dense epsilon 0.1, Conv2D gamma 0.25,
                                       ``input_layer_rule=(-3, 3)``
Pass on GELU / SiLU / Tanh             the identity rule keras_patterns applies to every activation
LXT layer_norm_grad_fn (std detached)  keras_patterns' LayerNormalization rule (the z rule of the
                                       layer with its statistics constant, Ali et al. 2022)
LXT multi_head_attention_cp (CP-LRP)   keras_patterns' attention rule (attention weights constant,
                                       z rule of ``p @ v``, nothing to queries and keys) with
                                       ``lrp.z`` on the projections
=====================================  =============================================================

Stabilisers are matched on the generator side with Zennit's/LXT's own arguments, never by
post-processing: every non-Epsilon Zennit rule gets the callable stabiliser ``z + 1e-7 * [z == 0]``
(keras_patterns' guard; Zennit's default adds ``1e-6 * sign(z)`` everywhere), and LXT runs with
``epsilon=0`` (LXT's stabiliser is ``z + epsilon`` without the sign; with 0 it is LRP-0, equal to
keras_patterns' guard since no z is zero: the smallest |z| is in the manifest).

Where the definitions genuinely differ (see docs/differences.md; the two Zennit maps stored under
``cnn/differs/...`` are asserted to be far from ours by ``test_documented_differences``):

* Zennit's Gamma is the *generalised* gamma rule: where z < 0 it boosts the negative weights
  (W + gamma W-), and for negative inputs it adds the x- terms; keras_patterns' gamma rule is the
  original one (``x * (W + gamma W+)``, meant for x >= 0). The two agree on layers whose inputs are
  >= 0 and wherever the incoming relevance is 0 at z < 0, i.e. after a ReLU with the seed on a
  positive logit (the generator asserts that), which is how ``zbox_gamma`` and ``EpsilonGammaBox``
  use it (the first layer gets ZBox).
* Zennit's default WSquare keeps the (squared) bias (run here with ``zero_params="bias"``); LXT's
  epsilon rule stabilises with ``z + epsilon`` (no sign), so it equals ``lrp.epsilon`` only for
  epsilon -> 0 (run here with epsilon = 0); LXT's CP-LRP attention hard-codes ``+ 1e-6`` on its
  ``p @ v`` denominators, which the attn tolerance accounts for (see :func:`tolerance`).
* Zennit's composites give MaxPool the gradient (winner routing, as here) and AvgPool the ``Norm``
  rule (= keras_patterns' Z rule of the pooling); Zennit's ``Activation`` type does not contain
  GELU/SiLU/Tanh, so without an explicit ``Pass`` Zennit would take their gradient.
"""

import json
import os

import numpy as np
import pytest

import paths

import keras
from keras import layers as L

import keras_patterns as kp
from keras_patterns.rules import lrp as R

GOLDEN_FILE = os.path.join(paths.GOLDEN, "zennit_lxt.npz")

# Tolerances, as a fraction of the reference map's max-abs, per net.
#
# cnn (ReLU, pooling): both sides compute in float64 (unit roundoff u = 1.1e-16) and differ only in
# summation order. A division by z amplifies the rounding error of the sum z by
# kappa = (|W|^T |x| + |b|) / |z|; the generator records the worst kappa over all units and samples
# (5.6e3), and the error passes through 4 kernel layers with fan-ins <= 36: u * kappa * 36 * 4
# ~ 4e-10. Measured when this was written: <= 1.6e-15 on every cnn map. 1e-9 is above the bound; a
# rule with another definition (e.g. Zennit's default WSquare with b**2) misses it by orders of
# magnitude.
#
# act_mlp, ln_mlp (GELU): the two frameworks' float64 GELUs differ. Measured against math.erf, torch
# 2.13's CPU float64 erf is off by up to 2.9e-8 and TF's float64 erfc (keras' gelu) by up to 4e-9, so
# the logits of the two twins differ by 3e-9 / 6e-9 of max-abs (test_same_forward_pass) and the maps
# by <= 1.2e-8 (measured). 1e-6 leaves a factor ~100; the identity-vs-z choice for LayerNorm changes
# the map by > 1e-2 (test_layer_norm_identity_rule_is_not_lxt).
#
# attn: LXT's CP-LRP attention stabilises its p @ v denominators with a fixed + 1e-6 (no argument to
# change it), so each quotient there differs from keras_patterns' by a relative 1e-6 / |p @ v| at most;
# with the smallest |p @ v| recorded by the generator (0.0123) that is 8.1e-5, the first-order bound
# used below. Measured: 4.4e-6 of max-abs.
TOLERANCE = {"cnn": 1e-9, "act_mlp": 1e-6, "ln_mlp": 1e-6}


def tolerance(name):
    if name == "attn":
        cond = golden()["manifest"]["conditioning"]["attn"]
        return cond["lxt_attention_epsilon"] / cond["min_abs_pv"]
    return TOLERANCE[name]


_DTYPE = "float64"


def _rules():
    """golden key -> (analyzer name, kwargs) giving the same definition in keras_patterns."""
    eps = R.epsilon_rule(0.1)
    gamma = R.gamma_rule(0.25)
    return {
        "cnn/epsilon": ("lrp.epsilon", {"epsilon": 0.1}),
        "cnn/epsilon_1e-7": ("lrp.epsilon", {"epsilon": 1e-7}),
        "cnn/z_plus": ("lrp.z_plus", {}),
        "cnn/z_plus_bias": ("lrp.alpha_1_beta_0", {}),
        "cnn/alpha2_beta1": ("lrp.alpha_2_beta_1", {}),
        "cnn/alpha2_beta1_IB": ("lrp.alpha_2_beta_1_IB", {}),
        "cnn/alpha1_beta0": ("lrp.alpha_1_beta_0", {}),
        "cnn/flat": ("lrp.flat", {}),
        "cnn/w_square": ("lrp.w_square", {}),
        "cnn/zbox_gamma": ("lrp", {"rule": gamma, "input_layer_rule": (-3.0, 3.0)}),
        "cnn/flat_epsilon": ("lrp", {"rule": eps, "input_layer_rule": "Flat"}),
        "cnn/w_square_epsilon": ("lrp", {"rule": eps, "input_layer_rule": "WSquare"}),
        "cnn/EpsilonPlus": ("lrp.sequential_preset_a", {"epsilon": 0.1}),
        "cnn/EpsilonAlpha2Beta1": ("lrp.sequential_preset_b", {"epsilon": 0.1}),
        "cnn/EpsilonPlusFlat": ("lrp.sequential_preset_a_flat", {"epsilon": 0.1}),
        "cnn/EpsilonAlpha2Beta1Flat": ("lrp.sequential_preset_b_flat", {"epsilon": 0.1}),
        "cnn/EpsilonGammaBox": ("lrp", {"rule": [(L.Dense, eps), (L.Conv2D, gamma)],
                                        "input_layer_rule": (-3.0, 3.0)}),
        "act_mlp/epsilon": ("lrp.epsilon", {"epsilon": 0.1}),
        "act_mlp/epsilon_1e-7": ("lrp.epsilon", {"epsilon": 1e-7}),
        "act_mlp/alpha2_beta1": ("lrp.alpha_2_beta_1", {}),
        "act_mlp/z_plus": ("lrp.z_plus", {}),
        "ln_mlp/lxt_cp": ("lrp.z", {}),
        "attn/lxt_cp": ("lrp.z", {}),
    }


RULES = _rules()

#: golden key -> (analyzer name, kwargs) of the keras_patterns rule with the same name but another
#: definition (see the module docstring); the maps must differ.
DIFFERENT = {
    "cnn/differs/gamma_generalised": ("lrp.gamma", {"gamma": 0.25}),
    "cnn/differs/w_square_with_bias": ("lrp.w_square", {}),
}

_GOLDEN = {}


def golden():
    if not _GOLDEN:
        with np.load(GOLDEN_FILE) as f:
            _GOLDEN.update({k: f[k] for k in f.files})
        _GOLDEN["manifest"] = json.loads(str(_GOLDEN["manifest"]))
    return _GOLDEN


def _layer(kind, kw):
    if kind == "conv":
        return L.Conv2D(kw["filters"], kw["kernel_size"], padding=kw["padding"], dtype=_DTYPE)
    if kind == "dense":
        return L.Dense(kw["units"], dtype=_DTYPE)
    if kind == "act":
        return L.Activation(kw["fn"], dtype=_DTYPE)
    if kind == "maxpool":
        return L.MaxPooling2D(kw["pool_size"], dtype=_DTYPE)
    if kind == "avgpool":
        return L.AveragePooling2D(kw["pool_size"], dtype=_DTYPE)
    if kind == "flatten":
        return L.Flatten(dtype=_DTYPE)
    if kind == "mha":
        return L.MultiHeadAttention(kw["num_heads"], kw["key_dim"], dtype=_DTYPE)
    if kind == "layernorm":
        return L.LayerNormalization(epsilon=kw["epsilon"], dtype=_DTYPE)
    raise ValueError(f"unknown layer kind {kind!r}")


_MODELS = {}


def keras_model(name):
    """The float64 Keras twin of a golden net, holding the golden weights."""
    if name not in _MODELS:
        g = golden()
        spec = g["manifest"]["specs"][name]
        layers = [_layer(kind, kw) for kind, kw in spec["layers"]]
        inp = keras.Input(tuple(spec["input_shape"]), dtype=_DTYPE)
        h = inp
        for layer in layers:
            h = layer(h, h) if isinstance(layer, L.MultiHeadAttention) else layer(h)
        model = keras.Model(inp, h)
        for i, layer in enumerate(layers):
            ws = [g[f"{name}/w_{i}_{k}"] for k in range(8) if f"{name}/w_{i}_{k}" in g]
            if ws:
                layer.set_weights(ws)
        _MODELS[name] = model
    return _MODELS[name]


def test_manifest_covers_every_golden_map():
    """Every stored map has a keras_patterns counterpart here, and the other way round."""
    g = golden()
    assert set(g["manifest"]["entries"]) == set(RULES) | set(DIFFERENT)
    versions = g["manifest"]["versions"]
    assert versions["zennit"] == "0.5.1" and versions["lxt"] == "2.1", versions


@pytest.mark.parametrize("name", ["cnn", "act_mlp", "ln_mlp", "attn"])
def test_same_forward_pass(name):
    """The Keras twin reproduces the torch logits: the weights' layouts were converted correctly.

    cnn: float64 rounding only (measured 3.5e-16 of max-abs). The others differ by the frameworks'
    float64 special functions: GELU (see TOLERANCE; measured 3.1e-9 act_mlp, 5.9e-9 ln_mlp) and, for
    attn, Keras' float64 MultiHeadAttention itself, which differs from a float64 NumPy replica by
    ~8e-9 of max-abs (measured 4.6e-9 against LXT here). A wrong weight layout gives O(1)."""
    g = golden()
    y = np.asarray(keras_model(name)(g[f"{name}/x"]))
    tol = 1e-12 if name == "cnn" else 1e-7
    np.testing.assert_allclose(y, g[f"{name}/y"], rtol=0, atol=tol * np.abs(g[f"{name}/y"]).max())


@pytest.mark.parametrize("key", sorted(RULES))
def test_matches_golden(key):
    g = golden()
    name = key.split("/")[0]
    analyzer_name, kwargs = RULES[key]
    analyzer = kp.create_analyzer(analyzer_name, keras_model(name), **kwargs)
    ours = np.asarray(analyzer.analyze(g[f"{name}/x"]), dtype="float64")
    ref = g[key]
    scale = np.abs(ref).max()
    assert scale > 0
    err = np.abs(ours - ref).max() / scale
    assert err <= tolerance(name), (
        f"{key}: keras_patterns {analyzer_name}{kwargs} differs from "
        f"{g['manifest']['entries'][key]!r} by {err:.3g} of max-abs"
    )


@pytest.mark.parametrize("key", ["cnn/z_plus", "cnn/alpha2_beta1_IB"])
def test_golden_bias_free_rules_conserve(key):
    """What the golden numbers mean: Zennit's bias-free alpha-beta rules (here with Pass on the ReLUs
    and Norm on the average pooling) conserve relevance exactly, so each map sums to the seeded logit.
    (Flat and WSquare do not here, on either side: they send relevance to average-pooling outputs
    that are 0, where the pooling's z rule cannot pass it on.)"""
    g = golden()
    ref = g[key]
    np.testing.assert_allclose(ref.reshape(len(ref), -1).sum(1), g["cnn/y"].max(axis=1), rtol=1e-12)


def test_layer_norm_identity_rule_is_not_lxt():
    """LXT 2.1's LayerNorm rule detaches only the standard deviation: relevance goes through the
    centering and the affine part by the epsilon (here 0) rule, which is keras_patterns' default
    LayerNormalization rule; the plain identity rule on the whole layer (``NORM_IDENTITY``) is a
    different rule and misses the golden map by far more than the tolerance."""
    from keras_patterns.graph.layers import PER_SAMPLE_NORMALIZATION
    from keras_patterns.rules.normalization import NORM_IDENTITY

    g = golden()
    analyzer = kp.create_analyzer("lrp.z", keras_model("ln_mlp"),
                                  layer_map=[(PER_SAMPLE_NORMALIZATION, NORM_IDENTITY)])
    ours = np.asarray(analyzer.analyze(g["ln_mlp/x"]))
    ref = g["ln_mlp/lxt_cp"]
    assert np.abs(ours - ref).max() / np.abs(ref).max() > 1e-2


@pytest.mark.parametrize("key", sorted(DIFFERENT))
def test_documented_differences(key):
    """Zennit's generalised Gamma (on a first layer with negative inputs) and its default WSquare
    (b**2 in the denominator) are other rules than keras_patterns' gamma and w^2: far outside the
    tolerance (measured: 0.29 and 0.047 of max-abs)."""
    g = golden()
    analyzer_name, kwargs = DIFFERENT[key]
    ours = np.asarray(kp.create_analyzer(analyzer_name, keras_model("cnn"), **kwargs).analyze(g["cnn/x"]))
    ref = g[key]
    assert np.abs(ours - ref).max() / np.abs(ref).max() > 1e-2


"""Generate golden LRP maps with Zennit 0.5.1 and LXT 2.1 (PyTorch) for keras_patterns' rules.

This script writes ``tests/golden/zennit_lxt.npz``, read by ``tests/rules/test_zennit_golden.py``
(which needs no torch). Nothing from Zennit or LXT is vendored: only their numbers are stored.

Environment (a separate venv outside the repository; torch 2.13.0 CPU)::

    python3.11 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 zennit==0.5.1
    /tmp/torchvenv/bin/pip install --no-deps lxt==2.1   # lxt pins transformers etc.; lxt.explicit
                                                         # needs only torch
    /tmp/torchvenv/bin/pip uninstall -y torchvision     # see below

Zennit 0.5.1 imports ``torchvision.models.resnet`` at import time for its torchvision-specific ResNet
canonizers; the only torchvision wheel pip finds for torch 2.13.0+cpu is a CUDA build whose C
extension does not load. When torchvision cannot be imported, this script puts a stub
``torchvision.models.resnet`` (two empty classes) in ``sys.modules`` before importing Zennit; the
ResNet canonizers are not used here, nothing else in Zennit touches torchvision.

Run from the repository root::

    /tmp/torchvenv/bin/python tools/golden_zennit.py [--out tests/golden/zennit_lxt.npz]

It takes a few seconds.

What is computed. Four small nets, everything in float64, from weights drawn here with NumPy
(seed 0) and stored in the npz in Keras layout (Conv2D kernel HWIO, Dense kernel (in, out)), so the
Keras side loads exactly the same numbers; the torch modules get them transposed (Conv2d OIHW,
Linear (out, in)). Images are NHWC in the npz; the torch net permutes them to NCHW at the input and
back to NHWC before its Flatten, so the Dense kernels need no reordering.

* ``cnn`` (Zennit): Conv2D 3x3 same -> ReLU -> MaxPool 2 -> Conv2D 3x3 valid -> ReLU -> AvgPool 2
  -> Flatten -> Dense -> ReLU -> Dense (logits), biases everywhere, inputs N(0, 1) clipped to
  [-3, 3] (negative inputs exercise the x- terms of alpha-beta). Rules: Epsilon, ZPlus, AlphaBeta,
  Gamma, Flat, WSquare, ZBox, and the composites EpsilonPlus, EpsilonAlpha2Beta1, EpsilonPlusFlat,
  EpsilonAlpha2Beta1Flat, EpsilonGammaBox.
* ``act_mlp`` (Zennit): Dense -> GELU -> Dense -> SiLU -> Dense -> tanh -> Dense, Zennit's ``Pass``
  on the activations (Zennit's ``Activation`` type does not contain GELU/SiLU/Tanh, so they are
  mapped explicitly; otherwise Zennit would take their gradient).
* ``ln_mlp`` (LXT ``lxt.explicit``): Dense -> LayerNorm -> GELU -> Dense -> LayerNorm -> tanh -> Dense
  with LXT's ``linear_epsilon``, its LayerNorm rule ``layer_norm_grad_fn`` (statistics detached: the
  identity rule on 1/std, the epsilon rule on the centering and the affine part, Achtibat et al. 2024
  = CP-LRP's LayerNorm of Ali et al. 2022) and its identity rule on the activations.
* ``attn`` (LXT): one MultiHeadAttention block (self-attention, 2 heads of size 3, 4 tokens of 6
  features; Keras weight layout, converted to LXT's (heads*key_dim, E) rows) -> Flatten -> Dense, with
  ``lxt.explicit.special.multi_head_attention_cp`` (CP-LRP: attention weights under no_grad, LXT's
  epsilon rule with its fixed epsilon 1e-6 on ``p @ v``) and ``linear_epsilon(epsilon=0)`` on the
  value/output projections and the Dense layer. The smallest |p @ v| goes into the manifest.

Conventions matched (never by post-processing):

* Seed: the one-hot of the largest logit times that logit (keras_patterns' LRP seed, "value" with
  ``neuron_selection_mode="max_activation"``), given to Zennit as ``attr_output`` and to LXT as the
  gradient of ``backward``.
* Stabilisers: Zennit's ``Epsilon(epsilon)`` computes ``z + epsilon * sign(z)`` with sign(0) = +1,
  the same as keras_patterns' ``epsilon_rule``. Every other Zennit rule adds ``stabilizer *
  sign(z)`` (default 1e-6) where keras_patterns guards only exact zeros
  (``z + 1e-7 * [z == 0]``, iNNvestigate's convention); Zennit accepts a callable stabiliser, and
  :func:`exact_zero_guard` is exactly keras_patterns' guard. LXT's stabiliser is ``z + epsilon``
  (no sign); with ``epsilon=0`` it is LRP-0 unguarded, which equals keras_patterns' guarded division
  wherever no z is exactly zero (checked here: the smallest |z| is recorded in the manifest).
* Bias: Zennit's ZPlus keeps b+ in the activator (= keras_patterns' ``lrp.alpha_1_beta_0``, bias
  split); keras_patterns' ``lrp.z_plus`` is alpha1beta0 *without* bias = Zennit
  ``ZPlus(zero_params="bias")``. Zennit's WSquare squares the bias too (``(W**2)^T 1 + b**2``);
  keras_patterns' w^2 rule has no bias, so WSquare is run with ``zero_params="bias"``. Zennit's ZBox
  bias terms cancel (b - b+ - b- = 0), as keras_patterns' Z^B has no bias.

Layout of the npz: ``<model>/x`` (inputs), ``<model>/y`` (the torch logits), ``<model>/w_<i>_<k>``
(k = 0 kernel, 1 bias; for LayerNorm 0 gamma, 1 beta) of layer ``i`` of the model's spec, one map
``<model>/<key>`` per analysis, and ``manifest`` (JSON: versions, seeds, the layer specs, per map
the Zennit/LXT configuration, per model the conditioning numbers used by the test tolerance).
"""

import argparse
import importlib.metadata
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "tests", "golden", "zennit_lxt.npz")

import torch  # noqa: E402

try:  # see the module docstring
    import torchvision.models.resnet  # noqa: F401
except Exception:  # pragma: no cover - environment dependent
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    tv, models, resnet = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                         "torchvision.models.resnet"))
    resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
    resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
    tv.models, models.resnet = models, resnet
    sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.resnet": resnet})

import zennit.composites as zc  # noqa: E402
import zennit.rules as zr  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.types import Convolution, Linear  # noqa: E402

import lxt.explicit.functional as lf  # noqa: E402
import lxt.explicit.rules as lr  # noqa: E402
import lxt.explicit.special as ls  # noqa: E402

torch.set_default_dtype(torch.float64)

WEIGHT_SEED = 0
INPUT_SEED = 1
N_SAMPLES = 4
EPS = 0.1  # epsilon of the Epsilon rules and composites
LOW, HIGH = -3.0, 3.0  # ZBox bounds (the inputs are clipped to them)
GAMMA = 0.25

# Framework-neutral layer specs: (kind, kwargs). The test builds the Keras model from the same list.
SPECS = {
    "cnn": {
        "input_shape": [12, 12, 2],
        "layers": [
            ["conv", {"filters": 4, "kernel_size": 3, "padding": "same"}],
            ["act", {"fn": "relu"}],
            ["maxpool", {"pool_size": 2}],
            ["conv", {"filters": 5, "kernel_size": 3, "padding": "valid"}],
            ["act", {"fn": "relu"}],
            ["avgpool", {"pool_size": 2}],
            ["flatten", {}],
            ["dense", {"units": 8}],
            ["act", {"fn": "relu"}],
            ["dense", {"units": 3}],
        ],
    },
    "act_mlp": {
        "input_shape": [6],
        "layers": [
            ["dense", {"units": 8}],
            ["act", {"fn": "gelu"}],
            ["dense", {"units": 8}],
            ["act", {"fn": "silu"}],
            ["dense", {"units": 6}],
            ["act", {"fn": "tanh"}],
            ["dense", {"units": 3}],
        ],
    },
    "ln_mlp": {
        "input_shape": [6],
        "layers": [
            ["dense", {"units": 8}],
            ["layernorm", {"epsilon": 1e-3}],
            ["act", {"fn": "gelu"}],
            ["dense", {"units": 7}],
            ["layernorm", {"epsilon": 1e-3}],
            ["act", {"fn": "tanh"}],
            ["dense", {"units": 3}],
        ],
    },
    # one self-attention block (2 heads of size 3) on 4 tokens of 6 features, then Flatten -> Dense
    "attn": {
        "input_shape": [4, 6],
        "layers": [
            ["mha", {"num_heads": 2, "key_dim": 3}],
            ["flatten", {}],
            ["dense", {"units": 3}],
        ],
    },
}


def exact_zero_guard(z):
    """keras_patterns' ``safe_div`` stabiliser: ``z + 1e-7 * [z == 0]`` (Zennit accepts a callable)."""
    return z + 1e-7 * (z == 0).to(z.dtype)


def make_weights(spec, rng):
    """Keras-layout float64 weights per layer (empty list for layers without weights)."""
    shape = list(spec["input_shape"])
    out = []
    for kind, kw in spec["layers"]:
        if kind == "conv":
            k, cin = kw["kernel_size"], shape[-1]
            kern = rng.normal(0, 1 / np.sqrt(k * k * cin), (k, k, cin, kw["filters"]))
            out.append([kern, rng.normal(0, 0.1, kw["filters"])])
            if kw["padding"] == "valid":
                shape = [shape[0] - k + 1, shape[1] - k + 1, kw["filters"]]
            else:
                shape = shape[:2] + [kw["filters"]]
        elif kind == "dense":
            kern = rng.normal(0, 1 / np.sqrt(shape[-1]), (shape[-1], kw["units"]))
            out.append([kern, rng.normal(0, 0.1, kw["units"])])
            shape = shape[:-1] + [kw["units"]]
        elif kind == "layernorm":
            out.append([1 + rng.normal(0, 0.2, shape[-1]), rng.normal(0, 0.1, shape[-1])])
        elif kind == "mha":
            # Keras MultiHeadAttention layout: query/key/value kernels (E, heads, key_dim) and biases
            # (heads, key_dim), output kernel (heads, key_dim, E) and bias (E,)
            e, h, d = shape[-1], kw["num_heads"], kw["key_dim"]
            ws = []
            for _ in range(3):
                ws += [rng.normal(0, 1 / np.sqrt(e), (e, h, d)), rng.normal(0, 0.1, (h, d))]
            ws += [rng.normal(0, 1 / np.sqrt(h * d), (h, d, e)), rng.normal(0, 0.1, e)]
            out.append(ws)
        else:
            out.append([])
            if kind in ("maxpool", "avgpool"):
                p = kw["pool_size"]
                shape = [shape[0] // p, shape[1] // p, shape[2]]
            elif kind == "flatten":
                shape = [int(np.prod(shape))]
    return out


class NHWCFlatten(torch.nn.Module):
    """NCHW -> NHWC -> flatten, so the flattened order is Keras' (no rule: the gradient)."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1) if x.ndim == 4 else x.flatten(1)


class ToNCHW(torch.nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


ACTS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}


def torch_model(spec, weights):
    """A torch.nn.Sequential for a spec with the (transposed) Keras weights."""
    mods = [ToNCHW()]
    for (kind, kw), ws in zip(spec["layers"], weights):
        if kind == "conv":
            kern, bias = ws
            k = kw["kernel_size"]
            m = torch.nn.Conv2d(kern.shape[2], kern.shape[3], k, padding=(k // 2 if kw["padding"] == "same" else 0))
            m.weight.data = torch.tensor(kern.transpose(3, 2, 0, 1).copy())
            m.bias.data = torch.tensor(bias)
        elif kind == "dense":
            kern, bias = ws
            m = torch.nn.Linear(*kern.shape)
            m.weight.data = torch.tensor(kern.T.copy())
            m.bias.data = torch.tensor(bias)
        elif kind == "act":
            m = ACTS[kw["fn"]]()
        elif kind == "maxpool":
            m = torch.nn.MaxPool2d(kw["pool_size"])
        elif kind == "avgpool":
            m = torch.nn.AvgPool2d(kw["pool_size"])
        elif kind == "flatten":
            m = NHWCFlatten()
        else:
            raise ValueError(kind)
        mods.append(m)
    return torch.nn.Sequential(*mods).eval()


def seed_of(out):
    """The one-hot of the largest logit times that logit."""
    onehot = torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)
    return out * onehot


def zennit_map(model, x, composite):
    xt = torch.tensor(x, requires_grad=True)
    with Gradient(model=model, composite=composite) as attributor:
        _, rel = attributor(xt, seed_of)
    return rel.detach().numpy()


def linear_conditioning(model, x):
    """max over kernel layers and units of (|W|^T |x| + |b|) / |z| and min |z| on the plain forward pass:
    how much float64 rounding of the sums can be amplified by the divisions by z."""
    stats = {"kappa": 0.0, "min_abs_z": np.inf}

    def hook(mod, inp, out):
        a = inp[0].abs()
        if isinstance(mod, torch.nn.Conv2d):
            num = torch.nn.functional.conv2d(a, mod.weight.abs(), mod.bias.abs(), padding=mod.padding)
        else:
            num = torch.nn.functional.linear(a, mod.weight.abs(), mod.bias.abs())
        stats["kappa"] = max(stats["kappa"], float((num / out.abs()).max()))
        stats["min_abs_z"] = min(stats["min_abs_z"], float(out.abs().min()))

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.tensor(x))
    for h in hs:
        h.remove()
    return stats


def base_map(rule_linear, rule_conv=None, activations=()):
    """A LayerMapComposite: Pass on activations, Norm on AvgPool (Zennit's layer_map_base with the
    exact-zero guard), ``rule_conv`` on convolutions, ``rule_linear`` on Linear."""
    extra = [(tuple(activations), zr.Pass())] if activations else []
    return zc.LayerMapComposite(layer_map=extra + zc.layer_map_base(exact_zero_guard) + [
        (Convolution, rule_conv if rule_conv is not None else rule_linear),
        (torch.nn.Linear, rule_linear),
    ])


def first_map(first, rest):
    """A SpecialFirstLayerMapComposite: ``first`` on the first kernel layer, ``rest`` on the others."""
    return zc.SpecialFirstLayerMapComposite(
        layer_map=zc.layer_map_base(exact_zero_guard) + [(Linear, rest)], first_map=[(Linear, first)])


def cnn_analyses():
    g = exact_zero_guard
    return {
        "epsilon": ("Epsilon(epsilon=0.1) on every kernel layer", base_map(zr.Epsilon(EPS))),
        "epsilon_1e-7": ("Epsilon(epsilon=1e-7)", base_map(zr.Epsilon(1e-7))),
        "z_plus": ("ZPlus(stabilizer=guard, zero_params='bias')",
                   base_map(zr.ZPlus(stabilizer=g, zero_params="bias"))),
        "z_plus_bias": ("ZPlus(stabilizer=guard) (b+ in the activator)", base_map(zr.ZPlus(stabilizer=g))),
        "alpha2_beta1": ("AlphaBeta(2, 1, stabilizer=guard)", base_map(zr.AlphaBeta(2, 1, stabilizer=g))),
        "alpha2_beta1_IB": ("AlphaBeta(2, 1, stabilizer=guard, zero_params='bias')",
                            base_map(zr.AlphaBeta(2, 1, stabilizer=g, zero_params="bias"))),
        "alpha1_beta0": ("AlphaBeta(1, 0, stabilizer=guard)", base_map(zr.AlphaBeta(1, 0, stabilizer=g))),
        "flat": ("Flat(stabilizer=guard) on every kernel layer", base_map(zr.Flat(stabilizer=g))),
        "w_square": ("WSquare(stabilizer=guard, zero_params='bias') on every kernel layer",
                     base_map(zr.WSquare(stabilizer=g, zero_params="bias"))),
        "zbox_gamma": ("first layer ZBox(-3, 3, stabilizer=guard), all others Gamma(0.25, stabilizer=guard)",
                       first_map(zr.ZBox(LOW, HIGH, stabilizer=g), zr.Gamma(GAMMA, stabilizer=g))),
        "flat_epsilon": ("first layer Flat(stabilizer=guard), all others Epsilon(0.1)",
                         first_map(zr.Flat(stabilizer=g), zr.Epsilon(EPS))),
        "w_square_epsilon": ("first layer WSquare(stabilizer=guard, zero_params='bias'), others Epsilon(0.1)",
                             first_map(zr.WSquare(stabilizer=g, zero_params="bias"), zr.Epsilon(EPS))),
        # two genuinely different definitions, stored to document (and test) the difference
        "differs/gamma_generalised": ("Gamma(0.25, stabilizer=guard) on every kernel layer (the first one "
                                      "sees negative inputs)", base_map(zr.Gamma(GAMMA, stabilizer=g))),
        "differs/w_square_with_bias": ("WSquare(stabilizer=guard) on every kernel layer (b**2 in the "
                                       "denominator, Zennit's default)", base_map(zr.WSquare(stabilizer=g))),
        "EpsilonPlus": ("zennit.composites.EpsilonPlus(epsilon=0.1, stabilizer=guard)",
                        zc.EpsilonPlus(epsilon=EPS, stabilizer=g)),
        "EpsilonAlpha2Beta1": ("zennit.composites.EpsilonAlpha2Beta1(epsilon=0.1, stabilizer=guard)",
                               zc.EpsilonAlpha2Beta1(epsilon=EPS, stabilizer=g)),
        "EpsilonPlusFlat": ("zennit.composites.EpsilonPlusFlat(epsilon=0.1, stabilizer=guard)",
                            zc.EpsilonPlusFlat(epsilon=EPS, stabilizer=g)),
        "EpsilonAlpha2Beta1Flat": ("zennit.composites.EpsilonAlpha2Beta1Flat(epsilon=0.1, stabilizer=guard)",
                                   zc.EpsilonAlpha2Beta1Flat(epsilon=EPS, stabilizer=g)),
        "EpsilonGammaBox": ("zennit.composites.EpsilonGammaBox(low=-3, high=3, epsilon=0.1, gamma=0.25, "
                            "stabilizer=guard)",
                            zc.EpsilonGammaBox(low=LOW, high=HIGH, epsilon=EPS, gamma=GAMMA, stabilizer=g)),
    }


def act_mlp_analyses():
    g = exact_zero_guard
    acts = (torch.nn.GELU, torch.nn.SiLU, torch.nn.Tanh)
    return {
        "epsilon": ("Pass on GELU/SiLU/Tanh, Epsilon(0.1) on Linear", base_map(zr.Epsilon(EPS), activations=acts)),
        "epsilon_1e-7": ("Pass on GELU/SiLU/Tanh, Epsilon(1e-7) on Linear",
                         base_map(zr.Epsilon(1e-7), activations=acts)),
        "alpha2_beta1": ("Pass on GELU/SiLU/Tanh, AlphaBeta(2, 1, stabilizer=guard) on Linear",
                         base_map(zr.AlphaBeta(2, 1, stabilizer=g), activations=acts)),
        "z_plus": ("Pass on GELU/SiLU/Tanh, ZPlus(stabilizer=guard, zero_params='bias') on Linear",
                   base_map(zr.ZPlus(stabilizer=g, zero_params="bias"), activations=acts)),
    }


def lxt_forward(spec, weights, x):
    """The ln_mlp with LXT's explicit rules (epsilon = 0: LRP-0, see the module docstring)."""
    h = x
    for (kind, kw), ws in zip(spec["layers"], weights):
        if kind == "dense":
            h = lf.linear_epsilon(h, torch.tensor(ws[0].T.copy()), torch.tensor(ws[1]), epsilon=0.0)
        elif kind == "layernorm":
            h = lf.layer_norm_grad_fn.apply(h, torch.tensor(ws[0]), torch.tensor(ws[1]), kw["epsilon"], 0.0)
        elif kind == "act":
            fn = {"gelu": torch.nn.functional.gelu, "tanh": torch.tanh}[kw["fn"]]
            h = lr.identity(fn, h)
        else:
            raise ValueError(kind)
    return h


def lxt_attention_forward(spec, weights, x):
    """The attn net with LXT's CP-LRP attention (``lxt.explicit.special.multi_head_attention_cp``:
    attention weights computed under no_grad, the epsilon rule with LXT's fixed epsilon 1e-6 on
    ``p @ v``) and ``linear_epsilon(epsilon=0)`` on the value/output projections and the Dense layer.

    Returns:
        ``(logits, min |p @ v|)``: the attention output entries are the denominators LXT stabilises
        with ``+ 1e-6``; the test's tolerance for this map is derived from the smallest one.
    """
    (_, mha), _, (_, dense) = spec["layers"]
    wq, bq, wk, bk, wv, bv, wo, bo = (torch.tensor(w) for w in weights[0])
    e, h, d = wq.shape

    def in_rows(w, b):  # (E, heads, key_dim) -> torch (heads*key_dim, E) with row h*key_dim + d
        return w.reshape(e, h * d).T.contiguous(), b.reshape(h * d)

    (q_w, q_b), (k_w, k_b), (v_w, v_b) = in_rows(wq, bq), in_rows(wk, bk), in_rows(wv, bv)
    o_w = wo.reshape(h * d, e).T.contiguous()
    pv = {}

    def v_proj(t):
        return lf.linear_epsilon(t, v_w, v_b, epsilon=0.0)

    def out_proj(t):
        pv["min"] = float(t.detach().abs().min())  # t = p @ v, heads concatenated
        return lf.linear_epsilon(t, o_w, bo, epsilon=0.0)

    out, _ = ls.multi_head_attention_cp(x, x, x, True, h, d, q_w, q_b, k_w, k_b, v_proj, out_proj,
                                        need_weights=False)
    flat = out.flatten(1)
    kern, bias = (torch.tensor(w) for w in weights[2])
    return lf.linear_epsilon(flat, kern.T.contiguous(), bias, epsilon=0.0), pv["min"]


def plain_forward_min_abs_z(spec, weights, x):
    """min |z| over the Dense and LayerNorm outputs of the ln_mlp (the divisions LXT does unguarded)."""
    h, m = torch.tensor(x), np.inf
    for (kind, kw), ws in zip(spec["layers"], weights):
        if kind == "dense":
            h = h @ torch.tensor(ws[0]) + torch.tensor(ws[1])
        elif kind == "layernorm":
            h = torch.nn.functional.layer_norm(h, h.shape[-1:], torch.tensor(ws[0]), torch.tensor(ws[1]), kw["epsilon"])
        else:
            h = {"gelu": torch.nn.functional.gelu, "tanh": torch.tanh}[kw["fn"]](h)
            continue
        m = min(m, float(h.abs().min()))
    return m, h.detach().numpy()


def make_inputs(spec, rng):
    x = rng.normal(0, 1, (N_SAMPLES, *spec["input_shape"]))
    return np.clip(x, LOW, HIGH)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    arrays, entries, conditioning = {}, {}, {}
    for mi, (name, spec) in enumerate(SPECS.items()):
        weights = make_weights(spec, np.random.default_rng(WEIGHT_SEED + mi))
        x = make_inputs(spec, np.random.default_rng(INPUT_SEED + mi))
        arrays[f"{name}/x"] = x
        for i, ws in enumerate(weights):
            for k, w in enumerate(ws):
                arrays[f"{name}/w_{i}_{k}"] = w
        if name == "attn":
            xt = torch.tensor(x, requires_grad=True)
            out, min_pv = lxt_attention_forward(spec, weights, xt)
            out.backward(seed_of(out.detach()))
            arrays[f"{name}/y"] = out.detach().numpy()
            arrays[f"{name}/lxt_cp"] = xt.grad.numpy()
            entries[f"{name}/lxt_cp"] = (
                "lxt.explicit.special.multi_head_attention_cp (CP-LRP: attention weights under no_grad, "
                "epsilon_lrp(matmul, 1e-6) on p @ v) with linear_epsilon(epsilon=0) on the value/output "
                "projections and the Dense layer")
            conditioning[name] = {"min_abs_pv": min_pv, "lxt_attention_epsilon": 1e-6}
            continue
        if name == "ln_mlp":
            min_z, y = plain_forward_min_abs_z(spec, weights, x)
            xt = torch.tensor(x, requires_grad=True)
            out = lxt_forward(spec, weights, xt)
            np.testing.assert_allclose(out.detach().numpy(), y, rtol=1e-12, atol=1e-12)
            out.backward(seed_of(out.detach()))
            arrays[f"{name}/y"] = y
            arrays[f"{name}/lxt_cp"] = xt.grad.numpy()
            entries[f"{name}/lxt_cp"] = (
                "lxt.explicit: linear_epsilon(epsilon=0) on Dense, layer_norm_grad_fn(..., epsilon=0) on "
                "LayerNorm (std detached), identity rule on GELU/tanh")
            conditioning[name] = {"min_abs_z": min_z}
            continue
        model = torch_model(spec, weights)
        with torch.no_grad():
            y = model(torch.tensor(x)).numpy()
        # Gamma's generalised form takes the (W + gamma W-) branch where z < 0; the seeded logit must
        # be > 0 for Gamma on the output layer to be the original gamma rule.
        assert (y.max(1) > 0).all(), y
        arrays[f"{name}/y"] = y
        conditioning[name] = linear_conditioning(model, x)
        analyses = cnn_analyses() if name == "cnn" else act_mlp_analyses()
        for key, (desc, composite) in analyses.items():
            arrays[f"{name}/{key}"] = zennit_map(model, x, composite)
            entries[f"{name}/{key}"] = desc

    manifest = {
        "versions": {p: importlib.metadata.version(p) for p in ("torch", "zennit", "lxt", "numpy")},
        "seeds": {"weights": WEIGHT_SEED, "inputs": INPUT_SEED,
                  "note": "model i (in SPECS order) uses seeds weights+i and inputs+i"},
        "specs": SPECS,
        "seed_rule": "one-hot of the largest logit times that logit",
        "stabilizer_guard": "z + 1e-7 * [z == 0] (keras_patterns' safe_div)",
        "epsilon": EPS, "low": LOW, "high": HIGH, "gamma": GAMMA,
        "entries": entries,
        "conditioning": conditioning,
    }
    arrays["manifest"] = np.array(json.dumps(manifest))
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(entries)} maps; conditioning {conditioning}")


if __name__ == "__main__":
    main()

"""Rules for modern layers against float64 NumPy replicas, and their identities.

Per-sample normalizations with constant statistics (Ali et al., ICML 2022), gates by
signal-take-all (Arras et al. 2017), non-ReLU activations in the signal methods, Keras operation
nodes, LayerScale-like channel scales, and conservation on a squeeze-excitation + LayerNorm +
GELU/swish network (``zoo.modern_bias_free``).
"""

import math
import re
import types
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import keras_patterns as kp
import zoo
from keras_patterns.graph.layers import class_label, is_channel_scale
from keras_patterns.rules.base import NodeContext
from keras_patterns.rules.gate import gate_rule, gate_signal_rule
from keras_patterns.rules.normalization import NORM_CONSTANT_GRADIENT, NORM_IDENTITY, NORM_Z, affine_parts

EPS = 1e-7


def _ctx(layer, xs):
    node = types.SimpleNamespace(layer=layer, name=layer.name)
    return NodeContext(node, [tf.constant(x) for x in xs], [], None, {}, None)


def _sdiv(a, b):
    return a / (b + EPS * (b == 0))


# ------------------------------------------------------------------------- normalization replicas
def _layer(cls, shape, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    layer = cls(dtype="float64", **kw)
    layer.build((None,) + shape)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i == 0 else rng.normal(0, 0.5, w.shape)
                       for i, w in enumerate(layer.get_weights())])
    return layer


def _np_parts(layer, x):
    """``(J per sample, beta)`` of the constant-statistics map, from the layer's definition:
    groups of features normalised together, each ``y = s * (v - mean(v)) + beta``."""
    n, shape = x.shape[0], x.shape[1:]
    d = int(np.prod(shape))
    idx = np.arange(d).reshape(shape)
    gamma = beta = None
    if isinstance(layer, L.LayerNormalization):
        axes = [a % x.ndim for a in ([layer.axis] if isinstance(layer.axis, int) else layer.axis)]
        keep = [a - 1 for a in range(1, x.ndim) if a not in axes]
        moved = np.moveaxis(idx, keep, list(range(len(keep))))
        groups = moved.reshape(int(np.prod([shape[k] for k in keep])) if keep else 1, -1)
        bshape = [shape[a - 1] if a in axes else 1 for a in range(1, x.ndim)]
        if layer.scale:
            gamma = np.broadcast_to(np.reshape(layer.gamma.numpy(), bshape), shape).reshape(-1)
        if layer.center and not layer.rms_scaling:
            beta = np.broadcast_to(np.reshape(layer.beta.numpy(), bshape), shape).reshape(-1)
        center, eps, unit = not layer.rms_scaling, layer.epsilon, False
    elif isinstance(layer, L.GroupNormalization):
        c = shape[-1]
        per = c // layer.groups
        groups = np.stack([idx[..., g * per:(g + 1) * per].reshape(-1) for g in range(layer.groups)])
        gamma = np.broadcast_to(layer.gamma.numpy(), shape).reshape(-1)
        beta = np.broadcast_to(layer.beta.numpy(), shape).reshape(-1) if layer.center else None
        center, eps, unit = True, layer.epsilon, False
    else:  # UnitNormalization over the last axis
        groups = idx.reshape(-1, shape[-1])
        center, eps, unit = False, 0.0, True
    js = []
    for v in x.reshape(n, d):
        j = np.zeros((d, d))
        for g in groups:
            m = len(g)
            c = np.eye(m) - (np.ones((m, m)) / m if center else 0)
            if unit:
                s = np.full(m, 1 / np.sqrt(np.sum(v[g] ** 2)))
            else:
                var = np.var(v[g]) if center or layer.rms_scaling else None
                s = np.full(m, 1 / np.sqrt(var + eps))
            if gamma is not None:
                s = s * gamma[g]
            j[np.ix_(g, g)] = s[:, None] * c
        js.append(j)
    return js, beta


NORM_CASES = {
    "layernorm": (L.LayerNormalization, (4, 5), {}),
    "layernorm_axes": (L.LayerNormalization, (3, 4, 2), {"axis": [1, 3]}),
    "layernorm_rms": (L.LayerNormalization, (6,), {"rms_scaling": True}),
    "layernorm_no_offset": (L.LayerNormalization, (3, 3, 4), {"center": False}),
    "groupnorm": (L.GroupNormalization, (3, 3, 6), {"groups": 3}),
    "unitnorm": (L.UnitNormalization, (2, 5), {}),
}


@pytest.mark.parametrize("case", sorted(NORM_CASES))
def test_normalization_rules_match_replica(case):
    cls, shape, kw = NORM_CASES[case]
    layer = _layer(cls, shape, **kw)
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, (3,) + shape)
    r = rng.normal(0, 1.0, x.shape)
    js, beta = _np_parts(layer, x)
    # the affine form reproduces the layer's forward pass
    center, s, b = affine_parts(layer, tf.constant(x))
    y = (s * center(tf.constant(x))).numpy() + (0 if b is None else b.numpy())
    np.testing.assert_allclose(y, layer(x).numpy(), rtol=0, atol=1e-12)
    flat_x, flat_r = x.reshape(len(x), -1), r.reshape(len(x), -1)
    want_z, want_g = [], []
    for j, v, q in zip(js, flat_x, flat_r):
        z = j @ v + (0 if beta is None else beta)
        want_z.append(v * (j.T @ _sdiv(q, z)))
        want_g.append(j.T @ q)
    (got_z,) = NORM_Z.backward(_ctx(layer, [x]), [tf.constant(r)])
    (got_g,) = NORM_CONSTANT_GRADIENT.backward(_ctx(layer, [x]), [tf.constant(r)])
    np.testing.assert_allclose(got_z.numpy().reshape(len(x), -1), np.array(want_z), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_g.numpy().reshape(len(x), -1), np.array(want_g), rtol=1e-9, atol=1e-12)
    (ident,) = NORM_IDENTITY.backward(_ctx(layer, [x]), [tf.constant(r)])
    np.testing.assert_array_equal(ident.numpy(), r)


@pytest.mark.parametrize("case", ["layernorm_no_offset", "groupnorm", "unitnorm", "layernorm_rms"])
def test_normalization_z_conserves_without_offset(case):
    """sum_i x_i (J^T q)_i = q . J x = sum_j R_j when z = J x (no beta)."""
    cls, shape, kw = NORM_CASES[case]
    layer = _layer(cls, shape, **{**kw, **({"center": False} if cls is not L.UnitNormalization else {})})
    x = np.random.default_rng(2).normal(0, 1, (4,) + shape)
    r = np.random.default_rng(3).normal(0, 1, x.shape)
    (got,) = NORM_Z.backward(_ctx(layer, [x]), [tf.constant(r)])
    np.testing.assert_allclose(got.numpy().reshape(4, -1).sum(1), r.reshape(4, -1).sum(1), rtol=1e-10)


# ----------------------------------------------------------------------------------- gate rules
@pytest.mark.parametrize("index", [0, 1])
def test_gate_rules_match_replica(index):
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, (2, 3, 3, 4))
    gate = rng.uniform(0, 1, (2, 1, 1, 4))
    xs = [gate, signal] if index == 0 else [signal, gate]
    r = rng.normal(0, 1, (2, 3, 3, 4))
    lrp = gate_rule(index).backward(_ctx(L.Multiply(), xs), [tf.constant(r)])
    sig = gate_signal_rule(index).backward(_ctx(L.Multiply(), xs), [tf.constant(r)])
    assert lrp[index] is None and sig[index] is None
    np.testing.assert_allclose(lrp[1 - index].numpy(), r, rtol=0, atol=0)  # signal-take-all
    np.testing.assert_allclose(sig[1 - index].numpy(), r * gate, rtol=1e-12)
    # a gate broadcast the other way: the signal's relevance is summed over the broadcast axes
    xs = [signal[:, :1, :1], rng.uniform(0, 1, (2, 3, 3, 4))][:: 1 if index == 1 else -1]
    out = gate_rule(index).backward(_ctx(L.Multiply(), xs), [tf.constant(r)])
    np.testing.assert_allclose(out[1 - index].numpy(), r.sum(axis=(1, 2), keepdims=True), rtol=1e-12)


def test_gate_rule_refuses_bad_index():
    with pytest.raises(ValueError, match="must be 0 or 1. Received: index=2"):
        gate_rule(2)


def _plan(model, name="lrp.z", **kwargs):
    return kp.create_analyzer(name, model, **kwargs).plan


def _by_label(model, name="lrp.z", **kwargs):
    """``{label: [str(rule), ...]}`` of a plan, by layer name for named layers and by
    ``class_label`` for operations (whose auto-names depend on what the session built before)."""
    analyzer = kp.create_analyzer(name, model, **kwargs)
    out = {}
    for node in analyzer.graph.nodes:
        key = class_label(type(node.layer)) if class_label(type(node.layer)).startswith("keras.ops") else node.name
        out.setdefault(key, []).append(str(analyzer.plan[node.name]))
    return out


def test_gate_detection():
    inp = keras.Input((4, 4, 3))
    h = L.Conv2D(4, 1)(inp)
    se = L.Conv2D(4, 1, activation="sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(h))
    a = L.Multiply(name="se")([h, se])                         # sigmoid gate second
    g = L.Conv2D(4, 1)(a)
    b = keras.activations.sigmoid(g) * a                        # op, sigmoid gate first
    hs = L.Multiply(name="hard_swish")([b, L.ReLU(6.0)(b + 3.0) * (1.0 / 6.0)])  # MobileNetV3
    sq = L.Multiply(name="broadcast")([L.GlobalAveragePooling2D(keepdims=True)(hs), hs])  # by size
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(sq)))
    rules = _by_label(model)
    assert rules["se"] == rules["hard_swish"] == ["gate.signal_take_all(gate=1)"]
    assert rules["broadcast"] == ["gate.signal_take_all(gate=0)"]
    # sigmoid(g) * a (gate first), then the constant scale (.) * (1 / 6)
    assert rules["keras.ops.multiply"] == ["gate.signal_take_all(gate=0)", "lrp.z_proportional"]
    assert rules["keras.ops.add"] == ["lrp.z_proportional"]


def _ambiguous_model():
    inp = keras.Input((5,))
    a, b = L.Dense(4, name="a")(inp), L.Dense(4, name="b")(inp)
    return keras.Model(inp, L.Dense(2, name="out")(a * b))


def test_ambiguous_product_is_refused_naming_the_operation():
    model = _ambiguous_model()
    with pytest.raises(kp.UnsupportedLayerError) as info:
        kp.create_analyzer("lrp.epsilon", model)
    text = str(info.value)
    assert re.search(r"multiply\w* \(keras\.ops\.multiply operation\)", text) and "gate_rule(index)" in text
    assert "'keras.ops.multiply'" in text and "'Multiply'" in text  # both named apart in the list
    # the gradient needs no gate: x * y is differentiated
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    ref = kp.create_analyzer("gradient.baseline", model).analyze(x)
    np.testing.assert_allclose(kp.create_analyzer("gradient", model).analyze(x), ref, rtol=1e-5, atol=1e-7)


def test_register_rule_accepts_operation_classes():
    model = _ambiguous_model()
    graph = kp.create_analyzer("gradient", model).graph
    (node,) = [n for n in graph.nodes if class_label(type(n.layer)) == "keras.ops.multiply"]
    op_class = type(node.layer)
    assert class_label(op_class) == "keras.ops.multiply" and class_label(L.Multiply) == "Multiply"
    kp.register_rule(op_class, gate_rule(1), methods=["lrp.z"])
    try:
        analyzer = kp.create_analyzer("lrp.z", model)
        assert str(analyzer.plan[node.name]) == "gate.signal_take_all(gate=1)"
        x = np.random.default_rng(0).normal(size=(2, 5)).astype("float32")
        assert np.isfinite(analyzer.analyze(x)).all()
    finally:
        kp.unregister_rule(op_class)
    with pytest.raises(TypeError, match="Layer subclass or a Keras operation class"):
        kp.register_rule(int)


# ----------------------------------------------------------------------------- channel scales
class _ScaleShift(L.Layer):
    def build(self, shape):
        self.gamma = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma + 1.0


def test_layerscale_is_detected_and_conserves():
    from keras.src.applications.convnext import LayerScale  # the ConvNeXt layer itself

    inp = keras.Input((3, 3, 4))
    h = L.Conv2D(4, 1, use_bias=False)(inp)
    h = LayerScale(0.7, 4)(h)
    model = keras.Model(inp, L.Dense(2, use_bias=False)(L.Flatten()(h)))
    analyzer = kp.create_analyzer("lrp.z", model)
    assert str(analyzer.plan["layer_scale"]) == "identity"
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    y = model.predict(x, verbose=0).max(1)
    np.testing.assert_allclose(analyzer.analyze(x).reshape(2, -1).sum(1), y, rtol=1e-4)
    assert str(kp.create_analyzer("gradient", model).plan["layer_scale"]) == "gradient"
    # x * gamma + 1 is not a channel scale
    inp = keras.Input((4,))
    bad = keras.Model(inp, L.Dense(2)(_ScaleShift()(inp)))
    with pytest.raises(kp.UnsupportedLayerError, match=r"scale_shift \(_ScaleShift\)"):
        kp.create_analyzer("lrp.z", bad)
    assert not is_channel_scale(kp.create_analyzer("gradient.baseline", bad).graph.nodes[0],
                                kp.create_analyzer("gradient.baseline", bad).graph)


# -------------------------------------------------------------------- non-ReLU signal methods
def _gelu_prime(z):
    phi = np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return cdf + z * phi


def _gelu_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((5,)), L.Dense(6, activation="gelu", dtype="float64"),
                             L.Dense(3, dtype="float64")])


def test_signal_methods_refuse_gelu_naming_the_option():
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"gelu\).*non_relu='gradient'"):
        kp.create_analyzer("guided_backprop", _gelu_mlp())
    with pytest.raises(ValueError, match="Received: non_relu='tanh'"):
        kp.create_analyzer("deconvnet", _gelu_mlp(), non_relu="tanh")


@pytest.mark.parametrize("name,non_relu", [("deconvnet", "gradient"), ("deconvnet", "relu"),
                                           ("guided_backprop", "gradient"), ("guided_backprop", "relu")])
def test_signal_methods_on_gelu_match_replica(name, non_relu):
    model = _gelu_mlp()
    with pytest.warns(UserWarning, match=f"only specified for networks with ReLU.*non_relu='{non_relu}'"):
        analyzer = kp.create_analyzer(name, model, non_relu=non_relu, neuron_selection_mode="index")
    x = np.random.default_rng(0).normal(size=(4, 5))
    (w1, b1), (w2, b2) = [lay.get_weights() for lay in model.layers]
    z = x @ w1 + b1
    out = np.asarray(model(x))
    r = np.zeros_like(out)
    r[:, 1] = out[:, 1]  # seeded with the selected output value
    r = r @ w2.T
    if non_relu == "gradient":
        r = r * _gelu_prime(z)
    elif name == "deconvnet":
        r = np.maximum(r, 0)
    else:
        r = np.maximum(r, 0) * (z > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at construction
        got = analyzer.analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, r @ w1.T, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------- conservation
CONSERVING = [
    ("lrp.z", {}), ("lrp.epsilon", {"epsilon": 1e-10}), ("lrp.z_plus", {}),
    ("lrp.alpha_1_beta_0_IB", {}), ("lrp.alpha_2_beta_1_IB", {}), ("lrp.z_IB", {}),
]


@pytest.mark.parametrize("name,kwargs", CONSERVING)
def test_conservation_on_se_layernorm_gelu_net(name, kwargs):
    """Bias-free SE + LayerNorm + GELU/swish + GroupNorm + LayerScale + GLU + UnitNorm net (float64,
    so the bound is the rule's, not float32 rounding): the map sums to the explained output at
    1e-4 relative."""
    model = zoo.cached_float64("modern_bias_free")
    x = zoo.inputs_for(model, n=4, seed=3).astype("float64")
    analyzer = kp.create_analyzer(name, model, **kwargs)
    maps = analyzer.analyze(x)
    y = np.asarray(model(x)).max(axis=1)
    np.testing.assert_allclose(maps.reshape(4, -1).sum(1), y, rtol=1e-4)


def test_modern_plan_names_every_rule():
    model = zoo.cached("modern_blocks")
    rules = _by_label(model, "lrp.epsilon")
    named = {k: v for k, v in rules.items() if not k.startswith("keras.ops")}
    norms = [v for k, v in named.items() if k.split("_")[0] in ("layer", "group", "unit")]
    assert len(norms) == 3 and all(v == ["normalization.z"] for v in norms)
    assert [v for k, v in named.items() if k.startswith("multiply")] == [["gate.signal_take_all(gate=1)"]]
    assert [v for k, v in named.items() if k.startswith("channel_scale")] == [["identity"]]
    assert rules["keras.ops.multiply"] == ["gate.signal_take_all(gate=1)"]
    assert rules["keras.ops.gelu"] == rules["keras.ops.sigmoid"] == ["identity"]
    assert rules["keras.ops.add"] == rules["keras.ops.mean"] == ["lrp.z_proportional"]
    with pytest.warns(UserWarning, match="treated like ReLU"):
        signal = _by_label(model, "guided_backprop", non_relu="relu")
    assert [v for k, v in signal.items() if k.startswith("layer_norm")] == [["normalization.constant_gradient"]]
    assert signal["keras.ops.multiply"] == ["gate.signal(gate=1)"]
    assert signal["keras.ops.gelu"] == ["guided_as_relu"]


def test_a_refusal_in_layer_map_names_the_layer_and_the_reason():
    """kp.rules.refusal(reason) marks nodes a method must not explain: resolve() lists them among
    the unsupported layers with the reason; the other layers keep their rules."""
    import keras

    inp = keras.Input((4,))
    h = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(h))
    from keras_patterns.rules import is_refusal, refusal

    no = refusal("the head is explained elsewhere")
    assert is_refusal(no) and not is_refusal(kp.rules.GRADIENT)
    with pytest.raises(kp.UnsupportedLayerError, match=r"head.*the head is explained elsewhere") as err:
        kp.create_analyzer("lrp.epsilon", model, layer_map=[(lambda node, graph: node.layer.name == "head", no)])
    assert [name for name, _ in err.value.layers] == ["head"]

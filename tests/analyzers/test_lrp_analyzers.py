"""LRP / Deep Taylor analyzers: registry, rule assignment as data, plan printing, errors."""

import warnings

import keras
import numpy as np
import pytest

import keras_patterns as kp
from keras_patterns.rules import lrp as R

L = keras.layers

NAMES = [
    "lrp", "lrp.z", "lrp.z_IB", "lrp.epsilon", "lrp.epsilon_IB", "lrp.w_square", "lrp.flat",
    "lrp.alpha_beta", "lrp.alpha_2_beta_1", "lrp.alpha_2_beta_1_IB", "lrp.alpha_1_beta_0",
    "lrp.alpha_1_beta_0_IB", "lrp.z_plus", "lrp.z_plus_fast", "lrp.sequential_preset_a",
    "lrp.sequential_preset_b", "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat",
    "lrp.sequential_preset_b_flat_until_idx", "deep_taylor", "deep_taylor.bounded", "lrp.gamma",
]


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((6,)), L.Dense(8, activation="relu", name="d0"), L.Dropout(0.3, name="drop"),
        L.Dense(5, activation="relu", name="d1"), L.Dense(3, name="d2"),
    ])


def cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    h = L.ZeroPadding2D(1, name="pad")(inp)
    h = L.Conv2D(3, 3, activation="relu", name="c0")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Flatten(name="flat")(h)
    h = L.Dense(4, activation="relu", name="d0")(h)
    return keras.Model(inp, L.Dense(3, name="d1")(h))


X6 = np.random.default_rng(0).normal(0, 1, (3, 6)).astype("float32")
X8 = np.random.default_rng(0).normal(0, 1, (3, 8, 8, 2)).astype("float32")


def plan_of(analyzer, kernel_only=True):
    return {k: str(v) for k, v in analyzer.plan.items() if not (kernel_only and "/" in k)}


def test_registry_has_every_innvestigate_name():
    assert set(NAMES) <= set(kp.list_analyzers())


def test_presets_are_data():
    a = kp.create_analyzer("lrp.sequential_preset_a", cnn())
    assert plan_of(a) == {
        "pad": "gradient", "c0": "lrp.alpha_beta(alpha=1.0, beta=0.0, bias=True)", "pool": "gradient",
        "flat": "gradient", "d0": "lrp.epsilon(epsilon=0.1)", "d1": "lrp.epsilon(epsilon=0.1)",
    }
    assert str(a.plan["c0/activation"]) == "identity"
    b = kp.create_analyzer("lrp.sequential_preset_b_flat", cnn())
    assert str(b.plan["c0"]) == "lrp.flat"  # the input layer, seen through ZeroPadding
    assert str(b.plan["d0"]) == "lrp.epsilon(epsilon=0.1)"
    b = kp.create_analyzer("lrp.sequential_preset_b", mlp(), epsilon=0.25)
    assert str(b.plan["d0"]) == "lrp.epsilon(epsilon=0.25)"


def test_plan_is_printable():
    text = str(kp.create_analyzer("lrp.epsilon", mlp(), epsilon=0.5).plan)
    lines = text.splitlines()
    assert lines[0].split() == ["d0", "lrp.epsilon(epsilon=0.5)"]
    assert any(line.split() == ["drop", "gradient"] for line in lines)
    assert any(line.split() == ["d0/activation", "identity"] for line in lines)


def test_rule_for_all_kernel_layers_and_input_layer_rule():
    a = kp.create_analyzer("lrp", mlp(), rule="Z", input_layer_rule="Flat")
    assert plan_of(a) == {"d0": "lrp.flat", "drop": "gradient", "d1": "lrp.z", "d2": "lrp.z"}
    a = kp.create_analyzer("lrp", mlp(), rule="Epsilon", input_layer_rule=(-3, 3))
    assert plan_of(a)["d0"] == "lrp.bounded(low=-3.0, high=3.0)"
    assert plan_of(a)["d2"] == "lrp.epsilon(epsilon=1e-07)"


def test_conditioned_rules_first_match_wins():
    rule = [(lambda layer: layer.name == "d1", "ZPlus"), (L.Dense, "Epsilon"), (L.Dense, "Flat")]
    a = kp.create_analyzer("lrp", mlp(), rule=rule)
    assert plan_of(a) == {"d0": "lrp.epsilon(epsilon=1e-07)", "drop": "gradient", "d1": "lrp.z_plus",
                          "d2": "lrp.epsilon(epsilon=1e-07)"}
    rule = [(lambda node, graph: node.name == "d2", R.gamma_rule(0.1)), (L.Dense, "Z")]
    a = kp.create_analyzer("lrp", mlp(), rule=rule)
    assert plan_of(a)["d2"] == "lrp.gamma(gamma=0.1, bias=True)"


def test_plain_rule_list_is_used_from_the_end():
    # iNNvestigate pops the list: the last element goes to the first kernel layer.
    a = kp.create_analyzer("lrp", mlp(), rule=["Z", "Flat", "WSquare"])
    assert plan_of(a) == {"d0": "lrp.w_square", "drop": "gradient", "d1": "lrp.flat", "d2": "lrp.z"}


def test_until_layer_idx_indexes_model_layers():
    # Sequential: model.layers = [d0, drop, d1, d2] (no InputLayer); idx 2 covers d0 and d1.
    a = kp.create_analyzer("lrp", mlp(), rule="Z", until_layer_idx=2, until_layer_rule="Flat")
    assert plan_of(a) == {"d0": "lrp.flat", "drop": "gradient", "d1": "lrp.flat", "d2": "lrp.z"}
    a = kp.create_analyzer("lrp.sequential_preset_b_flat_until_idx", mlp(), until_layer_idx=1)
    assert plan_of(a)["d0"] == "lrp.flat" and plan_of(a)["d1"] == "lrp.epsilon(epsilon=0.1)"
    # Functional: model.layers = [input, pad, c0, pool, flat, d0, d1]; idx 5 covers c0 and d0.
    a = kp.create_analyzer("lrp", cnn(), rule="Z", until_layer_idx=5, until_layer_rule="Flat")
    assert [plan_of(a)[k] for k in ("c0", "d0", "d1")] == ["lrp.flat", "lrp.flat", "lrp.z"]


def test_precedence_input_rule_then_until_rule_then_rule():
    a = kp.create_analyzer("lrp", mlp(), rule="Z", input_layer_rule="WSquare", until_layer_idx=3,
                           until_layer_rule="Flat")
    assert plan_of(a) == {"d0": "lrp.w_square", "drop": "gradient", "d1": "lrp.flat", "d2": "lrp.flat"}


def test_layers_without_kernels():
    inp = keras.Input((4, 4, 2))
    h = L.Conv2D(3, 1, activation="relu", name="c")(inp)
    a1 = L.AveragePooling2D(2, name="avg")(h)
    a2 = L.MaxPooling2D(2, name="max")(h)
    s = L.Subtract(name="sub")([a1, a2])
    m = L.Average(name="mean")([a1, a2])
    h = L.Concatenate(name="cat")([L.Add(name="add")([s, m]), a1])
    h = L.BatchNormalization(name="bn")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    a = kp.create_analyzer("lrp.epsilon", keras.Model(inp, L.Dense(2, name="out")(h)))
    p = plan_of(a, kernel_only=False)
    assert p["avg"] == p["sub"] == p["mean"] == p["add"] == p["gap"] == "lrp.z_proportional"
    assert p["max"] == p["cat"] == "gradient"
    assert p["bn"] == "lrp.epsilon(epsilon=1e-07)"
    assert p["c/activation"] == "identity"
    assert np.all(np.isfinite(a.analyze(np.random.default_rng(0).normal(0, 1, (2, 4, 4, 2)))))


def test_embedding_relevance_is_summed():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="int32")
    h = L.Flatten()(L.Embedding(10, 3)(inp))
    model = keras.Model(inp, L.Dense(2, use_bias=False)(h))
    tokens = np.array([[1, 2, 3, 4, 5], [0, 9, 9, 1, 2]], dtype="int32")
    maps = kp.create_analyzer("lrp.z", model).analyze(tokens)
    assert maps.shape == (2, 5)
    np.testing.assert_allclose(maps.sum(1), np.asarray(model(tokens)).max(1), rtol=1e-5)


def test_gamma_zero_is_lrp_z():
    model = cnn()
    np.testing.assert_allclose(kp.create_analyzer("lrp.gamma", model, gamma=0.0).analyze(X8),
                               kp.create_analyzer("lrp.z", model).analyze(X8), rtol=1e-5, atol=1e-7)


def test_deep_taylor_starts_from_relu_of_the_output():
    model = mlp()
    w = model.layers[-1].get_weights()
    model.layers[-1].set_weights([w[0], w[1] - 100.0])  # every output negative
    a = kp.create_analyzer("deep_taylor", model)
    np.testing.assert_array_equal(a.analyze(X6), 0.0)
    assert str(a.plan["d0"]) == "lrp.alpha_beta(alpha=1.0, beta=0.0, bias=False)"


def test_deep_taylor_gives_add_inputs_the_full_relevance():
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,))
    a = L.Dense(3, activation="relu", name="a")(inp)
    b = L.Dense(3, activation="relu", name="b")(inp)
    h = L.Add(name="add")([a, b])
    model = keras.Model(inp, L.Dense(1, use_bias=False, kernel_initializer="ones", name="out")(h))
    x = np.abs(np.random.default_rng(0).normal(0, 1, (2, 4))).astype("float64") + 0.1
    dt = kp.create_analyzer("deep_taylor", model).analyze(x.astype("float32"))
    # numpy replica: out (weights 1, inputs >= 0) splits relu(y) over h proportionally; the Add
    # passes the full R_h to both branches; Alpha1Beta0-IB on positive inputs conserves per unit
    # wherever that unit has a positive weight (z+ > 0).
    wa, ba = model.get_layer("a").get_weights()
    wb, bb = model.get_layer("b").get_weights()
    ha, hb = np.maximum(x @ wa + ba, 0), np.maximum(x @ wb + bb, 0)
    hsum = ha + hb
    y = np.maximum(hsum.sum(1), 0)
    r_h = np.where(hsum > 0, hsum / np.where(hsum > 0, hsum.sum(1, keepdims=True), 1), 0) * y[:, None]
    expected = sum(
        (r_h * ((x @ np.maximum(w, 0)) > 0)).sum(1) for w in (wa, wb)
    )
    np.testing.assert_allclose(dt.sum(1), expected, rtol=1e-5)
    assert np.all(expected > y)  # more than y: the Add gives each branch the full relevance
    assert str(kp.create_analyzer("deep_taylor", model).plan["add"]) == "gradient"


def test_deep_taylor_bounded():
    a = kp.create_analyzer("deep_taylor.bounded", mlp(), low=-3, high=3)
    assert str(a.plan["d0"]) == "lrp.bounded(low=-3.0, high=3.0)"
    assert str(a.plan["d1"]) == "lrp.alpha_beta(alpha=1.0, beta=0.0, bias=False)"
    with pytest.raises(ValueError, match=r"low or high parameter is missing.*Received: low=None, high=3"):
        kp.create_analyzer("deep_taylor.bounded", mlp(), high=3)
    with pytest.raises(ValueError, match=r"low or high parameter is missing"):
        kp.create_analyzer("deep_taylor.bounded", mlp())


def test_deep_taylor_refuses_non_relu_and_warns_on_relu_variants():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="tanh"), L.Dense(2)])
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"only specified for networks with ReLU.*tanh"):
        kp.create_analyzer("deep_taylor", model)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.ReLU(max_value=6.0), L.Dense(2)])
    with pytest.warns(UserWarning, match="ReLU variants"):
        kp.create_analyzer("deep_taylor", model)


def test_presets_warn_on_non_relu():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="tanh"), L.Dense(2)])
    with pytest.warns(UserWarning, match=r"not advised for networks with non-ReLU.*tanh"):
        kp.create_analyzer("lrp.sequential_preset_a", model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp.create_analyzer("lrp.sequential_preset_a", mlp())


def test_errors_name_what_was_received():
    with pytest.raises(ValueError, match=r"Need LRP rule\(s\).*Received: rule=None"):
        kp.create_analyzer("lrp", mlp())
    with pytest.raises(ValueError, match=r"Received: 'Zed'. Valid names: \[.*'Epsilon'"):
        kp.create_analyzer("lrp", mlp(), rule="Zed")
    with pytest.raises(ValueError, match=r"input_layer_rule.*Received: 'flat'"):
        kp.create_analyzer("lrp", mlp(), rule="Z", input_layer_rule="flat")
    with pytest.raises(ValueError, match=r"one rule per kernel layer \(3.*Received: 2 rules"):
        kp.create_analyzer("lrp", mlp(), rule=["Z", "Flat"])
    with pytest.raises(ValueError, match=r"matches the kernel layer\(s\) \['d2'\]"):
        kp.create_analyzer("lrp", mlp(), rule=[(lambda layer: layer.name != "d2", "Z")])
    with pytest.raises(ValueError, match=r"`until_layer_idx` needs `until_layer_rule`"):
        kp.create_analyzer("lrp", mlp(), rule="Z", until_layer_idx=2)
    with pytest.raises(ValueError, match=r"`epsilon` must be a number > 0. Received: epsilon=0"):
        kp.create_analyzer("lrp.epsilon", mlp(), epsilon=0)
    with pytest.raises(ValueError, match=r"alpha - beta = 1. Received: alpha=2.*beta=2"):
        kp.create_analyzer("lrp.alpha_beta", mlp(), alpha=2, beta=2)
    with pytest.raises(ValueError, match=r"Received: alpha=None, beta=None"):
        kp.create_analyzer("lrp.alpha_beta", mlp())
    with pytest.raises(TypeError, match=r"'lrp.epsilon_IB' \(a preset of LRP with the arguments \['epsilon'\]\) "
                       r"got an unexpected keyword argument 'bias'"):
        kp.create_analyzer("lrp.epsilon_IB", mlp(), bias=True)
    with pytest.raises(TypeError, match=r"Analyzer 'lrp.epsilon' fixes \['rule'\]"):
        kp.create_analyzer("lrp.epsilon", mlp(), rule="Z")


def test_alpha_beta_infers_the_missing_parameter():
    a = kp.create_analyzer("lrp.alpha_beta", mlp(), beta=1)
    assert str(a.plan["d0"]) == "lrp.alpha_beta(alpha=2.0, beta=1.0, bias=True)"
    assert a.get_config()["beta"] == 1 and a.get_config()["alpha"] is None  # as given
    again = kp.create_analyzer("lrp.alpha_beta", mlp(), **a.get_config())
    assert str(again.plan["d0"]) == "lrp.alpha_beta(alpha=2.0, beta=1.0, bias=True)"


@pytest.mark.parametrize("name,kwargs", [
    ("lrp", {"rule": ["Z", "Epsilon", "Flat"], "input_layer_rule": (-2.0, 2.0)}),
    ("lrp.epsilon", {"epsilon": 0.3}),
    ("lrp.alpha_beta", {"alpha": 3, "bias": False}),
    ("lrp.sequential_preset_b_flat_until_idx", {"until_layer_idx": 2}),
    ("deep_taylor.bounded", {"low": -2.0, "high": 2.0}),
])
def test_save_load_round_trip(name, kwargs, tmp_path):
    a = kp.create_analyzer(name, mlp(), **kwargs)
    path = str(tmp_path / "a.kpa")
    a.save(path)
    b = kp.load_analyzer(path)
    assert plan_of(a) == plan_of(b)
    np.testing.assert_array_equal(a.analyze(X6), b.analyze(X6))


def test_rule_objects_cannot_be_saved(tmp_path):
    a = kp.create_analyzer("lrp", mlp(), rule=R.gamma_rule(0.3))
    with pytest.raises(ValueError, match=r"\['rule'\] hold Rule objects"):
        a.save(str(tmp_path / "a.kpa"))


APPLICATIONS = {
    "resnet50": keras.applications.ResNet50,
    "densenet121": keras.applications.DenseNet121,
    "mobilenetv2": keras.applications.MobileNetV2,
}


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(APPLICATIONS))
def test_applications_with_batchnorm_folded(app):
    keras.utils.set_random_seed(0)
    model = APPLICATIONS[app](weights=None, input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MobileNetV2's ReLU6 under the presets / Deep Taylor
        built = {}
        for name, kwargs in [("lrp.epsilon", {}), ("lrp.sequential_preset_a_flat", {}),
                             ("lrp.alpha_2_beta_1_IB", {}), ("deep_taylor.bounded", {"low": -3, "high": 3})]:
            a = built[name] = kp.create_analyzer(name, model, **kwargs)
            maps = a.analyze(x)
            assert maps.shape == x.shape and np.all(np.isfinite(maps)), (app, name)
            kernel_layers = [k for k, r in a.plan.items() if "lrp." in str(r) and "proportional" not in str(r)]
            assert kernel_layers, (app, name)
    bns = [n.name for n in a.graph.nodes if isinstance(n.layer, L.BatchNormalization)]
    if app in ("resnet50", "mobilenetv2"):
        assert bns == []  # every BatchNormalization follows a convolution: all folded
    else:
        assert bns  # DenseNet's pre-activation BNs follow a Concatenate/pooling: stand-alone
    # the first convolution (behind a ZeroPadding2D in ResNet50 and DenseNet121) is an input layer
    assert "lrp.flat" in [str(r) for r in built["lrp.sequential_preset_a_flat"].plan.values()]
    assert "lrp.bounded" in str(built["deep_taylor.bounded"].plan)

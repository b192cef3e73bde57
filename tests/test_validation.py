"""keras_patterns.validation: every check's accepted values, refused values with their exact
messages, and the one reader of model inputs."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from keras_patterns import validation as V


def _raises(fn, message, exc=ValueError):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        fn()


# ------------------------------------------------------------------------------------ integers
@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_accepts(value):
    out = V.positive_int("batch_size", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -1, 2.0, 1.5, True, False, np.bool_(True), "3", None, [1]])
def test_positive_int_refuses(value):
    _raises(lambda: V.positive_int("batch_size", value),
            f"`batch_size` must be a positive int. Received: batch_size={value!r}")


def test_positive_int_allow_none():
    assert V.positive_int("steps", None, allow_none=True) is None
    assert V.positive_int("steps", 4, allow_none=True) == 4
    _raises(lambda: V.positive_int("steps", 0, allow_none=True),
            "`steps` must be None or a positive int. Received: steps=0")


@pytest.mark.parametrize("value", [0, 5, np.int32(0)])
def test_non_negative_int_accepts(value):
    assert V.non_negative_int("until_layer_idx", value) == int(value)


@pytest.mark.parametrize("value", [-1, 0.0, True, "0"])
def test_non_negative_int_refuses(value):
    _raises(lambda: V.non_negative_int("n", value), f"`n` must be an int >= 0. Received: n={value!r}")


def test_integer_bounds_and_none():
    assert V.integer("seed", -3) == -3
    assert V.integer("seed", None, allow_none=True) is None
    assert V.integer("size", 16, minimum=16) == 16
    _raises(lambda: V.integer("size", 12, minimum=16), "`size` must be an int >= 16. Received: size=12")
    _raises(lambda: V.integer("seed", 1.5, allow_none=True), "`seed` must be an int or None. Received: seed=1.5")
    _raises(lambda: V.integer("seed", True), "`seed` must be an int. Received: seed=True")


# ------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value", [0, 0.0, 2, 1e30, np.float32(0.5), np.int64(3)])
def test_finite_number_accepts(value):
    out = V.finite_number("noise_scale", value, minimum=0)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [-1, -1e-12, float("nan"), float("inf"), np.float32("nan"), True, "1", None])
def test_finite_number_refuses(value):
    _raises(lambda: V.finite_number("noise_scale", value, minimum=0),
            f"`noise_scale` must be a finite number >= 0. Received: noise_scale={value!r}")


def test_finite_number_intervals():
    assert V.finite_number("q", 1, minimum=0, maximum=1, min_open=True) == 1.0
    _raises(lambda: V.finite_number("q", 0, minimum=0, maximum=1, min_open=True),
            "`q` must be a finite number in (0, 1]. Received: q=0")
    _raises(lambda: V.finite_number("alpha", 1.5, minimum=0, maximum=1),
            "`alpha` must be a finite number in [0, 1]. Received: alpha=1.5")
    _raises(lambda: V.finite_number("eps", 0.0, minimum=0, min_open=True),
            "`eps` must be a finite number > 0. Received: eps=0.0")
    _raises(lambda: V.finite_number("t", 2, maximum=1, max_open=True),
            "`t` must be a finite number < 1. Received: t=2")
    _raises(lambda: V.finite_number("t", float("inf")), "`t` must be a finite number. Received: t=inf")
    assert V.finite_number("t", None, allow_none=True) is None


# ------------------------------------------------------------------------------ bools, options
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_boolean_accepts(value):
    out = V.boolean("allow_lambda_layers", value)
    assert out is bool(value)


@pytest.mark.parametrize("value", [1, 0, "True", None, np.array([True])])
def test_boolean_refuses(value):
    _raises(lambda: V.boolean("allow_lambda_layers", value),
            f"`allow_lambda_layers` must be True or False. Received: allow_lambda_layers={value!r}")


def test_one_of():
    options = ("auto", 0, 1, 2)
    assert V.one_of("verbose", "auto", options) == "auto"
    assert V.one_of("verbose", np.int64(2), options) == 2
    assert V.one_of("postprocess", None, (None, "abs", "square")) is None
    for bad in (True, False, 3, "Auto", np.array([1, 2])):  # True == 1 in Python: refused all the same
        _raises(lambda: V.one_of("verbose", bad, options),
                f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={bad!r}")
    _raises(lambda: V.one_of("postprocess", "sqrt", (None, "abs", "square")),
            "`postprocess` must be None, 'abs' or 'square'. Received: postprocess='sqrt'")
    _raises(lambda: V.one_of("k", 1, ("a",)), "`k` must be 'a'. Received: k=1")


# ---------------------------------------------------------------------------------- the reader
SPECS = [((None, 3), "float32"), ((None, 2, 2), "int32")]
NAMES = ["a", "b"]


def test_read_inputs_forms_agree_and_cast():
    xa = np.arange(6, dtype="int64").reshape(2, 3)          # integer data for a float input
    xb = np.ones((2, 2, 2), dtype="int32")
    by_list = V.read_inputs([xa, xb], SPECS, NAMES)
    by_dict = V.read_inputs({"b": xb, "a": xa, "extra": 0}, SPECS, NAMES)
    by_tensor = V.read_inputs((tf.constant(xa), tf.constant(xb)), SPECS, NAMES)
    for out in (by_list, by_dict, by_tensor):
        assert out[0].dtype == np.float32 and out[1].dtype == np.int32
        np.testing.assert_array_equal(out[0], xa.astype("float32"))
        np.testing.assert_array_equal(out[1], xb)
    single = V.read_inputs(np.zeros((4, 3), "float64"), SPECS[:1], NAMES[:1])
    assert single[0].dtype == np.float32 and single[0].shape == (4, 3)


def test_read_inputs_refusals():
    xa, xb = np.zeros((2, 3), "float32"), np.zeros((2, 2, 2), "int32")
    _raises(lambda: V.read_inputs({"a": xa}, SPECS, NAMES),
            "Input dict is missing model inputs ['b']. Expected keys: ['a', 'b']. Received keys: ['a']")
    _raises(lambda: V.read_inputs(xa, SPECS, NAMES),
            "The model has 2 input(s) ['a', 'b']; expected a list of 2 arrays. Received: 1 array(s)")
    _raises(lambda: V.read_inputs([np.array([["x", "y", "z"]]), xb], SPECS, NAMES),
            "Input 0 must be numeric. Received: dtype <U1 (e.g. np.str_('x'))", TypeError)
    _raises(lambda: V.read_inputs([np.zeros((2, 4)), xb], SPECS, NAMES),
            "Input 0 (a) must have shape ('batch', 3). Received: shape (2, 4)")
    _raises(lambda: V.read_inputs([np.zeros(3), xb], SPECS, NAMES),
            "Input 0 (a) must have shape ('batch', 3). Received: shape (3,)")
    bad = xa.copy()
    bad[1, 2] = np.inf
    _raises(lambda: V.read_inputs([bad, xb], SPECS, NAMES),
            "Input 0 contains NaN or Inf (first at index (1, 2)); expected finite values.")
    _raises(lambda: V.read_inputs([xa, xb[:1]], SPECS, NAMES),
            "All inputs must have the same batch size. Received: [2, 1]")


def test_check_input_shape_ignores_batch_and_unknown_sizes():
    V.check_input_shape(0, "x", (None, None, 3), (5, 7, 3))
    _raises(lambda: V.check_input_shape(0, "x", (None, 4, 3), (5, 3), " (hint)"),
            "Input 0 (x) must have shape ('batch', 4, 3). Received: shape (5, 3) (hint)")


# ------------------------------------------------------------------ one message everywhere
def _dense():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


@pytest.mark.parametrize("bad", [True, 0, 2.0])
def test_batch_size_refused_alike_by_constructor_analyze_and_fit(bad):
    """The drift of issue 8: batch_size=True was accepted by create_analyzer, refused by fit."""
    model = _dense()
    message = f"`batch_size` must be a positive int. Received: batch_size={bad!r}"
    _raises(lambda: kp.create_analyzer("gradient", model, batch_size=bad), message)
    _raises(lambda: kp.create_analyzer("pattern.net", model, batch_size=bad), message)
    _raises(lambda: kp.create_analyzer("gradient", model).analyze(np.zeros((1, 3)), batch_size=bad), message)
    _raises(lambda: kp.create_analyzer("pattern.net", model).fit(np.zeros((4, 3)), batch_size=bad), message)


def test_statistics_read_inputs_like_analyze():
    """The pattern data pass reads inputs with the same checks and messages as analyze."""
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    xa, xb = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    analyzer = kp.create_analyzer("pattern.net", model).fit([xa, xb], verbose=0)
    for fn in (analyzer.analyze, lambda x: analyzer.fit(x, verbose=0)):
        _raises(lambda: fn({"a": xa}),
                "Input dict is missing model inputs ['b']. Expected keys: ['a', 'b']. Received keys: ['a']")
        with pytest.raises(ValueError, match=re.escape("Input 1 (b) must have shape ('batch', 2). "
                                                       "Received: shape (4, 5)")):
            fn([xa, np.ones((4, 5), "float32")])
    # a dict in another order than the inputs: fitted as by name (same patterns as the list)
    by_dict = kp.create_analyzer("pattern.net", model).fit({"b": xb * 2, "a": xa}, verbose=0).get_state()
    by_list = kp.create_analyzer("pattern.net", model).fit([xa, xb * 2], verbose=0).get_state()
    assert sorted(by_dict) == sorted(by_list)
    for k in by_list:
        np.testing.assert_array_equal(by_dict[k], by_list[k])


def test_get_state_set_state_round_trip():
    model = _dense()
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    assert kp.create_analyzer("gradient", model).get_state() == {}
    _raises(lambda: kp.create_analyzer("gradient", model).set_state({"w": np.zeros(2)}),
            "Analyzer 'gradient' has no state; expected state={}. Received: arrays ['w']")
    fitted = kp.create_analyzer("pattern.net", model).fit(x, verbose=0)
    state = fitted.get_state()
    assert state and all(isinstance(v, np.ndarray) for v in state.values())
    other = kp.create_analyzer("pattern.net", model)
    assert other.get_state() == {}
    other.set_state(state)
    np.testing.assert_array_equal(other.analyze(x[:5]), fitted.analyze(x[:5]))
    assert other.input_specs == ((( None, 3), "float32"),)


# --------------------------------------------------------------------------- rule conditions
from keras_patterns.canonizers import prepare_graph  # noqa: E402
from keras_patterns.graph.layers import KERNEL_LAYERS, as_condition, node_condition  # noqa: E402


def _graph():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"),
                              keras.layers.ReLU(name="r"), keras.layers.Dense(2, name="d2")])
    graph = prepare_graph(model)
    return graph, {n.name: n for n in graph.nodes}


def _matching(condition, **kwargs):
    graph, nodes = _graph()
    match = as_condition(condition, **kwargs)
    return sorted(name for name, node in nodes.items() if match(node, graph) is True)


def test_as_condition_forms():
    L = keras.layers
    assert _matching(L.Dense) == ["d1", "d2"]
    assert _matching((L.ReLU, L.Dense)) == ["d1", "d2", "r"]
    assert _matching(lambda layer: layer.name != "d1") == ["d2", "r"]            # called with the layer
    assert _matching(node_condition(lambda node, graph: node.name == "r")) == ["r"]

    @node_condition
    def last(node, graph):
        return node.outputs[0] in graph.outputs

    assert _matching(last) == ["d2"] and last.__name__ == "last"
    # written before node_condition: an unmarked function with two required arguments
    assert _matching(lambda node, graph: node.name == "d1") == ["d1"]
    # a default second argument does not make a node condition
    assert _matching(lambda layer, prefix="d": layer.name.startswith(prefix)) == ["d1", "d2"]
    assert _matching(lambda layer: True, restrict_to=KERNEL_LAYERS) == ["d1", "d2"]
    assert _matching(keras.layers.ReLU, restrict_to=KERNEL_LAYERS) == []


@pytest.mark.parametrize("bad", [(), "Dense", 3, (keras.layers.Dense, "x")])
def test_as_condition_refuses(bad):
    _raises(lambda: as_condition(bad),
            "A rule condition must be a layer class, a tuple of classes or a callable "
            f"condition(layer) / condition(node, graph). Received: {bad!r}", TypeError)
    _raises(lambda: node_condition(bad), f"`node_condition` needs a callable f(node, graph). Received: {bad!r}",
            TypeError)


def test_resolve_and_lrp_read_conditions_alike():
    """The method rules (resolve) and the user's `rule` pairs (lrp) accept the same forms."""
    from keras_patterns.mapping import resolve
    from keras_patterns.rules import lrp as R

    graph, _ = _graph()
    plan = resolve(graph, [(lambda layer: layer.name == "d1", R.Z), (node_condition(lambda n, g: n.name == "d2"), R.FLAT)])
    assert plan["d1"] is R.Z and plan["d2"] is R.FLAT
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")])
    analyzer = kp.create_analyzer("lrp", model, rule=[(lambda layer: layer.name == "d1", "Z"),
                                                      (node_condition(lambda n, g: n.name == "d2"), "Flat")])
    assert (analyzer.plan["d1"].name, analyzer.plan["d2"].name) == ("lrp.z", "lrp.flat")

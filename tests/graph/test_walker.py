"""The graph walker: Sequential, Functional, nested, shared layers, fan-out, multiple inputs."""

import keras
import numpy as np
import pytest

import zoo
from keras_patterns import NotAnalyzeableModelError
from keras_patterns.graph import walk


def test_nested_models_are_flattened_with_paths():
    model = zoo.build("nested")
    graph = walk(model)
    backbone, block = model.get_layer("backbone"), model.get_layer("block")
    expected = [f"backbone/{layer.name}" for layer in backbone.layers[1:]]
    expected += [f"block/{layer.name}" for layer in block.layers]
    expected += [model.layers[-1].name]
    assert [n.name for n in graph.nodes] == expected


def test_shared_layer_gives_one_node_per_call_with_one_key():
    graph = walk(zoo.build("shared_fanout"))
    shared = [n for n in graph.nodes if n.key == "shared_dense"]
    assert [n.name for n in shared] == ["shared_dense", "shared_dense@1"]
    assert shared[0].layer is shared[1].layer
    # h1 (output of the first call) fans out to the second call and twice into the Add.
    h1 = shared[0].outputs[0]
    add = next(n for n in graph.nodes if n.class_name == "Add")
    assert add.inputs.count(h1) == 2
    assert len(graph.consumers(h1)) == 2


def test_multi_input_order_and_names():
    model = zoo.build("multi_input")
    graph = walk(model)
    assert graph.input_names == ["image", "vector"]
    x = zoo.inputs_for(model)
    np.testing.assert_allclose(graph(x)[0], model(x), rtol=1e-6)


def test_topological_order():
    for name in zoo.ZOO:
        graph = walk(zoo.build(name), opaque=True)  # opaque: the subclassed model is one node
        known = set(graph.inputs)
        for node in graph.nodes:
            assert all(t in known for t in node.inputs), (name, node.name)
            known.update(node.outputs)


def test_nested_model_used_twice():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, activation="relu")(inner_in), name="inner")
    inp = keras.Input((4,))
    out = keras.layers.Dense(2)(inner(inner(inp)))
    model = keras.Model(inp, out)
    graph = walk(model)
    d = inner.layers[-1].name
    assert [n.name for n in graph.nodes] == [f"inner/{d}", f"inner/{d}@1", model.layers[-1].name]
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(graph([x])[0], model(x), rtol=1e-6)


def test_subclassed_model_is_refused():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    m = Sub()
    m(np.zeros((1, 3), "float32"))
    with pytest.raises(NotAnalyzeableModelError, match="subclassed"):
        walk(m)


def test_unbuilt_sequential_is_refused():
    with pytest.raises(NotAnalyzeableModelError, match="Sequential model built with an input shape"):
        walk(keras.Sequential([keras.layers.Dense(2)]))


def test_not_a_model():
    with pytest.raises(NotAnalyzeableModelError, match="Expected a keras.Model"):
        walk(keras.layers.Dense(2))


def test_long_layer_lists_name_a_few_and_count_the_rest():
    from keras_patterns.graph.checks import list_nodes

    short = [f"a{i} (Activation, silu)" for i in range(3)]
    assert list_nodes(short) == "a0 (Activation, silu), a1 (Activation, silu), a2 (Activation, silu)"
    long = [f"a{i} (Activation, silu)" for i in range(10)] + ["g (Activation, sigmoid)"]
    assert list_nodes(long, limit=2) == (
        "a0 (Activation, silu), a1 (Activation, silu), ... and 9 more "
        "(all kinds: Activation, sigmoid; Activation, silu)")

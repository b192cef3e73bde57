"""Canonizers build an equivalent clone (outputs equal at atol 1e-5) and never touch the model."""

import json

import keras
import numpy as np
import pytest

import zoo
from keras_patterns.canonizers import canonize, fold_batchnorm, split_activations, split_separable
from keras_patterns.graph import walk
from keras_patterns.linear import node_params


def _snapshot(model):
    return json.dumps(model.get_config(), sort_keys=True, default=str), [w.copy() for w in model.get_weights()]


def _check_equal_and_untouched(model, transforms):
    x = zoo.inputs_for(model, n=4, seed=3)
    xs = x if isinstance(x, list) else [x]
    before = _snapshot(model)
    expected = np.asarray(model(x, training=False))
    graph = walk(model, opaque=True)  # a subclassed model: one node
    for t in transforms:
        graph = t(graph)
    got = np.asarray(graph(xs)[0])
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)
    after = _snapshot(model)
    assert after[0] == before[0]
    for a, b in zip(before[1], after[1]):
        np.testing.assert_array_equal(a, b)
    return graph


CANONIZERS = {
    "separable": [split_separable],
    "activation": [split_separable, split_activations],
    "batchnorm": [split_separable, split_activations, fold_batchnorm],
    "all": [canonize],
}


@pytest.mark.parametrize("which", sorted(CANONIZERS))
@pytest.mark.parametrize("model_name", sorted(zoo.ZOO))
def test_canonizer_output_equality(model_name, which):
    _check_equal_and_untouched(zoo.build(model_name), CANONIZERS[which])


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(zoo.SLOW_ZOO))
def test_canonizers_on_applications(model_name):
    graph = _check_equal_and_untouched(zoo.build(model_name), [canonize])
    if model_name == "resnet50":  # every BatchNormalization of ResNet50 follows a conv
        assert not any(isinstance(n.layer, keras.layers.BatchNormalization) for n in graph.nodes)


def test_batchnorm_folding_structure_and_affine_map():
    model = zoo.build("batchnorm")
    graph = canonize(walk(model))
    classes = [n.class_name for n in graph.nodes]
    # conv+BN and dense+BN are folded; BN after an activation and BN after the Add stay.
    assert classes.count("BatchNormalization") == 2
    orig_conv = model.layers[1]
    bn = model.layers[2]
    assert isinstance(bn, keras.layers.BatchNormalization)
    conv = graph.node(orig_conv.name)
    gamma, beta, mean, var = [w.astype("float64") for w in bn.get_weights()]
    s = gamma / np.sqrt(var + bn.epsilon)
    params = node_params(conv)
    np.testing.assert_allclose(params.kernel().numpy(), orig_conv.kernel.numpy() * s, rtol=1e-6)
    np.testing.assert_allclose(
        params.bias().numpy(), s * (orig_conv.bias.numpy() - mean) + beta, rtol=1e-5, atol=1e-6
    )
    assert conv.folded == (bn.name,)
    assert conv.layer is not orig_conv
    assert not conv.layer.built and not conv.layer.weights  # a config copy: no weight is copied


def test_batchnorm_folding_without_scale_and_center():
    inp = keras.Input((5,))
    h = keras.layers.Dense(4, use_bias=False)(inp)
    h = keras.layers.BatchNormalization(scale=False, center=False)(h)
    model = keras.Model(inp, h)
    bn = model.layers[-1]
    bn.set_weights([np.full(4, 0.5, "float32"), np.full(4, 4.0, "float32")])
    graph = _check_equal_and_untouched(model, [canonize])
    assert [n.class_name for n in graph.nodes] == ["Dense"]
    np.testing.assert_allclose(node_params(graph.nodes[0]).bias().numpy(), -0.5 / np.sqrt(4.0 + bn.epsilon),
                               rtol=1e-6)


def test_separable_split_structure():
    model = zoo.build("depthwise_separable")
    sep = model.layers[2].name
    graph = canonize(walk(model))
    names = [n.name for n in graph.nodes]
    assert f"{sep}/depthwise" in names and f"{sep}/pointwise" in names
    assert graph.node(f"{sep}/depthwise").class_name == "DepthwiseConv2D"
    assert graph.node(f"{sep}/pointwise").class_name == "Conv2D"
    assert graph.node(f"{sep}/pointwise/activation").class_name == "Activation"


def test_activation_split_names():
    model = zoo.build("dense_mlp")
    d0, drop, d1, d2 = [layer.name for layer in model.layers]
    graph = canonize(walk(model))
    assert [n.name for n in graph.nodes] == [
        d0, f"{d0}/activation", drop, d1, f"{d1}/activation", d2,
    ]
    assert all(getattr(n.layer, "activation", None) is None or n.layer.activation.__name__ == "linear"
               for n in graph.nodes if n.class_name == "Dense")

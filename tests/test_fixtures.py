"""The shared test fixtures and builders keep their promises: seeded builds are bit-identical, the
cached zoo models equal fresh builds, builders give the documented architectures."""

import keras
import numpy as np
import pytest

import builders
import zoo


def test_zoo_model_equals_a_fresh_build(zoo_model, zoo_inputs):
    """``zoo.cached`` (behind ``zoo_model``) may be shared only if a fresh build is the same model."""
    fresh = zoo.build(zoo_model.name)
    assert len(fresh.weights) == len(zoo_model.weights)
    for a, b in zip(fresh.get_weights(), zoo_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(fresh(zoo_inputs, training=False)),
                                  np.asarray(zoo_model(zoo_inputs, training=False)))


def test_seeded_fixture(seeded):
    np.testing.assert_array_equal(seeded.normal(size=3), np.random.default_rng(0).normal(size=3))
    model = builders.mlp((3, 4, 2))  # initialised from the seeded global RNG
    for a, b in zip(model.get_weights(), builders.mlp((3, 4, 2), seed=0).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_builders_architectures(small_mlp, small_cnn, two_input_model):
    assert [(type(l).__name__, l.units, l.activation.__name__) for l in small_mlp.layers] == [
        ("Dense", 4, "relu"), ("Dense", 3, "linear")]
    assert small_mlp.name == "small_mlp" and small_mlp.count_params() == 5 * 4 + 4 + 4 * 3 + 3
    assert [type(l).__name__ for l in small_cnn.layers] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert small_cnn.count_params() == (9 * 4 + 4) + (3 * 3 * 4) * 3 + 3  # 6x6x4 -> pooled 3x3x4
    assert [t.name for t in two_input_model.inputs] == ["a", "b"]
    x = [np.ones((1, 3), "float32"), np.ones((1, 2), "float32")]
    w, b = two_input_model.layers[-1].get_weights()
    np.testing.assert_allclose(np.asarray(two_input_model(x)), w.sum(0, keepdims=True) + b, rtol=1e-6)
    assert builders.mlp((4, 2), head="softmax").layers[-1].activation is keras.activations.softmax
    with pytest.raises(ValueError, match=r"`names` must name 2 Dense layers. Received: names=\['a'\]"):
        builders.mlp((3, 2, 1), names=["a"])
    with pytest.raises(ValueError, match=r"Received: sizes=\(3,\)"):
        builders.mlp((3,))

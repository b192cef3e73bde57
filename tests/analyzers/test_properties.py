"""Property-based tests (hypothesis) of identities that must hold for any parameters."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import keras_patterns as kp
from keras_patterns import selection
from keras_patterns.canonizers import canonize
from keras_patterns.graph import walk

import builders

floats = st.floats(-3, 3, allow_nan=False, width=32)
positive = st.floats(0.0625, 4, allow_nan=False, width=32)

_inp = keras.Input((3,))
_h = keras.layers.Dense(4)(_inp)
_out = keras.layers.BatchNormalization(epsilon=1e-3)(_h)
BN_MODEL = keras.Model(_inp, _out)


@settings(max_examples=25, deadline=None)
@given(
    kernel=arrays("float32", (3, 4), elements=floats), bias=arrays("float32", (4,), elements=floats),
    gamma=arrays("float32", (4,), elements=floats), beta=arrays("float32", (4,), elements=floats),
    mean=arrays("float32", (4,), elements=floats), var=arrays("float32", (4,), elements=positive),
    x=arrays("float32", (5, 3), elements=floats),
)
def test_batchnorm_folding_is_exact_for_any_statistics(kernel, bias, gamma, beta, mean, var, x):
    BN_MODEL.layers[1].set_weights([kernel, bias])
    BN_MODEL.layers[2].set_weights([gamma, beta, mean, var])
    graph = canonize(walk(BN_MODEL))
    assert [n.class_name for n in graph.nodes] == ["Dense"]
    expected = BN_MODEL(x).numpy()
    got = graph([x])[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


MLP = builders.mlp((4, 5, 3), use_bias=False)


@settings(max_examples=25, deadline=None)
@given(
    w1=arrays("float32", (4, 5), elements=floats), w2=arrays("float32", (5, 3), elements=floats),
    x=arrays("float32", (3, 4), elements=floats),
)
def test_lrp_z_equals_input_times_gradient_times_output_on_bias_free_relu_nets(w1, w2, x):
    """For bias-free ReLU nets LRP-Z (started from y_k) equals x * dy_k/dx (y_k is homogeneous)."""
    MLP.layers[0].set_weights([w1])
    MLP.layers[1].set_weights([w2])
    z = kp.create_analyzer("lrp.z", MLP).analyze(x)
    ixg = kp.create_analyzer("input_t_gradient", MLP).analyze(x)
    scale = max(np.abs(ixg).max(), 1e-6)
    np.testing.assert_allclose(z, ixg, rtol=0, atol=1e-4 * scale)


@given(batch=st.integers(1, 6), n=st.integers(1, 9), data=st.data())
def test_index_validation(batch, n, data):
    idx = data.draw(arrays("int64", (batch,), elements=st.integers(-2, n + 2)))
    if np.all((idx >= 0) & (idx < n)):
        np.testing.assert_array_equal(selection.normalize_indices(idx, "index", batch, n), idx)
    else:
        with pytest.raises(ValueError, match=r"must be in \[0, "):
            selection.normalize_indices(idx, "index", batch, n)

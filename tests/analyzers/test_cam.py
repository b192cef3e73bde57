"""Grad-CAM and Grad-CAM++ against hand computations, float64 NumPy replicas and tf.image.resize."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import keras_patterns as kp
from keras_patterns.analyzers.cam import linear_resize


# ------------------------------------------------------------------------------ replicas
def resize_matrix(n_in, n_out):
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres, clamped at the
    borders (float64)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        u = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        lo = int(np.floor(u))
        hi = min(lo + 1, n_in - 1)
        m[i, lo] += 1.0 - (u - lo)
        m[i, hi] += u - lo
    return m


def resize_replica(x, sizes):
    """``x`` (n, *s) resized to (n, *sizes), one axis after the other (float64)."""
    x = np.asarray(x, np.float64)
    for axis, size in enumerate(sizes, start=1):
        x = np.moveaxis(np.tensordot(resize_matrix(x.shape[axis], size), np.moveaxis(x, axis, 0), axes=1), 0, axis)
    return x


def gradcam_replica(a, g):
    """Grad-CAM (Selvaraju et al. 2017, eqs. 1-2) in float64: a, g shaped (n, *s, K)."""
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    w = g.mean(axis=tuple(range(1, a.ndim - 1)), keepdims=True)
    return np.maximum((w * a).sum(-1), 0)


def gradcampp_replica(a, g):
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with Y = exp(S)) in float64, term by term:
    alpha = g^2 / (2 g^2 + sum_ab(A) g^3) (0 where the denominator is 0), w = sum alpha relu(g)."""
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    spatial = tuple(range(1, a.ndim - 1))
    s = a.sum(axis=spatial, keepdims=True)
    denom = 2 * g**2 + s * g**3
    alpha = np.where(denom != 0, g**2 / np.where(denom != 0, denom, 1), 0)
    w = (alpha * np.maximum(g, 0)).sum(axis=spatial, keepdims=True)
    return np.maximum((w * a).sum(-1), 0)


def _close(ours, ref, rel):
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rel * max(float(np.abs(ref).max()), 1e-30))


# ------------------------------------------------------------------------------ models
def gap_model(dtype="float64"):
    """conv (same padding, ReLU) -> GlobalAveragePooling -> Dense: Zhou et al.'s CAM network."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 7, 2), dtype=dtype)
    a = L.Conv2D(5, 3, padding="same", activation="relu", name="features", dtype=dtype)(inp)
    h = L.GlobalAveragePooling2D(dtype=dtype)(a)
    return keras.Model(inp, L.Dense(4, name="head", dtype=dtype)(h))


def two_conv_model(nested=False):
    """conv1 (valid, ReLU) -> conv2 (valid, ReLU) -> GAP -> Dense, optionally with the convolutions
    inside a nested backbone model. Returns the model and its layers."""
    keras.utils.set_random_seed(4)
    conv1 = L.Conv2D(4, 3, activation="relu", name="conv1", dtype="float64")
    conv2 = L.Conv2D(6, 3, activation="relu", name="conv2", dtype="float64")
    gap, dense = L.GlobalAveragePooling2D(dtype="float64"), L.Dense(3, name="head", dtype="float64")
    inp = keras.Input((9, 8, 2), dtype="float64")
    if nested:
        b_in = keras.Input((9, 8, 2), dtype="float64")
        backbone = keras.Model(b_in, conv2(conv1(b_in)), name="backbone")
        out = dense(gap(backbone(inp)))
    else:
        out = dense(gap(conv2(conv1(inp))))
    return keras.Model(inp, out), (conv1, conv2, gap, dense)


def feature_and_gradient(layers, x, at, index):
    """The feature map after ``layers[:at]`` and the gradient of output ``index`` with respect to it,
    with a plain tf.GradientTape (the peer)."""
    h = tf.constant(x)
    for layer in layers[:at]:
        h = layer(h)
    with tf.GradientTape() as tape:
        tape.watch(h)
        y = h
        for layer in layers[at:]:
            y = layer(y)
        score = tf.reduce_sum(tf.gather(y, index, axis=1, batch_dims=1))
    return h.numpy(), tape.gradient(score, h).numpy()


# ------------------------------------------------------------------------------ Grad-CAM
@pytest.mark.parametrize("mode", ["max_activation", "index"])
def test_grad_cam_is_the_class_activation_map_on_a_gap_network(mode):
    """conv -> GAP -> Dense: dS/dA_ij^k = W[k, c] / Z, so the Grad-CAM weights are the dense weights
    over Z and the CAM is Zhou et al.'s class activation map over Z, rectified. The map has the
    input's spatial size already (same padding): no interpolation, float64 throughout."""
    model = gap_model()
    x = np.random.default_rng(0).normal(size=(3, 6, 7, 2))
    a = keras.Model(model.input, model.get_layer("features").output)(x).numpy()
    kernel = model.get_layer("head").kernel.numpy()
    y = model(x).numpy()
    c = y.argmax(1) if mode == "max_activation" else np.array([2, 0, 3])
    cam = np.maximum(np.einsum("nhwk,kn->nhw", a, kernel[:, c]), 0) / (6 * 7)
    analyzer = kp.create_analyzer("grad_cam", model, neuron_selection_mode=mode)
    maps = analyzer.analyze(x, neuron_selection=None if mode == "max_activation" else c)
    assert analyzer.feature_map.node == "features"
    assert maps.shape == x.shape and maps.dtype == np.float64
    np.testing.assert_array_equal(maps[..., 0], maps[..., 1])  # repeated over the channels
    assert np.abs(cam).max() > 0 and (cam == 0).any()  # the ReLU matters on this example
    _close(maps[..., 0], cam, 1e-12)


def test_grad_cam_all_mode_sums_the_dense_columns():
    model = gap_model()
    x = np.random.default_rng(1).normal(size=(2, 6, 7, 2))
    a = keras.Model(model.input, model.get_layer("features").output)(x).numpy()
    w = model.get_layer("head").kernel.numpy().sum(1) / 42
    maps = kp.create_analyzer("grad_cam", model, neuron_selection_mode="all").analyze(x)
    _close(maps[..., 0], np.maximum(a @ w, 0), 1e-12)


@pytest.mark.parametrize("nested", [False, True])
def test_grad_cam_default_layer_and_upsampling(nested):
    """The default feature map is the last convolution's output (found inside the nested backbone),
    the gradient equals a tf.GradientTape's, and the 5x4 CAM is upsampled to 9x8 as the float64
    replica of half-pixel bilinear interpolation."""
    model, layers = two_conv_model(nested)
    x = np.random.default_rng(2).normal(size=(3, 9, 8, 2))
    analyzer = kp.create_analyzer("grad_cam", model)
    assert analyzer.feature_map.node == ("backbone/conv2" if nested else "conv2")
    assert analyzer.feature_map.shape == (None, 5, 4, 6)
    a, g = feature_and_gradient(layers, x, 2, model(x).numpy().argmax(1))
    ref = resize_replica(gradcam_replica(a, g), (9, 8))
    assert np.abs(ref).max() > 0
    _close(analyzer.analyze(x)[..., 0], ref, 1e-12)


@pytest.mark.parametrize("nested", [False, True])
def test_grad_cam_layer_option(nested):
    model, layers = two_conv_model(nested)
    x = np.random.default_rng(3).normal(size=(2, 9, 8, 2))
    name = "backbone/conv1" if nested else "conv1"
    analyzer = kp.create_analyzer("grad_cam", model, layer=name, neuron_selection_mode="index")
    assert analyzer.feature_map.shape == (None, 7, 6, 4)
    a, g = feature_and_gradient(layers, x, 1, np.array([1, 2]))
    ref = resize_replica(gradcam_replica(a, g), (9, 8))
    _close(analyzer.analyze(x, neuron_selection=[1, 2])[..., 1], ref, 1e-12)
    assert analyzer.get_config()["layer"] == name


def test_grad_cam_follows_elementwise_layers_after_the_last_convolution():
    """conv -> BatchNormalization -> Add (residual) -> ReLU -> GAP: the feature map is the ReLU's
    output (what ResNet's "conv5_block3_out" is), not the raw convolution."""
    inp = keras.Input((6, 6, 3))
    h = L.Conv2D(3, 3, padding="same", name="c1")(inp)
    r = L.Conv2D(3, 3, padding="same", name="c2")(h)
    r = L.BatchNormalization(name="bn")(r)
    h = L.ReLU(name="out")(L.Add(name="add")([h, r]))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    assert kp.create_analyzer("grad_cam", model).feature_map.node == "out"


def test_grad_cam_skips_one_position_maps():
    """A 1x1 convolution after global pooling (MobileNetV3's head) is not the default feature map."""
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, activation="relu", name="spatial")(inp)
    h = L.GlobalAveragePooling2D(keepdims=True)(h)
    h = L.Conv2D(5, 1, activation="relu", name="head_conv")(h)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    assert kp.create_analyzer("grad_cam", model).feature_map.node == "spatial"


def test_grad_cam_1d_and_3d():
    """Conv1D and Conv3D networks: linear and trilinear upsampling, as the replica."""
    keras.utils.set_random_seed(5)
    for shape, conv in (((11, 2), L.Conv1D), ((5, 6, 4, 1), L.Conv3D)):
        c1 = conv(3, 2, activation="relu", dtype="float64")
        c2 = conv(4, 2, strides=2, activation="relu", dtype="float64")
        pool = (L.GlobalAveragePooling1D if len(shape) == 2 else L.GlobalAveragePooling3D)(dtype="float64")
        dense = L.Dense(3, dtype="float64")
        inp = keras.Input(shape, dtype="float64")
        model = keras.Model(inp, dense(pool(c2(c1(inp)))))
        x = np.random.default_rng(6).normal(size=(2,) + shape)
        a, g = feature_and_gradient([c1, c2, pool, dense], x, 2, model(x).numpy().argmax(1))
        ref = resize_replica(gradcam_replica(a, g), shape[:-1])
        maps = kp.create_analyzer("grad_cam", model).analyze(x)
        assert maps.shape == x.shape
        _close(maps[..., 0], ref, 1e-12)


def test_grad_cam_multi_input_gives_zeros_to_the_other_input():
    keras.utils.set_random_seed(6)
    img, vec = keras.Input((6, 6, 2)), keras.Input((3,))
    h = L.GlobalAveragePooling2D()(L.Conv2D(3, 3, activation="relu")(img))
    model = keras.Model([img, vec], L.Dense(2)(L.Concatenate()([h, L.Dense(3)(vec)])))
    rng = np.random.default_rng(7)
    maps = kp.create_analyzer("grad_cam", model).analyze([rng.normal(size=(2, 6, 6, 2)), rng.normal(size=(2, 3))])
    assert maps[0].shape == (2, 6, 6, 2) and np.abs(maps[0]).max() > 0
    np.testing.assert_array_equal(maps[1], np.zeros((2, 3)))


# ------------------------------------------------------------------------------ Grad-CAM++
@pytest.mark.parametrize("nested", [False, True])
def test_grad_cam_plus_plus_against_float64_replica(nested):
    """conv1 as the feature map: the gradient varies over positions (conv2 and its ReLU follow), so
    every term of the closed form matters."""
    model, layers = two_conv_model(nested)
    x = np.random.default_rng(8).normal(size=(3, 9, 8, 2))
    name = "backbone/conv1" if nested else "conv1"
    a, g = feature_and_gradient(layers, x, 1, model(x).numpy().argmax(1))
    assert (g > 0).any() and (g < 0).any() and len(np.unique(g)) > 20
    ref = resize_replica(gradcampp_replica(a, g), (9, 8))
    assert np.abs(ref).max() > 0
    _close(kp.create_analyzer("grad_cam++", model, layer=name).analyze(x)[..., 0], ref, 1e-12)


def test_grad_cam_plus_plus_on_a_gap_network_in_closed_form():
    """With g = W[k, c] / Z constant over positions: w_k = Z relu(g_k) / (2 + s_k g_k)."""
    model = gap_model()
    x = np.random.default_rng(9).normal(size=(2, 6, 7, 2))
    a = keras.Model(model.input, model.get_layer("features").output)(x).numpy()
    c = model(x).numpy().argmax(1)
    g = model.get_layer("head").kernel.numpy()[:, c].T / 42  # (n, K)
    s = a.sum(axis=(1, 2))
    w = 42 * np.maximum(g, 0) / (2 + s * g)
    ref = np.maximum(np.einsum("nhwk,nk->nhw", a, w), 0)
    _close(kp.create_analyzer("grad_cam++", model).analyze(x)[..., 0], ref, 1e-12)


# ------------------------------------------------------------------------------ upsampling
@pytest.mark.parametrize("src,dst", [((2, 3), (12, 8)), ((5, 4), (7, 9)), ((4, 4), (4, 4)), ((7, 6), (3, 2)),
                                     ((1, 3), (5, 5))])
def test_linear_resize_is_tf_image_resize_bilinear(src, dst):
    """float32: tf.image.resize(method="bilinear", antialias=False), TensorFlow 2's half-pixel
    centres. Both interpolate the last axis first; measured difference 0 (one rounding per lerp in
    the same order), bound here at 2 float32 ulps of the map's range."""
    x = np.random.default_rng(10).uniform(0, 1, (2,) + src).astype(np.float32)
    ours = linear_resize(tf.constant(x), list(dst)).numpy()
    ref = tf.image.resize(x[..., None], dst, method="bilinear", antialias=False).numpy()[..., 0]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("src,dst", [((3,), (10,)), ((2, 3), (12, 8)), ((2, 3, 4), (5, 7, 4)), ((6, 2, 3), (2, 5, 3))])
def test_linear_resize_against_float64_replica(src, dst):
    x = np.random.default_rng(11).normal(size=(2,) + src)
    _close(linear_resize(tf.constant(x), list(dst)).numpy(), resize_replica(x, dst), 1e-14)


# ------------------------------------------------------------------------------ refusals
def test_models_without_spatial_feature_map_are_refused():
    mlp = keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu"), L.Dense(2)])
    seq_in = keras.Input((7, 3))
    lstm = keras.Model(seq_in, L.Dense(2)(L.GlobalAveragePooling1D()(L.LSTM(4, return_sequences=True)(seq_in))))
    for model in (mlp, lstm):
        for name in ("grad_cam", "grad_cam++"):
            match = re.escape(name) + " needs a convolutional feature map"
            with pytest.raises(kp.NotAnalyzeableModelError, match=match):
                kp.create_analyzer(name, model)


def test_bad_layer_names_list_the_candidates():
    model, _ = two_conv_model(nested=True)
    with pytest.raises(ValueError, match=r"Received: layer='conv9'.*\['backbone/conv1', 'backbone/conv2'\]"):
        kp.create_analyzer("grad_cam", model, layer="conv9")
    with pytest.raises(ValueError, match=r"spatial feature map.*Received: layer='head' \(Dense"):
        kp.create_analyzer("grad_cam", model, layer="head")
    with pytest.raises(TypeError, match="applies no canonizers"):
        kp.create_analyzer("grad_cam", model, canonizers=["fold_batchnorm"])


def test_capabilities():
    for name in ("grad_cam", "grad_cam++"):
        assert kp.registry.capabilities(name) == {
            "output_kind": "attribution", "multiplies_by_input": False, "conserves_relevance": False,
            "needs_fitting": False}

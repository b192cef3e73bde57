"""Occlusion against a NumPy loop replica on linear models (exact in float64), batching, refusals."""

import itertools
import math

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_patterns as kp


def linear_model(shape, n_out=3, dtype="float64", seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape, dtype=dtype)
    dense = L.Dense(n_out, bias_initializer="random_normal", dtype=dtype)
    return keras.Model(inp, dense(L.Flatten(dtype=dtype)(inp))), dense


def occlusion_replica(x, w, value, size, stride):
    """The map of a linear model S = w . x + b, patch by patch in float64 loops: a patch starting at
    every multiple of the stride (cut at the border) has the drop sum_{i in patch} w_i (x_i - value)
    over its positions and channels; a position gets the mean drop of the patches covering it.

    Args:
        x: one sample (*spatial, C); w: the selected output's weights, shaped like x.
    """
    spatial = x.shape[:-1]
    total = np.zeros(spatial)
    count = np.zeros(spatial)
    for corner in itertools.product(*[range(0, n, st) for n, st in zip(spatial, stride)]):
        window = tuple(slice(c, min(c + s, n)) for c, s, n in zip(corner, size, spatial))
        drop = float(np.sum(w[window] * (x[window] - value)))
        total[window] += drop
        count[window] += 1
    out = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return np.repeat(out[..., None], x.shape[-1], axis=-1)


CASES = [  # input shape, patch_size, patch_stride
    ((9, 2), 3, 2),
    ((5, 6, 2), (2, 3), None),
    ((5, 6, 2), 2, 3),  # stride > size: uncovered positions get 0
    ((4, 3, 5, 1), (2, 2, 3), (1, 2, 2)),
]


@pytest.mark.parametrize("shape,size,stride", CASES)
@pytest.mark.parametrize("mode", ["max_activation", "index", "all"])
def test_occlusion_equals_loop_replica_on_linear_model(shape, size, stride, mode):
    """float64 model: the only rounding is float64's (measured: 1.0e-15 of the max; bound 1e-12)."""
    model, dense = linear_model(shape)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4,) + shape)
    value = 0.5
    kernel = dense.kernel.numpy()
    y = model(x).numpy()
    columns, selection = y.argmax(1), None
    if mode == "index":
        columns = selection = np.array([2, 0, 1, 2])
    analyzer = kp.create_analyzer("occlusion", model, patch_size=size, patch_stride=stride,
                                  occlusion_value=value, neuron_selection_mode=mode, batch_size=7)
    maps = analyzer.analyze(x, neuron_selection=selection)
    assert maps.shape == x.shape and maps.dtype == np.float64
    for i in range(len(x)):
        w = kernel.sum(1) if mode == "all" else kernel[:, columns[i]]
        ref = occlusion_replica(x[i], w.reshape(shape), value, np.broadcast_to(size, len(shape) - 1),
                                np.broadcast_to(size if stride is None else stride, len(shape) - 1))
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(maps[i], ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_occlusion_float32_model_matches_replica():
    """float32 model: the drop is a difference of two float32 outputs (|S| <= 1.6 here), so its error
    is a few ulps of |S|; measured 9.7e-7 of the map's max, bound 1e-5 of the max."""
    model, dense = linear_model((6, 6, 3), dtype="float32")
    x = np.random.default_rng(2).normal(size=(3, 6, 6, 3)).astype(np.float32)
    maps = kp.create_analyzer("occlusion", model, patch_size=2).analyze(x)
    assert maps.dtype == np.float32
    kernel = dense.kernel.numpy().astype(np.float64)
    c = model(x).numpy().argmax(1)
    for i in range(3):
        ref = occlusion_replica(x[i].astype(np.float64), kernel[:, c[i]].reshape(6, 6, 3), 0.0, (2, 2), (2, 2))
        np.testing.assert_allclose(maps[i], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("batch_size", [1, 5, 13, 64, 1000])
def test_occlusion_streams_rows_in_few_calls(batch_size):
    """n samples, P patches: ceil(n (P + 1) / batch_size) model calls of at most batch_size rows;
    the maps do not depend on batch_size nor on the other samples (float64: bitwise)."""
    model, _ = linear_model((5, 6, 2))
    x = np.random.default_rng(3).normal(size=(3, 5, 6, 2))
    analyzer = kp.create_analyzer("occlusion", model, patch_size=2)  # 3 x 3 = 9 patches
    reference = analyzer.analyze(x, batch_size=10_000)
    compiled = analyzer._compiled
    rows = []

    def counting(batch):
        rows.append(len(batch))
        return compiled(batch)

    analyzer._compiled = counting
    maps = analyzer.analyze(x, batch_size=batch_size)
    assert sum(rows) == 3 * 10 and max(rows) <= batch_size
    assert len(rows) == math.ceil(30 / batch_size)
    np.testing.assert_allclose(maps, reference, rtol=0, atol=1e-13 * np.abs(reference).max())
    analyzer._compiled = compiled
    singles = np.concatenate([analyzer.analyze(x[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(singles, reference, rtol=0, atol=1e-13 * np.abs(reference).max())
    np.testing.assert_array_equal(analyzer.analyze(x), analyzer.analyze(x))
    assert compiled.experimental_get_tracing_count() == 1


def test_occlusion_on_a_conv_net_is_the_output_drop():
    """A non-linear model: with non-overlapping patches, the map of a patch's positions is S(x) minus
    S of the occluded input (checked against the model itself)."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((6, 6, 2))
    h = L.GlobalMaxPooling2D()(L.Conv2D(4, 3, activation="relu")(inp))
    model = keras.Model(inp, L.Dense(3)(h))
    x = np.random.default_rng(5).normal(size=(2, 6, 6, 2)).astype(np.float32)
    maps = kp.create_analyzer("occlusion", model, patch_size=3, occlusion_value=-1.0).analyze(x)
    y = model(x).numpy()
    c = y.argmax(1)
    for i, j in itertools.product(range(2), range(2)):
        occluded = x.copy()
        occluded[:, 3 * i:3 * i + 3, 3 * j:3 * j + 3, :] = -1.0
        drop = y[np.arange(2), c] - model(occluded).numpy()[np.arange(2), c]
        patch = maps[:, 3 * i:3 * i + 3, 3 * j:3 * j + 3, :]
        np.testing.assert_allclose(patch, np.broadcast_to(drop[:, None, None, None], patch.shape),
                                   rtol=0, atol=1e-5 * np.abs(y).max())


def test_occlusion_refusals():
    mlp = keras.Sequential([keras.Input((6,)), L.Dense(2)])
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"needs a float input shaped .*Received: model"):
        kp.create_analyzer("occlusion", mlp)
    tokens = keras.Input((5,), dtype="int32")
    text = keras.Model(tokens, L.Dense(2)(L.Flatten()(L.Embedding(10, 3)(tokens))))
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"needs a float input"):
        kp.create_analyzer("occlusion", text)
    free = keras.Input((None, None, 3))
    variable = keras.Model(free, L.Dense(2)(L.GlobalAveragePooling2D()(free)))
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"axes of fixed size"):
        kp.create_analyzer("occlusion", variable)
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    two = keras.Model([a, b], L.Dense(2)(L.Flatten()(L.Add()([a, b]))))
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"occludes patches of one input"):
        kp.create_analyzer("occlusion", two)


@pytest.mark.parametrize("kwargs,match", [
    ({"patch_size": 0}, r"`patch_size` must be a positive int or 2 positive ints.*Received: patch_size=0"),
    ({"patch_size": (2, 2, 2)}, r"Received: patch_size=\(2, 2, 2\)"),
    ({"patch_size": True}, r"Received: patch_size=True"),
    ({"patch_size": 2.0}, r"Received: patch_size=2.0"),
    ({"patch_size": (6, 2)}, r"at most the input's spatial size \(5, 6\).*Received: patch_size=\(6, 2\)"),
    ({"patch_stride": "2"}, r"`patch_stride` must be.*Received: patch_stride='2'"),
    ({"occlusion_value": float("nan")}, r"occlusion_value"),
])
def test_occlusion_argument_errors(kwargs, match):
    model, _ = linear_model((5, 6, 2))
    with pytest.raises(ValueError, match=match):
        kp.create_analyzer("occlusion", model, **kwargs)


def test_occlusion_config_round_trip(tmp_path):
    model, _ = linear_model((5, 6, 2))
    analyzer = kp.create_analyzer("occlusion", model, patch_size=(2, 3), patch_stride=1, occlusion_value=0.25)
    config = analyzer.get_config()
    assert (config["patch_size"], config["patch_stride"], config["occlusion_value"]) == ([2, 3], [1, 1], 0.25)
    x = np.random.default_rng(6).normal(size=(2, 5, 6, 2))
    path = str(tmp_path / "occlusion.kpa")
    analyzer.save(path)
    np.testing.assert_array_equal(kp.load_analyzer(path).analyze(x), analyzer.analyze(x))
    assert kp.registry.capabilities("occlusion")["output_kind"] == "attribution"


@pytest.mark.parametrize("name", ["grad_cam", "grad_cam++", "occlusion"])
def test_failed_calls_say_why_and_leave_the_model_unchanged(name):
    """What tests/test_state.py checks on its MLP, on a CNN these analyzers accept."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((5, 6, 2))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(3, 2, activation="relu")(inp))))
    weights = [w.copy() for w in model.get_weights()]
    analyzer = kp.create_analyzer(name, model)
    x = np.random.default_rng(8).normal(size=(2, 5, 6, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="must have shape"):
        analyzer.analyze(np.zeros((2, 5, 7, 2), "float32"))
    nan = x.copy()
    nan[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        analyzer.analyze(nan)
    with pytest.raises(ValueError, match="neuron_selection"):
        analyzer.analyze(x, neuron_selection=1)
    indexed = kp.create_analyzer(name, model, neuron_selection_mode="index")
    with pytest.raises(ValueError, match=r"must be in \[0, 3\)"):
        indexed.analyze(x, neuron_selection=3)
    np.testing.assert_array_equal(indexed.analyze(x, [0, 2])[1], indexed.analyze(x[1:], 2)[0])
    for w0, w1 in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)

"""Fitting API: data kinds, batching invariance, determinism, dead units, errors."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp

L = keras.layers


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.Dropout(0.5)(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(5, 3, activation="relu")(h)
    h = L.Flatten()(h)
    model = keras.Model(inp, L.Dense(3)(h))
    x = np.random.default_rng(0).normal(0, 1, (40, 8, 8, 2)).astype("float32")
    return model, x


def _same(p, q, rtol=1e-5):
    assert sorted(p) == sorted(q)
    for k in p:
        scale = np.abs(q[k]).max() + 1e-12
        np.testing.assert_allclose(p[k], q[k], rtol=0, atol=rtol * scale, err_msg=k)


def test_several_batches_equal_one_batch(cnn):
    model, x = cnn
    one = kp.PatternComputer(model, "relu").compute(x, batch_size=len(x), verbose=0)
    many = kp.PatternComputer(model, "relu").compute(x, batch_size=7, verbose=0)
    _same(many, one)


def test_fitting_twice_gives_the_same_patterns_and_dropout_is_off(cnn):
    model, x = cnn
    a = kp.create_analyzer("pattern.net", model)
    a.fit(x, batch_size=8, verbose=0)
    first = a.patterns
    a.fit(x, batch_size=8, verbose=0)
    for k in first:
        np.testing.assert_array_equal(first[k], a.patterns[k])
    # inference mode: the same model without Dropout gives the same patterns
    no_drop = keras.Model(model.inputs, model.outputs)
    assert kp.create_analyzer("pattern.net", no_drop).fit(x, batch_size=8, verbose=0).patterns.keys() == first.keys()
    for k, v in first.items():
        assert v.shape == tuple(model.get_layer(k).kernel.shape)


def test_list_of_types_and_aliases(cnn):
    model, x = cnn
    both = kp.PatternComputer(model, ["relu.positive", "linear"]).compute(x, verbose=0)
    assert sorted(both) == ["linear", "relu.positive"]
    _same(both["relu.positive"], kp.PatternComputer(model, "relu").compute(x, verbose=0), 1e-6)


def _gen(x, bs, with_y=0):
    for i in range(0, len(x), bs):
        b = x[i:i + bs]
        yield (b,) + (np.zeros(len(b)),) * with_y if with_y else b


class _Seq(keras.utils.PyDataset):
    def __init__(self, x, bs):
        super().__init__()
        self.x, self.bs = x, bs

    def __len__(self):
        return int(np.ceil(len(self.x) / self.bs))

    def __getitem__(self, i):
        b = self.x[i * self.bs:(i + 1) * self.bs]
        return b, np.zeros(len(b))


def test_every_data_kind_gives_the_same_patterns(cnn):
    model, x = cnn
    ref = kp.PatternComputer(model, "relu").compute(x, batch_size=10, verbose=0)
    kinds = {
        "dataset": tf.data.Dataset.from_tensor_slices(x).batch(10),
        "dataset_xy": tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(10),
        "dataset_xyw": tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)), np.ones(len(x)))).batch(10),
        "pydataset": _Seq(x, 10),
        "generator": _gen(x, 10),
        "generator_xy": _gen(x, 10, with_y=1),
        "generator_xyw": _gen(x, 10, with_y=2),
    }
    for name, data in kinds.items():
        got = kp.PatternComputer(model, "relu").compute(data, verbose=0)
        _same(got, ref, 1e-6)


def test_steps_bound_an_endless_generator(cnn):
    model, x = cnn

    def endless():
        while True:
            yield x[:10]

    got = kp.PatternComputer(model, "relu").compute(endless(), steps=3, verbose=0)
    ref = kp.PatternComputer(model, "relu").compute(x[:10], verbose=0)
    _same(got, ref, 1e-5)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(10).repeat()
    _same(kp.PatternComputer(model, "relu").compute(ds, steps=4, verbose=0),
          kp.PatternComputer(model, "relu").compute(x, batch_size=10, verbose=0), 1e-6)
    with pytest.raises(ValueError, match="infinite.*steps"):
        kp.PatternComputer(model, "relu").compute(ds, verbose=0)


def test_short_generator_warns_and_empty_data_raises(cnn):
    model, x = cnn
    with pytest.warns(UserWarning, match="ran out after 2 batch.*steps=5"):
        kp.PatternComputer(model, "relu").compute(_gen(x[:20], 10), steps=5, verbose=0)
    with pytest.raises(ValueError, match="no batches"):
        kp.PatternComputer(model, "relu").compute(iter([]), verbose=0)
    with pytest.raises(ValueError, match="no batches"):
        kp.PatternComputer(model, "relu").compute(tf.data.Dataset.from_tensor_slices(x[:0]).batch(4), verbose=0)
    with pytest.raises(ValueError, match="no batches|no samples"):
        kp.PatternComputer(model, "relu").compute(x[:0], verbose=0)


def test_argument_errors(cnn):
    model, x = cnn
    with pytest.raises(ValueError, match="pattern_type.*Received: pattern_type='relu.pos'"):
        kp.PatternComputer(model, "relu.pos")
    with pytest.raises(ValueError, match="one pattern type"):
        kp.create_analyzer("pattern.net", model, pattern_type=["relu", "linear"])
    with pytest.raises(ValueError, match="batch_size"):
        kp.PatternComputer(model).compute(x, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="steps"):
        kp.PatternComputer(model).compute(x, steps=-1, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        kp.PatternComputer(model).compute(x, verbose=3)
    with pytest.raises(TypeError, match="Received: str"):
        kp.PatternComputer(model).compute("data.npy", verbose=0)
    with pytest.raises(ValueError, match=r"shape \('batch', 8, 8, 2\).*unbatched"):
        kp.PatternComputer(model).compute(tf.data.Dataset.from_tensor_slices(x), verbose=0)


def test_analyze_before_fit_says_to_call_fit(cnn):
    model, x = cnn
    a = kp.create_analyzer("pattern.attribution", model)
    assert a.needs_fitting and a.patterns is None
    with pytest.raises(kp.NotFittedError, match=r"call analyzer.fit\(data\)"):
        a.analyze(x[:2])


def test_patterns_passed_in_are_validated(cnn):
    model, x = cnn
    pats = kp.PatternComputer(model, "relu").compute(x, verbose=0)
    a = kp.create_analyzer("pattern.net", model, patterns=pats)
    b = kp.create_analyzer("pattern.net", model, patterns=list(pats.values()))  # iNNvestigate's list
    np.testing.assert_array_equal(a.analyze(x[:3]), b.analyze(x[:3]))
    bad = dict(pats)
    key = next(iter(bad))
    bad[key] = bad[key][..., :1]
    with pytest.raises(ValueError, match=f"pattern of layer '{key}' must be shaped like its kernel"):
        kp.create_analyzer("pattern.net", model, patterns=bad)
    missing = dict(pats)
    missing.pop(key)
    with pytest.raises(ValueError, match=f"missing \\['{key}'\\]"):
        kp.create_analyzer("pattern.net", model, patterns=missing)
    nan = dict(pats)
    nan[key] = np.full_like(pats[key], np.nan)
    with pytest.raises(ValueError, match="NaN"):
        kp.create_analyzer("pattern.net", model, patterns=nan)


def test_dead_units_get_zero_patterns_and_maps_stay_finite():
    inp = keras.Input((5,))
    d1 = L.Dense(4, activation="relu")
    d2 = L.Dense(3)
    model = keras.Model(inp, d2(d1(inp)))
    w, b = d1.get_weights()
    b[:2] = -1000.0  # units 0 and 1 never fire
    d1.set_weights([w, b])
    x = np.random.default_rng(0).normal(0, 1, (64, 5)).astype("float32")
    pats = kp.PatternComputer(model, "relu").compute(x, verbose=0)
    assert np.all(pats[d1.name][:, :2] == 0)
    assert np.all(np.isfinite(pats[d2.name]))
    for name in ("pattern.net", "pattern.attribution"):
        m = kp.create_analyzer(name, model, patterns=pats).analyze(x)
        assert np.all(np.isfinite(m))


def test_verbose_prints_a_progress_bar(cnn, capsys):
    model, x = cnn
    kp.create_analyzer("pattern.net", model).fit(x, batch_size=10, verbose=1)
    out = capsys.readouterr().out
    assert "4/4" in out and "samples" in out
    kp.create_analyzer("pattern.net", model).fit(x, batch_size=10, verbose=0)
    assert capsys.readouterr().out == ""


def test_fit_returns_the_analyzer_and_warnings_are_quiet(cnn):
    model, x = cnn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = kp.create_analyzer("pattern.net", model)
        assert a.fit(x, verbose=0) is a

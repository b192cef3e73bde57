"""AnalysisCallback: maps equal fresh analyzers' at every logged step, files, schedule, errors."""

import glob
import os

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import keras_patterns as kp
from keras_patterns import visualization as vis
from keras_patterns.datasets import make_shapes

import builders

SIZE = 12


def _model(softmax=True):
    model = builders.small_cnn((SIZE, SIZE, 1), 4, 3, head="softmax" if softmax else None, seed=0)
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    return model


@pytest.fixture(scope="module")
def data():
    x, y, _ = make_shapes(96, size=SIZE, seed=0)
    return x, y


METHODS = ["gradient", ("lrp.epsilon", {"epsilon": 0.1}), "pattern.attribution"]


def test_maps_equal_fresh_analyzers_at_every_epoch(data, tmp_path):
    x, y = data
    model = _model()
    seen = []

    def check(epoch, maps):
        logits = kp.model_wo_softmax(model)
        assert set(maps) == {"gradient", "lrp.epsilon", "pattern.attribution"}
        for name, kwargs in [("gradient", {}), ("lrp.epsilon", {"epsilon": 0.1}),
                             ("pattern.attribution", {})]:
            fresh = kp.create_analyzer(name, logits, **kwargs)
            if fresh.needs_fitting:
                fresh.fit(x[:64], batch_size=32, verbose=0)
            expected = fresh.analyze(x[:4])
            np.testing.assert_allclose(maps[name], expected, rtol=1e-5,
                                       atol=1e-6 * np.abs(expected).max())
        seen.append((epoch, {k: v.copy() for k, v in maps.items()}))

    cb = kp.callbacks.AnalysisCallback(METHODS, x[:4], fit_data=x[:64], on_maps=check,
                                       log_dir=tmp_path, y=y[:4], max_samples=4)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, validation_data=(x[:16], y[:16]),
              callbacks=[cb])
    assert [e for e, _ in seen] == [0, 1, 2]  # at_train_end adds nothing: weights already seen
    assert not np.allclose(seen[0][1]["gradient"], seen[2][1]["gradient"])  # the model did train
    for analyzer in cb.analyzers.values():  # built once, traced once
        assert analyzer._compiled.experimental_get_tracing_count() == 1
    stats = cb.analyzers["pattern.attribution"]._computer.statistics
    assert stats._update_finite.experimental_get_tracing_count() == 1
    assert [t["tag"] for t in cb.timings] == ["epoch_001", "epoch_002", "epoch_003"]

    folder = tmp_path / "analysis"
    for k in (1, 2, 3):
        with np.load(folder / f"epoch_{k:03d}.npz") as npz:
            assert sorted(npz.files) == ["gradient", "lrp.epsilon", "pattern.attribution"]
            np.testing.assert_array_equal(npz["gradient"], seen[k - 1][1]["gradient"])
        png = matplotlib.image.imread(folder / f"epoch_{k:03d}.png")
        # 4 columns of 1.6 in + the row labels' margin (widest label: "pattern.attribution") + 0.05
        # in; 4 rows (input + 3 methods) + 3 title lines + suptitle.
        margin = vis._row_label_inches(["pattern.attribution"])
        expected = (100 * (4 * 1.6 + 0.15 * 3 + 0.35 + 0.05), 100 * (4 * 1.6 + margin + 0.05))
        assert np.abs(np.array(png.shape[:2]) - expected).max() <= 1

    (events,) = glob.glob(str(folder / "events.out.tfevents.*"))
    found = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            assert value.metadata.plugin_data.plugin_name == "images"
            found.setdefault(value.tag, []).append(event.step)
            width, height, *pngs = value.tensor.string_val
            assert (int(width), int(height), len(pngs)) == (SIZE, SIZE, 4)
            assert tf.io.decode_png(pngs[0]).shape == (SIZE, SIZE, 3)
    assert found == {f"analysis/{m}": [0, 1, 2] for m in ("gradient", "lrp.epsilon", "pattern.attribution")}


def test_tf_data_batches_factory_and_neuron_selection(data, tmp_path):
    x, y = data
    model = _model(softmax=False)
    calls = []
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

    def factory(m):
        return kp.create_analyzer("pattern.net", m, neuron_selection_mode="index")

    cb = kp.callbacks.AnalysisCallback(
        ["gradient", factory], x[:3], fit_data=ds, fit_steps=2, neuron_selection=[0, 1, 2],
        every_n_epochs=None, every_n_batches=4, log_dir=tmp_path,
        on_maps=lambda epoch, maps: calls.append((epoch, sorted(maps))),
    )
    assert not os.path.exists(tmp_path / "analysis")  # nothing happens before training
    model.fit(ds, epochs=2, verbose=0, callbacks=[cb])  # 3 batches per epoch: logs at 4 and end
    assert calls == [(1, ["gradient", "pattern.net"])] * 2
    assert cb.analyzers["gradient"].neuron_selection_mode == "index"
    assert cb._explained is model  # no softmax: the model itself is explained
    files = sorted(os.listdir(tmp_path / "analysis"))
    assert [f for f in files if not f.startswith("events")] == [
        "batch_000004.npz", "batch_000004.png", "train_end.npz", "train_end.png"]
    fresh = kp.create_analyzer("gradient", model, neuron_selection_mode="index")
    with np.load(tmp_path / "analysis" / "train_end.npz") as npz:
        np.testing.assert_allclose(npz["gradient"], fresh.analyze(x[:3], neuron_selection=[0, 1, 2]),
                                   rtol=1e-5, atol=1e-7)


def test_summary_failure_warns_once_and_files_are_still_written(data, tmp_path, monkeypatch):
    x, y = data

    def broken(*args, **kwargs):
        raise ImportError("no summary writer")

    monkeypatch.setattr(kp.callbacks, "_image_summary", broken)
    cb = kp.callbacks.AnalysisCallback("gradient", x[:2], log_dir=tmp_path, formats=("png", "tensorboard"))
    with pytest.warns(UserWarning, match="could not write TensorBoard image summaries") as record:
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert sum("TensorBoard" in str(w.message) for w in record) == 1
    assert sorted(f for f in os.listdir(tmp_path / "analysis") if f.endswith(".png")) == [
        "epoch_001.png", "epoch_002.png"]


def test_wrong_x_shape_raises_the_analyzers_error_at_the_first_logged_step(data):
    x, y = data
    cb = kp.callbacks.AnalysisCallback("gradient", np.zeros((2, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"must have shape \('batch', 12, 12, 1\)"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[cb])


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": "nope"}, "Unknown analyzer name 'nope'.*Received: methods='nope'"),
    ({"methods": []}, "`methods` must be .*Received: methods=\\[\\]"),
    ({"methods": [3]}, "Received: 3 in methods=\\[3\\]"),
    ({"methods": [("gradient", 1)]}, "Received: \\('gradient', 1\\)"),
    ({"every_n_epochs": 0}, "every_n_epochs.*Received: every_n_epochs=0"),
    ({"every_n_epochs": 1.5}, "Received: every_n_epochs=1.5"),
    ({"every_n_batches": True}, "Received: every_n_batches=True"),
    ({"every_n_epochs": None, "at_train_end": False}, "Nothing would be logged"),
    ({"at_train_end": "yes"}, "Received: at_train_end='yes'"),
    ({"max_samples": 0}, "Received: max_samples=0"),
    ({"methods": "pattern.net"}, "need `fit_data`.*Received: fit_data=None"),
    ({"methods": "pattern.net", "fit_data": iter([np.zeros((1, 12, 12, 1))])},
     "generator.*Received: a generator and fit_steps=None"),
    ({"formats": ("png", "gif")}, "subset of .*Received: formats=\\('png', 'gif'\\)"),
    ({"neuron_selection": 1.5}, "Received: neuron_selection=1.5"),
    ({"x": np.zeros((0, 12, 12, 1))}, "non-empty batch. Received: shape \\(0, 12, 12, 1\\)"),
    ({"on_maps": 3}, "`on_maps` must be callable"),
])
def test_argument_errors(kwargs, match):
    args = {"methods": "gradient", "x": np.zeros((2, 12, 12, 1)), **kwargs}
    with pytest.raises(ValueError, match=match):
        kp.callbacks.AnalysisCallback(**args)


def test_pattern_methods_of_one_type_are_fitted_once_per_round(data, monkeypatch):
    """pattern.net and pattern.attribution (same pattern_type) share one fit per logged step; a
    different pattern_type is fitted on its own. The maps equal separately fitted analyzers."""
    x, y = data
    model = _model()
    fits = []
    compute = kp.PatternComputer.compute

    def counting(self, *args, **kwargs):
        fits.append(self.pattern_type)
        return compute(self, *args, **kwargs)

    monkeypatch.setattr(kp.PatternComputer, "compute", counting)
    got = []
    methods = ["pattern.net", "pattern.attribution", ("pattern.attribution", {"pattern_type": "linear"})]
    cb = kp.callbacks.AnalysisCallback(methods, x[:4], fit_data=x[:64], max_samples=4,
                                       on_maps=lambda epoch, maps: got.append(maps))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert len(got) == 2 and len(fits) == 4  # two fits per round: "relu" once, "linear" once
    logits = kp.model_wo_softmax(model)
    for label, (name, kwargs) in zip(["pattern.net", "pattern.attribution", "pattern.attribution_2"],
                                     [("pattern.net", {}), ("pattern.attribution", {}),
                                      ("pattern.attribution", {"pattern_type": "linear"})]):
        expected = kp.create_analyzer(name, logits, **kwargs).fit(x[:64], verbose=0).analyze(x[:4])
        np.testing.assert_allclose(got[-1][label], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())

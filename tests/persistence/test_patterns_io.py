"""Saving and loading pattern analyzers."""

import json
import zipfile

import keras
import numpy as np
import pytest

import keras_patterns as kp
import zoo

L = keras.layers


@pytest.mark.parametrize("name", ["pattern.net", "pattern.attribution"])
def test_save_load_round_trip(name, tmp_path):
    model = zoo.build("residual")
    x = zoo.inputs_for(model, n=3, seed=1)
    a = kp.create_analyzer(name, model, project_bottleneck=True)
    a.fit(zoo.inputs_for(model, n=16, seed=2), batch_size=8, verbose=0)
    maps = a.analyze(x)
    path = str(tmp_path / "a.kpa")
    a.save(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        assert config["config"]["pattern_type"] == "relu" and config["config"]["project_bottleneck"]
        with zf.open("state.npz") as f:
            npz = np.load(f, allow_pickle=False)
            assert sorted(npz.files) == sorted(a.patterns)
    loaded = kp.load_analyzer(path)
    np.testing.assert_array_equal(loaded.analyze(x), maps)
    for k, v in a.patterns.items():
        np.testing.assert_array_equal(loaded.patterns[k], v)
    reused = kp.load_analyzer(path, model=model)
    assert reused.model is model
    np.testing.assert_array_equal(reused.analyze(x), maps)


def test_load_refuses_a_mismatching_model(tmp_path):
    model = zoo.build("dense_mlp")
    a = kp.create_analyzer("pattern.net", model).fit(zoo.inputs_for(model, n=8), verbose=0)
    path = str(tmp_path / "a.kpa")
    a.save(path)
    other = keras.Sequential([keras.Input((10,)), L.Dense(16, activation="relu", name=model.layers[0].name),
                              L.Dense(11, activation="relu", name=model.layers[2].name),
                              L.Dense(4, name=model.layers[3].name)])
    with pytest.raises(ValueError, match=f"{model.layers[2].name}.*weight shapes"):
        kp.load_analyzer(path, model=other)
    renamed = keras.Sequential([keras.Input((10,)), L.Dense(16, activation="relu", name="first"),
                                L.Dropout(0.5), L.Dense(12, activation="relu"), L.Dense(4)])
    with pytest.raises(ValueError, match="expected '" + model.layers[0].name + "'.*Received: 'first'"):
        kp.load_analyzer(path, model=renamed)


def test_unfitted_analyzer_round_trips_unfitted(tmp_path):
    model = zoo.build("dense_mlp")
    path = str(tmp_path / "a.kpa")
    kp.create_analyzer("pattern.net", model).save(path)
    loaded = kp.load_analyzer(path)
    with pytest.raises(kp.NotFittedError):
        loaded.analyze(zoo.inputs_for(model, n=2))

"""Saving and loading analyzers without pickle.

An analyzer file is a zip archive with ``config.json`` (analyzer name, constructor arguments, a
manifest of the model's kernel layers), ``state.npz`` (fitted arrays such as patterns, read with
``allow_pickle=False``) and ``model.keras`` (loaded with ``safe_mode=True``).
"""

import json
import os
import tempfile
import zipfile

import keras
import numpy as np

FORMAT_VERSION = 1


def _model_manifest(model):
    out = []
    for layer in _all_layers(model):
        shapes = [list(w.shape) for w in layer.weights]
        out.append({"name": layer.name, "class": type(layer).__name__, "weights": shapes})
    return out


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def save_analyzer(analyzer, path):
    """Writes ``analyzer`` to ``path`` (one file).

    Args:
        analyzer: an analyzer from :func:`keras_patterns.create_analyzer`.
        path: file path; the conventional suffix is ``.kpa``.
    """
    config = {
        "format": FORMAT_VERSION,
        "analyzer": analyzer.name,
        "config": analyzer.get_config(),
        "model": _model_manifest(analyzer.model),
    }
    state = analyzer._state_arrays()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        analyzer.model.save(model_path)
        state_path = os.path.join(tmp, "state.npz")
        np.savez(state_path, **{k: np.asarray(v) for k, v in state.items()})
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("config.json", json.dumps(config, indent=1, sort_keys=True))
            zf.write(state_path, "state.npz")
            zf.write(model_path, "model.keras")


def load_analyzer(path, model=None):
    """Restores an analyzer written by ``analyzer.save(path)``.

    Args:
        path: the file.
        model: a model to use instead of the saved one. Its layer names and weight shapes must
            match the saved model's. Defaults to `None` (load the saved model, in safe mode).

    Returns:
        The analyzer, giving the same maps as the saved one.

    Raises:
        ValueError: not an analyzer file, or ``model`` does not match (the first mismatch is named).
    """
    from keras_patterns.analyzers.registry import create_analyzer

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, IsADirectoryError) as e:
        raise ValueError(f"{path!r} is not a keras_patterns analyzer file: {e}") from None
    with zf, tempfile.TemporaryDirectory() as tmp:
        names = set(zf.namelist())
        if not {"config.json", "state.npz", "model.keras"} <= names:
            raise ValueError(
                f"{path!r} is not a keras_patterns analyzer file: expected config.json, state.npz "
                f"and model.keras, found {sorted(names)}"
            )
        config = json.loads(zf.read("config.json"))
        if config.get("format") != FORMAT_VERSION:
            raise ValueError(f"Unsupported analyzer file format {config.get('format')!r} in {path!r}")
        if model is None:
            zf.extract("model.keras", tmp)
            model = keras.models.load_model(os.path.join(tmp, "model.keras"), safe_mode=True, compile=False)
        else:
            _check_model(config["model"], model)
        zf.extract("state.npz", tmp)
        with np.load(os.path.join(tmp, "state.npz"), allow_pickle=False) as npz:
            state = {k: npz[k] for k in npz.files}
    analyzer = create_analyzer(config["analyzer"], model, **config["config"])
    if state:
        analyzer._load_state_arrays(state)
    return analyzer


def _check_model(saved, model):
    current = _model_manifest(model)
    saved_k = [m for m in saved if m["weights"]]
    current_k = [m for m in current if m["weights"]]
    for i, (a, b) in enumerate(zip(saved_k, current_k)):
        if a["name"] != b["name"] or a["weights"] != b["weights"]:
            raise ValueError(
                f"The given model does not match the saved one at weighted layer {i}: expected "
                f"{a['name']!r} ({a['class']}) with weight shapes {a['weights']}. Received: "
                f"{b['name']!r} ({b['class']}) with weight shapes {b['weights']}"
            )
    if len(saved_k) != len(current_k):
        raise ValueError(
            f"The given model does not match the saved one: expected {len(saved_k)} layers with "
            f"weights. Received: {len(current_k)}"
        )

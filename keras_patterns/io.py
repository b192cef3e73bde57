"""Saving and loading analyzers without pickle.

An analyzer file is a zip archive with exactly three members: ``config.json`` (format version,
analyzer name, constructor arguments, a manifest of the model's layers), ``state.npz`` (fitted
arrays such as patterns) and ``model.keras`` (the Keras model).

:func:`load_analyzer` treats the file as untrusted data. It never unpickles and never runs code
from the file unless asked to:

* Member names are checked before anything is read: absolute paths, ``..`` components, duplicates,
  extra and missing members are refused. Nothing is extracted under the archive's names: members
  are copied to fixed names in a temporary directory, which is removed afterwards.
* Sizes are checked before decompression (each member's declared size against
  :data:`MAX_CONFIG_BYTES`, :data:`MAX_STATE_BYTES` and :data:`MAX_MODEL_BYTES`, their sum against
  :data:`MAX_TOTAL_BYTES`, the compression ratio against :data:`MAX_COMPRESSION_RATIO`) and while
  decompressing (a member that yields more than its limit, or another size than it declares, is
  refused). The zips nested inside (``state.npz``, ``model.keras``) are checked the same way.
* ``state.npz`` is read with ``allow_pickle=False``; object arrays and other non-numeric arrays are
  refused, and so are array headers that promise more data than the member holds.
* ``model.keras`` is loaded in Keras safe mode, which refuses ``Lambda`` layers holding Python
  code. Pass ``safe_mode=False`` to :func:`load_analyzer` only for files you trust.
* A newer format version, damaged zip data (a truncated file, a CRC error), invalid JSON and a
  ``config.json`` of the wrong structure are reported as :class:`~keras_patterns.AnalyzerFileError`.

The limits are module constants. To load a larger file you trust, raise them first:

```python
import keras_patterns.io
keras_patterns.io.MAX_STATE_BYTES = 16 * 2**30
```
"""

import collections
import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
import zlib

import keras
import numpy as np

from keras_patterns.errors import AnalyzerFileError, KerasPatternsError

FORMAT_VERSION = 1

MAX_CONFIG_BYTES = 1 << 20
"""Largest accepted ``config.json``, uncompressed: 1 MiB."""

MAX_STATE_BYTES = 4 << 30
"""Largest accepted ``state.npz`` (fitted arrays), uncompressed: 4 GiB."""

MAX_MODEL_BYTES = 4 << 30
"""Largest accepted ``model.keras``, uncompressed: 4 GiB."""

MAX_TOTAL_BYTES = 8 << 30
"""Largest accepted sum of the members' uncompressed sizes: 8 GiB."""

MAX_COMPRESSION_RATIO = 200
"""Largest accepted ratio uncompressed / compressed size of a member over 1 MiB."""

_MEMBERS = ("config.json", "state.npz", "model.keras")
_LIMITS = {
    "config.json": "MAX_CONFIG_BYTES", "state.npz": "MAX_STATE_BYTES", "model.keras": "MAX_MODEL_BYTES",
}
_CONFIG_KEYS = ("analyzer", "config", "format", "model")
_MANIFEST_KEYS = ("class", "name", "weights")
_RATIO_MIN_BYTES = 1 << 20
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_CHUNK_BYTES = 1 << 20
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


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
    state = analyzer.get_state()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        analyzer.model.save(model_path)
        state_path = os.path.join(tmp, "state.npz")
        np.savez(state_path, **{k: np.asarray(v) for k, v in state.items()})
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("config.json", json.dumps(config, indent=1, sort_keys=True))
            zf.write(state_path, "state.npz")
            zf.write(model_path, "model.keras")


def load_analyzer(path, model=None, *, safe_mode=True):
    """Restores an analyzer written by ``analyzer.save(path)``.

    The file is treated as untrusted: nothing is unpickled, member names and sizes are checked
    before anything is decompressed, and the model is loaded in Keras safe mode (see
    :mod:`keras_patterns.io` for every check and the size limits).

    Args:
        path: the file (a string, a path-like or a binary file object).
        model: a model to use instead of the saved one. Its layer names and weight shapes must
            match the saved model's. Defaults to `None` (load the saved model).
        safe_mode: whether to load the saved model in Keras safe mode, which refuses to
            deserialize Python code such as the function of a ``keras.layers.Lambda`` layer.
            Set it to `False` only for files you trust: loading then runs code stored in the
            file. Keyword-only. Defaults to `True`.

    Returns:
        The analyzer, giving the same maps as the saved one.

    Raises:
        AnalyzerFileError: (a ``ValueError``) ``path`` is not a loadable analyzer file: not a zip,
            truncated or damaged (CRC errors), hostile member names, missing, extra or duplicate
            members, members over the size limits, an object array in ``state.npz``, invalid or
            malformed ``config.json``, an unknown analyzer name, a format version other than
            ``FORMAT_VERSION``, or a model that safe mode refuses. The message names the file,
            what it holds and what was expected.
        ValueError: ``model`` does not match the saved one (the first mismatch is named).
        TypeError: ``safe_mode`` is not a bool.
        FileNotFoundError: there is no file at ``path``.

    Example:

    ```python
    analyzer.save("analyzer.kpa")
    same = kp.load_analyzer("analyzer.kpa")
    trusted = kp.load_analyzer("with_lambda.kpa", safe_mode=False)   # runs code from the file
    ```
    """
    if not isinstance(safe_mode, bool):
        raise TypeError(f"`safe_mode` must be True or False. Received: safe_mode={safe_mode!r}")
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    with _open_archive(path) as zf, tempfile.TemporaryDirectory(prefix="keras_patterns_") as tmp:
        members = _checked_members(path, zf)
        raw_config = _read_member(path, zf, members["config.json"], _limit("config.json")[0], io.BytesIO())
        config = _parse_config(path, raw_config.getvalue())
        state = _read_state(path, zf, members["state.npz"], tmp)
        if model is None:
            model = _read_model(path, zf, members["model.keras"], tmp, safe_mode)
        else:
            _check_model(config["model"], model)
    return _build_analyzer(path, config, model, state)


# ------------------------------------------------------------------------------------ errors
def _file_error(path, problem, expected, received):
    return AnalyzerFileError(
        f"Cannot load the analyzer file {path!r}: {problem}. Expected: {expected}. Received: {received}",
        path=path,
    )


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _describe(error):
    name = type(error).__name__
    return f"{type(error).__module__ + '.' if name == 'error' else ''}{name}: {error}"


def _label(name, inside=None):
    return f"member {name!r}" + (f" inside {inside!r}" if inside else "")


def _limit(member):
    """``(bytes, constant name)``; read at call time so that users can raise the constants."""
    name = _LIMITS[member]
    return globals()[name], name


# --------------------------------------------------------------------------------- the archive
def _open_archive(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, IsADirectoryError) as e:
        raise _file_error(
            path, "it is not a readable zip archive (truncated, damaged or not an analyzer file)",
            "a zip archive written by analyzer.save(path)", f"{_what_is(path)} ({_describe(e)})",
        ) from e


def _what_is(path):
    if not isinstance(path, (str, bytes)):
        return "a file object"
    if os.path.isdir(path):
        return "a directory"
    return f"a file of {os.path.getsize(path)} bytes" if os.path.isfile(path) else "no regular file"


def _checked_members(path, zf):
    """Checks names and sizes of every member, before anything is read. Returns ``{name: info}``."""
    infos = zf.infolist()
    _check_names(path, [info.filename for info in infos])
    for info in infos:
        _check_member_size(path, info, *_limit(info.filename))
    _check_total_size(path, infos, MAX_TOTAL_BYTES, "MAX_TOTAL_BYTES")
    return {info.filename: info for info in infos}


def _unsafe_name(name):
    parts = re.split(r"[\\/]", name)
    return (
        name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
        or ".." in parts or "\0" in name
    )


def _check_names(path, names, inside=None):
    unsafe = [n for n in names if _unsafe_name(n)]
    if unsafe:
        raise _file_error(
            path, f"{'the archive' if inside is None else repr(inside)} has member names with absolute "
            "paths or '..' components", "plain relative member names", f"{_short(unsafe)}"
        )
    duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if duplicates:
        raise _file_error(
            path, f"{'the archive' if inside is None else repr(inside)} has duplicate members",
            "each member name once", f"duplicates {_short(duplicates)}"
        )
    if inside is None and sorted(names) != sorted(_MEMBERS):
        raise _file_error(
            path, "it does not have the members of an analyzer file",
            f"exactly the members {sorted(_MEMBERS)}", f"members {_short(sorted(names))}",
        )


def _check_member_size(path, info, limit, limit_name, inside=None):
    label = _label(info.filename, inside)
    if info.flag_bits & 0x1:
        raise _file_error(path, f"{label} is encrypted", "unencrypted members", "an encrypted member")
    if info.compress_type not in _COMPRESSIONS:
        raise _file_error(
            path, f"{label} uses an unsupported compression method",
            f"zip compression methods {list(_COMPRESSIONS)} (stored, deflated)",
            f"method {info.compress_type}",
        )
    if info.file_size > limit:
        raise _file_error(
            path, f"{label} is too large",
            f"at most {limit} bytes uncompressed (keras_patterns.io.{limit_name}; raise it to load a "
            "larger file you trust)", f"a declared size of {info.file_size} bytes",
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _RATIO_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
        raise _file_error(
            path, f"{label} has an absurd compression ratio (a zip bomb?)",
            f"a ratio of at most {MAX_COMPRESSION_RATIO} (keras_patterns.io.MAX_COMPRESSION_RATIO; "
            "raise it to load a file you trust)",
            f"{info.file_size} bytes compressed into {info.compress_size} (ratio {ratio:.0f})",
        )


def _check_total_size(path, infos, limit, limit_name, inside=None):
    total = sum(info.file_size for info in infos)
    if total > limit:
        where = "the archive" if inside is None else repr(inside)
        raise _file_error(
            path, f"the members of {where} are too large together",
            f"at most {limit} bytes uncompressed in all (keras_patterns.io.{limit_name}; raise it to "
            "load a larger file you trust)", f"a declared total of {total} bytes",
        )


def _read_member(path, zf, info, limit, out, inside=None):
    """Decompresses one member into the file object ``out``, reading at most ``limit + 1`` bytes."""
    label, count = _label(info.filename, inside), 0
    try:
        with zf.open(info) as f:
            while count <= limit:
                chunk = f.read(min(_CHUNK_BYTES, limit + 1 - count))
                if not chunk:
                    break
                out.write(chunk)
                count += len(chunk)
    except _ZIP_ERRORS as e:
        raise _file_error(
            path, f"{label} is damaged", "intact zip data (matching CRC-32)", _describe(e)
        ) from e
    if count > limit:
        raise _file_error(
            path, f"{label} decompresses to more than its limit",
            f"at most {limit} bytes (declared: {info.file_size})", f"more than {limit} bytes"
        )
    if count != info.file_size:
        raise _file_error(
            path, f"{label} does not have the size it declares",
            f"{info.file_size} bytes, as declared", f"{count} bytes"
        )
    return out


def _check_nested_archive(path, archive_path, name, limit, limit_name):
    """Checks the zip inside a member (``state.npz``, ``model.keras``). Returns its member infos."""
    try:
        with zipfile.ZipFile(archive_path) as inner:
            infos = inner.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as e:
        raise _file_error(
            path, f"{_label(name)} is not a readable zip archive", f"a {name} written by save_analyzer",
            _describe(e),
        ) from e
    _check_names(path, [info.filename for info in infos], inside=name)
    for info in infos:
        _check_member_size(path, info, limit, limit_name, inside=name)
    _check_total_size(path, infos, limit, limit_name, inside=name)
    return infos


# -------------------------------------------------------------------------------- config.json
def _parse_config(path, raw):
    try:
        config = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _file_error(
            path, "'config.json' is not valid JSON", "UTF-8 JSON written by analyzer.save(path)",
            f"{len(raw)} bytes ({_describe(e)})",
        ) from e
    if not isinstance(config, dict):
        raise _file_error(
            path, "'config.json' is not a JSON object", f"an object with the keys {list(_CONFIG_KEYS)}",
            f"a JSON {type(config).__name__}",
        )
    _check_version(path, config)
    _check_config_structure(path, config)
    return config


def _check_version(path, config):
    if "format" not in config:
        raise _file_error(
            path, "'config.json' has no format version", f"'format': {FORMAT_VERSION}",
            f"the keys {_short(sorted(config))}",
        )
    version = config["format"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _file_error(
            path, "the format version in 'config.json' is not an integer",
            f"'format': {FORMAT_VERSION}", f"'format': {_short(version)}",
        )
    if version > FORMAT_VERSION:
        raise _file_error(
            path, f"it has format version {version}, newer than this keras_patterns supports "
            f"(format version {FORMAT_VERSION}); upgrade keras_patterns to load it",
            f"format version {FORMAT_VERSION}", f"format version {version}",
        )
    if version != FORMAT_VERSION:
        raise _file_error(
            path, f"it has the unknown format version {version}", f"format version {FORMAT_VERSION}",
            f"format version {version}",
        )


def _check_config_structure(path, config):
    from keras_patterns.registry import list_analyzers

    if sorted(config) != sorted(_CONFIG_KEYS):
        raise _file_error(
            path, "'config.json' has the wrong keys", f"the keys {sorted(_CONFIG_KEYS)}",
            f"the keys {_short(sorted(config))}",
        )
    for key, kind in (("analyzer", str), ("config", dict), ("model", list)):
        if not isinstance(config[key], kind):
            raise _file_error(
                path, f"'config.json' has a malformed {key!r} entry", f"a JSON {kind.__name__}",
                f"{key!r}: {_short(config[key])}",
            )
    for i, entry in enumerate(config["model"]):
        if not _valid_manifest_entry(entry):
            raise _file_error(
                path, f"'config.json' has a malformed model layer entry at index {i}",
                '{"name": str, "class": str, "weights": [[int, ...], ...]}', _short(entry),
            )
    if config["analyzer"] not in list_analyzers():
        raise _file_error(
            path, "'config.json' names an unknown analyzer", f"one of {list_analyzers()}",
            f"'analyzer': {_short(config['analyzer'])}",
        )


def _valid_manifest_entry(entry):
    if not (isinstance(entry, dict) and sorted(entry) == sorted(_MANIFEST_KEYS)):
        return False
    if not (isinstance(entry["name"], str) and isinstance(entry["class"], str)):
        return False
    shapes = entry["weights"]
    return isinstance(shapes, list) and all(
        isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        for shape in shapes
    )


# ---------------------------------------------------------------------------------- state.npz
def _read_state(path, zf, info, tmp):
    limit, limit_name = _limit("state.npz")
    npz_path = os.path.join(tmp, "state.npz")
    with open(npz_path, "wb") as out:
        _read_member(path, zf, info, limit, out)
    infos = _check_nested_archive(path, npz_path, "state.npz", limit, limit_name)
    with zipfile.ZipFile(npz_path) as inner:
        for array_info in infos:
            _check_npy_header(path, inner, array_info)
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (*_ZIP_ERRORS, ValueError, OSError) as e:
        raise _file_error(
            path, "'state.npz' cannot be read without pickle", "numeric arrays saved by numpy.savez",
            _describe(e),
        ) from e


def _check_npy_header(path, inner, info):
    """Refuses object and other non-numeric arrays, and headers promising more data than stored."""
    label = _label(info.filename, "state.npz")
    if not info.filename.endswith(".npy"):
        raise _file_error(path, f"{label} is not an array", "members named <key>.npy", repr(info.filename))
    try:
        with inner.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _NPY_HEADER_READERS[version](f)
    except (*_ZIP_ERRORS, ValueError) as e:
        raise _file_error(
            path, f"{label} is not a valid .npy array", "a .npy array header", _describe(e)
        ) from e
    if dtype.hasobject or dtype.kind not in "biuf":
        raise _file_error(
            path, f"{label} is "
            + ("an object array, which would need pickle to load" if dtype.hasobject else "not numeric"),
            "numeric arrays (bool, int, uint or float dtype)", f"dtype {dtype}",
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise _file_error(
            path, f"{label} declares more data than it holds", f"at most {info.file_size} bytes of data",
            f"shape {shape} of {dtype} ({nbytes} bytes)",
        )


# -------------------------------------------------------------------------------- model.keras
def _read_model(path, zf, info, tmp, safe_mode):
    limit, limit_name = _limit("model.keras")
    model_path = os.path.join(tmp, "model.keras")
    with open(model_path, "wb") as out:
        _read_member(path, zf, info, limit, out)
    _check_nested_archive(path, model_path, "model.keras", limit, limit_name)
    try:
        return keras.models.load_model(model_path, safe_mode=safe_mode, compile=False)
    except Exception as e:  # Keras raises many types for a broken model; report them as one
        if safe_mode and re.search(r"safe[_ ]mode", str(e), re.IGNORECASE):
            raise _file_error(
                path, "its model holds Python code (e.g. a keras.layers.Lambda function), which "
                "Keras safe mode refuses to load",
                "a model without Python code; if you trust the file, opt out with "
                "keras_patterns.load_analyzer(path, safe_mode=False), which runs the code stored in it",
                _describe(e),
            ) from e
        raise _file_error(
            path, "Keras cannot load its 'model.keras'", "a model saved by keras.Model.save",
            _describe(e),
        ) from e


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


# ---------------------------------------------------------------------------------- the analyzer
def _build_analyzer(path, config, model, state):
    from keras_patterns.registry import create_analyzer

    name = config["analyzer"]
    try:
        analyzer = create_analyzer(name, model, **config["config"])
    except (TypeError, ValueError) as e:
        if isinstance(e, KerasPatternsError):  # about the model (e.g. an unsupported layer)
            raise
        raise _file_error(
            path, f"create_analyzer({name!r}, model, **arguments) refuses the arguments in 'config.json'",
            f"arguments that {name!r} accepts", f"{_short(config['config'])} ({_describe(e)})",
        ) from e
    if state:
        try:
            analyzer.set_state(state)
        except (TypeError, ValueError) as e:
            raise _file_error(
                path, f"'state.npz' does not fit the {name!r} analyzer",
                "the arrays that analyzer.save(path) wrote", f"arrays {sorted(state)} ({_describe(e)})",
            ) from e
    return analyzer

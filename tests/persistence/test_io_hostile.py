"""Loading hostile, damaged and oversized analyzer files (keras_patterns.io)."""

import io
import json
import os
import pathlib
import pickle
import re
import struct
import tempfile
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_patterns as kp
from keras_patterns import io as kp_io

import builders

X = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
MEMBERS = ("config.json", "state.npz", "model.keras")


def _tiny_model():
    return builders.mlp((4, 3, 2))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real analyzer file: ``(path, {member: bytes}, maps before saving)``."""
    analyzer = kp.create_analyzer("gradient", _tiny_model())
    path = tmp_path_factory.mktemp("saved") / "a.kpa"
    analyzer.save(str(path))
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    return path, members, analyzer.analyze(X)


def _write_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    """Writes ``[(name, bytes), ...]`` as given (duplicates, hostile names and all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def _variant(tmp_path, saved, name="hostile.kpa", **replace):
    """The saved file with some members replaced (``config_json=...`` for ``config.json``)."""
    members = dict(saved[1])
    for key, data in replace.items():
        members[key.replace("_", ".")] = data
    return _write_zip(tmp_path / name, list(members.items()))


def _config(saved, **changes):
    config = json.loads(saved[1]["config.json"])
    config.update(changes)
    return json.dumps(config).encode()


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _refused(path, pattern):
    """``pytest.raises`` for an AnalyzerFileError naming ``path`` and matching ``pattern``."""
    return pytest.raises(kp.AnalyzerFileError, match="(?s)" + re.escape(repr(str(path))) + ".*" + pattern)


def _central_directory(data):
    """``{name: offset of its central directory entry}``."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        pos = zf.start_dir
    out = {}
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        out[bytes(data[pos + 46:pos + 46 + n]).decode()] = pos
        pos += 46 + n + m + k
    return out


def _member_data_offset(data, name):
    entry = _central_directory(data)[name]
    header = struct.unpack("<I", data[entry + 42:entry + 46])[0]
    n, m = struct.unpack("<HH", data[header + 26:header + 30])
    return header + 30 + n + m


# ------------------------------------------------------------------------------------ the error
def test_analyzer_file_error_is_exported_and_a_value_error():
    assert "AnalyzerFileError" in kp.__all__
    assert issubclass(kp.AnalyzerFileError, kp.KerasPatternsError)
    assert issubclass(kp.AnalyzerFileError, ValueError)


def test_round_trip_still_works(saved, tmp_path):
    path, _, maps = saved
    np.testing.assert_array_equal(kp.load_analyzer(path).analyze(X), maps)
    np.testing.assert_array_equal(kp.load_analyzer(pathlib.Path(path), safe_mode=True).analyze(X), maps)
    with open(path, "rb") as f:  # a binary file object, as before
        np.testing.assert_array_equal(kp.load_analyzer(f).analyze(X), maps)
    with pytest.raises(kp.AnalyzerFileError, match=r"<_io.BytesIO .*not a readable zip.*Received: a file object"):
        kp.load_analyzer(io.BytesIO(b"junk"))


# ------------------------------------------------------------------------------ 1. no pickle
def test_object_array_in_state_is_refused_without_unpickling(saved, tmp_path, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was called")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    state = _npz(payload=np.array([{"a": 1}, print], dtype=object))  # np.savez pickles it
    path = _variant(tmp_path, saved, state_npz=state)
    with _refused(path, r"'payload.npy' inside 'state.npz' is an object array, which would need pickle"
                        r".*Expected: numeric arrays.*Received: dtype object"):
        kp.load_analyzer(path)


def test_non_numeric_array_in_state_is_refused(saved, tmp_path):
    path = _variant(tmp_path, saved, state_npz=_npz(words=np.array(["a", "b"])))
    with _refused(path, r"'words.npy' inside 'state.npz' is not numeric.*Received: dtype <U1"):
        kp.load_analyzer(path)


def test_package_never_unpickles():
    root = pathlib.Path(kp.__file__).parent
    use = re.compile(
        r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib)\b"
        r"|allow_pickle\s*=\s*True|pickle\.loads?\(", re.M
    )
    offenders = [str(p) for p in root.rglob("*.py") if use.search(p.read_text())]
    assert offenders == []


# ---------------------------------------------------------------------------- 2. Keras safe mode
def test_lambda_model_is_refused_unless_safe_mode_is_false(tmp_path):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu")(inputs)
    hidden = keras.layers.Lambda(lambda t: t * 2.0)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    kp.register_rule(keras.layers.Lambda)
    try:
        analyzer = kp.create_analyzer("gradient", model)
        maps = analyzer.analyze(X)
        path = tmp_path / "lambda.kpa"
        analyzer.save(str(path))
        with _refused(path, r"Python code.*safe mode.*safe_mode=False.*Received: ValueError: .*Lambda"):
            kp.load_analyzer(path)
        with _refused(path, r"safe_mode=False"):
            kp.load_analyzer(path, safe_mode=True)
        loaded = kp.load_analyzer(path, safe_mode=False)
        np.testing.assert_array_equal(loaded.analyze(X), maps)
    finally:
        kp.unregister_rule(keras.layers.Lambda)


def test_safe_mode_must_be_a_keyword_bool(saved):
    with pytest.raises(TypeError, match=r"`safe_mode` must be True or False. Received: safe_mode='no'"):
        kp.load_analyzer(saved[0], safe_mode="no")
    with pytest.raises(TypeError):
        kp.load_analyzer(saved[0], None, False)  # keyword-only


# --------------------------------------------------------------------------- 3. member names
@pytest.mark.parametrize("hostile", ["/etc/evil", "../evil", "state/../../evil", "C:\\evil", "..\\evil"])
def test_member_with_absolute_path_or_dotdot_is_refused_before_reading(saved, tmp_path, monkeypatch, hostile):
    reads = []
    original = kp_io._read_member
    monkeypatch.setattr(kp_io, "_read_member", lambda *a, **k: reads.append(a) or original(*a, **k))
    root = tmp_path / "deep" / "er"
    root.mkdir(parents=True)
    path = _write_zip(root / "hostile.kpa", [*saved[1].items(), (hostile, b"pwned")])
    with _refused(path, r"absolute paths or '\.\.' components.*Received: \[" + re.escape(repr(hostile))):
        kp.load_analyzer(path)
    assert reads == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "er", "hostile.kpa"]


def test_duplicate_member_is_refused(saved, tmp_path):
    second = ("config.json", _config(saved, analyzer="lrp.z"))
    path = _write_zip(tmp_path / "dup.kpa", [*saved[1].items(), second])
    with _refused(path, r"duplicate members.*Expected: each member name once"
                        r".*Received: duplicates \['config.json'\]"):
        kp.load_analyzer(path)


def test_extra_or_missing_member_is_refused(saved, tmp_path):
    extra = _write_zip(tmp_path / "extra.kpa", [*saved[1].items(), ("notes.txt", b"hi")])
    with _refused(extra, r"Expected: exactly the members \['config.json', 'model.keras', 'state.npz'\]"
                         r".*Received: members \[.*'notes.txt'"):
        kp.load_analyzer(extra)
    missing = _write_zip(tmp_path / "missing.kpa", [(n, saved[1][n]) for n in ("config.json", "state.npz")])
    with _refused(missing, r"does not have the members.*Received: members \['config.json', 'state.npz'\]"):
        kp.load_analyzer(missing)


def test_hostile_member_name_inside_state_npz_is_refused(saved, tmp_path):
    inner = _write_zip(tmp_path / "inner.npz", [("../x.npy", saved[1]["state.npz"])])
    path = _variant(tmp_path, saved, state_npz=inner.read_bytes())
    with _refused(path, r"'state.npz' has member names with absolute paths.*Received: \['../x.npy'\]"):
        kp.load_analyzer(path)


# ------------------------------------------------------------------------------- 4. zip bombs
def test_oversized_member_is_refused_before_decompression(saved, tmp_path, monkeypatch):
    padded = _config(saved)[:-1] + b" " * (2 << 20) + b"}"  # valid JSON, 2 MiB, compresses ~1000x
    path = _variant(tmp_path, saved, config_json=padded)
    decompressed = []
    original = kp_io._read_member
    monkeypatch.setattr(kp_io, "_read_member", lambda *a, **k: decompressed.append(a[2]) or original(*a, **k))
    with _refused(path, r"member 'config.json' is too large.*at most 1048576 bytes uncompressed "
                        r"\(keras_patterns.io.MAX_CONFIG_BYTES"
                        r".*Received: a declared size of 2097\d{3} bytes"):
        kp.load_analyzer(path)
    assert decompressed == []
    monkeypatch.setattr(kp_io, "MAX_CONFIG_BYTES", 4 << 20)
    with _refused(path, r"member 'config.json' has an absurd compression ratio.*MAX_COMPRESSION_RATIO"
                        r".*Received: 2097\d{3} bytes compressed into \d+ \(ratio \d+\)"):
        kp.load_analyzer(path)
    assert decompressed == []
    monkeypatch.setattr(kp_io, "MAX_COMPRESSION_RATIO", 10**6)
    np.testing.assert_array_equal(kp.load_analyzer(path).analyze(X), saved[2])  # limits a user can raise


def test_total_size_is_limited(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(kp_io, "MAX_TOTAL_BYTES", 1000)
    total = sum(len(b) for b in saved[1].values())
    with _refused(saved[0], rf"too large together.*at most 1000 bytes.*MAX_TOTAL_BYTES.*Received: a declared "
                            rf"total of {total} bytes"):
        kp.load_analyzer(saved[0])


def test_bomb_inside_state_npz_is_refused(saved, tmp_path):
    buf = io.BytesIO()
    np.savez_compressed(buf, zeros=np.zeros(1 << 20, "float32"))  # 4 MiB of zeros in a few KiB
    path = _variant(tmp_path, saved, state_npz=buf.getvalue())
    with _refused(path, r"member 'zeros.npy' inside 'state.npz' has an absurd compression ratio"):
        kp.load_analyzer(path)


def test_npy_header_promising_more_data_than_stored_is_refused(saved, tmp_path):
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    npy.write(b"\0" * 16)
    inner = _write_zip(tmp_path / "inner.npz", [("big.npy", npy.getvalue())], compression=zipfile.ZIP_STORED)
    path = _variant(tmp_path, saved, state_npz=inner.read_bytes())
    with _refused(path, r"'big.npy' inside 'state.npz' declares more data than it holds.*Received: shape "
                        r"\(1000000000000,\) of float32 \(4000000000000 bytes\)"):
        kp.load_analyzer(path)


@pytest.mark.parametrize("delta, pattern", [
    (+100, r"member 'config.json' does not have the size it declares.*Expected: (\d+) bytes, as declared"
           r".*Received: \d+ bytes"),
    (-100, r"member 'config.json' is damaged.*Bad CRC-32"),
])
def test_declared_size_that_lies_is_refused(saved, tmp_path, delta, pattern):
    data = bytearray(saved[0].read_bytes())
    entry = _central_directory(data)["config.json"]
    size = struct.unpack("<I", data[entry + 24:entry + 28])[0]
    struct.pack_into("<I", data, entry + 24, size + delta)
    path = tmp_path / "lying.kpa"
    path.write_bytes(bytes(data))
    with _refused(path, pattern):
        kp.load_analyzer(path)


def test_bounded_read_stops_at_the_limit(tmp_path):
    class Archive:  # a zip reader that yields more than the member declares
        def open(self, info):
            return io.BytesIO(b"x" * 10_000)

    out = io.BytesIO()
    with _refused("f.kpa", r"member 'config.json' decompresses to more than its limit.*Expected: at most 100 "
                           r"bytes \(declared: 50\).*Received: more than 100 bytes"):
        kp_io._read_member("f.kpa", Archive(), _info(50), 100, out)
    assert len(out.getvalue()) == 101


def _info(size):
    info = zipfile.ZipInfo("config.json")
    info.file_size = size
    return info


# ------------------------------------------------------------------------- 5. format versions
@pytest.mark.parametrize("version, pattern", [
    (2, r"format version 2, newer than this keras_patterns supports \(format version 1\); upgrade"
        r".*Expected: format version 1.*Received: format version 2"),
    (None, r"has no format version.*Expected: 'format': 1"
           r".*Received: the keys \['analyzer', 'config', 'model'\]"),
    ("1", r"format version in 'config.json' is not an integer.*Expected: 'format': 1"
          r".*Received: 'format': '1'"),
    (1.0, r"not an integer.*Received: 'format': 1.0"),
    (True, r"not an integer.*Received: 'format': True"),
    (0, r"unknown format version 0.*Expected: format version 1.*Received: format version 0"),
])
def test_format_version_is_checked(saved, tmp_path, version, pattern):
    config = json.loads(saved[1]["config.json"])
    config.pop("format")
    if version is not None:
        config["format"] = version
    path = _variant(tmp_path, saved, config_json=json.dumps(config).encode())
    with _refused(path, pattern):
        kp.load_analyzer(path)


# ------------------------------------------------------------------------ 6. damaged files
def test_truncated_file_is_refused(saved, tmp_path):
    data = saved[0].read_bytes()
    path = tmp_path / "half.kpa"
    half = len(data) // 2
    path.write_bytes(data[:half])
    with _refused(path, rf"not a readable zip archive.*Received: a file of {half} bytes \(BadZipFile") as info:
        kp.load_analyzer(path)
    assert info.value.path == str(path)


def test_not_a_zip_or_a_directory_is_refused(tmp_path):
    text = tmp_path / "a.kpa"
    text.write_text("hello")
    with _refused(text, r"not a readable zip archive.*Received: a file of 5 bytes"):
        kp.load_analyzer(text)
    with _refused(tmp_path, r"not a readable zip archive.*Received: a directory"):
        kp.load_analyzer(tmp_path)
    with pytest.raises(FileNotFoundError):
        kp.load_analyzer(tmp_path / "absent.kpa")


def test_flipped_byte_is_a_crc_error(saved, tmp_path):
    path = _write_zip(tmp_path / "stored.kpa", list(saved[1].items()), compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[_member_data_offset(data, "config.json") + 20] ^= 0x01
    path.write_bytes(bytes(data))
    with _refused(path, r"member 'config.json' is damaged.*Expected: intact zip data \(matching CRC-32\)"
                        r".*Received: BadZipFile: Bad CRC-32 for file 'config.json'"):
        kp.load_analyzer(path)


@pytest.mark.parametrize("member", MEMBERS)
def test_flipped_byte_in_compressed_member_is_refused(saved, tmp_path, member):
    data = bytearray(saved[0].read_bytes())
    with zipfile.ZipFile(saved[0]) as zf:
        size = zf.getinfo(member).compress_size
    data[_member_data_offset(data, member) + size // 2] ^= 0xFF
    path = tmp_path / "flipped.kpa"
    path.write_bytes(bytes(data))
    with _refused(path, rf"member '{member}' is damaged.*Received: (BadZipFile: Bad CRC-32|zlib.error)"):
        kp.load_analyzer(path)


@pytest.mark.parametrize("config_json, pattern", [
    (b'{"format": 1, "analyzer": ',
     r"'config.json' is not valid JSON.*Received: \d+ bytes \(JSONDecodeError"),
    (b"\xff\xfe{}", r"not valid JSON.*UnicodeDecodeError"),
    (b"[" * 100_000, r"not valid JSON.*RecursionError"),
    (b"[1, 2]", r"'config.json' is not a JSON object.*Received: a JSON list"),
])
def test_invalid_json_is_refused(saved, tmp_path, config_json, pattern):
    path = _variant(tmp_path, saved, config_json=config_json)
    with _refused(path, pattern):
        kp.load_analyzer(path)


@pytest.mark.parametrize("changes, pattern", [
    ({"extra": 1}, r"'config.json' has the wrong keys.*Expected: the keys \['analyzer', 'config', 'format', "
                   r"'model'\].*Received: the keys \['analyzer', 'config', 'extra', 'format', 'model'\]"),
    ({"analyzer": 7}, r"malformed 'analyzer' entry.*Expected: a JSON str.*Received: 'analyzer': 7"),
    ({"config": [1]}, r"malformed 'config' entry.*Expected: a JSON dict.*Received: 'config': \[1\]"),
    ({"model": {}}, r"malformed 'model' entry.*Expected: a JSON list"),
    ({"model": [{"name": "d", "class": "Dense", "weights": [[4, "3"]]}]},
     r"malformed model layer entry at index 0.*Received: \{'name': 'd'"),
    ({"analyzer": "gradiant"}, r"names an unknown analyzer.*Expected: one of \[.*'gradient'.*Received: "
                               r"'analyzer': 'gradiant'"),
    ({"config": {"epsilon": 0.1}}, r"create_analyzer\('gradient', model, \*\*arguments\) refuses "
                                   r"the arguments.*Received: \{'epsilon': 0.1\} \(TypeError"),
    ({"config": {"model": 1}}, r"refuses the arguments.*TypeError"),
])
def test_config_of_the_wrong_structure_is_refused(saved, tmp_path, changes, pattern):
    path = _variant(tmp_path, saved, config_json=_config(saved, **changes))
    with _refused(path, pattern):
        kp.load_analyzer(path)


def test_state_that_does_not_fit_the_analyzer_is_refused(saved, tmp_path):
    path = _variant(tmp_path, saved, state_npz=_npz(dense=np.ones((4, 3), "float32")))
    with _refused(path, r"'state.npz' does not fit the 'gradient' analyzer.*Received: arrays \['dense'\]"):
        kp.load_analyzer(path)


def test_broken_model_is_refused(saved, tmp_path):
    path = _variant(tmp_path, saved, model_keras=_npz(a=np.ones(3)))  # a zip, but no Keras model
    with _refused(path, r"Keras cannot load its 'model.keras'.*Expected: a model saved by keras.Model.save"):
        kp.load_analyzer(path)
    not_zip = _variant(tmp_path, saved, name="b.kpa", model_keras=b"not a zip")
    with _refused(not_zip, r"member 'model.keras' is not a readable zip archive"):
        kp.load_analyzer(not_zip)


# ------------------------------------------------------------------------- 7. no leftovers
def test_loading_leaves_no_files_behind(saved, tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    hostile = [
        _variant(work, saved, name="crc.kpa", config_json=b"{"),
        _write_zip(work / "names.kpa", [*saved[1].items(), ("../evil", b"x")]),
        _variant(work, saved, name="object.kpa", state_npz=_npz(o=np.array([None], dtype=object))),
        _variant(work, saved, name="model.kpa", model_keras=b"not a zip"),
        _variant(work, saved, name="keras.kpa", model_keras=_npz(a=np.ones(3))),
    ]
    before = sorted(os.listdir(work))
    kp.load_analyzer(saved[0])
    for path in hostile:
        with pytest.raises(kp.AnalyzerFileError):
            kp.load_analyzer(path)
    assert os.listdir(tmpdir) == []
    assert sorted(os.listdir(work)) == before
    assert sorted(os.listdir(tmp_path)) == ["tmp", "work"]

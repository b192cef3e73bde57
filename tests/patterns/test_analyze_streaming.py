"""analyze() over datasets and generators, with maps streamed to a writer or a .npy file.

The maps of every source equal the maps of the same samples given as one array (computed per
sample; only the batch partition differs, so float32 rounding of batch-size dependent kernels at
most: measured 0 here, asserted at rtol 1e-6).
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import builders
import keras_patterns as kp

N = 23


@pytest.fixture(scope="module")
def cnn():
    return builders.small_cnn((6, 6, 2), 3, 4, seed=0)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(N, 6, 6, 2)).astype("float32")


@pytest.fixture(scope="module", params=["gradient", "lrp.epsilon", "pattern.attribution"])
def analyzer(request, cnn, x):
    a = kp.create_analyzer(request.param, cnn, batch_size=8)
    if a.needs_fitting:
        a.fit(x, verbose=0)
    return a


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, size):
        super().__init__()
        self.x, self.size = x, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size:(i + 1) * self.size], np.zeros(self.size)


def _close(got, ref):
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("source", ["dataset", "dataset_xy", "generator", "pydataset", "dataset_fn", "memmap"])
def test_every_source_gives_the_array_maps(analyzer, x, source, tmp_path):
    ref = analyzer.analyze(x)
    if source == "memmap":
        np.save(tmp_path / "x.npy", x)
        data = np.load(tmp_path / "x.npy", mmap_mode="r")
    else:
        data = {
            "dataset": lambda: tf.data.Dataset.from_tensor_slices(x).batch(5),
            "dataset_xy": lambda: tf.data.Dataset.from_tensor_slices((x, np.arange(N))).batch(20),
            "generator": lambda: (x[i:i + 6] for i in range(0, N, 6)),
            "pydataset": lambda: _Batches(x, 7),
            "dataset_fn": lambda: (lambda ctx: tf.data.Dataset.from_tensor_slices(x).batch(4)),
        }[source]()
    _close(analyzer.analyze(data), ref)


def test_on_batch_gets_every_piece_in_order(analyzer, x):
    ref = analyzer.analyze(x)
    pieces = []
    assert analyzer.analyze(x, batch_size=5, on_batch=lambda start, m: pieces.append((start, m.copy()))) is None
    assert [s for s, _ in pieces] == [0, 5, 10, 15, 20]
    assert [len(m) for _, m in pieces] == [5, 5, 5, 5, 3]
    _close(np.concatenate([m for _, m in pieces]), ref)
    # A dataset batch larger than batch_size is cut into pieces of batch_size.
    pieces.clear()
    analyzer.analyze(tf.data.Dataset.from_tensor_slices(x).batch(12), on_batch=lambda s, m: pieces.append((s, len(m))))
    assert pieces == [(0, 8), (8, 4), (12, 8), (20, 3)]


def test_out_writes_a_npy_file(analyzer, x, tmp_path):
    ref = analyzer.analyze(x)
    path = tmp_path / "maps.npy"
    got = analyzer.analyze((x[i:i + 4] for i in range(0, N, 4)), out=path)
    assert isinstance(got, np.memmap) and got.shape == ref.shape and got.dtype == np.float32
    _close(np.load(path), ref)  # an ordinary .npy file, read back whole
    _close(got, ref)


def test_out_for_no_samples_and_for_several_inputs(tmp_path):
    model = builders.two_inputs(seed=0)
    analyzer = kp.create_analyzer("gradient", model)
    xa, xb = np.random.default_rng(1).normal(size=(9, 3)), np.random.default_rng(2).normal(size=(9, 2))
    ref = analyzer.analyze([xa, xb])
    paths = [tmp_path / "a.npy", tmp_path / "b.npy"]
    got = analyzer.analyze(tf.data.Dataset.from_tensor_slices({"a": xa, "b": xb}).batch(4), out=paths)
    for g, r, p in zip(got, ref, paths):
        _close(np.load(p), r)
    pieces = []
    analyzer.analyze(({"a": xa[i:i + 5], "b": xb[i:i + 5]} for i in (0, 5)), on_batch=lambda s, m: pieces.append(m))
    assert isinstance(pieces[0], list) and len(pieces[0]) == 2
    _close(np.concatenate([p[1] for p in pieces]), ref[1])
    empty = kp.create_analyzer("gradient", builders.mlp((5, 3), seed=0)).analyze(iter([]), out=tmp_path / "e.npy")
    assert empty.shape == (0, 5) and np.load(tmp_path / "e.npy").shape == (0, 5)


def test_neuron_selection_with_a_dataset(cnn, x):
    analyzer = kp.create_analyzer("gradient", cnn, neuron_selection_mode="index")
    _close(analyzer.analyze(tf.data.Dataset.from_tensor_slices(x).batch(6), neuron_selection=2),
           analyzer.analyze(x, neuron_selection=2))
    with pytest.raises(ValueError, match=r"A per-sample `neuron_selection` needs array inputs.*"
                                         r"Received: neuron_selection of shape \(23,\) with"):
        analyzer.analyze(tf.data.Dataset.from_tensor_slices(x).batch(6), neuron_selection=np.zeros(N, int))


def test_a_writer_that_fails_is_named_with_its_batch(cnn, x):
    analyzer = kp.create_analyzer("gradient", cnn)
    seen = []

    def writer(start, maps):
        if start >= 10:
            raise OSError("disk full")
        seen.append(start)

    with pytest.raises(RuntimeError, match=r"`on_batch` raised on batch 2 \(samples 10 to 14\): "
                                           r"OSError: disk full") as info:
        analyzer.analyze(x, batch_size=5, on_batch=writer)
    assert isinstance(info.value.__cause__, OSError) and seen == [0, 5]


def test_bad_stream_arguments(cnn, x, tmp_path):
    analyzer = kp.create_analyzer("gradient", cnn)
    with pytest.raises(ValueError, match=r"Give `on_batch` or `out`, not both"):
        analyzer.analyze(x, on_batch=print, out=tmp_path / "m.npy")
    with pytest.raises(TypeError, match=r"`on_batch` must be a function on_batch\(start, maps\). Received: 3"):
        analyzer.analyze(x, on_batch=3)
    with pytest.raises(ValueError, match=r"`out` must be one .npy path per model input \(1\)"):
        analyzer.analyze(x, out=[tmp_path / "a.npy", tmp_path / "b.npy"])
    with pytest.raises(TypeError, match=r"`out` must be a path"):
        analyzer.analyze(x, out=3)


def test_bad_batches_are_named(cnn, x):
    analyzer = kp.create_analyzer("gradient", cnn)
    bad = x[:10].copy()
    bad[7, 1, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"Batch 1 \(samples from 5\) of the data: Input 0 contains NaN or Inf"):
        analyzer.analyze(iter([x[:5], bad[5:]]))
    with pytest.raises(ValueError, match=r"Batch 1 \(samples from 4\) of the data: Input 0 \(.*\) must have "
                                         r"shape \('batch', 6, 6, 2\). Received: shape \(4, 5, 6, 2\)"):
        analyzer.analyze(iter([x[:4], x[4:8, :5]]))
    with pytest.raises(TypeError, match="Received: function"):  # a generator function, not called
        analyzer.analyze(lambda: (yield x))


@pytest.mark.parametrize("name, kwargs", [
    ("random", {"seed": 3, "stddev": 0.5}),
    ("occlusion", {"patch_size": 3, "patch_stride": 2}),
])
def test_host_computed_analyzers_stream_too(cnn, x, name, kwargs, tmp_path):
    """``random`` and ``occlusion`` compute on the host, not in one compiled reverse pass; they take
    the same sources and writers as the others and give the maps of the same samples as one array
    (random: one generator drawn in sample order; occlusion: batch_size counts model rows)."""
    a = kp.create_analyzer(name, cnn, batch_size=40, **kwargs)
    ref = a.analyze(x)
    if name == "random":  # the noise itself, against NumPy's generator drawn in sample order
        noise = np.random.default_rng(3).standard_normal(x.shape).astype("float32")
        np.testing.assert_array_equal(ref, x + np.float32(0.5) * noise)
    _close(a.analyze(tf.data.Dataset.from_tensor_slices(x).batch(5)), ref)
    pieces = []
    assert a.analyze(x, on_batch=lambda s, m: pieces.append((s, m.copy()))) is None
    n_patches = len(a.masks) if name == "occlusion" else 0
    step = max(1, 40 // (n_patches + 1)) if name == "occlusion" else 40
    assert [s for s, _ in pieces] == list(range(0, N, step))
    _close(np.concatenate([m for _, m in pieces]), ref)
    got = a.analyze((x[i:i + 4] for i in range(0, N, 4)), out=tmp_path / "maps.npy")
    assert isinstance(got, np.memmap)
    _close(got, ref)

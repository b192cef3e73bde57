"""Analysis at dataset scale: input batches from any source, maps returned or streamed out.

:meth:`~keras_patterns.analyzers.base.Analyzer.analyze` takes arrays (also ``np.memmap`` arrays
larger than memory: they are read and checked one batch at a time), ``tf.data.Dataset`` objects,
``keras.utils.PyDataset`` objects, Python generators and dataset functions (the same sources as
pattern fitting, see :mod:`keras_patterns.patterns.data`). The maps are returned, handed to a
writer ``on_batch(start, maps)`` batch by batch, or written into a ``.npy`` file (``out=``) that
grows batch by batch, so that the maps of 10^6 samples never have to be held in memory.
"""

import os

import numpy as np

from keras_patterns import validation

#: Room kept in a .npy header for the final sample count (digits of a placeholder of 20).
_PLACEHOLDER = 10**19


def is_stream(x):
    """Whether ``x`` is a source of batches (dataset, PyDataset, generator, dataset function)
    rather than arrays of model inputs."""
    if isinstance(x, (np.ndarray, list, tuple, dict)) or hasattr(x, "__array__"):
        return False
    import keras
    import tensorflow as tf

    if isinstance(x, (tf.Tensor, tf.Variable)):
        return False
    # Callables: dataset functions (generator functions get the reader's TypeError).
    return isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)) or hasattr(x, "__next__") or callable(x)


def array_batches(x, input_names, step):
    """``(start, raw batch)`` pairs of array inputs, sliced without reading the rest.

    Returns:
        ``(iterator, n)``: the pairs and the number of samples.
    """
    xs = validation.input_list(x, input_names)
    n = {int(np.shape(a)[0]) if np.ndim(a) else 0 for a in xs}
    if len(n) != 1:
        raise ValueError(f"All inputs must have the same batch size. Received: {[np.shape(a)[0] for a in xs]}")
    n = n.pop()
    return ((s, [a[s:s + step] for a in xs]) for s in range(0, n, step)), n


def stream_batches(x, input_names, step):
    """``(start, raw batch)`` pairs from a dataset, PyDataset, generator or dataset function; each
    of its batches cut into pieces of at most ``step`` samples."""
    from keras_patterns.patterns.data import batches

    it, _ = batches(x, batch_size=step)
    start = 0
    for element in it:
        xs = validation.input_list(element, input_names)
        n = int(np.shape(xs[0])[0]) if np.ndim(xs[0]) else 0
        for s in range(0, n, step):  # empty batches give no piece
            piece = [np.asarray(a.numpy() if hasattr(a, "numpy") else a)[s:s + step] for a in xs]
            yield start + s, piece
        start += n


class NpyWriter:
    """Writes maps batch by batch into a ``.npy`` file whose length is known at the end only.

    The header is written first with a placeholder sample count and rewritten, padded to the same
    length, by :meth:`close`; the file is then an ordinary ``.npy`` (``np.load(path,
    mmap_mode="r")`` maps it without reading it).

    Args:
        path: the file to write (replaced if it exists).
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`out` must be a path (str or os.PathLike). Received: out={path!r}")
        self.path = os.fspath(path)
        self._file = None
        self._header_len = 0
        self._n = 0
        self._shape = self._dtype = None

    def _header(self, n):
        d = {"descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False,
             "shape": (n,) + self._shape}
        return repr(d).encode("latin1")

    def write(self, maps):
        maps = np.ascontiguousarray(maps)
        if self._file is None:
            self._shape, self._dtype = tuple(maps.shape[1:]), maps.dtype
            self._file = open(self.path, "wb")
            body = self._header(_PLACEHOLDER)
            self._header_len = _padded(len(body))
            self._file.write(_prefix(body, self._header_len))
        self._file.write(maps.tobytes())
        self._n += len(maps)

    def close(self, shape=None, dtype=None):
        """Finishes the file (an empty file of ``shape``/``dtype`` if nothing was written)."""
        if self._file is None:
            self._shape, self._dtype = tuple(shape[1:]), np.dtype(dtype)
            self._file = open(self.path, "wb")
            self._header_len = _padded(len(self._header(_PLACEHOLDER)))
            self._file.write(_prefix(self._header(0), self._header_len))
            self._file.close()
            return
        self._file.seek(0)
        self._file.write(_prefix(self._header(self._n), self._header_len))
        self._file.close()

    def abort(self):
        if self._file is not None and not self._file.closed:
            self._file.close()


def _padded(body_len):
    # magic (6) + version (2) + length (2) + body + "\n", padded to a multiple of 64
    return -(-(10 + body_len + 1) // 64) * 64 - 10


def _prefix(body, header_len):
    text = body + b" " * (header_len - len(body) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text



class Sink:
    """Where :meth:`~keras_patterns.analyzers.base.Analyzer.analyze` puts the maps of each piece:
    kept and returned, handed to ``on_batch(start, maps)``, or written to ``.npy`` file(s).

    Args:
        analyzer: the analyzer (its name and finite check).
        on_batch: the writer function, or None.
        out: a path, or one path per model input, or None.
        n_inputs: the number of model inputs.
        inspect: a function ``inspect(start, maps)`` (``maps`` one array per input) called with
            every piece that is streamed out (``on_batch`` or ``out``), after the finite check and
            before the piece is handed on; for checks that must not read the maps back from the
            file (that would map all of it into memory). Defaults to `None`.

    Raises:
        ValueError: ``out`` paths that do not match the number of inputs.
    """

    def __init__(self, analyzer, on_batch, out, n_inputs, inspect=None):
        self.analyzer, self.on_batch, self.chunks, self.writers = analyzer, on_batch, [], None
        self.inspect = inspect
        if out is not None:
            paths = list(out) if isinstance(out, (list, tuple)) else [out]
            if len(paths) != n_inputs:
                raise ValueError(
                    f"`out` must be one .npy path per model input ({n_inputs}). Received: out={out!r}"
                )
            self.writers = [NpyWriter(p) for p in paths]
        self.n_inputs = n_inputs

    def _check_piece(self, b, start, maps):
        bad = sorted({int(i) for m in maps for i in np.flatnonzero(~np.isfinite(m.reshape(len(m), -1)).all(axis=1))})
        if bad:
            from keras_patterns.errors import NonFiniteResultError

            raise NonFiniteResultError(
                f"{self.analyzer.name} produced NaN/Inf maps in batch {b}, for samples "
                f"{[start + i for i in bad]} (counting from the first sample of the data): the "
                "backward signal overflowed float32. A stabilized rule such as lrp.epsilon avoids "
                "this. The maps of this batch are in this error's `maps`; those of the batches "
                "before were delivered.", samples=[start + i for i in bad], maps=maps,
            )

    def add(self, b, start, maps):
        """Takes the maps (one array per input) of piece ``b`` starting at sample ``start``."""
        if self.on_batch is None and self.writers is None:
            self.chunks.append(maps)
            return
        self._check_piece(b, start, maps)
        if self.inspect is not None:
            self.inspect(start, maps)
        if self.writers is not None:
            for w, m in zip(self.writers, maps):
                w.write(m)
            return
        try:
            self.on_batch(start, maps[0] if self.n_inputs == 1 else maps)
        except Exception as e:
            raise RuntimeError(
                f"`on_batch` raised on batch {b} (samples {start} to {start + len(maps[0]) - 1}): "
                f"{type(e).__name__}: {e}. The batches before it were delivered."
            ) from e

    def abort(self):
        for w in self.writers or ():
            w.abort()

    def finish(self, input_specs):
        """The value :meth:`analyze` returns."""
        if self.on_batch is not None:
            return None
        empty = [np.zeros((0,) + tuple(d or 0 for d in shape[1:]), "float32") for shape, _ in input_specs]
        if self.writers is not None:
            for w, e in zip(self.writers, empty):
                w.close(e.shape, e.dtype)
            results = [np.load(w.path, mmap_mode="r") for w in self.writers]
        elif not self.chunks:
            results = empty
        else:
            results = [np.concatenate([c[i] for c in self.chunks], axis=0) for i in range(self.n_inputs)]
            self.analyzer._check_finite(results)
        return results[0] if len(results) == 1 else results

"""Turning the data given to ``fit`` into batches of model inputs.

Accepted, as in ``model.fit``:

* a NumPy array (or a list of arrays / a dict by input name for multi-input models): cut into
  batches of ``batch_size`` (the last batch may be smaller);
* a ``tf.data.Dataset`` yielding batches;
* a ``keras.utils.PyDataset`` (``len()`` batches, ``ds[i]``; endless ones need ``steps``);
* a Python generator or iterator yielding batches.

A batch is ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; only ``x`` is used (a
multi-input ``x`` is a list or dict, so a 2-tuple is always read as ``(x, y)``, as Keras does).
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

EXPECTED = (
    "a NumPy array (or list/dict of arrays), a tf.data.Dataset, a keras.utils.PyDataset or a Python "
    "generator yielding x, (x, y) or (x, y, sample_weight)"
)


def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    return int(batch_size)


def check_steps(steps):
    if steps is None:
        return None
    if isinstance(steps, bool) or not (isinstance(steps, (int, np.integer)) and steps > 0):
        raise ValueError(f"`steps` must be None or a positive int. Received: steps={steps!r}")
    return int(steps)


def split_x(element):
    """The model-input part of one batch element."""
    if isinstance(element, tuple):
        if len(element) in (1, 2, 3):
            return element[0]
        raise ValueError(
            "A batch must be x, (x,), (x, y) or (x, y, sample_weight). Received: a tuple of "
            f"{len(element)} elements (pass several model inputs as a list or dict in x)"
        )
    return element


def _is_array_like(data):
    if isinstance(data, (np.ndarray, tf.Tensor)) and not isinstance(data, tf.data.Dataset):
        return True
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (np.ndarray, tf.Tensor)) for d in data):
        return True
    if isinstance(data, dict) and data and all(isinstance(d, (np.ndarray, tf.Tensor)) for d in data.values()):
        return True
    return False


def _array_batches(data, batch_size):
    if isinstance(data, dict):
        arrays = list(data.values())
    elif isinstance(data, (list, tuple)):
        arrays = list(data)
    else:
        arrays = [data]
    lengths = {int(a.shape[0]) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(
            f"All input arrays must have the same number of samples. Received: {[a.shape[0] for a in arrays]}"
        )
    n = lengths.pop()

    def take(start):
        stop = start + batch_size
        if isinstance(data, dict):
            return {k: v[start:stop] for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [a[start:stop] for a in data]
        return data[start:stop]

    return (take(s) for s in range(0, n, batch_size)), math.ceil(n / batch_size), n


def batches(data, batch_size=32, steps=None):
    """Makes an iterator over model-input batches.

    Args:
        data: see the module docstring.
        batch_size: samples per batch for arrays (ignored for already batched data). Defaults to `32`.
        steps: the number of batches to use; bounds endless generators. Defaults to `None`
            (all the data).

    Returns:
        ``(iterator, n_batches)`` where ``n_batches`` is the number of batches expected (None if
        unknown).

    Raises:
        TypeError: for data of an unsupported kind.
        ValueError: for a bad ``batch_size``/``steps``, an endless PyDataset without ``steps``.
    """
    batch_size = check_batch_size(batch_size)
    steps = check_steps(steps)
    if _is_array_like(data):
        it, n, _ = _array_batches(data, batch_size)
        return _limit(it, steps), (n if steps is None else min(n, steps))
    if isinstance(data, tf.data.Dataset):
        card = int(data.cardinality().numpy())
        if card == tf.data.INFINITE_CARDINALITY and steps is None:
            raise ValueError(
                "The tf.data.Dataset is infinite (e.g. .repeat()); pass `steps` to bound the fitting "
                "pass. Received: steps=None"
            )
        known = card if card >= 0 else None
        total = steps if known is None else (known if steps is None else min(known, steps))
        it = (split_x(e) for e in data)
        return _limit(it, steps), total
    if isinstance(data, keras.utils.PyDataset):
        n = data.num_batches if hasattr(data, "num_batches") else None
        if n is None:
            try:
                n = len(data)
            except TypeError:
                n = None
        if n is None and steps is None:
            raise ValueError(
                f"The PyDataset {type(data).__name__} has no length (endless); pass `steps` to bound the "
                "fitting pass. Received: steps=None"
            )
        total = steps if n is None else (n if steps is None else min(n, steps))

        def gen():
            for i in range(total):
                yield split_x(data[i])
            data.on_epoch_end()

        return gen(), total
    if isinstance(data, (str, bytes)) or callable(data) and not hasattr(data, "__next__"):
        raise TypeError(
            f"`data` must be {EXPECTED}. Received: {type(data).__name__}"
            + (" (a generator function? call it to get a generator)" if callable(data) else "")
        )
    if hasattr(data, "__next__") or hasattr(data, "__iter__"):
        return _limit((split_x(e) for e in data), steps), steps
    raise TypeError(f"`data` must be {EXPECTED}. Received: {type(data).__name__}")


def _limit(it, steps):
    if steps is None:
        yield from it
        return
    done = 0
    for e in it:
        yield e
        done += 1
        if done >= steps:
            return


def run_pass(stats, data, batch_size=32, steps=None, verbose="auto"):
    """Feeds every batch of ``data`` to ``stats.update_state`` with a Keras progress bar.

    Args:
        stats: a :class:`~keras_patterns.patterns.statistics.PatternStatistics`.
        data, batch_size, steps: see :func:`batches`.
        verbose: ``"auto"`` (= 1), 0 (silent), 1 (progress bar) or 2 (one line at the end), as in
            ``model.fit``. Defaults to `"auto"`.

    Returns:
        The number of batches seen.

    Raises:
        ValueError: if the data gave no batch at all.
    """
    if verbose == "auto":
        verbose = 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    it, total = batches(data, batch_size, steps)
    bar = keras.utils.Progbar(
        total, verbose=verbose, unit_name="step", stateful_metrics=["samples"]
    ) if verbose else None
    seen = samples = 0
    for x in it:
        stats.update_state(x)
        seen += 1
        first = x if not isinstance(x, (list, tuple, dict)) else (
            list(x.values())[0] if isinstance(x, dict) else x[0]
        )
        samples += int(first.shape[0])
        if bar is not None:
            bar.update(seen, values=[("samples", samples)], finalize=False)
    if bar is not None:
        bar.update(seen, values=[("samples", samples)], finalize=True)
    if seen == 0:
        raise ValueError(
            f"The data given for pattern fitting yielded no batches (received an empty "
            f"{type(data).__name__}); expected at least one batch of samples."
        )
    if samples == 0:
        raise ValueError(
            f"The data given for pattern fitting contained no samples ({seen} empty batch(es)); "
            "expected at least one sample."
        )
    if steps is not None and seen < steps:
        warnings.warn(
            f"The data ran out after {seen} batch(es) ({samples} samples); expected steps={steps}. "
            "The patterns use the batches seen.",
            stacklevel=3,
        )
    return seen

"""Turning the data given to ``fit`` into batches of model inputs.

Accepted, as in ``model.fit``:

* a NumPy array (or a list of arrays / a dict by input name for multi-input models): cut into
  batches of ``batch_size`` (the last batch may be smaller);
* a ``tf.data.Dataset`` yielding batches;
* a ``keras.utils.PyDataset`` (``len()`` batches, ``ds[i]``; endless ones need ``steps``);
* a Python generator or iterator yielding batches;
* a function ``dataset_fn(input_context) -> tf.data.Dataset`` (the input pipeline of
  ``strategy.distribute_datasets_from_function``: each input pipeline reads its own shard, batched
  at ``input_context.get_per_replica_batch_size(global_batch_size)``). Without a strategy it is
  called once with a default ``tf.distribute.InputContext()``.

A batch is ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; only ``x`` is used (a
multi-input ``x`` is a list or dict, so a 2-tuple is always read as ``(x, y)``, as Keras does).
"""

import collections
import inspect
import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_patterns import validation
from keras_patterns.errors import NonFiniteDataError
from keras_patterns.graph import _keras_internals as ki
from keras_patterns.patterns import distribution
from keras_patterns._warnings import user_stacklevel

EXPECTED = (
    "a NumPy array (or list/dict of arrays), a tf.data.Dataset, a keras.utils.PyDataset, a Python "
    "generator yielding x, (x, y) or (x, y, sample_weight), or a function "
    "dataset_fn(input_context) -> tf.data.Dataset"
)


def is_dataset_fn(data):
    """Whether ``data`` is a ``dataset_fn(input_context)`` (a callable that is neither a generator
    function nor an iterator nor a Keras/tf.data object)."""
    if not callable(data) or inspect.isgeneratorfunction(data) or hasattr(data, "__next__") or isinstance(
            data, (tf.data.Dataset, keras.utils.PyDataset, type)):
        return False
    try:  # it must take the input context (a function of no argument is a generator factory)
        inspect.signature(data).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


def call_dataset_fn(dataset_fn, input_context=None):
    """``dataset_fn(input_context)``, checked to be a ``tf.data.Dataset``.

    Raises:
        TypeError: the function returned something else.
    """
    ds = dataset_fn(tf.distribute.InputContext() if input_context is None else input_context)
    if not isinstance(ds, tf.data.Dataset):
        raise TypeError(
            "A dataset function given as `data` must take a tf.distribute.InputContext and return a "
            f"tf.data.Dataset. Received: {getattr(dataset_fn, '__name__', dataset_fn)!r} returned "
            f"{type(ds).__name__}"
        )
    return ds


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


def input_tensors(x, names, specs):
    """One batch of model inputs as tensors of the model's input dtypes, shapes checked.

    Args:
        x: an array or tensor; a list, or a dict by input name, for several inputs.
        names: the model's input names.
        specs: one ``tf.TensorSpec`` (batch dimension None) per input.

    Returns:
        A list of tensors, one per input.

    Raises:
        TypeError: non-numeric input.
        ValueError: the wrong number of inputs, or a shape that does not match the spec (with a
            hint for an unbatched ``tf.data.Dataset``).
    """
    out = []
    for i, (xi, spec) in enumerate(zip(validation.input_list(x, names), specs)):
        t = tf.convert_to_tensor(xi)
        if not (t.dtype.is_floating or t.dtype.is_integer or t.dtype.is_bool):
            raise validation.non_numeric_error(i, t.dtype.name)
        if t.dtype != spec.dtype:
            t = tf.cast(t, spec.dtype)
        hint = ""
        if t.shape.rank == spec.shape.rank - 1:
            hint = " (an unbatched tf.data.Dataset? call .batch(batch_size) on it)"
        validation.check_input_shape(i, names[i], tuple(spec.shape), tuple(t.shape), hint)
        out.append(t)
    return out


def dataset_steps(data, steps):
    """The number of batches a pass over ``data`` (a ``tf.data.Dataset``) will read, or None.

    Args:
        data: a ``tf.data.Dataset`` of batches.
        steps: the user's bound on the batches, or None.

    Returns:
        ``min(cardinality, steps)`` where known; ``steps`` where the cardinality is unknown.

    Raises:
        ValueError: an infinite dataset (``.repeat()``) without ``steps``.
    """
    card = int(data.cardinality().numpy())
    if card == tf.data.INFINITE_CARDINALITY and steps is None:
        raise ValueError(
            "The tf.data.Dataset is infinite (e.g. .repeat()); pass `steps` to bound the fitting "
            "pass. Received: steps=None"
        )
    if card < 0:
        return steps
    return card if steps is None else min(card, steps)


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
    batch_size = validation.positive_int("batch_size", batch_size)
    steps = validation.positive_int("steps", steps, allow_none=True)
    if _is_array_like(data):
        it, n, _ = _array_batches(data, batch_size)
        return _limit(it, steps), (n if steps is None else min(n, steps))
    if isinstance(data, tf.data.Dataset):
        total = dataset_steps(data, steps)
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
    if isinstance(data, np.lib.npyio.NpzFile):  # iterating it gives its key names (strings)
        raise TypeError(
            f"`data` must be {EXPECTED}. Received: the contents of an .npz file (arrays "
            f"{list(data.files)}); pass one of its arrays, e.g. data[{data.files[0]!r}]"
            if data.files else f"`data` must be {EXPECTED}. Received: an empty .npz file"
        )
    if is_dataset_fn(data):
        return batches(call_dataset_fn(data), batch_size, steps)
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


#: What :func:`run_pass` did: batches read from the data, samples fed to the statistics, samples
#: skipped for NaN/Inf (``skip_nonfinite=True``) and the batches those came from.
PassSummary = collections.namedtuple("PassSummary", ["batches", "samples", "skipped", "skipped_batches"])

#: Sample indices listed in messages before "... (N in all)".
_LISTED = 10


def _float_view(array):
    """``array`` as a NumPy array if it holds floats, else None (integer, bool, string inputs).

    Host tensors are viewed without a copy.
    """
    try:
        a = np.asarray(array)
    except (TypeError, ValueError):
        return None
    if a.ndim == 0 or a.dtype.kind not in "fcV":  # "V": bfloat16 and other ml_dtypes floats
        return None
    return a


def _per_sample(flags):
    """Reduces elementwise flags of a batch to one flag per sample (True if any is set)."""
    return flags.reshape(flags.shape[0], int(np.prod(flags.shape[1:], dtype=np.int64))).any(axis=1)


def _listed(indices, offset=0):
    shown = ", ".join(str(int(i) + offset) for i in indices[:_LISTED])
    more = f", ... ({len(indices)} in all)" if len(indices) > _LISTED else ""
    return f"[{shown}{more}]"


def _nan_samples(arrays, rows):
    """How many of the samples ``rows`` hold a NaN (the others hold an Inf)."""
    has_nan = np.zeros(len(rows), dtype=bool)
    for a in (_float_view(a) for a in arrays):
        if a is not None:
            try:
                has_nan |= _per_sample(np.isnan(a[rows]))
            except TypeError:
                continue
    return int(has_nan.sum())


def _nonfinite_error(batch, rows, first_sample, arrays):
    return NonFiniteDataError(
        f"Batch {batch} of the fitting data holds NaN or Inf values, in its samples "
        f"{_listed(rows)} (samples {_listed(rows, first_sample)} counting from the first sample of "
        "the data). Patterns are fitted on finite values only: clean the data, or pass "
        "skip_nonfinite=True to leave such samples out. Received: "
        f"{len(rows)} non-finite sample(s) in batch {batch}, {_nan_samples(arrays, rows)} of them with NaN",
        batch=batch, samples=[int(i) for i in rows],
    )


def _check_summary(summary, data, read, steps):
    """Raises for a pass that fed no sample; warns about skipped samples and a short generator."""
    seen, samples, skipped, skipped_batches = summary
    if seen == 0:
        raise ValueError(
            f"The data given for pattern fitting yielded no batches (received an empty "
            f"{type(data).__name__}); expected at least one batch of samples."
        )
    if samples == 0 and skipped:
        raise ValueError(
            f"The data given for pattern fitting contained no finite sample: all {skipped} sample(s) "
            f"of its {seen} batch(es) held NaN or Inf and were skipped (skip_nonfinite=True); "
            "expected at least one finite sample."
        )
    if samples == 0:
        raise ValueError(
            f"The data given for pattern fitting contained no samples ({seen} empty batch(es)); "
            "expected at least one sample."
        )
    if skipped:
        warnings.warn(
            f"Skipped {skipped} sample(s) holding NaN or Inf values, from {skipped_batches} "
            f"batch(es); the patterns use the other {samples} sample(s).",
            stacklevel=user_stacklevel(),
        )
    if steps is not None and seen < steps:
        warnings.warn(
            f"The data ran out after {seen} batch(es) ({read} samples); expected steps={steps}. "
            "The patterns use the batches seen.",
            stacklevel=user_stacklevel(),
        )


class _Progbar(keras.utils.Progbar):
    """Keras' progress bar, with the number of samples fed shown as an integer."""

    def show(self, step, samples, finalize=False):
        if self.verbose == 1:
            ki.progbar_set_value(self, "samples", int(samples))
        self.update(step, finalize=finalize)


def run_pass(stats, data, batch_size=32, steps=None, verbose="auto", skip_nonfinite=False):
    """Feeds every batch of ``data`` to ``stats.update_state_finite`` with a Keras progress bar.

    Every batch is checked for NaN and Inf (float inputs only) inside the compiled update: only
    one flag per sample comes back to the host, and the samples holding NaN/Inf are never added
    to the sums. By default the first batch holding any raises
    :class:`~keras_patterns.errors.NonFiniteDataError`; with ``skip_nonfinite=True`` the samples
    holding NaN/Inf are left out and a warning gives their number.

    Args:
        stats: the accumulator: a :class:`~keras_patterns.patterns.statistics.PatternStatistics`,
            or any object with a ``strategy`` attribute (None: one device) and an
            ``update_state_finite(x)`` method that adds the finite samples of batch ``x`` and
            returns one bool per sample (False: NaN/Inf, not added).
        data, batch_size, steps: see :func:`batches`.
        verbose: ``"auto"`` (= 1), 0 (silent), 1 (progress bar) or 2 (one line at the end), as in
            ``model.fit``. Defaults to `"auto"`.
        skip_nonfinite: leave out the samples holding NaN or Inf instead of raising. Defaults to
            `False`.

    Returns:
        A :data:`PassSummary` ``(batches, samples, skipped, skipped_batches)``: the batches read,
        the samples fed, the samples skipped and the number of batches they came from.

    Raises:
        ValueError: if the data gave no batch at all, or no finite sample.
        NonFiniteDataError: for a batch holding NaN/Inf (unless ``skip_nonfinite=True``); it
            names the batch and the samples.

    Example:

    ```python
    stats = PatternStatistics(graph, "relu")
    summary = run_pass(stats, x_train, batch_size=64, verbose=0, skip_nonfinite=True)
    summary.skipped          # samples left out for NaN/Inf
    ```
    """
    verbose = validation.one_of("verbose", verbose, ("auto", 0, 1, 2))
    verbose = 1 if verbose == "auto" else verbose
    skip_nonfinite = validation.boolean("skip_nonfinite", skip_nonfinite)
    if stats.strategy is None:
        it, total = batches(data, batch_size, steps)
        update = stats.update_state_finite
    else:
        from keras_patterns.patterns import distributed_data

        it, total = distributed_data.distributed_batches(stats, data, batch_size, steps)
        update = stats.update_state_replicas
    bar = _Progbar(total, verbose=verbose, unit_name="step") if verbose else None
    seen = samples = read = skipped = skipped_batches = 0
    for x in it:
        if stats.strategy is None:
            arrays = validation.input_list(x, stats.graph.input_names)
            validation.check_batch_sizes([int(np.shape(a)[0]) for a in arrays if np.ndim(a)])
        else:
            arrays = x
        finite = update(arrays)
        n = len(finite)
        rows = np.flatnonzero(~finite)
        if len(rows):
            if not skip_nonfinite:
                if stats.strategy is not None:
                    arrays = distribution.local_results(stats.strategy, arrays)
                raise _nonfinite_error(seen, rows, read, arrays)
            skipped += len(rows)
            skipped_batches += 1
        samples += n - len(rows)
        seen += 1
        read += n
        if bar is not None and (total is None or seen < total):
            bar.show(seen, samples)
    if bar is not None:
        bar.show(seen, samples, finalize=True)  # the last step is drawn once, as the final line
    summary = PassSummary(seen, samples, skipped, skipped_batches)
    _check_summary(summary, data, read, steps)
    return summary

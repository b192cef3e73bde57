"""The fitting data as a distributed dataset of model-input batches (for a ``tf.distribute`` strategy).

* a ``tf.data.Dataset`` of global batches goes through ``strategy.experimental_distribute_dataset``
  (each global batch is split over the replicas; across workers the dataset is auto-sharded);
* a function ``dataset_fn(input_context)`` goes through
  ``strategy.distribute_datasets_from_function``: it builds one input pipeline per worker, which
  shards and batches itself (at ``input_context.get_per_replica_batch_size(global_batch)``);
* arrays, ``PyDataset`` objects and generators are read on the host in global batches of
  ``batch_size`` (checked by the one reader of model inputs) and fed through
  ``tf.data.Dataset.from_generator`` (sharded by data across workers: every worker must be given
  the same data, as in any SPMD program).

Each element is checked against the model's inputs before the pass starts (structure, dtype,
rank, sizes) so that a dataset of the wrong structure fails with a message naming its
``element_spec``, not inside the compiled replica step.
"""

import tensorflow as tf

from keras_patterns import validation
from keras_patterns.patterns.data import batches, call_dataset_fn, dataset_steps, input_tensors, is_dataset_fn


def _x_spec(spec):
    """The model-input part of an element spec (the first entry of a tuple, as :func:`split_x`)."""
    if isinstance(spec, tuple):
        if len(spec) in (1, 2, 3):
            return spec[0], True
        raise ValueError(
            "A dataset element must be x, (x,), (x, y) or (x, y, sample_weight). Received: a tuple "
            f"of {len(spec)} elements, element_spec={spec}"
        )
    return spec, False


def model_inputs(ds, specs, names):
    """``ds`` mapped to tuples of model-input tensors cast to the model's dtypes, checked first.

    Args:
        ds: a ``tf.data.Dataset`` of batches (``x``, ``(x,)``, ``(x, y)``, ``(x, y, w)``).
        specs: the model inputs' ``tf.TensorSpec`` (batch dimension None).
        names: the model's input names.

    Returns:
        The mapped dataset.

    Raises:
        ValueError: elements of the wrong structure, rank or size (the message gives the
            dataset's ``element_spec``).
        TypeError: a non-numeric input.
    """
    x_spec, is_tuple = _x_spec(ds.element_spec)
    try:
        parts = validation.input_list(x_spec, names)
    except ValueError as e:
        raise ValueError(
            f"The dataset's elements do not match the model's inputs {list(names)}: {e}. "
            f"Received: element_spec={ds.element_spec}"
        ) from None
    for i, (part, spec) in enumerate(zip(parts, specs)):
        if not isinstance(part, tf.TensorSpec):
            raise ValueError(
                f"Input {i} ({names[i]}) of the dataset's elements must be a dense tensor. "
                f"Received: {part} in element_spec={ds.element_spec}"
            )
        if not (part.dtype.is_floating or part.dtype.is_integer or part.dtype.is_bool):
            raise validation.non_numeric_error(i, part.dtype.name)
        rank = part.shape.rank
        hint = " (an unbatched tf.data.Dataset? call .batch(batch_size) on it)" if rank == spec.shape.rank - 1 else ""
        try:
            validation.check_input_shape(i, names[i], tuple(spec.shape), tuple(part.shape), hint)
        except ValueError as e:
            raise ValueError(f"{e}, in the dataset's element_spec={ds.element_spec}") from None

    def to_inputs(*element):
        x = element[0] if is_tuple else element[0] if len(element) == 1 else element
        return tuple(tf.cast(t, s.dtype) for t, s in zip(validation.input_list(x, names), specs))

    return ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def distributed_batches(stats, data, batch_size=32, steps=None):
    """An iterator over the distributed model-input batches of ``data``, and their number.

    Args:
        stats: a :class:`~keras_patterns.patterns.PatternStatistics` built under a strategy.
        data: see :mod:`keras_patterns.patterns.data`.
        batch_size: the *global* batch size for arrays, PyDatasets and generators (split over the
            replicas, as in ``model.fit``). Defaults to `32`.
        steps: the number of global batches to use. Defaults to `None` (all the data).

    Returns:
        ``(iterator, n_batches)`` (``n_batches`` None if unknown); the iterator yields per-replica
        tuples of model-input tensors.
    """
    strategy, specs, names = stats.strategy, stats._specs, stats.graph.input_names
    batch_size = validation.positive_int("batch_size", batch_size)
    steps = validation.positive_int("steps", steps, allow_none=True)
    if is_dataset_fn(data):
        def pipeline(context):
            ds = model_inputs(call_dataset_fn(data, context), specs, names)
            return ds if steps is None else ds.take(steps)

        return iter(strategy.distribute_datasets_from_function(pipeline)), steps
    if isinstance(data, tf.data.Dataset):
        total = dataset_steps(data, steps)
        ds = model_inputs(data, specs, names)
        if steps is not None:
            ds = ds.take(steps)
        return iter(strategy.experimental_distribute_dataset(ds)), total
    it, total = batches(data, batch_size, steps)

    def host_batches():
        for x in it:
            arrays = input_tensors(x, names, specs)
            validation.check_batch_sizes([int(a.shape[0]) for a in arrays])
            yield tuple(arrays)

    ds = tf.data.Dataset.from_generator(host_batches, output_signature=tuple(specs))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(ds.with_options(options))), total

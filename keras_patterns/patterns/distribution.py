"""``tf.distribute`` support shared by pattern fitting and analysis.

An analyzer, a :class:`~keras_patterns.PatternComputer` or a
:class:`~keras_patterns.patterns.PatternStatistics` remembers the strategy it was built under, as a
Keras model does (``tf.distribute.has_strategy()`` / ``get_strategy()`` at construction), and runs
its work under that strategy's scope: fitting runs the statistics per replica into ``ON_READ``
float64 sums that are all-reduced when read; analysis splits every batch across the local
replicas and concatenates their maps in order.
"""

import contextlib

import numpy as np
import tensorflow as tf


def current_strategy():
    """The strategy whose scope is entered now, or None (the default strategy)."""
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def describe(strategy):
    """``"MirroredStrategy (2 replicas)"``, or ``"no strategy"`` for None."""
    if strategy is None:
        return "no strategy"
    return f"{type(strategy).__name__} ({strategy.num_replicas_in_sync} replicas)"


def check_scope(strategy, who):
    """Raises when called under a strategy scope other than the one ``who`` was built under.

    Args:
        strategy: the strategy ``who`` was built under (None for none).
        who: the object's description, for the message (e.g. ``"The analyzer 'gradient'"``).

    Raises:
        ValueError: ``who`` was built under another strategy (or none) than the current scope's.
    """
    now = current_strategy()
    if now is not None and now is not strategy:
        raise ValueError(
            f"{who} was built under {describe(strategy)} but is used inside the scope of another "
            f"strategy. Build it inside `with strategy.scope():` of the strategy it runs under (as "
            f"a Keras model), or use it outside any scope. Received: a call under {describe(now)}"
        )


def scope(strategy):
    """The strategy's scope (a no-op context for None)."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def local_replicas(strategy):
    """The number of replicas on this worker."""
    return len(strategy.extended.worker_devices)


def split_batch(strategy, arrays):
    """Distributes one host batch over this worker's replicas, consecutive slices in replica order.

    Args:
        strategy: a ``tf.distribute`` strategy.
        arrays: one NumPy array (or tensor) per model input, same batch size.

    Returns:
        A per-replica value (a list of tensors for every replica); replicas past the end get
        empty slices.
    """
    n = int(np.shape(arrays[0])[0])
    k = local_replicas(strategy)
    bounds = np.linspace(0, n, k + 1).round().astype(int)

    def value_fn(ctx):
        # Replicas are numbered worker by worker, k per worker: the local index is the id mod k.
        i = ctx.replica_id_in_sync_group % k
        return [tf.convert_to_tensor(a[bounds[i]:bounds[i + 1]]) for a in arrays]

    return strategy.experimental_distribute_values_from_function(value_fn)


def local_results(strategy, value):
    """A per-replica tensor (or list of them) as NumPy, this worker's replicas concatenated."""
    parts = strategy.experimental_local_results(value)
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([p[i].numpy() for p in parts], axis=0) for i in range(len(parts[0]))]
    return np.concatenate([p.numpy() for p in parts], axis=0)

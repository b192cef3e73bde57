"""Explanations while a model trains: ``AnalysisCallback`` next to Keras' ``TensorBoard``.

The callback explains a fixed probe batch after every epoch with the gradient and
PatternAttribution (whose patterns it re-fits on ``fit_data`` each time, since the weights change)
and writes PNG grids, the raw maps (``.npz``) and TensorBoard image summaries under
``<log_dir>/analysis``, next to TensorBoard's scalars. ``on_maps`` receives the maps too: here it
records how much of each map falls on the digits' ink, epoch by epoch.

    python examples/training_callback.py [--quick] [--log-dir logs]
    tensorboard --logdir logs

Without the ``tensorboard`` package the script skips Keras' ``TensorBoard`` callback (scalars);
the analysis callback still writes its files.
"""

import argparse
import os
import sys
import tempfile
import time


def main(argv=None):
    """Trains a digits CNN with the analysis callback; prints and returns the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--epochs``, ``--log-dir``). Defaults to
            `None` (``sys.argv[1:]``).

    Returns:
        dict with ``epochs`` (the 0-based epochs logged), ``ink_share``
        ``{method: [share of |map| on the ink, one per logged epoch]}``, the test ``accuracy``,
        ``files`` (the files written under the log folder) and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="less data, fewer epochs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 5, 2 with --quick)")
    p.add_argument("--log-dir", default=None, help="log folder (default: a temporary folder)")
    args = p.parse_args(argv)
    n_train = 1000 if args.quick else 4000
    epochs = args.epochs or (2 if args.quick else 5)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="kp_logs_")
    t0 = time.perf_counter()

    import keras
    import numpy as np

    import keras_patterns.callbacks  # noqa: F401  (kp.callbacks)
    import keras_patterns as kp
    from keras_patterns.datasets import make_digits

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from digits_cnn import build_model, ink_share

    keras.utils.set_random_seed(0)
    x_train, y_train = make_digits(n_train, seed=0)
    x_test, y_test = make_digits(200, seed=1)
    probe, probe_ink = x_test[:8], make_digits(200, seed=1, noise=0.0)[0][:8] > 0.5
    shares, logged = {}, []

    def on_maps(epoch, maps):
        logged.append(epoch)
        for name, m in maps.items():
            shares.setdefault(name, []).append(ink_share(m, probe_ink))

    analysis = kp.callbacks.AnalysisCallback(
        ["gradient", "pattern.attribution"], x=probe, fit_data=x_train[:512], log_dir=log_dir,
        on_maps=on_maps, y=y_test[:8], class_names=[str(d) for d in range(10)],
        at_train_end=False,
    )
    callbacks = [analysis]
    try:
        import tensorboard  # noqa: F401  (keras.callbacks.TensorBoard writes scalars with it)

        callbacks.insert(0, keras.callbacks.TensorBoard(log_dir))
    except ImportError:
        print("tensorboard is not installed: skipping keras.callbacks.TensorBoard (scalars)")
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    files = sorted(os.path.relpath(os.path.join(d, f), log_dir)
                   for d, _, fs in os.walk(log_dir) for f in fs)
    out = {"epochs": logged, "ink_share": shares, "accuracy": accuracy, "files": files,
           "seconds": time.perf_counter() - t0}
    print(f"test accuracy {accuracy:.3f}; maps logged after epochs {[e + 1 for e in logged]}")
    print(f"share of |map| on the ink (ink covers {float(probe_ink.mean()):.1%}), epoch by epoch:")
    for name, values in shares.items():
        print(f"  {name:20s} " + "  ".join(f"{v:.1%}" for v in values))
    print(f"{len(files)} files under {log_dir}, e.g. {files[:3]}")
    print(f"done in {out['seconds']:.1f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

"""A residual network with BatchNormalization, explained with LRP and PatternAttribution.

Skip connections (``Add``) and BatchNormalization need no special handling: the analyzers fold each
BatchNormalization into the preceding convolution (``analyzer.plan`` shows the rule of every node)
and split the relevance at each ``Add`` in proportion to the contributions. The data is
``keras_patterns.datasets.make_digits`` (16x16 digits from a built-in font, no download); the
noise-free twin of each image tells which pixels are ink, so we can measure how much of each map
falls on the digit.

    python examples/residual_bn.py [--quick]
"""

import argparse
import sys
import time

METHODS = (
    ("gradient", {}),
    ("lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.sequential_preset_a", {}),
    ("pattern.attribution", {}),
)


def build_model(size=16, width=16):
    """Conv stem, two residual blocks with BatchNormalization, global pooling, softmax."""
    import keras
    from keras import layers as L

    inp = keras.Input((size, size, 1))
    h = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization(momentum=0.9)(h)
    h = L.MaxPooling2D(2)(L.ReLU()(h))
    for i in range(2):
        r = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv1")(h)
        r = L.BatchNormalization(momentum=0.9, name=f"block{i}_bn1")(r)
        r = L.ReLU()(r)
        r = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(r)
        r = L.BatchNormalization(momentum=0.9, name=f"block{i}_bn2")(r)
        h = L.ReLU(name=f"block{i}_out")(L.Add(name=f"block{i}_add")([h, r]))
    h = L.Flatten()(L.MaxPooling2D(2)(h))
    return keras.Model(inp, L.Dense(10, activation="softmax")(h), name="resnet_bn")


def signal_share(maps, signal):
    """Fraction of each map's absolute value on the ink, averaged over the samples."""
    import numpy as np

    a = np.abs(maps).reshape(len(maps), -1)
    m = (signal > 0).reshape(len(signal), -1)
    return float(np.mean((a * m).sum(1) / np.maximum(a.sum(1), 1e-12)))


def main(argv=None):
    """Trains the residual network and explains it; prints and returns the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--epochs``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        dict with the test ``accuracy``, the ``signal_fraction`` (ink) of the pixels,
        ``signal_share`` ``{method: share of |map| on the ink}`` and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="less data, fewer epochs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 6, 3 with --quick)")
    args = p.parse_args(argv)
    n_train = 1500 if args.quick else 6000
    epochs = args.epochs or (3 if args.quick else 6)
    t0 = time.perf_counter()

    import keras
    import numpy as np

    import keras_patterns as kp
    from keras_patterns.datasets import make_digits

    keras.utils.set_random_seed(0)
    x_train, y_train = make_digits(n_train, seed=0)
    x_test, y_test = make_digits(200, seed=1)
    s_test = make_digits(200, seed=1, noise=0.0)[0] > 0.5  # the ink of the same images
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    logits = kp.model_wo_softmax(model)

    shares = {}
    for name, kwargs in METHODS:
        analyzer = kp.create_analyzer(name, logits, **kwargs)
        if analyzer.needs_fitting:
            analyzer.fit(x_train, batch_size=256, verbose=0)
        maps = analyzer.analyze(x_test)
        if not np.isfinite(maps).all():
            raise RuntimeError(f"{name} gave non-finite maps")
        shares[name] = signal_share(maps, s_test)
    out = {"accuracy": accuracy, "signal_fraction": float((s_test > 0).mean()),
           "signal_share": shares, "seconds": time.perf_counter() - t0}
    print(f"test accuracy {accuracy:.3f} ({n_train} training images, {epochs} epochs)")
    print(f"ink covers {out['signal_fraction']:.1%} of the pixels; share of |map| on the ink:")
    for name, share in shares.items():
        print(f"  {name:24s} {share:.1%}")
    print(f"done in {out['seconds']:.1f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

"""A digits CNN end to end: data, training, pattern fitting, explanations, a picture.

The digits come from ``keras_patterns.datasets.make_digits`` (a built-in bitmap font with random
shifts and noise, 16x16 grayscale; no download). The script trains a small CNN, strips the softmax,
fits PatternAttribution's patterns on the training images, explains test images with the gradient,
LRP-epsilon and PatternAttribution, and measures how much of each map's absolute value falls on the
digit's ink (the ink covers about a quarter of the pixels).

    python examples/digits_cnn.py [--quick] [--out digits.png]
"""

import argparse
import sys
import time

METHODS = (
    ("gradient", {}),
    ("lrp.epsilon", {"epsilon": 0.1}),
    ("pattern.attribution", {}),
)


def build_model():
    """A small ReLU CNN for 16x16x1 images, 10 classes, softmax head."""
    import keras

    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")


def ink_share(maps, ink):
    """Fraction of each map's absolute value on the ink pixels, averaged over the samples."""
    import numpy as np

    a = np.abs(maps).reshape(len(maps), -1)
    m = ink.reshape(len(ink), -1)
    return float(np.mean((a * m).sum(1) / np.maximum(a.sum(1), 1e-12)))


def main(argv=None):
    """Trains and explains the digits CNN; prints and returns the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--epochs``, ``--out``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        dict with the test ``accuracy``, the ``ink_fraction`` of the test images, ``ink_share``
        ``{method: share of |map| on ink}``, and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="less data, fewer epochs (about 10 s)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 6, 3 with --quick)")
    p.add_argument("--out", default=None, help="write a PNG grid of inputs and maps")
    args = p.parse_args(argv)
    n_train = 1500 if args.quick else 6000
    epochs = args.epochs or (3 if args.quick else 6)
    t0 = time.perf_counter()

    import keras

    import keras_patterns as kp
    from keras_patterns.datasets import make_digits

    keras.utils.set_random_seed(0)
    x_train, y_train = make_digits(n_train, seed=0)
    x_test, y_test = make_digits(200, seed=1)
    clean, _ = make_digits(200, seed=1, noise=0.0)  # same digits and shifts, without noise
    ink = clean > 0.5
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    logits = kp.model_wo_softmax(model)

    shares, maps = {}, {}
    for name, kwargs in METHODS:
        analyzer = kp.create_analyzer(name, logits, **kwargs)
        if analyzer.needs_fitting:
            analyzer.fit(x_train, batch_size=256, verbose=0)
        maps[name] = analyzer.analyze(x_test)
        shares[name] = ink_share(maps[name], ink)
    out = {"accuracy": accuracy, "ink_fraction": float(ink.mean()), "ink_share": shares,
           "seconds": time.perf_counter() - t0}
    print(f"test accuracy {accuracy:.3f} ({n_train} training images, {epochs} epochs)")
    print(f"ink covers {out['ink_fraction']:.1%} of the pixels; share of |map| on the ink:")
    for name, share in shares.items():
        print(f"  {name:22s} {share:.1%}")
    if args.out:
        from keras_patterns import visualization as vis

        grid = [[vis.project(x_test[i])] + [vis.heatmap(maps[n][i]) for n, _ in METHODS] for i in range(6)]
        vis.plot_grid(grid, row_labels=[f"digit {y_test[i]}" for i in range(6)],
                      col_labels=["input"] + [n for n, _ in METHODS], path=args.out)
        print(f"wrote {args.out}")
    print(f"done in {out['seconds']:.1f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

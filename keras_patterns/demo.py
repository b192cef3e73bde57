"""The demo: train a small CNN on built-in synthetic data, explain it with every method family,
and write the pictures.

Run it with ``keras-patterns demo --out demo_out`` or ``python examples/demo.py --out demo_out``.
"""

import os
import time

import numpy as np

#: (registry name, arguments). How a map is drawn is read from the analyzer's ``output_kind``.
METHODS = (
    ("gradient", {}),
    ("smoothgrad", {"augment_by_n": 32, "noise_scale": 0.2, "seed": 0}),
    ("deconvnet", {}),
    ("guided_backprop", {}),
    ("input_t_gradient", {}),
    ("integrated_gradients", {"steps": 32}),
    ("lrp.epsilon", {"epsilon": 0.1}),
    ("lrp.sequential_preset_a", {}),
    ("deep_taylor", {}),
    ("pattern.net", {}),
    ("pattern.attribution", {}),
)


def build_model(size=24):
    """A small ReLU CNN with a softmax head (the demo strips it with model_wo_softmax)."""
    import keras

    return keras.Sequential([
        keras.Input((size, size, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ], name="shapes_cnn")


def run_demo(out_dir="demo_out", n_train=3000, epochs=4, n_show=6, seed=0, verbose=1):
    """Trains, fits patterns, explains and writes ``<out_dir>/demo_grid.png`` and
    ``<out_dir>/toy_example.png``.

    Args:
        out_dir: output folder (created). Defaults to `"demo_out"`.
        n_train: training images. Defaults to `3000`.
        epochs: training epochs. Defaults to `4`.
        n_show: test images shown. Defaults to `6`.
        seed: seed of data and weights. Defaults to `0`.
        verbose: 0 silent, 1 progress lines. Defaults to `1`.

    Returns:
        dict with the test accuracy, per-method analyze seconds and the written file paths.
    """
    import keras

    import keras_patterns as kp
    from keras_patterns import visualization as vis
    from keras_patterns.datasets import CLASS_NAMES, make_shapes

    os.makedirs(out_dir, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)
    keras.utils.set_random_seed(seed)
    x_train, y_train, _ = make_shapes(n_train, seed=seed)
    x_test, y_test, s_test = make_shapes(500, seed=seed + 1)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2 if verbose else 0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    log(f"test accuracy: {accuracy:.3f}")
    logits = kp.model_wo_softmax(model)

    x = x_test[:n_show]
    rows = [[vis.project(x[i]) for i in range(n_show)], [s_test[i, ..., 0] for i in range(n_show)]]
    labels = ["input", "true signal"]
    seconds = {}
    for name, kwargs in METHODS:
        analyzer = kp.create_analyzer(name, logits, **kwargs)
        if analyzer.needs_fitting:
            t0 = time.perf_counter()
            analyzer.fit(x_train, batch_size=128, verbose=0)
            log(f"{name}: patterns fitted on {len(x_train)} images in {time.perf_counter() - t0:.2f}s")
        t0 = time.perf_counter()
        maps = analyzer.analyze(x)
        seconds[name] = time.perf_counter() - t0
        pics = vis.render(maps, analyzer.output_kind)
        rows.append(list(pics))
        labels.append(name)
        log(f"{name}: {seconds[name]:.2f}s")
    grid = [list(col) for col in zip(*rows)]  # one row per image, one column per method
    preds = logits(x).numpy().argmax(1)
    row_labels = [f"{CLASS_NAMES[y_test[i]]}\n(pred {CLASS_NAMES[preds[i]]})" for i in range(n_show)]
    grid_path = os.path.join(out_dir, "demo_grid.png")
    vis.plot_grid(grid, row_labels=row_labels, col_labels=labels, path=grid_path)
    toy_path = os.path.join(out_dir, "toy_example.png")
    toy = toy_example(toy_path)
    log(f"wrote {grid_path} and {toy_path}")
    log(f"toy example: filter w = {np.round(toy['w'], 3)}, fitted pattern a = {np.round(toy['a'], 3)} "
        f"(signal direction (1, 0))")
    return {"accuracy": accuracy, "seconds": seconds, "files": [grid_path, toy_path], "toy": toy}


def toy_example(path=None, n=2000, seed=0):
    """The paper's 2-D example (Kindermans et al. 2018, Sec. 2): x = (1, 0) y + (1, 1) eps with the
    filter w = (1, -1). Fits the linear pattern and optionally draws data, filter and pattern.

    Returns:
        dict with ``w``, the fitted pattern ``a`` and the cosine between ``a`` and (1, 0).
    """
    import keras

    import keras_patterns as kp

    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, n)
    eps = rng.normal(0, 1, n)
    x = (np.outer(y, [1.0, 0.0]) + np.outer(eps, [1.0, 1.0])).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([np.array([[1.0], [-1.0]], "float32")])
    patterns = kp.PatternComputer(model, pattern_type="linear").compute(x, verbose=0)
    a = next(iter(patterns.values()))[:, 0]
    cosine = float(a[0] / np.linalg.norm(a))
    if path is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=4, alpha=0.5)
        for vec, label, color in [((1, -1), "filter w (gradient)", "k"), (a, "pattern a (PatternNet)", "g"),
                                  ((1, 1), "distractor direction", "gray")]:
            ax.annotate("", xy=vec, xytext=(0, 0), arrowprops=dict(color=color, width=2))
            ax.text(vec[0] * 1.1, vec[1] * 1.1, label, color=color)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.set_title("signal (1,0)·y + distractor (1,1)·ε")
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return {"w": np.array([1.0, -1.0]), "a": a, "cosine": cosine}

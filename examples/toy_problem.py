"""The paper's toy problem (Kindermans et al. 2018, Sec. 2): the filter is not the signal.

The data is ``x = (1, 0) * y + (1, 1) * eps``: the signal ``y`` lives along (1, 0), a distractor
``eps`` along (1, 1). The optimal linear model ``w = (1, -1)`` cancels the distractor, so its
gradient ``w`` points away from the signal. PatternNet fits the pattern ``a = cov(x, y) / var(y)``
(about (1, 0)) and reconstructs the signal ``a * y`` of every sample.

    python examples/toy_problem.py [--quick] [--out toy.png]
"""

import argparse
import sys
import time


def main(argv=None):
    """Runs the toy problem and prints the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--n``, ``--out``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        dict with ``w``, the fitted pattern ``a``, ``cosine`` between ``a`` and (1, 0), and the
        mean squared errors of the PatternNet and gradient signal estimates
        (``patternnet_mse``, ``gradient_mse``), and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (a few seconds)")
    p.add_argument("--n", type=int, default=None, help="samples (default 20000, 2000 with --quick)")
    p.add_argument("--out", default=None, help="write the scatter plot with w and a to this PNG")
    args = p.parse_args(argv)
    n = args.n or (2000 if args.quick else 20000)
    t0 = time.perf_counter()

    import keras
    import numpy as np

    import keras_patterns as kp
    from keras_patterns.demo import toy_example

    toy = toy_example(args.out, n=n, seed=0)  # fits the linear pattern of w = (1, -1)

    # The same data, through the analyzers: PatternNet's map of a sample is a * (w^T x) = a * y.
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, n)
    eps = rng.normal(0, 1, n)
    signal = np.outer(y, [1.0, 0.0])
    x = (signal + np.outer(eps, [1.0, 1.0])).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([np.array([[1.0], [-1.0]], "float32")])
    net = kp.create_analyzer("pattern.net", model, pattern_type="linear")
    net.fit(x, batch_size=256, verbose=0)
    s_net = net.analyze(x)
    s_grad = kp.create_analyzer("gradient", model).analyze(x) * y[:, None]  # best-scaled w
    out = {
        "w": toy["w"], "a": toy["a"], "cosine": toy["cosine"],
        "patternnet_mse": float(np.mean((s_net - signal) ** 2)),
        "gradient_mse": float(np.mean((s_grad - signal) ** 2)),
        "seconds": time.perf_counter() - t0,
    }
    print(f"filter w = {np.round(out['w'], 3)}, pattern a = {np.round(out['a'], 3)}, "
          f"cos(a, signal direction) = {out['cosine']:.4f}")
    print(f"signal estimate MSE: PatternNet {out['patternnet_mse']:.5f}, "
          f"gradient (w * y) {out['gradient_mse']:.5f}")
    print(f"done in {out['seconds']:.1f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

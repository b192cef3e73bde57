"""Reproducing the PatternNet paper's measures on a CNN trained here, on built-in data.

Kindermans et al., "Learning how to explain neural networks: PatternNet and PatternAttribution",
ICLR 2018. The script trains a small CNN on ``kp.datasets.make_shapes`` (36x36 grayscale shapes on
a random ramp-and-blob background; no download), then measures:

1. rho(S) per layer for the estimators random, S_w, S_a and S_a+- (the paper's Fig. 3):
   ``kp.evaluation.signal_quality``, patterns fitted on one half of the training images, v on the
   other half, rho on the test images;
2. the degradation curves of the paper's Fig. 4: 9x9 patches, most relevant first, replaced by the
   image mean, for PatternAttribution (S_a+-, and S_a: its linear pattern), PatternNet, the LRP
   presets, Deep Taylor, the gradient family and a random order, with their AOPC (of the logit and
   of the softmax probability, the paper's choice);
3. the cascading model-randomization sanity check (Adebayo et al. 2018) of the same methods;
4. a ground-truth table for every registered analyzer: relevance mass/rank accuracy and
   correlation with the true shape pixels of ``make_shapes``, and XAI-TRIS's EMD score and
   precision on its 8x8 tetromino data (``make_tetrominoes``, linear scenario) with a second
   small CNN.

    python examples/reproduce_paper.py [--quick] [--out reproduce_out]

The full run takes about 4 minutes on 2 CPU cores; ``--quick`` (tests) about 40 s.
"""

import argparse
import os
import sys
import time

SIZE = 36  # 4x4 patches of 9x9 pixels
S_A = "pattern.attribution linear (S_a)"


def build_model(size=SIZE, classes=3):
    """A small ReLU CNN with a softmax head (stripped before explaining)."""
    import keras

    return keras.Sequential([
        keras.Input((size, size, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="fc1"),
        keras.layers.Dense(classes, activation="softmax", name="out"),
    ], name="shapes_cnn")


def build_tetromino_model(size=8):
    """A small CNN for XAI-TRIS's 8x8 two-class images."""
    import keras

    return keras.Sequential([
        keras.Input((size, size, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ], name="tetromino_cnn")


def _table(rows, columns, fmt="{:.3f}", first="method"):
    width = max([len(first)] + [len(r) for r in rows])
    lines = [f"  {first:{width}s} " + " ".join(f"{c:>12s}" for c in columns)]
    for name, values in rows.items():
        cells = ["-" if v is None else str(v) if isinstance(v, int) else fmt.format(v) for v in values]
        lines.append(f"  {name:{width}s} " + " ".join(f"{c:>12s}" for c in cells))
    return "\n".join(lines)


def main(argv=None):
    """Trains, measures, prints, plots; returns the numbers.

    Args:
        argv: command line arguments (``--quick``, ``--out``, ``--seed``). Defaults to `None`
            (``sys.argv[1:]``).

    Returns:
        dict: ``accuracy``, ``rho`` (see ``keras_patterns.evaluation.suite.rho``),
        ``degradation``, ``sanity``, ``ground_truth`` (shapes), ``tetromino_accuracy``,
        ``tetromino`` (ground truth on the tetrominoes), ``skipped`` ({method: reason}),
        ``files`` and ``seconds``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="little data, 1 epoch (for tests, about 40 s)")
    p.add_argument("--out", default="reproduce_out", help="folder for the figures (default: reproduce_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and weights (default: 0)")
    args = p.parse_args(argv)
    q = args.quick
    n_train, epochs = (1200, 1) if q else (6000, 6)
    n_eval, n_sanity, n_tris = (16, 4, 4) if q else (200, 24, 24)
    t0 = time.perf_counter()

    import keras
    import numpy as np

    import keras_patterns as kp
    from keras_patterns.datasets import make_shapes, make_tetrominoes
    from keras_patterns.evaluation import suite

    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    x_train, y_train, _ = make_shapes(n_train, size=SIZE, seed=args.seed)
    x_test, y_test, s_test = make_shapes(500, size=SIZE, seed=args.seed + 1)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    logits = kp.model_wo_softmax(model)
    print(f"make_shapes {SIZE}x{SIZE}: {n_train} training images, {epochs} epochs, test accuracy {accuracy:.3f}")
    out = {"accuracy": accuracy, "files": []}

    # 1. rho(S) per layer
    half = n_train // 2
    t = time.perf_counter()
    # --quick: the two cheapest layers (fc1's 512 x 512 solves and conv2's 144-pixel patches take longest)
    out["rho"] = suite.rho(logits, x_train[:half], x_train[half:], x_test,
                           layers=("conv1", "out") if q else None, batch_size=128, seed=args.seed)
    r = out["rho"]
    print(f"\nrho(S), mean over the units of each layer ({time.perf_counter() - t:.0f}s; higher is better):")
    print(_table({e: r["mean"][e] for e in r["estimators"]}, r["layers"], first="estimator"))
    out["files"].append(suite.plot_rho(r, os.path.join(args.out, "reproduce_rho.png")))

    # 2. degradation
    x_eval, s_eval = x_test[:n_eval], s_test[:n_eval]
    analyzers, _, skipped = suite.build_analyzers(logits, suite.PAPER_METHODS, fit_data=x_train, batch_size=64)
    maps, seconds = suite.compute_maps(analyzers, x_eval)
    # The paper's Fig. 4 also has S_a: PatternAttribution with the linear pattern (degradation only)
    linear = kp.create_analyzer("pattern.attribution", logits, pattern_type="linear", batch_size=64)
    linear.fit(x_train, batch_size=128, verbose=0)
    maps_deg = {**maps, S_A: linear.analyze(x_eval)}
    t = time.perf_counter()
    out["degradation"] = d = suite.degradation(logits, x_eval, maps_deg, patch_size=9, replacement="mean")
    # the paper's Fig. 4 follows the softmax probability; the logit does not saturate
    out["degradation_probability"] = dp = suite.degradation(logits, x_eval, maps_deg, patch_size=9,
                                                            replacement="mean", output="probability")
    print(f"\nRegion perturbation, 9x9 patches replaced by the image mean, most relevant first, "
          f"{n_eval} test images ({time.perf_counter() - t:.0f}s). AOPC of the logit and of the probability "
          "(higher is better), and the mean logit after k patches:")
    ranked = sorted(d["aopc"], key=lambda n: -d["aopc"][n])
    print(f"  (every logit curve starts at {d['curves'][ranked[0]][0]:.3f}, the unperturbed images, "
          f"and ends at {d['curves'][ranked[0]][-1]:.3f}, the mean images)")
    print(_table({n: [d["aopc"][n], dp["aopc"][n]] + [d["curves"][n][k] for k in (1, 2, 4, 8)] for n in ranked},
                 ["AOPC logit", "AOPC prob.", "logit k=1", "k=2", "k=4", "k=8"]))
    out["files"].append(suite.plot_degradation(d, os.path.join(args.out, "reproduce_degradation.png")))
    out["files"].append(suite.plot_degradation(dp, os.path.join(args.out, "reproduce_degradation_probability.png")))

    # 3. sanity check
    t = time.perf_counter()
    out["sanity"] = s = suite.sanity(analyzers, logits, x_eval[:n_sanity], fit_data=x_train[:1000],
                                     order="cascading", similarity="spearman", seed=args.seed)
    print(f"\nCascading randomization ({n_sanity} images, {time.perf_counter() - t:.0f}s): Spearman "
          "similarity to the trained maps after randomizing from the output down to:")
    print(_table(s["similarity"], s["layers"]))
    out["files"].append(suite.plot_sanity(s, os.path.join(args.out, "reproduce_sanity.png")))

    # 4. ground truth, every registered analyzer
    names = kp.list_analyzers()
    t = time.perf_counter()
    all_analyzers, _, skipped_all = suite.build_analyzers(logits, names, fit_data=x_train, batch_size=64,
                                                          log=lambda *a: None)
    for name in suite.PAPER_METHODS:  # already fitted: reuse
        if name in analyzers:
            all_analyzers[name] = analyzers[name]
    all_maps, _ = suite.compute_maps(all_analyzers, x_eval)
    masks = s_eval[..., 0] > 0
    out["ground_truth"] = g = suite.ground_truth(all_maps, masks)
    gt_cols = ["mass acc.", "rank acc.", "pointing", "correlation"]
    gt_keys = ["relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game", "correlation"]
    print(f"\nGround truth on make_shapes ({n_eval} test images; the shape covers "
          f"{masks.mean():.1%} of the pixels; {time.perf_counter() - t:.0f}s), by mass accuracy:")
    order = sorted(g, key=lambda n: -g[n]["relevance_mass_accuracy"])
    print(_table({n: [g[n][k] for k in gt_keys] for n in order}, gt_cols))

    # 4b. XAI-TRIS tetrominoes, 8x8, linear scenario, white background
    t = time.perf_counter()
    tx, ty, _ = make_tetrominoes(1200 if q else 4000, size=8, scenario="linear", seed=args.seed)
    vx, vy, vmasks = make_tetrominoes(200, size=8, scenario="linear", seed=args.seed + 1)
    keras.utils.set_random_seed(args.seed + 1)  # the same weights whatever ran before
    tmodel = build_tetromino_model()
    tmodel.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    tmodel.fit(tx, ty, epochs=2 if q else 10, batch_size=64, verbose=0)
    out["tetromino_accuracy"] = float(tmodel.evaluate(vx, vy, verbose=0)[1])
    tlogits = kp.model_wo_softmax(tmodel)
    t_analyzers, _, _ = suite.build_analyzers(tlogits, names, fit_data=tx, batch_size=64, log=lambda *a: None)
    t_maps, _ = suite.compute_maps(t_analyzers, vx[:n_tris])
    out["tetromino"] = tg = suite.ground_truth(t_maps, vmasks[:n_tris, ..., 0], emd=True)
    print(f"\nXAI-TRIS tetrominoes (8x8, linear, white background): test accuracy "
          f"{out['tetromino_accuracy']:.3f}; {n_tris} test images ({time.perf_counter() - t:.0f}s), by EMD score:")
    order = sorted(tg, key=lambda n: -(tg[n]["emd_score"] if tg[n]["emd_score"] is not None else -1))
    print("  (EMD score over the maps that are not all zero; zero maps: their count)")
    print(_table({n: [tg[n]["emd_score"], tg[n]["precision"], tg[n]["relevance_mass_accuracy"], tg[n]["zero_maps"]]
                  for n in order}, ["EMD score", "precision", "mass acc.", "zero maps"]))

    out["skipped"] = {**skipped_all, **skipped}
    print("\nSkipped (arguments that cannot be inferred):")
    for name, reason in out["skipped"].items():
        print(f"  {name}: {reason}")
    out["seconds"] = time.perf_counter() - t0
    print(f"\nwrote {', '.join(out['files'])}\ndone in {out['seconds']:.0f}s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

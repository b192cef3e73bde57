"""The ``keras-patterns`` command.

Subcommands:
    list      print the analyzer names
    demo      train a small CNN on built-in data and write explanation pictures
    analyze   explain a saved .keras model on inputs from a .npy file
"""

import argparse
import sys

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="keras-patterns", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the analyzer names")
    d = sub.add_parser("demo", help="train on built-in data and write pictures")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--epochs", type=int, default=4)
    d.add_argument("--n-train", type=int, default=3000)
    a = sub.add_parser("analyze", help="explain a saved model")
    a.add_argument("model", help="a .keras model file (a final softmax is removed)")
    a.add_argument("inputs", help="a .npy file with a batch of inputs")
    a.add_argument("--method", default="pattern.attribution", help="analyzer name (see `list`)")
    a.add_argument("--fit-data", help=".npy file of data to fit patterns on (pattern methods)")
    a.add_argument("--index", type=int, help="explain this output neuron (default: the largest)")
    a.add_argument("--batch-size", type=int, default=32)
    a.add_argument("--out", required=True, help="output .npy file with the maps")
    a.add_argument("--png", help="also write a heat-map grid to this PNG file")
    return p


def main(argv=None):
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    import keras_patterns as kp

    if args.command == "list":
        print("\n".join(kp.list_analyzers()))
        return 0
    if args.command == "demo":
        from keras_patterns.demo import run_demo

        run_demo(args.out, n_train=args.n_train, epochs=args.epochs)
        return 0
    import keras

    model = keras.models.load_model(args.model, safe_mode=True, compile=False)
    try:
        model = kp.model_wo_softmax(model)
    except ValueError:
        pass  # no softmax to remove
    x = np.load(args.inputs, allow_pickle=False)
    mode = "index" if args.index is not None else "max_activation"
    analyzer = kp.create_analyzer(args.method, model, neuron_selection_mode=mode, batch_size=args.batch_size)
    if analyzer.needs_fitting:
        if not args.fit_data:
            print(f"error: {args.method} needs --fit-data (a .npy file of training inputs)", file=sys.stderr)
            return 2
        analyzer.fit(np.load(args.fit_data, allow_pickle=False), batch_size=args.batch_size)
    maps = analyzer.analyze(x, neuron_selection=args.index)
    np.save(args.out, maps)
    if args.png:
        from keras_patterns import visualization as vis

        vis.plot_grid([[vis.project(x[i]), vis.heatmap(maps[i])] for i in range(min(len(x), 8))],
                      col_labels=["input", args.method], path=args.png)
    print(f"wrote {args.out} ({maps.shape})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

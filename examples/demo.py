"""Demo: explain a small CNN trained on built-in synthetic data with PatternNet, PatternAttribution,
LRP, Deep Taylor and the gradient family; writes demo_out/demo_grid.png and demo_out/toy_example.png.

    python examples/demo.py --out demo_out
"""

import argparse

from keras_patterns.demo import run_demo

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_out")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--n-train", type=int, default=3000)
    args = p.parse_args()
    run_demo(args.out, n_train=args.n_train, epochs=args.epochs)

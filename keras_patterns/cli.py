"""The ``keras-patterns`` command.

Subcommands:
    list      print the analyzer names
    demo      train a small CNN on built-in data and write explanation pictures
    fit       fit a pattern analyzer on data and save it (.kpa)
    analyze   explain inputs with a saved .keras model or a saved .kpa analyzer
    evaluate  measure explanation methods on a model: rho(S), degradation, sanity check, ground truth

Data files are ``.npy`` or ``.npz`` (``--key`` names the array of an ``.npz``; by default its only
array, or the one called ``x``). Every user error is one line on stderr,
``keras-patterns: error: ...``, with exit status 2 for usage errors (bad arguments, missing or
unreadable files, unknown methods) and 1 for errors while computing.

This module imports neither TensorFlow nor Keras at import time: ``keras-patterns --help`` is
instant, and the heavy imports happen inside the commands.
"""

import argparse
import json
import os
import sys

PROG = "keras-patterns"
_DATA_SUFFIXES = (".npy", ".npz")


class CLIError(Exception):
    """A user error: printed as one line, exit status ``code`` (2 usage, 1 runtime)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``keras-patterns: error: ...``) and no exit of its own."""

    def error(self, message):
        raise CLIError(f"{message} (see `{self.prog} --help`)", code=2)


def _version():
    from keras_patterns import __version__

    return __version__


def _parser():
    p = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="print the analyzer names")

    d = sub.add_parser("demo", help="train on built-in data and write pictures")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--epochs", type=int, default=4)
    d.add_argument("--n-train", type=int, default=3000)

    f = sub.add_parser("fit", help="fit a pattern analyzer and save it to a .kpa file")
    f.add_argument("model", help="a .keras model file (a final softmax is removed)")
    f.add_argument("data", help="a .npy or .npz file of training inputs")
    f.add_argument("-o", "--out", required=True, help="the analyzer file to write (.kpa)")
    f.add_argument("--method", default="pattern.attribution",
                   help="an analyzer that needs fitting (default: pattern.attribution)")
    f.add_argument("--key", help="the array of an .npz data file (default: its only one, or 'x')")
    f.add_argument("--batch-size", type=int, default=32, help="samples per batch (default: 32)")
    f.add_argument("--steps", type=int, help="use only this many batches")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an analyzer argument, e.g. --set pattern_type=linear (repeatable)")

    a = sub.add_parser("analyze", help="explain inputs with a saved model or analyzer")
    a.add_argument("model", help="a .keras model file (a final softmax is removed) or a .kpa analyzer")
    a.add_argument("inputs", help="a .npy or .npz file with a batch of inputs")
    a.add_argument("--method", help="analyzer name (see `list`); default: pattern.attribution for a "
                   ".keras model, the saved one for a .kpa file")
    a.add_argument("--key", help="the array of an .npz inputs file (default: its only one, or 'x')")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an analyzer argument, e.g. --set epsilon=0.1; values are read as JSON "
                        "(numbers, lists, true/false) when possible, else as strings (repeatable)")
    a.add_argument("--fit-data", help=".npy/.npz data to fit patterns on (pattern methods on a .keras model)")
    a.add_argument("--index", type=int, help="explain this output neuron (default: the largest)")
    a.add_argument("--batch-size", type=int, default=32, help="samples per batch (default: 32)")
    a.add_argument("-o", "--out", required=True,
                   help="output .npz file, one array per model input, named by the input (a .npy "
                        "path writes the one map of a single-input model)")
    a.add_argument("--png", help="also write a heat-map grid (image models only) to this PNG file")

    e = sub.add_parser("evaluate", help="measure explanation methods: rho(S), degradation curves, "
                                        "sanity check, ground truth")
    e.add_argument("model", help="a .keras model file (a final softmax is removed)")
    e.add_argument("inputs", help="a .npy or .npz file of test images (n, H, W[, C])")
    e.add_argument("-o", "--out", required=True, help="output folder (created): results.json and PNG figures")
    e.add_argument("--methods", help="comma-separated analyzer names, or 'all' (default: the paper's "
                                     "set: " + ",".join(_PAPER_METHODS) + ")")
    e.add_argument("--measures", help="comma-separated, from " + ",".join(_MEASURES) + " (default: "
                   "degradation and sanity, plus rho with --fit-data and ground_truth with --masks)")
    e.add_argument("--fit-data", help=".npy/.npz training inputs: fits the pattern methods; rho fits its "
                                      "patterns on the first half and v on the second half")
    e.add_argument("--masks", help=".npy/.npz ground-truth masks (0/1), one per input (ground_truth)")
    e.add_argument("--key", help="the array of an .npz inputs file (default: its only one, or 'x')")
    e.add_argument("--patch-size", type=int, default=9, help="degradation patch side (default: 9)")
    e.add_argument("--replacement", default="mean", help="what a removed patch becomes: mean, patch_mean, "
                                                         "zeros, uniform or blur (default: mean)")
    e.add_argument("--output", default="logit", help="the curve's value: logit or probability (default: logit)")
    e.add_argument("--sanity-samples", type=int, default=16,
                   help="inputs used by the randomization check (default: 16)")
    e.add_argument("--emd", action="store_true", help="ground_truth also computes XAI-TRIS's EMD score "
                                                      "and precision (slow above 16x16 without POT)")
    e.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an argument of one method, e.g. --set lrp.epsilon:epsilon=0.25 or --set "
                        "lrp.alpha_beta:alpha=3; values read as for `analyze --set` (repeatable)")
    e.add_argument("--batch-size", type=int, default=32, help="samples per batch (default: 32)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random order and weights (default: 0)")
    return p


# Copies of keras_patterns.evaluation.suite's names (this module must not import TensorFlow).
_PAPER_METHODS = (
    "pattern.attribution", "pattern.net", "lrp.sequential_preset_a", "lrp.sequential_preset_b",
    "lrp.epsilon", "lrp.alpha_1_beta_0", "deep_taylor", "gradient", "input_t_gradient",
    "guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad",
)
_MEASURES = ("rho", "degradation", "sanity", "ground_truth")
_REPLACEMENTS = ("mean", "patch_mean", "zeros", "uniform", "blur")


# ---------------------------------------------------------------------------------- helpers
def _check_file(path, what, suffixes):
    if not os.path.isfile(path):
        raise CLIError(f"{what} {path!r} does not exist" if not os.path.exists(path)
                       else f"{what} {path!r} is not a file")
    if not path.lower().endswith(suffixes):
        raise CLIError(f"{what} {path!r} must be a {' or '.join(suffixes)} file")


def _check_positive(name, value):
    from keras_patterns import validation

    try:
        validation.positive_int(name, value, allow_none=True)
    except ValueError:
        raise CLIError(f"{name} must be a positive integer, received {value}") from None


def _load_array(path, key=None, what="data file"):
    """The array in a ``.npy`` file, or the array ``key`` (or the only one / ``x``) of a ``.npz``."""
    import numpy as np

    _check_file(path, what, _DATA_SUFFIXES)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"cannot read {what} {path!r}: {e}") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise CLIError(f"--key is only for .npz files; {what} {path!r} is a .npy file")
        array = loaded
    else:
        with loaded:
            names = list(loaded.files)
            if key is None:
                if len(names) == 1:
                    key = names[0]
                elif "x" in names:
                    key = "x"
                else:
                    raise CLIError(f"{what} {path!r} holds the arrays {names}; choose one with --key")
            elif key not in names:
                raise CLIError(f"{what} {path!r} has no array {key!r}; it holds {names}")
            try:
                array = loaded[key]
            except (OSError, ValueError, EOFError) as e:
                raise CLIError(f"cannot read array {key!r} of {what} {path!r}: {e}") from None
    if array.dtype.kind not in "biuf":
        raise CLIError(f"{what} {path!r} must hold numbers, received dtype {array.dtype}")
    return array


def _parse_sets(items):
    """``["k=v", ...]`` -> dict; values parsed as JSON when possible, else kept as strings."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CLIError(f"--set expects KEY=VALUE with a Python identifier as KEY, received {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key] = value
    return out


def _method_sets(items, methods):
    """``["method:k=v", ...]`` -> ``{method: {k: v}}`` for ``evaluate --set``."""
    out = {}
    for item in items:
        method, sep, rest = item.partition(":")
        if not sep or "=" not in rest:
            raise CLIError(f"--set expects METHOD:KEY=VALUE, e.g. lrp.epsilon:epsilon=0.25, received {item!r}")
        if method not in methods:
            raise CLIError(f"--set names method {method!r}, which is not evaluated; the methods are "
                           f"{', '.join(methods)}")
        out.setdefault(method, {}).update(_parse_sets([rest]))
    return out


def _load_model(path):
    import warnings

    import keras

    import keras_patterns as kp

    _check_file(path, "model file", (".keras",))
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many kinds for a damaged or hostile file
        raise CLIError(f"cannot load the model {path!r}: {_one_line(e)}", code=1) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no softmax to remove: the model is used as it is
            model = kp.model_wo_softmax(model)
    except ValueError:
        pass  # not a Functional/Sequential model: the analyzer names the problem
    return model


def _check_method(name):
    import keras_patterns as kp

    if name not in kp.list_analyzers():
        raise CLIError(f"unknown method {name!r}; run `{PROG} list` for the names")
    return name


def _create(method, model, kwargs):
    import keras_patterns as kp

    try:
        return kp.create_analyzer(method, model, **kwargs)
    except TypeError as e:
        raise CLIError(f"invalid arguments for {method!r} ({_describe_kwargs(kwargs)}): {_one_line(e)}") from None


def _describe_kwargs(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"


def _image_inputs(analyzer):
    """Whether the model has one image input: (batch, H, W) or (batch, H, W, 1 or 3)."""
    specs = analyzer.input_specs
    if len(specs) != 1:
        return False
    shape = specs[0][0]
    return len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))


def _one_line(error):
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__


def _save_maps(path, analyzer, maps):
    import numpy as np

    maps = maps if isinstance(maps, list) else [maps]
    if path.lower().endswith(".npy"):
        np.save(path, maps[0])
        return path
    arrays = dict(zip(analyzer.graph.input_names, maps))
    np.savez(path, **arrays)
    return path if path.lower().endswith(".npz") else path + ".npz"


# --------------------------------------------------------------------------------- commands
def _cmd_list(args):
    import keras_patterns as kp

    print("\n".join(kp.list_analyzers()))
    return 0


def _cmd_demo(args):
    from keras_patterns.demo import run_demo

    run_demo(args.out, n_train=args.n_train, epochs=args.epochs)
    return 0


def _cmd_fit(args):
    _check_positive("--batch-size", args.batch_size)
    _check_positive("--steps", args.steps)
    kwargs = _parse_sets(args.set)
    _check_file(args.model, "model file", (".keras",))
    data = _load_array(args.data, args.key)
    method = _check_method(args.method)
    model = _load_model(args.model)
    analyzer = _create(method, model, kwargs)
    if not analyzer.needs_fitting:
        raise CLIError(f"method {method!r} needs no fitting; use `{PROG} analyze --method {method}` directly")
    analyzer.fit(data, batch_size=args.batch_size, steps=args.steps, verbose=1)
    analyzer.save(args.out)
    print(f"wrote {args.out} ({method}, fitted on {len(data)} samples)")
    return 0


def _cmd_analyze(args):
    _check_positive("--batch-size", args.batch_size)
    if args.index is not None and args.index < 0:
        raise CLIError(f"--index must be >= 0, received {args.index}")
    if not args.out.lower().endswith(_DATA_SUFFIXES):
        raise CLIError(f"--out must be a .npz (or .npy) file, received {args.out!r}")
    kwargs = _parse_sets(args.set)
    if args.index is not None:
        if kwargs.get("neuron_selection_mode", "index") != "index":
            raise CLIError("--index needs neuron_selection_mode='index'; received --set "
                           f"neuron_selection_mode={kwargs['neuron_selection_mode']!r}")
        kwargs["neuron_selection_mode"] = "index"
    kwargs.setdefault("batch_size", args.batch_size)
    is_kpa = args.model.lower().endswith(".kpa")
    _check_file(args.model, "analyzer file" if is_kpa else "model file", (".keras", ".kpa"))
    x = _load_array(args.inputs, args.key, what="inputs file")
    fit_data = _load_array(args.fit_data, what="--fit-data file") if args.fit_data else None
    if args.method is not None:
        _check_method(args.method)
    if args.png:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError("--png needs matplotlib, which is not installed (pip install matplotlib)")

    if is_kpa:
        import keras_patterns as kp

        saved = kp.load_analyzer(args.model)
        method = args.method or saved.name
        if method != saved.name:
            raise CLIError(f"the analyzer file {args.model!r} holds a {saved.name!r} analyzer; "
                           f"received --method {method!r} (leave --method out, or pass a .keras model)")
        config = {**saved.get_config(), **kwargs}
        analyzer = saved if config == saved.get_config() else _create(method, saved.model, config)
        if analyzer is not saved:
            analyzer.set_state(saved.get_state())
    else:
        method = args.method or "pattern.attribution"
        analyzer = _create(method, _load_model(args.model), kwargs)

    if args.index is not None and analyzer.n_outputs is not None and args.index >= analyzer.n_outputs:
        raise CLIError(f"--index {args.index} is out of range: the model has {analyzer.n_outputs} "
                       f"outputs (valid: 0 to {analyzer.n_outputs - 1})")
    if args.png and not _image_inputs(analyzer):
        shapes = [("batch",) + s[0][1:] for s in analyzer.input_specs]
        raise CLIError("--png draws images; the model's input shape(s) "
                       f"{', '.join(str(s) for s in shapes)} are not (batch, H, W) or (batch, H, W, 1|3). "
                       "Leave out --png")
    if analyzer.needs_fitting and getattr(analyzer, "patterns", None) is None:
        if fit_data is None:
            raise CLIError(f"{method} needs --fit-data (a .npy/.npz file of training inputs), or a "
                           f".kpa file from `{PROG} fit`")
        analyzer.fit(fit_data, batch_size=args.batch_size, verbose=0)
    maps = analyzer.analyze(x, neuron_selection=args.index)
    written = _save_maps(args.out, analyzer, maps)
    if args.png:
        from keras_patterns import visualization as vis

        first = maps[0] if isinstance(maps, list) else maps
        vis.plot_grid([[vis.project(x[i]), vis.heatmap(first[i])] for i in range(min(len(x), 8))],
                      col_labels=["input", method], path=args.png)
    shapes = [m.shape for m in (maps if isinstance(maps, list) else [maps])]
    print(f"wrote {written} ({', '.join(str(s) for s in shapes)})" + (f" and {args.png}" if args.png else ""))
    return 0


def _csv(option, text, allowed, what):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError(f"{option} needs at least one {what}, received {text!r}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise CLIError(f"unknown {what} {unknown[0]!r} in {option}; valid: {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _evaluate_options(args):
    """Checks everything that needs no TensorFlow; returns (measures, explicit methods or None)."""
    for name in ("--batch-size", "--patch-size", "--sanity-samples"):
        _check_positive(name, getattr(args, name[2:].replace("-", "_")))
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, received {args.seed}")
    if args.replacement not in _REPLACEMENTS:
        raise CLIError(f"--replacement must be one of {', '.join(_REPLACEMENTS)}, received {args.replacement!r}")
    if args.output not in ("logit", "probability"):
        raise CLIError(f"--output must be logit or probability, received {args.output!r}")
    if args.measures is None:
        measures = [m for m in _MEASURES if (m != "rho" or args.fit_data) and (m != "ground_truth" or args.masks)]
    else:
        measures = _csv("--measures", args.measures, _MEASURES, "measure")
    if "rho" in measures and not args.fit_data:
        raise CLIError("the measure rho needs --fit-data (training inputs: patterns on the first half, v on "
                       "the second)")
    if "ground_truth" in measures and not args.masks:
        raise CLIError("the measure ground_truth needs --masks (one 0/1 mask per input)")
    if args.emd and "ground_truth" not in measures:
        raise CLIError("--emd is part of the measure ground_truth; add --masks (or --measures ground_truth)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out must be a folder, received the file {args.out!r}")
    return measures


def _cmd_evaluate(args):
    measures = _evaluate_options(args)
    _check_file(args.model, "model file", (".keras",))
    x = _load_array(args.inputs, args.key, what="inputs file")
    fit_data = _load_array(args.fit_data, what="--fit-data file") if args.fit_data else None
    masks = _load_array(args.masks, what="--masks file") if args.masks else None
    if masks is not None:
        if masks.shape[0] != x.shape[0] or masks.shape[1:3] != x.shape[1:3] or masks.ndim not in (3, 4):
            raise CLIError(f"--masks must hold one (H, W) or (H, W, 1) mask per input, shape {x.shape[:3]} "
                           f"(+ (1,)), received shape {masks.shape}")
        if not ((masks == 0) | (masks == 1)).all():
            raise CLIError("--masks must hold 0/1 values (or booleans)")
    import keras_patterns as kp

    if args.methods is None:
        methods, explicit = list(_PAPER_METHODS), False
    elif args.methods.strip() == "all":
        methods, explicit = kp.list_analyzers(), False
    else:
        methods, explicit = _csv("--methods", args.methods, kp.list_analyzers(), "method"), True
    overrides = _method_sets(args.set, methods)
    if explicit and fit_data is None:
        needs = [m for m in methods if kp.registry.capabilities(m)["needs_fitting"]]
        if needs:
            raise CLIError(f"{needs[0]} needs --fit-data (a .npy/.npz file of training inputs)")
    model = _load_model(args.model)
    from keras_patterns.evaluation import suite

    analyzers, used, skipped = suite.build_analyzers(
        model, methods, fit_data=fit_data, data=fit_data if fit_data is not None else x,
        batch_size=args.batch_size, log=lambda *a: None, overrides=overrides)
    if explicit and skipped:
        name = next(iter(skipped))
        raise CLIError(f"method {name!r} {skipped[name]}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    os.makedirs(args.out, exist_ok=True)
    result = {"model": args.model, "inputs": args.inputs, "n": int(len(x)), "methods": list(analyzers),
              "arguments": used, "skipped": skipped, "measures": measures}
    figures = []

    def figure(plot, part, name):
        try:
            figures.append(plot(part, os.path.join(args.out, name)))
        except ImportError:
            print(f"matplotlib is not installed: {name} not written")

    if "rho" in measures:
        half = len(fit_data) // 2
        result["rho"] = suite.rho(model, fit_data[:half], fit_data[half:], x, batch_size=args.batch_size,
                                  seed=args.seed)
        figure(suite.plot_rho, result["rho"], "rho.png")
        for est in result["rho"]["estimators"]:
            values = ", ".join(f"{k} {v:.3f}" for k, v in zip(result["rho"]["layers"], result["rho"]["mean"][est]))
            print(f"rho {est}: {values}")
    maps = None
    if "degradation" in measures or "ground_truth" in measures:
        maps, seconds = suite.compute_maps(analyzers, x, log=lambda *a: None)
        result["analyze_seconds"] = seconds
    if "degradation" in measures:
        result["degradation"] = d = suite.degradation(
            model, x, maps, patch_size=args.patch_size, replacement=args.replacement, output=args.output,
            batch_size=max(args.batch_size, 64), seed=args.seed)
        figure(suite.plot_degradation, d, "degradation.png")
        for name in sorted(d["aopc"], key=lambda n: -d["aopc"][n]):
            print(f"AOPC {name}: {d['aopc'][name]:.4f}")
    if "sanity" in measures:
        result["sanity"] = s = suite.sanity(analyzers, model, x[:args.sanity_samples], fit_data=fit_data,
                                            seed=args.seed)
        figure(suite.plot_sanity, s, "sanity.png")
        for name, values in s["similarity"].items():
            print(f"sanity {name}: " + " ".join(f"{v:.3f}" for v in values))
    if "ground_truth" in measures:
        result["ground_truth"] = g = suite.ground_truth(maps, masks, emd=args.emd)
        for name, row in g.items():
            print(f"ground truth {name}: " + ", ".join(
                f"{k} {'-' if v is None else format(v, '.3f')}" for k, v in row.items()))
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    print(f"wrote {', '.join([path] + figures)}")
    return 0


_COMMANDS = {"list": _cmd_list, "demo": _cmd_demo, "fit": _cmd_fit, "analyze": _cmd_analyze,
             "evaluate": _cmd_evaluate}


def _error(message, code):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv=None):
    """Runs the ``keras-patterns`` command.

    Args:
        argv: the arguments (without the program name). Defaults to `None` (``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for usage errors, 1 for errors while computing.
    """
    try:
        args = _parser().parse_args(argv)
    except CLIError as e:
        return _error(str(e), e.code)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        return _COMMANDS[args.command](args)
    except CLIError as e:
        return _error(str(e), e.code)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, ArithmeticError) as e:
        # Library errors (KerasPatternsError subclasses these) name what was received/expected.
        return _error(_one_line(e), 1)


if __name__ == "__main__":
    sys.exit(main())

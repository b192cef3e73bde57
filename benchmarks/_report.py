"""The Markdown of ``benchmarks/run.py``'s results (a dict, as written to results.json).

    python benchmarks/_report.py benchmarks/results/results.json   # re-renders results.md beside it
"""


def _num(v):
    """A ratio with two decimals, or two significant digits below 0.1 (Occlusion's 0.0048)."""
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}"


def _cell(row):
    if row is None:
        return ""
    if row.get("status") != "ok":
        return f"{row.get('status', 'error')} ({row.get('error', '?')})"
    verdict = "" if row.get("passed") is None else (" pass" if row["passed"] else " **miss**")
    return f"{_num(row['ratio'])}{verdict}"


def _target(name, rows):
    t = next((r["target"] for r in rows if r is not None), None)
    if t is None:
        return "-"
    per_n = next((r.get("per_n") for r in rows if r is not None and r.get("per_n")), None)
    return f">= {t:.2f} of 1/n" if per_n else f">= {t:.2f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results):
    """The results as Markdown: machine, throughput, first call, fitting and memory, comparisons."""
    m, s, models = results["machine"], results["settings"], results["models"]
    keys = list(models)
    names = []
    for k in keys:
        names += [n for n in models[k]["analyzers"] if n not in names]
    out = [
        f"Measured {m['date']} on {m['cpu']} ({m['usable_cores']} usable cores of {m['cpu_count']}"
        f"{', GPUs: ' + ', '.join(m['gpus']) if m['gpus'] else ', CPU only'}); TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, NumPy {m['numpy']}, Python {m['python']}. Load average at the start "
        f"{_load(m.get('loadavg_1_5_15'))}, at the end {_load(m.get('loadavg_end'))}"
        f"{' (the machine was shared: absolute numbers are noisy, the interleaved ratios less so)' if _busy(m) else ''}."
        f"{' Quick run.' if s['quick'] else ''}"
        f"{_missing(s, keys)}",
        "",
        f"**Analyze throughput** at batch {s['batch']} against a compiled `tf.GradientTape` gradient "
        f"(higher is better; median of {s['rounds']} interleaved rounds; SmoothGrad, SquareGrad, VarGrad "
        f"and IG with n = {s['n_samples']}, against 1/n of the gradient):",
        "",
    ]
    header = ["analyzer", "target"] + keys
    rows = [["*gradient img/s*", ""] + [_grad_speed(models[k]) for k in keys]]
    for n in names:
        cells = [models[k]["analyzers"].get(n) for k in keys]
        rows.append([f"`{n}`", _target(n, cells)] + [_cell(c) for c in cells])
    out += [_table(header, rows), ""]

    out += [f"**First call**: construction and first `analyze` (tracing included, fitting excluded), "
            f"seconds, and its multiple of a freshly built compiled gradient's first call (lower is better):",
            ""]
    rows = [["*first gradient call*"] + [f"{models[k]['first_gradient_s']:.2f} s" for k in keys]]
    for n in names:
        cells = []
        for k in keys:
            r = models[k]["analyzers"].get(n)
            cells.append("" if r is None else (r["status"] if r["status"] != "ok"
                                                else f"{r['first_call_s']:.2f} s ({r['first_call_ratio']:.1f}x)"))
        rows.append([f"`{n}`"] + cells)
    out += [_table(["analyzer"] + keys, rows), ""]

    fits = [(k, models[k]["fit"]) for k in keys if "fit" in models[k]]
    if fits:
        out += ["**Pattern fitting** (`pattern.attribution`) against one `model.fit` epoch (Adam) over the "
                "same N samples, and the peak RSS of a process fitting patterns against one training "
                "(lower is better; targets <= 0.5 epoch and <= 1.1x memory):", ""]
        rows = []
        for k, f in fits:
            if f.get("status") != "ok":
                rows.append([k, f"{f['status']} ({f['error']})"] + [""] * 7)
                continue
            mem = (f"{f['train_peak_mib']:.0f}", f"{f['fit_peak_mib']:.0f}",
                   f"{f['memory_ratio']:.2f} {'pass' if f['memory_passed'] else '**miss**'}",
                   f"{f['memory_increment_ratio']:.2f}") if "memory_ratio" in f else ("-",) * 4
            rows.append([k, f"{f['n']} / {f['batch']}", f"{f['epoch_s']:.2f}", f"{f['fit_s']:.2f}",
                         f"{f['fit_epoch_ratio']:.2f} {'pass' if f['fit_passed'] else '**miss**'}", *mem])
        out += [_table(["model", "N / batch", "epoch s", "fit s", "fit / epoch", "train peak MiB",
                        "fit peak MiB", "peak ratio", "increment ratio"], rows), ""]

    xp = [(k, models[k]["xplique"]) for k in keys if "xplique" in models[k]]
    if xp:
        out += ["**xplique** in the same process: each method's throughput ratio against the same "
                "compiled gradient (1/n for SmoothGrad and IG), next to ours:", ""]
        rows = []
        for k, x in xp:
            if x.get("status") != "ok":
                rows.append([k, x.get("status"), x.get("message", ""), "", ""])
                continue
            for method, r in x["methods"].items():
                ours = models[k]["analyzers"].get(r["ours"])
                rows.append([k, f"{method} / `{r['ours']}`", _cell(ours) if ours else "-",
                             _num(r["ratio"]) if r.get("status") == "ok" else f"{r['status']} ({r['error']})",
                             f"{ours['ratio'] / r['ratio']:.2f}x" if ours and ours.get("status") == "ok"
                             and r.get("status") == "ok" else "-"])
        out += [_table(["model", "xplique / ours", "ours", "xplique", "ours / xplique"], rows), ""]

    inn = results.get("innvestigate")
    if inn:
        out += [_innvestigate_md(inn, models), ""]
    return "\n".join(out)


def _innvestigate_md(inn, models):
    if inn.get("status") != "ok":
        return f"**iNNvestigate**: {inn.get('status')}: {inn.get('message', '')}"
    lines = [f"**iNNvestigate {inn['version']}** (TensorFlow {inn['tensorflow']}, {inn['python']}), the "
             "same models and weights in its own interpreter, each ratio against its own compiled "
             "gradient (`K.gradients`), next to ours" + (f" ({inn['note']})" if inn.get("note") else "") + ":", ""]
    rows = []
    for k, r in inn["models"].items():
        if "status" in r:
            rows.append([k, "-", "-", r["status"]])
            continue
        for what, v in r.items():
            if what == "weights":
                continue
            ours = _ours(models.get(k, {}), what)
            rows.append([k, f"`{what}`" if "." in what else what, ours,
                         v if isinstance(v, str) else _num(v)])
    return "\n".join(lines + [_table(["model", "measure", "ours", "iNNvestigate"], rows)])


def _ours(model, what):
    if what.endswith("fit_epoch_ratio"):
        f = model.get("fit", {})
        return f"{f['fit_epoch_ratio']:.2f}" if "fit_epoch_ratio" in f else "-"
    r = model.get("analyzers", {}).get(what)
    return _cell(r) if r else "-"


def _grad_speed(model):
    ok = [r for r in model["analyzers"].values() if r.get("status") == "ok"]
    if not ok:
        return "-"
    import statistics

    return f"{statistics.median(r['gradient_samples_per_s'] for r in ok):.0f}"


def _missing(settings, keys):
    missing = [k for k in settings.get("models", []) if k not in keys]
    return f" Partial run: {', '.join(missing)} not reached (stopped for time)." if missing else ""


def _load(v):
    return "n/a" if not v else " / ".join(f"{x:.1f}" for x in v)


def _busy(m):
    load = m.get("loadavg_1_5_15") or [0]
    return load[0] > 0.5 * (m.get("usable_cores") or 1)


if __name__ == "__main__":
    import json
    import os
    import sys

    with open(sys.argv[1]) as f:
        md = markdown(json.load(f))
    with open(os.path.join(os.path.dirname(sys.argv[1]), "results.md"), "w") as f:
        f.write(md)
    print(md)

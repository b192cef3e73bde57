"""``benchmarks/run.py --quick`` runs and writes the schema the docs include (no timing assertions).

The only smoke test of the benchmark table: a subprocess on the digits CNN with two analyzers,
checking the keys of ``results.json`` (machine, settings, per model: throughput rows, first call,
fitting and memory), that every ratio and time is positive and finite, that the targets are the
issue's, and that ``results.md`` holds the tables.
"""

import json
import math
import os
import subprocess
import sys

import paths  # noqa: E402

RUN = os.path.join(paths.ROOT, "benchmarks", "run.py")


def _positive(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_quick_run_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, RUN, "--quick", "--models", "digits", "--analyzers", "gradient,lrp.epsilon",
         "--rounds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads((tmp_path / "results.json").read_text())

    machine = res["machine"]
    for key in ("cpu", "cpu_count", "usable_cores", "tensorflow", "keras", "numpy", "date", "python"):
        assert machine[key], key
    # the checkout holding run.py is the one benchmarked, not an installed copy
    assert os.path.samefile(res["keras_patterns_path"], os.path.join(paths.ROOT, "keras_patterns"))
    assert res["settings"]["quick"] is True and res["settings"]["batch"] == 16
    assert res["settings"]["analyzers"] == ["gradient", "lrp.epsilon"]

    digits = res["models"]["digits"]
    assert digits["params"] > 0 and _positive(digits["first_gradient_s"])
    assert set(digits["analyzers"]) == {"gradient", "lrp.epsilon"}
    for name, row in digits["analyzers"].items():
        assert row["status"] == "ok", row
        assert row["target"] == 0.95 and row["per_n"] is None
        for key in ("ratio", "samples_per_s", "gradient_samples_per_s", "first_call_s", "first_call_ratio"):
            assert _positive(row[key]), (name, key, row[key])
        assert row["passed"] == (row["ratio"] >= 0.95)
        assert row["finite"] is True

    fit = digits["fit"]
    assert fit["status"] == "ok" and fit["n"] == 64 and fit["batch"] == 32
    for key in ("epoch_s", "fit_s", "fit_epoch_ratio", "train_peak_mib", "fit_peak_mib", "memory_ratio"):
        assert _positive(fit[key]), (key, fit[key])
    assert fit["fit_passed"] == (fit["fit_epoch_ratio"] <= fit["fit_target"] == 0.5)
    assert fit["memory_passed"] == (fit["memory_ratio"] <= fit["memory_target"] == 1.1)
    assert math.isclose(fit["memory_ratio"], fit["fit_peak_mib"] / fit["train_peak_mib"])

    md = (tmp_path / "results.md").read_text()
    assert "| `gradient` | >= 0.95 |" in md and "| `lrp.epsilon` | >= 0.95 |" in md
    assert "**Pattern fitting**" in md and "| digits | 64 / 32 |" in md
    assert md.strip() in proc.stdout  # printed as well as written


def test_targets_follow_issue_13():
    saved = list(sys.path)
    sys.path.insert(0, os.path.dirname(RUN))
    try:
        from run import target
    finally:
        sys.path[:] = saved
    assert target("gradient") == target("pattern.attribution") == target("lrp.epsilon") == 0.95
    assert target("lrp.sequential_preset_a") == target("lrp.alpha_1_beta_0") == 0.75
    assert target("smoothgrad") == target("integrated_gradients") == 0.95  # of 1/n
    assert target("occlusion") is None

"""The contract every registered analyzer meets on every zoo model.

Picked up automatically: a newly registered analyzer is tested here without any change. Checks:
output shapes equal input shapes, values are finite, two runs give the same maps, a batch gives the
same maps as its samples one at a time (and a permuted batch the permuted maps), the user's model
(weights and config) is untouched, (on two models) save/load gives identical maps, and (on the small
zoo) the analyzer follows the model's weights: after ``set_weights`` and a training step, the
reused analyzer (re-fitted for pattern methods) equals a freshly built one, with no retracing. A model an analyzer legitimately refuses (e.g.
deconvnet on a tanh network) must be refused with a clear error listed in ``EXPECTED_REFUSALS``.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_patterns as kp
import zoo
from keras_patterns.graph.layers import SUPPORTED_LAYERS

ANALYZERS = kp.list_analyzers()

#: Extra constructor arguments: seeds for the stochastic analyzers, fewer samples for speed, and
#: required arguments.
EXTRA_KWARGS = {
    "random": {"seed": 0},
    "smoothgrad": {"seed": 0, "augment_by_n": 8},
    "squaregrad": {"seed": 0, "augment_by_n": 8},
    "vargrad": {"seed": 0, "augment_by_n": 8},
    "integrated_gradients": {"steps": 8},
    "deep_taylor.bounded": {"low": -3.0, "high": 3.0},
    "lrp": {"rule": "Z"},
    "lrp.alpha_beta": {"alpha": 2},  # iNNvestigate requires alpha or beta
    "occlusion": {"patch_size": 3, "patch_stride": 2},  # overlapping patches, cut at the border
}

#: (analyzer regex, model regex) -> (error class, message regex) of an expected, clear refusal.
EXPECTED_REFUSALS = {
    (r"deconvnet|guided_backprop|deep_taylor.*", r"nonrelu|modern_blocks|vit"):
        (kp.NotAnalyzeableModelError, r"only specified for networks with ReLU"),
    (r"smoothgrad|squaregrad|vargrad|integrated_gradients", r"embedding|lstm_text"):
        (ValueError, r"needs float inputs"),
    # LRP-Z without bias (and epsilon 1e-7, the same in float32) on the randomly initialised deep
    # networks: relevance grows ~10x per block (MobileNetV2: 1e21 at block 7, 6e31 at block 3) and
    # overflows float32; the analyzer says so. lrp.z / lrp.epsilon with bias stay finite there.
    (r"lrp.z_IB|lrp.epsilon_IB", r"mobilenetv2|resnet50|densenet121"):
        (kp.NonFiniteResultError, r"overflowed float32"),
    # Grad-CAM needs a convolutional feature map of a float input; occlusion a float input with
    # spatial axes (a vector has no patches) and one input. ("dense": test_mixed_precision's MLP.)
    (r"grad_cam|grad_cam\+\+", r"dense|dense_mlp|dense_rank3|embedding|merges|nonrelu|preprocessing|shared_fanout"):
        (kp.NotAnalyzeableModelError, r"needs a convolutional feature map"),
    (r"occlusion", r"dense|dense_mlp|embedding|merges|nonrelu|preprocessing|shared_fanout"):
        (kp.NotAnalyzeableModelError, r"needs a float input shaped \(batch, \*spatial, channels\)"),
    (r"occlusion", r"multi_input|fuzz_.*_2in"): (kp.NotAnalyzeableModelError, r"occludes patches of one input"),
    (r"grad_cam|grad_cam\+\+", r"recurrent|lambda_layer|lstm_text"):
        (kp.NotAnalyzeableModelError, r"needs a convolutional feature map"),
    (r"grad_cam|grad_cam\+\+", r"subclassed"): (kp.NotAnalyzeableModelError, r"has no layer graph"),
    (r"occlusion", r"lambda_layer|lstm_text"):
        (kp.NotAnalyzeableModelError, r"needs a float input shaped \(batch, \*spatial, channels\)"),
    # test_fuzz_architectures' generated models (see its _refusal_name)
    (r"grad_cam|grad_cam\+\+", r"fuzz_.*_noconv.*"):
        (kp.NotAnalyzeableModelError, r"needs a convolutional feature map"),
    (r"occlusion", r"fuzz_dense.*"): (kp.NotAnalyzeableModelError, r"needs a float input shaped"),
}

#: The rule-based analyzers (every registered one outside the gradient family and the baselines).
RULE_BASED = r"lrp.*|deep_taylor.*|deconvnet|guided_backprop|pattern\..*"
#: The zoo models that only the gradient family explains (issue 10: recurrent, Lambda and custom
#: layers, a subclassed model, Conv2DTranspose while it has no rule): the rule-based analyzers
#: refuse them (a layer without a rule, no layer graph, or a non-ReLU net for the signal methods),
#: and the refusal names the gradient family, which passes the whole contract there.
_UNRULED = [m for m in zoo.ANY_MODEL_ZOO
            if m != "conv2d_transpose" or not issubclass(keras.layers.Conv2DTranspose, SUPPORTED_LAYERS)]
EXPECTED_REFUSALS[(RULE_BASED, "|".join(_UNRULED))] = (
    kp.NotAnalyzeableModelError,
    r"(without a backward rule|has no layer graph|only specified for networks with ReLU).*"
    r"The gradient family \('gradient', 'input_t_gradient'",
)

#: EfficientNetB0, MobileNetV3Small and ConvNeXtTiny use swish / hard-swish / GELU: LRP and the
#: pattern methods explain them (issue 10's rules); the ReLU-only methods refuse them, naming
#: their `non_relu=` option (deconvnet, guided backprop) or the gradient family.
EXPECTED_REFUSALS[(r"deconvnet|guided_backprop|deep_taylor.*", "|".join(zoo.ANY_MODEL_APPS))] = (
    kp.NotAnalyzeableModelError, r"only specified for networks with ReLU")

#: Analyzers whose rules divide by forward quantities (LRP and Deep Taylor: z, z + eps*sign(z),
#: fan-in sums, alpha-beta parts, proportional splits at Add layers). On the deep applications a
#: denominator near 0 amplifies float32 rounding without bound: a batch and its samples one at a
#: time run different oneDNN kernels (forward differences ~1e-6), and the maps then differ by up to
#: 2.6e-2 of their max (measured: lrp.flat on ResNet50), CPU-dependent (lrp.alpha_2_beta_1_IB on
#: DenseNet121: 1.2e-4 on AMD EPYC, below 1e-5 elsewhere). For these the batch == one-by-one check
#: runs on a float64 twin of the model, where rounding is ~1e-16 and even a 1e6-fold amplification
#: stays 1e4 below the 1e-5 tolerance (measured: at most 3e-13 on DenseNet121). Determinism and
#: sample independence (a permuted batch) are checked on the twin too: identical float32 calls of
#: lrp.w_square on ResNet50 differed by 1e-4 of the max under pytest-xdist.
DIVIDING = r"lrp.*|deep_taylor.*"
#: DIVIDING, and the pattern methods with patterns fitted on 16 samples (poorly conditioned: maps
#: of 1e8 on ResNet50, where identical float32 calls differed by 2.7e-3 of the max under
#: pytest-xdist in a CI-like run): checked on the float64 twin on the applications.
#: Models without a float64 twin: TensorFlow's MaxPool3D has no float64 kernel.
NO_FLOAT64_TWIN = {"conv3d"}
#: With oneDNN off, lrp.z_IB on the small `batchnorm` model: batch vs one-by-one 1.1e-5 of the max.
#: Occlusion maps are differences of two outputs, S(x) - S(x occluded): on the random deep
#: applications a patch moves the output by ~1e-4 of itself, so the float32 rounding of differently
#: batched kernels is amplified ~1e4-fold (measured on VGG16: batch vs one-by-one 1.3e-9 absolute,
#: 1.8e-5 of the map's max-abs; maps on MobileNetV2 are at the rounding level, 2e-7).
ILL_CONDITIONED = DIVIDING + r"|pattern\..*|occlusion"

#: Analyzers whose maps depend on the sample's position in the batch by design.
POSITION_DEPENDENT = {"random"}


def _lookup(table, name, model_name):
    for (a_re, m_re), value in table.items():
        if re.fullmatch(a_re, name) and re.fullmatch(m_re, model_name):
            return value
    return None


def _snapshot(model):
    return json.dumps(model.get_config(), sort_keys=True, default=str), [
        np.array(w) for w in model.get_weights()
    ]


def _as_list(a):
    return a if isinstance(a, list) else [a]


def _take(x, i):
    return [v[i:i + 1] for v in x] if isinstance(x, list) else x[i:i + 1]


def _close(a, b):
    """Equal up to float32 rounding of differently batched kernels (1e-5 of the map's max-abs)."""
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def _check_batch_equals_singles(analyzer, x, n, batch=None):
    """A batch gives the same maps as its samples one at a time (``batch``: its maps, if known)."""
    batch = _as_list(analyzer.analyze(x)) if batch is None else batch
    singles = [_as_list(analyzer.analyze(_take(x, i))) for i in range(n)]
    for k, m in enumerate(batch):
        _close(np.concatenate([s[k] for s in singles]), m)


def perturb_weights(model, x, seed=0):
    """Changes every weight: ``set_weights`` with new random values (each scaled by U(0.5, 1.5),
    keeping signs and positive variances), then one eager SGD step on the squared output in
    training mode (which also moves the BatchNormalization statistics)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    model.set_weights([w * rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True)))
    variables = model.trainable_variables
    for v, g in zip(variables, tape.gradient(loss, variables)):
        if g is not None:
            v.assign_sub(0.01 * tf.convert_to_tensor(g))


def _check_follows_weights(name, analyzer, model, x, kwargs, fit_x):
    """After the weights change, the reused analyzer (re-fitted, for pattern methods) equals a
    freshly built one, and nothing was traced a second time."""
    before = _as_list(analyzer.analyze(x))
    perturb_weights(model, x)
    if analyzer.needs_fitting:
        assert analyzer.patterns_outdated
        analyzer.fit(fit_x, batch_size=8, verbose=0)
        assert analyzer._computer.statistics._update_finite.experimental_get_tracing_count() == 1
    after = _as_list(analyzer.analyze(x))
    fresh = kp.create_analyzer(name, model, **kwargs)
    if fresh.needs_fitting:
        fresh.fit(fit_x, batch_size=8, verbose=0)
    for a, f in zip(after, _as_list(fresh.analyze(x))):
        _close(a, f)
    if getattr(analyzer, "_compiled", None) is not None:
        assert analyzer._compiled.experimental_get_tracing_count() == 1
    nonzero = any(np.any(m != 0) for m in after + before)
    if nonzero and name not in ("input", "random"):
        assert any(not np.array_equal(a, b) for a, b in zip(after, before)), "maps ignore the weights"


def run_contract(name, model_name, tmp_path, save_load, n=3, float64_consistency=False,
                 follow_weights=False):
    """The contract of analyzer ``name`` on zoo model ``model_name`` (see :func:`check_contract`)."""
    # A model of its own when its weights will be changed; the shared one otherwise.
    model = zoo.build(model_name) if follow_weights else zoo.cached(model_name)
    has_twin = float64_consistency and model_name not in NO_FLOAT64_TWIN
    twin = (lambda: zoo.cached_float64(model_name)) if has_twin else None
    check_contract(
        name, model, zoo.inputs_for(model, n=n, seed=1), zoo.inputs_for(model, n=16, seed=2),
        tmp_path, save_load=save_load, twin=twin, follow_weights=follow_weights,
        model_name=model_name,
    )


def check_contract(name, model, x, fit_x, tmp_path, save_load, twin=None, follow_weights=False,
                   model_name=None):
    """The contract checks of analyzer ``name`` on ``model``, probed with ``x``.

    Args:
        fit_x: fitting data for the pattern methods.
        twin: None, or ``twin() -> float64 twin of model``: then determinism, permutation and
            batch == one-by-one of ill-conditioned rules (``ILL_CONDITIONED``) run on the twin.
        follow_weights: after the checks, change the model's weights and compare the reused
            analyzer with a fresh one (the model must be the test's own).
        model_name: the name matched against ``EXPECTED_REFUSALS``. Defaults to `model.name`.
    """
    model_name = model_name or model.name
    n = len(_as_list(x)[0])
    before = _snapshot(model)
    kwargs = dict(EXTRA_KWARGS.get(name, {}))
    refusal = _lookup(EXPECTED_REFUSALS, name, model_name)
    if refusal:
        with pytest.raises(refusal[0], match=refusal[1]):
            a = kp.create_analyzer(name, model, **kwargs)
            if a.needs_fitting:
                a.fit(fit_x, verbose=0)
            a.analyze(x)
        return
    analyzer = kp.create_analyzer(name, model, **kwargs)
    if analyzer.needs_fitting:
        analyzer.fit(fit_x, batch_size=8, verbose=0)
    maps = _as_list(analyzer.analyze(x))
    xs = _as_list(x)
    assert len(maps) == len(xs)
    for m, xi in zip(maps, xs):
        assert m.shape == xi.shape
        assert np.all(np.isfinite(m)), f"{name} on {model_name}: non-finite values"
    if twin is not None and re.fullmatch(ILL_CONDITIONED, name):
        # Determinism, sample independence and batch == one-by-one of a dividing rule on a deep
        # application are checked on the float64 twin (see DIVIDING): in float32 the rule turns
        # ulp-level run-to-run differences of the CPU kernels (measured under pytest-xdist:
        # identical calls of lrp.w_square on ResNet50 differing by 1e-4 of the max) into visible
        # ones; in float64 they are ~1e-16 times the same amplification (~1e-12), far below 1e-5.
        checked = kp.create_analyzer(name, twin(), **kwargs)
        if checked.needs_fitting:
            checked.fit(fit_x, batch_size=8, verbose=0)
        reference = _as_list(checked.analyze(x))
        same = _close
    else:
        checked, reference, same = analyzer, maps, np.testing.assert_array_equal
    again = _as_list(checked.analyze(x))
    for m, m2 in zip(reference, again):
        same(m2, m)
    if name not in POSITION_DEPENDENT:
        # samples are independent: a permuted batch gives the permuted maps
        order = np.arange(n)[::-1]
        permuted = _as_list(checked.analyze([v[order] for v in x] if isinstance(x, list) else x[order]))
        for m, p in zip(reference, permuted):
            _close(p[order], m)
        _check_batch_equals_singles(checked, x, n, batch=reference)
    if save_load:
        path = tmp_path / f"{name}.kpa"
        analyzer.save(str(path))
        loaded = kp.load_analyzer(str(path))
        for m, m2 in zip(maps, _as_list(loaded.analyze(x))):
            np.testing.assert_array_equal(m, m2)
    after = _snapshot(model)
    assert after[0] == before[0], "model config changed"
    assert len(after[1]) == len(before[1])
    for w0, w1 in zip(before[1], after[1]):
        np.testing.assert_array_equal(w0, w1)
    if follow_weights:
        _check_follows_weights(name, analyzer, model, x, kwargs, fit_x)


def contract_cases(full=None, onednn_off=None):
    """The (analyzer, zoo model) pairs of :func:`test_contract`: all of them, except in the
    second phase of the README's test command (``TF_ENABLE_ONEDNN_OPTS=0``, the tolerance-sensitive
    files once more on other CPU kernels), where each analyzer runs on a third of the zoo, assigned
    in turn (``(i + j) % 3 == 0`` over the sorted lists: every analyzer meets nine models, every
    model about fourteen analyzers of every kind), which keeps the whole CI run well under 30
    minutes on two cores. ``KP_FULL_ZOO=1`` runs the whole matrix there too."""
    full = os.environ.get("KP_FULL_ZOO", "") not in ("", "0") if full is None else full
    onednn_off = os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" if onednn_off is None else onednn_off
    models = sorted(zoo.ZOO)
    if full or not onednn_off:
        return [(name, m) for name in ANALYZERS for m in models]
    return [(name, m) for i, name in enumerate(ANALYZERS) for j, m in enumerate(models) if (i + j) % 3 == 0]


def test_contract_rotation_covers_every_analyzer_and_model():
    cases = contract_cases(full=False, onednn_off=True)
    assert {n for n, _ in cases} == set(ANALYZERS)
    assert {m for _, m in cases} == set(zoo.ZOO)
    assert min(sum(n == a for n, _ in cases) for a in ANALYZERS) >= len(zoo.ZOO) // 3
    assert len(contract_cases(full=False, onednn_off=False)) == len(ANALYZERS) * len(zoo.ZOO)


@pytest.mark.parametrize("name,model_name", contract_cases())
def test_contract(name, model_name, tmp_path):
    run_contract(name, model_name, tmp_path, save_load=model_name in ("dense_mlp", "residual"),
                 float64_consistency=True, follow_weights=True)


#: Checked on every application: the gradient, one LRP rule and PatternAttribution.
APP_CORE = ("gradient", "lrp.epsilon", "pattern.attribution")


def application_cases(full=None):
    """The (analyzer, application) pairs of :func:`test_contract_applications`.

    The full matrix (every analyzer on every application; ``KP_FULL_ZOO=1``) takes well over half
    an hour on two cores. By default every analyzer runs on one application (assigned in turn over
    the seven, so that each application meets several kinds of rule) and :data:`APP_CORE` on all of
    them: every analyzer still meets a deep network, every application the three main families.
    """
    full = os.environ.get("KP_FULL_ZOO", "") not in ("", "0") if full is None else full
    if full:
        return [(name, app) for name in ANALYZERS for app in sorted(zoo.SLOW_ZOO)]
    apps = sorted(set(zoo.SLOW_ZOO) - set(APP_HEAVY))
    cases = [(name, app) for i, name in enumerate(ANALYZERS) for j, app in enumerate(apps)
             if name in APP_CORE or i % len(apps) == j]
    return cases + [(name, app) for app, names in sorted(APP_HEAVY.items()) for name in names]


#: Applications whose contract cases cost minutes each on two cores (ConvNeXtTiny: 170 s for
#: pattern.attribution, 149 s for lrp.alpha_2_beta_1, with the float64 twin): by default only these
#: analyzers run on them; ``KP_FULL_ZOO=1`` runs all.
APP_HEAVY = {"convnexttiny": ("gradient", "lrp.epsilon")}


@pytest.mark.slow
@pytest.mark.parametrize("name,model_name", application_cases())
def test_contract_applications(name, model_name, tmp_path):
    run_contract(name, model_name, tmp_path, save_load=False, n=2, float64_consistency=True)

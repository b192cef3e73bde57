"""Methods as values: presets as data, layer maps, canonizers, capability flags, and wrappers that
compose over any reverse analyzer.

Identities are checked on float64 twins (``zoo.cached_float64``), where the compared computations
differ only by float64 rounding (~1e-16 relative): a tolerance of 1e-10 of the max leaves a
margin of 1e6 for amplification by the rules' divisions.
"""

import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import keras_patterns as kp
import zoo
from keras_patterns import registry
from keras_patterns.analyzers.reverse import ReverseAnalyzer
from keras_patterns.analyzers.method import Method
from keras_patterns.errors import NotFittedError
from keras_patterns.analyzers.relevance_based import Z_LAYERS
from keras_patterns.graph.layers import ACTIVATIONS
from keras_patterns.rules import GUIDED_RELU, IDENTITY
from keras_patterns.rules import lrp as R
from test_contract import EXPECTED_REFUSALS, EXTRA_KWARGS, _lookup

ANALYZERS = kp.list_analyzers()
FLAGS = ("output_kind", "multiplies_by_input", "conserves_relevance", "needs_fitting")


def _close64(a, b):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.abs(b).max()))


@pytest.fixture(scope="module")
def residual64():
    model = zoo.cached_float64("residual")
    return model, zoo.inputs_for(model, n=4, seed=3).astype("float64")


@pytest.fixture(scope="module")
def mlp():
    model = zoo.cached("dense_mlp")
    return model, zoo.inputs_for(model, n=5, seed=1)


def _model_for(name, mlp):
    """``mlp``, or for an analyzer that refuses MLPs (Grad-CAM, occlusion: no spatial axes) a small
    CNN."""
    if _lookup(EXPECTED_REFUSALS, name, "dense_mlp") is None:
        return mlp
    model = zoo.cached("residual")
    return model, zoo.inputs_for(model, n=5, seed=1)


def _build(name, model, x, **extra):
    a = kp.create_analyzer(name, model, **{**EXTRA_KWARGS.get(name, {}), **extra})
    if a.needs_fitting:
        a.fit(x, verbose=0)
    return a


# ------------------------------------------------------------------------------ methods as data
@pytest.mark.parametrize("name", ANALYZERS)
def test_at_most_three_package_classes_in_the_mro(name, mlp):
    model, x = _model_for(name, mlp)
    own = [c.__name__ for c in type(_build(name, model, x)).__mro__ if c.__module__.startswith("keras_patterns")]
    assert len(own) <= 3, f"{name}: {own}"


@pytest.mark.parametrize("name", ANALYZERS)
def test_get_config_round_trips_every_preset(name, mlp):
    model, x = _model_for(name, mlp)
    a = _build(name, model, x)
    config = a.get_config()
    b = kp.create_analyzer(name, model, **config)
    assert b.get_config() == config and b.name == name
    if b.needs_fitting:
        b.fit(x, verbose=0)
    if name != "random":  # position-seeded noise: same seed, same maps; checked in the contract
        np.testing.assert_array_equal(b.analyze(x), a.analyze(x))


@pytest.mark.parametrize("name", ANALYZERS)
def test_capability_flags_without_building_equal_the_analyzers(name, mlp):
    model, x = _model_for(name, mlp)
    a = _build(name, model, x)
    assert registry.capabilities(name) == {f: getattr(a, f) for f in FLAGS}


def test_flags_of_the_method_families():
    caps = {n: registry.capabilities(n) for n in ANALYZERS}
    assert {n for n, c in caps.items() if c["output_kind"] == "signal"} == {
        "deconvnet", "guided_backprop", "pattern.net", "input"}
    assert {n for n, c in caps.items() if c["needs_fitting"]} == {"pattern.net", "pattern.attribution"}
    assert {n for n, c in caps.items() if c["multiplies_by_input"]} == {"input_t_gradient", "integrated_gradients"}
    assert {n for n, c in caps.items() if c["conserves_relevance"]} == {
        n for n in ANALYZERS if n.startswith(("lrp", "deep_taylor"))}


def test_a_preset_refuses_what_it_fixes_and_names_its_own_arguments(mlp):
    model, _ = mlp
    with pytest.raises(TypeError, match=r"Analyzer 'lrp.z' fixes \['bn_layer_rule', 'rule'\]"):
        kp.create_analyzer("lrp.z", model, rule="Flat", bn_layer_rule="Z")
    with pytest.raises(TypeError, match=r"'deconvnet' \(a preset of ReverseAnalyzer with the arguments "
                                        r"\['non_relu', 'start'\]\) got an unexpected keyword argument 'epsilon'"):
        kp.create_analyzer("deconvnet", model, epsilon=0.1)


def test_method_is_a_frozen_validated_value():
    m = Method(seed="value")
    with pytest.raises(Exception):
        m.seed = "ones"
    assert m.replace(postprocess="abs").postprocess == "abs" and m.postprocess is None
    with pytest.raises(ValueError, match=r"`seed` must be one of \['ones', 'value', 'relu_value'\]. Received: seed='one'"):
        Method(seed="one")
    with pytest.raises(ValueError, match=r"`output_kind` must be one of .* Received: output_kind='heat'"):
        Method(output_kind="heat")
    with pytest.raises(TypeError, match=r"`rules` must be \(condition, Rule\) pairs"):
        Method(rules=((L.Dense, "Z"),))


def test_a_method_value_is_an_analyzer(residual64):
    model, x = residual64
    abs_grad = ReverseAnalyzer(model, method=Method(postprocess="abs"))
    _close64(abs_grad.analyze(x), np.abs(kp.create_analyzer("gradient", model).analyze(x)))
    with pytest.raises(ValueError, match=r"cannot be saved"):
        abs_grad.get_config()


# ------------------------------------------------------------------------------------ layer maps
def test_layer_map_comes_first_in_every_reverse_analyzer(residual64):
    model, x = residual64
    kernels = (L.Dense, L.Conv2D)
    z_everywhere = kp.create_analyzer("lrp.epsilon", model, layer_map=[(kernels, "Z"), (L.BatchNormalization, R.Z)])
    _close64(z_everywhere.analyze(x), kp.create_analyzer("lrp.z", model).analyze(x))
    # The gradient with LRP-Z's rules everywhere is LRP-Z seeded with 1 instead of the output value
    # (the rules are linear in the backward signal).
    lrp_z = [(kernels, R.Z), (L.BatchNormalization, R.Z), (Z_LAYERS, R.Z_NONKERNEL), (ACTIVATIONS, IDENTITY)]
    g = kp.create_analyzer("gradient", model, layer_map=lrp_z, neuron_selection_mode="index")
    z = kp.create_analyzer("lrp.z", model, neuron_selection_mode="index")
    y = model(x).numpy()[:, 0]
    _close64(g.analyze(x, neuron_selection=0) * y[:, None, None, None], z.analyze(x, neuron_selection=0))
    assert "lrp.z" in str(g.plan)


def test_layer_map_turns_deconvnet_into_guided_backprop(residual64):
    model, x = residual64
    relu = lambda node, graph: isinstance(node.layer, (L.ReLU, L.Activation))  # noqa: E731
    guided = kp.create_analyzer("deconvnet", model, layer_map=[(relu, GUIDED_RELU)])
    _close64(guided.analyze(x), kp.create_analyzer("guided_backprop", model).analyze(x))


def test_layer_map_errors(mlp):
    model, _ = mlp
    with pytest.raises(TypeError, match=r"`layer_map` must be a list of \(condition, rule\) pairs. Received: layer_map='Z'"):
        kp.create_analyzer("gradient", model, layer_map="Z")
    with pytest.raises(TypeError, match=r"A layer_map condition must be a layer class.*Received: 3"):
        kp.create_analyzer("gradient", model, layer_map=[(3, "Z")])
    with pytest.raises(ValueError, match=r"Unknown LRP rule name for `layer_map`. Received: 'Zed'"):
        kp.create_analyzer("gradient", model, layer_map=[(L.Dense, "Zed")])
    with pytest.raises(ValueError, match=r"\['layer_map'\] hold Rule objects"):
        kp.create_analyzer("gradient", model, layer_map=[(L.Dense, "Z")]).get_config()


# ------------------------------------------------------------------------------------ canonizers
def test_canonizers_are_an_argument_and_saved_by_name(tmp_path):
    model = zoo.cached_float64("batchnorm")
    x = zoo.inputs_for(model, n=3, seed=4).astype("float64")
    unfolded = kp.create_analyzer("gradient", model, canonizers=["split_separable", "split_activations"])
    def n_bn(a):
        return sum(isinstance(n.layer, L.BatchNormalization) for n in a.graph.nodes)

    assert n_bn(unfolded) > n_bn(kp.create_analyzer("gradient", model))  # folding is left out
    # Canonizers compute the same function: the gradient does not change.
    _close64(unfolded.analyze(x), kp.create_analyzer("gradient", model).analyze(x))
    assert unfolded.get_config()["canonizers"] == ["split_separable", "split_activations"]
    unfolded.save(str(tmp_path / "g.kpa"))
    loaded = kp.load_analyzer(str(tmp_path / "g.kpa"))
    assert len(loaded.graph.nodes) == len(unfolded.graph.nodes)
    with pytest.raises(ValueError, match=r"`canonizers` must be a list of graph -> graph functions or names"):
        kp.create_analyzer("gradient", model, canonizers=["fold"])
    with pytest.raises(ValueError, match=r"\['canonizers'\] hold"):
        kp.create_analyzer("gradient", model, canonizers=[lambda g: g]).get_config()


# -------------------------------------------------------------------------------------- wrappers
def _noise(x, n, seed, scale):
    """The wrappers' noise: copy j of every sample gets x + scale * noise_j (same draws per sample)."""
    noise = tf.random.stateless_normal((n,) + x.shape[1:], seed=[seed, 0], dtype=tf.as_dtype(x.dtype)).numpy()
    return [x + scale * noise[j] for j in range(n)]


@pytest.mark.parametrize("inner", ["lrp.epsilon", "guided_backprop", "deep_taylor", "pattern.attribution"])
@pytest.mark.parametrize("reduce", ["mean", "square", "variance"])
def test_smoothgrad_over_any_analyzer_equals_the_reduced_inner_maps(inner, reduce, residual64):
    model, x = residual64
    inner_a = _build(inner, model, x, neuron_selection_mode="index")
    n, seed, scale = 4, 5, 0.3
    wrapped = kp.SmoothGrad(inner_a, augment_by_n=n, noise_scale=scale, seed=seed, reduce=reduce,
                            neuron_selection_mode="index")
    got = wrapped.analyze(x, neuron_selection=1)
    maps = np.stack([inner_a.analyze(xj, neuron_selection=1) for xj in _noise(x, n, seed, scale)], axis=1)
    expected = {"mean": maps.mean(1), "square": (maps ** 2).mean(1), "variance": maps.var(1)}[reduce]
    _close64(got, expected)


@pytest.mark.parametrize("inner", ["lrp.alpha_1_beta_0", "input_t_gradient", "pattern.net"])
def test_integrated_gradients_over_any_analyzer(inner, residual64):
    model, x = residual64
    inner_a = _build(inner, model, x, neuron_selection_mode="index")
    steps, ref = 4, 0.5
    ig = kp.IntegratedGradients(inner_a, steps=steps, reference_inputs=ref, neuron_selection_mode="index")
    got = ig.analyze(x, neuron_selection=0)
    path = [ref + k / steps * (x - ref) for k in range(steps)]
    expected = np.mean([inner_a.analyze(p, neuron_selection=0) for p in path], axis=0) * (x - ref)
    _close64(got, expected)


def test_wrappers_run_in_one_compiled_function_and_choose_the_neuron_on_the_clean_input(residual64):
    model, x = residual64
    lrp = kp.create_analyzer("lrp.epsilon", model)
    sg = kp.SmoothGrad(lrp, augment_by_n=2, noise_scale=0.0, seed=0)
    _close64(sg.analyze(x), lrp.analyze(x))  # no noise: the inner maps, for the arg-max neuron
    sg.analyze(x[:2])
    assert sg._compiled.experimental_get_tracing_count() == 1


def test_wrappers_forward_flags_fitting_and_state(tmp_path):
    model = zoo.cached("conv2d_pool")
    x = zoo.inputs_for(model, n=8, seed=0)
    pn = kp.create_analyzer("pattern.net", model)
    sg = kp.SmoothGrad(pn, augment_by_n=2, noise_scale=0.1, seed=0)
    assert (sg.output_kind, sg.needs_fitting, sg.multiplies_by_input) == ("signal", True, False)
    assert kp.VarGrad(pn, augment_by_n=2).output_kind == "attribution"
    assert kp.SquareGrad(pn, augment_by_n=2).get_config()["reduce"] == "square"
    ig = kp.IntegratedGradients(pn, steps=2)
    assert (ig.output_kind, ig.multiplies_by_input, ig.needs_fitting) == ("attribution", True, True)
    with pytest.raises(NotFittedError, match="has no patterns yet"):
        sg.analyze(x)
    assert sg.fit(x, verbose=0) is sg and pn.patterns is not None
    maps = sg.analyze(x)
    sg.save(str(tmp_path / "sg.kpa"))
    loaded = kp.load_analyzer(str(tmp_path / "sg.kpa"))
    assert loaded.name == "smoothgrad" and loaded.inner.name == "pattern.net"
    np.testing.assert_array_equal(loaded.analyze(x), maps)


def test_registered_wrappers_keep_innvestigates_constructor(mlp):
    model, x = mlp
    sg = kp.create_analyzer("smoothgrad", model, augment_by_n=4, seed=1, postprocess="abs")
    assert sg.inner.name == "gradient" and sg.inner.method.postprocess == "abs"
    assert "inner" not in sg.get_config() and sg.get_config()["postprocess"] == "abs"
    again = kp.SmoothGrad(model, augment_by_n=4, seed=1, postprocess="abs")
    np.testing.assert_array_equal(again.analyze(x), sg.analyze(x))
    named = kp.create_analyzer("integrated_gradients", model, inner="lrp.z", steps=4)
    assert named.get_config()["inner"]["name"] == "lrp.z"


def test_wrapper_errors(mlp):
    model, x = mlp
    lrp = kp.create_analyzer("lrp.epsilon", model)
    with pytest.raises(ValueError, match=r"`postprocess` is the default gradient's option; set it on the inner"):
        kp.SmoothGrad(lrp, postprocess="abs")
    with pytest.raises(TypeError, match=r"Give the inner analyzer once"):
        kp.SmoothGrad(lrp, inner="gradient")
    with pytest.raises(TypeError, match=r"needs a reverse analyzer .* Received: a 'random' analyzer"):
        kp.SmoothGrad(kp.create_analyzer("random", model))
    with pytest.raises(TypeError, match=r"`inner` must be an analyzer name or"):
        kp.SmoothGrad(model, inner=3)
    with pytest.raises(ValueError, match=r"`reduce` must be 'mean', 'square' or 'variance'. Received: reduce='max'"):
        kp.SmoothGrad(lrp, reduce="max")
    with pytest.raises(ValueError, match=r"cannot wrap a pattern analyzer with project_bottleneck=True"):
        kp.SmoothGrad(kp.create_analyzer("pattern.net", model, project_bottleneck=True))

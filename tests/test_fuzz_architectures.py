"""Property-based fuzzing (hypothesis) over randomly generated architectures.

A strategy draws a small *architecture spec* (plain data, so hypothesis prints and shrinks it) from
the supported layers: Sequential and Functional models; Dense, Conv1D/Conv2D (random kernel size,
strides, padding, dilation within valid limits), DepthwiseConv2D, SeparableConv2D, Max/Average
pooling, GlobalAveragePooling, Flatten, BatchNormalization (randomized statistics), ReLU /
Activation("relu"), Dropout, ZeroPadding2D, residual (Add) and Concatenate branches, a nested
Functional sub-model used as a layer, and two inputs merged by Add or Concatenate. :func:`build`
turns a spec into a Keras model with deterministic weights (``keras.utils.set_random_seed``), in
float32 or, for the float64 twin and the identities, under the ``"float64"`` dtype policy.

Checks:

* the contract of ``test_contract.py`` (shapes, finiteness, determinism, permuted batch, batch ==
  one-by-one, save/load, model untouched, the live view after ``perturb_weights``) for registered
  analyzers on generated models. Coverage: ``test_every_analyzer_on_generated_models`` is
  parametrized over ``kp.list_analyzers()`` (every analyzer is covered by construction, a newly
  registered one included) with a few generated models each; ``test_random_analyzers_on_random_
  architectures`` draws the model *and* a subset of 3 analyzers per example, which is what the
  "long" profile scales up. For ill-conditioned analyzers (``ILL_CONDITIONED``) determinism,
  permutation and batch == one-by-one run on a float64 twin of the model (as the contract's ``zoo.cached_float64`` does), so it also holds
  on biased, BatchNormalization-carrying, ill-conditioned cases;
* identities on bias-free, BatchNormalization-free ReLU nets built in float64: LRP-Z equals
  input x gradient, and the LRP-Z map sums to the selected output;
* PatternNet with ``"linear"`` patterns on a single bias-free Dense layer equals the closed form
  ``a_j * y_j`` with ``a_j = cov(x, y_j) / (w_j^T cov(x, y_j))`` computed in numpy.

Profiles: ``"ci"`` (derandomized, few examples, the default) and ``"long"`` (300 examples), the
latter selected with the environment variable ``KP_FUZZ_PROFILE=long``.
"""

import os
import zlib

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from keras import layers as L

import keras_patterns as kp
import zoo
from test_contract import _as_list, check_contract

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("ci", derandomize=True, max_examples=3, **_COMMON)
settings.register_profile("long", derandomize=False, max_examples=300, **_COMMON)
PROFILE = os.environ.get("KP_FUZZ_PROFILE", "ci")
#: The profile, applied to this module's tests only (``settings.load_profile`` would change the
#: global default and leak into every other hypothesis test of the same pytest process).
FUZZ = settings.get_profile(PROFILE)
#: examples per analyzer in the parametrized coverage test: ci keeps the file fast, long scales it.
PER_ANALYZER = {"ci": 2, "long": 10}[PROFILE]

ANALYZERS = kp.list_analyzers()

#: Optional: a file to which every generated model appends one line (the long run's model count).
_LOG = os.environ.get("KP_FUZZ_LOG")


# ------------------------------------------------------------------------------- the strategy
def _conv_out(size, k, s, pad, d):
    if pad == "same":
        return -(-size // s)
    return (size - (d * (k - 1) + 1)) // s + 1


@st.composite
def _conv_params(draw, size, allow_dilation=True):
    """Kernel size, strides, padding, dilation that keep the output non-empty (Keras forbids
    strides > 1 together with dilation > 1)."""
    pad = draw(st.sampled_from(["valid", "same"]))
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 2))
    d = draw(st.integers(1, 2)) if allow_dilation and s == 1 and k > 1 else 1
    if pad == "valid" and d * (k - 1) + 1 > size:
        k, d = 1, 1
    return k, s, pad, d


@st.composite
def specs(draw, bias=None, batchnorm=True, dropout=True, families=("dense", "conv1d", "conv2d"),
          max_blocks=4):
    """An architecture spec: a dict of plain data (printed by hypothesis on failure).

    Args:
        bias: `None` draws whether kernel layers have biases; `False` / `True` forces it.
        batchnorm: whether BatchNormalization blocks may be drawn.
        dropout: whether Dropout blocks may be drawn.
        families: the input kinds: ``"dense"`` (6,), ``"conv1d"`` (8, 2), ``"conv2d"`` (8, 8, 2).
        max_blocks: the most blocks before the head.
    """
    family = draw(st.sampled_from(families))
    use_bias = draw(st.booleans()) if bias is None else bias
    n_inputs = draw(st.integers(1, 2))
    merge = draw(st.sampled_from(["add", "concat"])) if n_inputs == 2 else None
    shape = {"dense": [6], "conv1d": [8, 2], "conv2d": [8, 8, 2]}[family]
    if merge == "concat":
        shape[-1] *= 2
    kinds = ["kernel", "kernel", "relu", "residual", "concat", "nested"]
    kinds += ["bn"] * batchnorm + ["dropout"] * dropout
    if family != "dense":
        kinds += ["pool"]
    if family == "conv2d":
        kinds += ["depthwise", "separable", "zeropad"]
    blocks = []
    for _ in range(draw(st.integers(1, max_blocks))):
        kind = draw(st.sampled_from(kinds))
        size = shape[0]
        c = draw(st.integers(1, 8))
        act = draw(st.sampled_from([None, "relu"]))
        if kind == "kernel":
            if family == "dense":
                blocks.append(("dense", c, act))
            else:
                k, s, pad, d = draw(_conv_params(size))
                blocks.append(("conv", c, k, s, pad, d, act))
                shape = [_conv_out(size, k, s, pad, d)] * (len(shape) - 1) + [c]
        elif kind == "relu":
            blocks.append((draw(st.sampled_from(["relu_layer", "relu_activation"])),))
        elif kind in ("bn", "dropout"):
            blocks.append((kind,))
        elif kind == "pool":
            if size >= 2:
                blocks.append(("pool", draw(st.sampled_from(["max", "avg"]))))
                shape = [size // 2] * (len(shape) - 1) + [shape[-1]]
        elif kind == "residual":
            # x + f(x), f a kernel layer (+ ReLU) keeping the shape
            k = draw(st.integers(1, 3)) if family != "dense" else 1
            blocks.append(("residual", k, draw(st.booleans())))
        elif kind == "concat":
            c2 = draw(st.integers(1, 8))
            blocks.append(("concat", c, c2))
            shape = shape[:-1] + [c + c2]
        elif kind == "nested":
            blocks.append(("nested", c, draw(st.booleans())))
            shape = shape[:-1] + [c]
        elif kind == "depthwise":
            k, s, pad, d = draw(_conv_params(size))
            m = draw(st.integers(1, 2))
            blocks.append(("depthwise", k, s, pad, d, m, act))
            shape = [_conv_out(size, k, s, pad, d)] * 2 + [shape[-1] * m]
        elif kind == "separable":
            k, s, pad, d = draw(_conv_params(size))
            blocks.append(("separable", c, k, s, pad, d, act))
            shape = [_conv_out(size, k, s, pad, d)] * 2 + [c]
        elif kind == "zeropad":
            blocks.append(("zeropad", 1))
            shape = [size + 2] * 2 + [shape[-1]]
    # nested sub-models are applied as functions of a tensor, so they need a Functional model too
    has_graph = n_inputs == 2 or any(b[0] in ("residual", "concat", "nested") for b in blocks)
    functional = True if has_graph else draw(st.booleans())
    head = "flatten" if family == "dense" else draw(st.sampled_from(["flatten", "gap"]))
    return dict(seed=draw(st.integers(0, 2 ** 16)), family=family, bias=use_bias,
                n_inputs=n_inputs, merge=merge, functional=functional, blocks=blocks, head=head,
                outputs=draw(st.integers(1, 4)))


def _layer_fns(spec):
    """Callables applying each block (as Keras layers) to a tensor: used by both model kinds."""
    family, bias = spec["family"], spec["bias"]
    conv = {"conv1d": L.Conv1D, "conv2d": L.Conv2D}.get(family)
    pool = {"conv1d": (L.MaxPooling1D, L.AveragePooling1D),
            "conv2d": (L.MaxPooling2D, L.AveragePooling2D)}.get(family)

    def kernel(c, k=1, activation=None, **kw):
        if family == "dense":
            return L.Dense(c, activation=activation, use_bias=bias)
        return conv(c, k, activation=activation, use_bias=bias, **kw)

    out = []
    for b in spec["blocks"]:
        kind = b[0]
        if kind == "dense":
            out.append(kernel(b[1], activation=b[2]))
        elif kind == "conv":
            _, c, k, s, pad, d, act = b
            out.append(kernel(c, k, strides=s, padding=pad, dilation_rate=d, activation=act))
        elif kind == "relu_layer":
            out.append(L.ReLU())
        elif kind == "relu_activation":
            out.append(L.Activation("relu"))
        elif kind == "bn":
            out.append(L.BatchNormalization())
        elif kind == "dropout":
            out.append(L.Dropout(0.3))
        elif kind == "pool":
            out.append(pool[0 if b[1] == "max" else 1](2))
        elif kind == "depthwise":
            _, k, s, pad, d, m, act = b
            out.append(L.DepthwiseConv2D(k, strides=s, padding=pad, dilation_rate=d,
                                         depth_multiplier=m, activation=act, use_bias=bias))
        elif kind == "separable":
            _, c, k, s, pad, d, act = b
            out.append(L.SeparableConv2D(c, k, strides=s, padding=pad, dilation_rate=d,
                                         activation=act, use_bias=bias))
        elif kind == "zeropad":
            out.append(L.ZeroPadding2D(b[1]))
        elif kind == "residual":
            _, k, relu = b

            def residual(h, k=k, relu=relu):
                kw = {} if family == "dense" else {"padding": "same"}
                r = kernel(h.shape[-1], k, activation="relu" if relu else None, **kw)(h)
                return L.Add()([h, r])

            out.append(residual)
        elif kind == "concat":
            _, c1, c2 = b

            def concat(h, c1=c1, c2=c2):
                kw = {} if family == "dense" else {"padding": "same"}
                return L.Concatenate()([kernel(c1, 1, activation="relu", **kw)(h),
                                        kernel(c2, 3 if family != "dense" else 1, **kw)(h)])

            out.append(concat)
        elif kind == "nested":
            _, c, relu = b

            def nested(h, c=c, relu=relu):
                inner_in = keras.Input(tuple(h.shape[1:]), dtype=h.dtype)
                kw = {} if family == "dense" else {"padding": "same"}
                inner = kernel(c, 3 if family != "dense" else 1, **kw)(inner_in)
                if relu:
                    inner = L.ReLU()(inner)
                return keras.Model(inner_in, inner)(h)

            out.append(nested)
    return out


def build(spec, dtype=None):
    """Builds the model of ``spec`` with deterministic weights (seeded by ``spec["seed"]``).

    Args:
        spec: a dict drawn by :func:`specs`.
        dtype: `None` for the current policy, or e.g. `"float64"` (set as the global dtype policy
            while building, so nested models and inputs follow it too).
    """
    previous = keras.config.dtype_policy()
    if dtype is not None:
        keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(spec["seed"])
        shape = {"dense": (6,), "conv1d": (8, 2), "conv2d": (8, 8, 2)}[spec["family"]]
        # keras.Input takes backend.floatx(), not the policy: give the inputs the policy's dtype
        floatx = keras.config.dtype_policy().compute_dtype
        fns = _layer_fns(spec)
        head = [L.Flatten() if spec["head"] == "flatten" or spec["family"] == "dense" else
                (L.GlobalAveragePooling1D() if spec["family"] == "conv1d"
                 else L.GlobalAveragePooling2D()),
                L.Dense(spec["outputs"], use_bias=spec["bias"])]
        if not spec["functional"]:
            model = keras.Sequential([keras.Input(shape, dtype=floatx)] + fns + head, name="fuzz")
        else:
            inputs = [keras.Input(shape, dtype=floatx) for _ in range(spec["n_inputs"])]
            h = inputs[0]
            if spec["merge"] == "add":
                h = L.Add()(inputs)
            elif spec["merge"] == "concat":
                h = L.Concatenate()(inputs)
            for f in fns + head:
                h = f(h)
            model = keras.Model(inputs if len(inputs) > 1 else inputs[0], h, name="fuzz")
    finally:
        keras.config.set_dtype_policy(previous)
    zoo._randomize_bn(model, seed=spec["seed"])
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(repr(spec) + "\n")
    return model


def float64_twin(spec, model):
    """The same architecture under the ``"float64"`` policy, holding ``model``'s weights exactly."""
    twin = build(spec, "float64")
    twin.set_weights([w.astype("float64") for w in model.get_weights()])
    return twin


def _inputs(model, seed, n=3, dtype="float32"):
    x = zoo.inputs_for(model, n=n, seed=seed)
    return [v.astype(dtype) for v in x] if isinstance(x, list) else x.astype(dtype)


# -------------------------------------------------------------------------------- the contract
def contract(name, spec, tmp_path, x_seed, n=3):
    """The contract of ``test_contract.check_contract`` on the generated model of ``spec``, with
    save/load and the live-weights check; ill-conditioned rules (``ILL_CONDITIONED``: the dividing
    rules and the pattern methods) are checked for determinism, permutation and batch ==
    one-by-one on the float64 twin, where rounding is ~1e-16 and even a 1e6-fold amplification by a
    near-zero denominator stays far below the contract's 1e-5 of the max-abs."""
    model = build(spec)
    check_contract(
        name, model, _inputs(model, x_seed, n), _inputs(model, x_seed + 1, 16), tmp_path,
        save_load=True, twin=lambda: float64_twin(spec, model), follow_weights=True,
        model_name=_refusal_name(spec, model),
    )


def _refusal_name(spec, model):
    """The name ``EXPECTED_REFUSALS`` sees: ``fuzz_<family>``, with ``_noconv`` for a model without
    a convolution (Grad-CAM has no feature map) and ``_2in`` for two inputs (occlusion occludes one)."""
    from keras_patterns.analyzers.cam import CONV_LAYERS
    from keras_patterns.graph import walk

    conv = any(isinstance(node.layer, CONV_LAYERS) for node in walk(model).nodes)
    return f"fuzz_{spec['family']}" + ("" if conv else "_noconv") + ("_2in" if spec["n_inputs"] == 2 else "")


@pytest.mark.parametrize("name", ANALYZERS)
def test_every_analyzer_on_generated_models(name, tmp_path_factory):
    """Every registered analyzer meets the contract on generated models (``PER_ANALYZER`` each).

    Hypothesis always tries the simplest spec first (one Dense(1)); the others come from a seed
    fixed per analyzer name under the "ci" profile, so the analyzers see different models while
    every run is reproducible.
    """

    fixed = (lambda f: seed(zlib.crc32(name.encode()))(f)) if PROFILE == "ci" else (lambda f: f)

    @fixed
    @settings(FUZZ, max_examples=PER_ANALYZER, derandomize=False, database=None)
    @given(spec=specs(), x_seed=st.integers(0, 1000))
    def check(spec, x_seed):
        contract(name, spec, tmp_path_factory.mktemp("a"), x_seed)

    check()


@FUZZ
@given(spec=specs(), names=st.lists(st.sampled_from(ANALYZERS), min_size=3, max_size=3, unique=True),
       x_seed=st.integers(0, 1000))
def test_random_analyzers_on_random_architectures(spec, names, x_seed, tmp_path_factory):
    """Three drawn analyzers meet the contract on a drawn model (the long profile's workhorse)."""
    for name in names:
        contract(name, spec, tmp_path_factory.mktemp("r"), x_seed)


# ------------------------------------------------------------------------------- identities
@FUZZ
@given(spec=specs(bias=False, batchnorm=False), x_seed=st.integers(0, 1000))
def test_lrp_z_is_input_times_gradient_and_conserves(spec, x_seed):
    """On bias-free ReLU nets without BatchNormalization, in float64: LRP-Z == input x gradient and
    the LRP-Z map sums to the selected output (max logit).

    Both at 1e-5 of the scale (max-abs of the map; the |output| for the sums): float64 rounding is
    ~1e-16, so this leaves 1e11 of room for amplification by near-zero pre-activations, yet fails
    on any real rule difference. Max-pooling and ReLU gates are piecewise-linear, so the identity
    is exact wherever the forward pass is.
    """
    model = build(spec, "float64")
    x = _inputs(model, x_seed, 4, "float64")
    z = _as_list(kp.create_analyzer("lrp.z", model).analyze(x))
    ixg = _as_list(kp.create_analyzer("input_t_gradient", model).analyze(x))
    scale = max(max(float(np.abs(m).max()) for m in ixg), 1e-300)
    for a, b in zip(z, ixg):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)
    totals = sum(m.reshape(len(m), -1).sum(axis=1) for m in z)
    y = np.asarray(model(x)).max(axis=1)
    np.testing.assert_allclose(totals, y, rtol=1e-5, atol=1e-5 * max(float(np.abs(y).max()), 1e-300))


@FUZZ
@given(seed=st.integers(0, 2 ** 16), d=st.integers(1, 6), c=st.integers(1, 4),
       n=st.integers(8, 64))
def test_linear_patternnet_on_a_dense_layer_is_the_closed_form(seed, d, c, n):
    """PatternNet with "linear" patterns on y = W^T x (one bias-free Dense, float64 model) equals
    ``a_j * y_j`` for the selected unit j, with ``a_j = cov(x, y_j) / (w_j^T cov(x, y_j))`` computed
    in numpy from the same data, at 1e-5 of the map's max-abs (the statistics are per-batch sums
    of products of O(1) values; their rounding is far below that)."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((d,), dtype="float64"),
                              L.Dense(c, use_bias=False, dtype="float64")])
    w = rng.normal(0, 1, (d, c))
    model.layers[0].set_weights([w])
    data = rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d)) + rng.normal(0, 1, d)
    analyzer = kp.create_analyzer("pattern.net", model, pattern_type="linear")
    analyzer.fit(data, batch_size=16, verbose=0)
    y_data = data @ w
    cov = ((data - data.mean(0)).T @ (y_data - y_data.mean(0))) / n  # (d, c)
    denom = np.einsum("dc,dc->c", w, cov)
    a = cov / np.where(denom == 0, 1.0, denom)
    x = rng.normal(0, 1, (5, d))
    y = x @ w
    j = y.argmax(axis=1)
    expected = a[:, j].T * y[np.arange(len(x)), j][:, None]
    got = analyzer.analyze(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(np.abs(expected).max(), 1e-300))



# ----------------------------------------------------------------------------- found by fuzzing
@pytest.mark.parametrize("name", ["lrp.alpha_1_beta_0", "deep_taylor", "lrp.z", "gradient"])
def test_float32_input_with_float64_layers(name):
    """Found by this file: a float32 ``keras.Input`` (it takes ``backend.floatx()``, not the dtype
    policy) feeding float64 layers (Keras autocasts; the model runs) made the alpha-beta rules and
    Deep Taylor fail with a raw TypeError in ``safe_div``. The mirror now casts each node's inputs
    to the layer's compute dtype, as Keras does, and the maps equal those of the all-float64 model
    up to the final float32 rounding of a float32 input's map (2^-24 relative, 1e-6 here)."""
    w = np.random.default_rng(1).normal(0, 1, (6, 3))
    mixed = keras.Sequential([keras.Input((6,)), L.Dense(3, use_bias=False, dtype="float64")])
    pure = keras.Sequential([keras.Input((6,), dtype="float64"), L.Dense(3, use_bias=False, dtype="float64")])
    mixed.set_weights([w])
    pure.set_weights([w])
    x = np.random.default_rng(0).normal(0, 1, (3, 6)).astype("float32")
    got = kp.create_analyzer(name, mixed).analyze(x)
    expected = kp.create_analyzer(name, pure).analyze(x.astype("float64"))
    assert got.shape == x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())

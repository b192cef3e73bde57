"""The signal-estimator quality measure rho(S) of PatternNet (Kindermans et al. 2018, Sec. 4.1, eq. 1).

For one unit with filter w, input rows x, bias-free output y = w^T x and a signal estimator S,

    rho(S) = 1 - max_v corr(w^T x, v^T (x - S(x)))

measures how much of y can still be recovered linearly from the estimated distractor
r = x - S(x). A perfect estimator leaves nothing (rho = 1); an estimator that removes nothing
useful leaves y recoverable (rho near 0).

Every estimator compared here has the form S(x) = y (m p + (1 - m) q) with per-unit directions p
and q and a 0/1 gate m, so the residual moments follow in closed form from the streaming sums of
x, x x^T, x y, x y m, y, y^2, y m, y^2 m (float64, one pass per data set); no residual is
materialised and v needs no SGD: v = (Cov(r) + lambda I)^-1 Cov(r, y). See
:func:`signal_quality`.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_patterns import validation
from keras_patterns._warnings import user_stacklevel
from keras_patterns.canonizers import prepare_graph
from keras_patterns.errors import NonFiniteDataError
from keras_patterns.graph.layers import CONV, CONV_TRANSPOSE, DEPTHWISE, EINSUM_DENSE
from keras_patterns.linear import apply_kernel, channels_last, node_params
from keras_patterns.patterns.data import input_tensors, run_pass
from keras_patterns.patterns.estimators import pattern_from_statistics, to_matrix
from keras_patterns.patterns.statistics import PatternStatistics

#: The estimators :func:`signal_quality` knows.
ESTIMATORS = ("random", "S_w", "S_a", "S_a+-")

#: Largest patch dimension D (inputs per unit) for which the dense D x D covariance is formed.
MAX_PATCH_DIM = 4096

#: The ridge of the v solve, relative to the mean eigenvalue tr(Cov(r)) / D of the residual covariance.
RIDGE = 1e-9

#: Bytes of float64 residual covariances formed at once (units are processed in chunks).
_CHUNK_BYTES = 64 * 2**20


def _check_estimators(estimators):
    if isinstance(estimators, str):
        estimators = (estimators,)
    try:
        estimators = tuple(estimators)
    except TypeError:
        raise ValueError(
            f"`estimators` must be a sequence of names from {list(ESTIMATORS)}. "
            f"Received: estimators={estimators!r}"
        ) from None
    unknown = [e for e in estimators if not isinstance(e, str) or e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(
            f"`estimators` must name one or more of {list(ESTIMATORS)}. Received: estimators={estimators!r}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    return tuple(dict.fromkeys(estimators))


def _select_keys(stats, layers):
    """The pattern keys to report, in graph order."""
    keys = list(stats.key_nodes)
    if layers is None:
        return keys
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError(f"`layers` must be None or name at least one of {keys}. Received: layers=[]")
    chosen = set()
    for name in layers:
        hits = [k for k in keys if isinstance(name, str) and (k == name or k.startswith(name + "/"))]
        if not hits:
            raise ValueError(
                f"`layers` must name kernel layers of the model (Dense, ConvND, DepthwiseConvND; "
                f"SeparableConv as '<name>', '<name>/depthwise' or '<name>/pointwise'): one of {keys}. "
                f"Received: {name!r}"
            )
        chosen.update(hits)
    return [k for k in keys if k in chosen]


def _patch_geometry(node):
    """(D, C, depthwise) of a kernel node: inputs per unit, units, depthwise flag."""
    params = node_params(node)
    shape = params.kernel_shape
    d, c = (int(np.prod(shape[:-2])), int(shape[-2] * shape[-1])) if params.depthwise else (
        int(np.prod(shape[:-1])), int(shape[-1]))
    return d, c, params.depthwise


def _check_layer(key, node):
    layer = node.layer
    if isinstance(layer, EINSUM_DENSE):
        raise ValueError(
            f"signal_quality supports Dense, ConvND and DepthwiseConvND layers; leave EinsumDense "
            f"layer {key!r} out with `layers=`. Received: equation={layer.equation!r}"
        )
    if isinstance(layer, CONV_TRANSPOSE):
        # An output unit of a transposed convolution sees a different set of inputs at every
        # output position (the stride's phases), so there is no one patch per unit to measure.
        raise ValueError(
            f"signal_quality supports Dense, ConvND and DepthwiseConvND layers; leave "
            f"{type(layer).__name__} layer {key!r} out with `layers=` (a transposed convolution has "
            "no single input patch per output unit). Received: "
            f"kernel shape {tuple(layer.kernel.shape)}, strides {layer.strides}"
        )
    if isinstance(layer, CONV) and getattr(layer, "groups", 1) != 1:
        raise ValueError(
            f"signal_quality does not support grouped convolutions; leave layer {key!r} out with "
            f"`layers=`. Received: groups={layer.groups}"
        )
    d, _, _ = _patch_geometry(node)
    if d > MAX_PATCH_DIM:
        raise ValueError(
            f"Layer {key!r} has {d} inputs per unit, more than MAX_PATCH_DIM={MAX_PATCH_DIM}: its dense "
            f"{d}x{d} float64 input covariance and per-unit solves are too large. Leave it out with "
            "`layers=`. Received: patch dimension {d}"
        )


def _identity_kernel(node, dtype):
    """A kernel whose 'outputs' are the D patch entries (depthwise: kk entries per channel)."""
    params = node_params(node)
    shape = params.kernel_shape
    if params.depthwise:
        kk = int(np.prod(shape[:-2]))
        eye = np.eye(kk).reshape(tuple(shape[:-2]) + (1, kk))
        return tf.constant(np.broadcast_to(eye, tuple(shape[:-2]) + (shape[-2], kk)), dtype)
    d = int(np.prod(shape[:-1]))
    return tf.constant(np.eye(d).reshape(tuple(shape[:-1]) + (d,)), dtype)


def _to_rows(t, layer):
    """(batch, ..., channels) -> (rows, channels), moving a channels_first axis last."""
    if not isinstance(layer, keras.layers.Dense) and not channels_last(layer):
        t = tf.experimental.numpy.moveaxis(t, 1, -1)
    return tf.reshape(t, [-1, t.shape[-1]])


class _Moments:
    """Float64 streaming sums of patches, outputs and gates for the selected kernel layers.

    An accumulator as :func:`~keras_patterns.patterns.data.run_pass` drives it (batching, NaN/Inf
    checks, empty data): a ``strategy`` (None: one device) and ``update_state_finite(x)``.
    """

    #: no tf.distribute strategy: :func:`run_pass` drives it on one device.
    strategy = None

    def __init__(self, stats, keys):
        self.stats = stats
        self.graph = stats.graph
        self.nodes = {k: [n for n in stats.kernel_nodes if stats.keys[n.name] == k] for k in keys}
        self.sums = None
        self.specs = [
            tf.TensorSpec((None,) + tuple(self.graph.tensors[t].shape[1:]), self.graph.tensors[t].dtype)
            for t in self.graph.inputs
        ]
        self._fn = tf.function(self._batch_sums, input_signature=[self.specs], autograph=False)

    def _node_sums(self, node, values):
        layer = node.layer
        x = values[node.inputs[0]]
        dtype = x.dtype if x.dtype not in (tf.float16, tf.bfloat16) else tf.float32
        x = tf.cast(x, dtype)
        params = node_params(node)
        d, c, depthwise = _patch_geometry(node)
        patches = tf.cast(_to_rows(apply_kernel(layer, x, _identity_kernel(node, dtype)), layer), tf.float64)
        gate = tf.cast(_to_rows(values[self.stats.mask_sources[node.name]], layer) > 0, tf.float64)
        kernel = tf.cast(params.kernel(), tf.float64)
        if depthwise:
            cin = params.kernel_shape[-2]
            kk = d
            p3 = tf.reshape(patches, [-1, cin, kk])
            w3 = tf.reshape(kernel, [kk, cin, -1])
            y = tf.reshape(tf.einsum("rck,kcm->rcm", p3, w3), [-1, c])
            ym = y * gate
            mult = c // cin
            s_xy = tf.reshape(tf.einsum("rck,rcm->kcm", p3, tf.reshape(y, [-1, cin, mult])), [kk, c])
            s_xym = tf.reshape(tf.einsum("rck,rcm->kcm", p3, tf.reshape(ym, [-1, cin, mult])), [kk, c])
            s_x = tf.reduce_sum(p3, axis=0)  # (cin, kk)
            s_xx = tf.einsum("rck,rcl->ckl", p3, p3)  # (cin, kk, kk)
        else:
            y = tf.matmul(patches, tf.reshape(kernel, [d, c]))
            ym = y * gate
            s_xy = tf.matmul(patches, y, transpose_a=True)
            s_xym = tf.matmul(patches, ym, transpose_a=True)
            s_x = tf.reduce_sum(patches, axis=0)
            s_xx = tf.matmul(patches, patches, transpose_a=True)
        return {
            "n": tf.cast(tf.shape(y)[0], tf.float64), "x": s_x, "xx": s_xx, "xy": s_xy, "xym": s_xym,
            "y": tf.reduce_sum(y, 0), "yy": tf.reduce_sum(y * y, 0), "ym": tf.reduce_sum(ym, 0),
            "yym": tf.reduce_sum(y * ym, 0),
        }

    def _batch_sums(self, inputs):
        values = self.graph.run(list(inputs))
        out = {}
        for key, nodes in self.nodes.items():
            parts = [self._node_sums(n, values) for n in nodes]
            out[key] = {s: tf.add_n([p[s] for p in parts]) for s in parts[0]}
        return out

    def reset_state(self):
        self.sums = None

    def update_state_finite(self, x):
        inputs = input_tensors(x, self.graph.input_names, self.specs)
        finite = np.ones(int(inputs[0].shape[0]), bool)
        for t in inputs:
            if t.dtype.is_floating:
                a = t.numpy().reshape(len(finite), -1)
                finite &= np.isfinite(a).all(axis=1)
        if not finite.all():
            return finite  # run_pass raises; nothing is added
        sums = {k: {s: v.numpy() for s, v in d.items()} for k, d in self._fn(inputs).items()}
        if self.sums is None:
            self.sums = sums
        else:
            for k, d in sums.items():
                for s, v in d.items():
                    self.sums[k][s] = self.sums[k][s] + v
        return finite


def _pass(accumulator, data, batch_size, what):
    accumulator.reset_state()
    try:
        run_pass(accumulator, data, batch_size=batch_size, verbose=0)
    except NonFiniteDataError as e:
        raise NonFiniteDataError(f"Reading `{what}` failed: {_reworded(e)}", e.batch, e.samples) from e
    except ValueError as e:
        raise ValueError(f"Reading `{what}` failed: {_reworded(e)}") from e


def _reworded(error):
    """run_pass's messages speak of pattern fitting; here the data may be v_data or test_data."""
    return (str(error).replace("The data given for pattern fitting", "The data")
            .replace("of the fitting data", "of the data")
            .replace("Patterns are fitted on finite values only: clean the data, or pass skip_nonfinite=True "
                     "to leave such samples out.", "rho is computed on finite values only: clean the data."))


def _per_unit_moments(sums, depthwise, cin):
    """Means per unit: Ex, Exy, Exym (D, C); Ey, Eyy, Eym, Eyym (C,); Exx getter; n."""
    n = float(sums["n"])
    c = sums["y"].shape[0]
    if depthwise:
        ch = np.arange(c) // (c // cin)
        ex = sums["x"][ch].T / n  # (kk, C)
        exx = sums["xx"] / n  # (cin, kk, kk)

        def xx(units):
            return exx[ch[units]]

        def xx_quad(units, v):  # v_k^T E[x x^T]_k v_k
            return np.einsum("ki,kij,kj->k", v, exx[ch[units]], v)
    else:
        ex = np.repeat((sums["x"] / n)[:, None], c, axis=1)
        exx = sums["xx"] / n

        def xx(units):
            return np.broadcast_to(exx, (len(units),) + exx.shape)

        def xx_quad(units, v):
            return np.sum((v @ exx) * v, axis=1)
    return {
        "n": n, "x": ex, "xx": xx, "xx_quad": xx_quad, "xy": sums["xy"] / n, "xym": sums["xym"] / n,
        "y": sums["y"] / n, "yy": sums["yy"] / n, "ym": sums["ym"] / n, "yym": sums["yym"] / n,
    }


def _residual_moments(m, p, q, units):
    """The residual r = x - y (gate p + (1 - gate) q) of units ``units`` in low-rank form.

    Returns ``(U, M, cov_ry, var_y)`` with Cov(r) = E[x x^T] + U M U^T per unit (U (k, D, 5),
    M (k, 5, 5)), Cov(r, y) (k, D) and Var(y) (k,). With delta = p - q and er = E[r]:
    E[r r^T] = E[x x^T] - (E[x y m] delta^T + delta E[x y m]^T) - (E[x y] q^T + q E[x y]^T)
    + E[y^2 m] (delta delta^T + delta q^T + q delta^T) + E[y^2] q q^T (m^2 = m), and
    Cov(r) = E[r r^T] - er er^T.
    """
    p, q = p[:, units].T, q[:, units].T  # (k, D)
    delta = p - q
    ex, exy, exym = m["x"][:, units].T, m["xy"][:, units].T, m["xym"][:, units].T
    ey, eyy, eym, eyym = m["y"][units], m["yy"][units], m["ym"][units], m["yym"][units]
    er = ex - eym[:, None] * delta - ey[:, None] * q
    ery = exy - eyym[:, None] * delta - eyy[:, None] * q
    cov_ry = ery - er * ey[:, None]
    basis = np.stack([exym, exy, delta, q, er], axis=2)  # (k, D, 5)
    coef = np.zeros((len(units), 5, 5))
    coef[:, 0, 2] = coef[:, 2, 0] = coef[:, 1, 3] = coef[:, 3, 1] = -1.0
    coef[:, 2, 2] = coef[:, 2, 3] = coef[:, 3, 2] = eyym
    coef[:, 3, 3] = eyy
    coef[:, 4, 4] = -1.0
    return basis, coef, cov_ry, eyy - ey * ey


def _rho(m_v, m_t, p, q):
    """rho per unit: v from the v-moments, correlation on the test moments."""
    d, c = p.shape
    chunk = max(1, _CHUNK_BYTES // (8 * d * d))
    rho = np.empty(c)
    for start in range(0, c, chunk):
        units = np.arange(start, min(c, start + chunk))
        basis, coef, cov_ry, _ = _residual_moments(m_v, p, q, units)
        cov_r = m_v["xx"](units) + basis @ coef @ basis.transpose(0, 2, 1)
        lam = RIDGE * np.maximum(np.trace(cov_r, axis1=1, axis2=2) / d, np.finfo("float64").tiny)
        cov_r[:, np.arange(d), np.arange(d)] += lam[:, None]
        v = np.linalg.solve(cov_r, cov_ry[..., None])[..., 0]
        del cov_r
        basis, coef, cov_ry_t, var_y_t = _residual_moments(m_t, p, q, units)
        bv = np.einsum("kdi,kd->ki", basis, v)
        var_v = m_t["xx_quad"](units, v) + np.einsum("ki,kij,kj->k", bv, coef, bv)
        num = np.einsum("ki,ki->k", v, cov_ry_t)
        with np.errstate(all="ignore"):
            corr = np.where(var_v > 0, num / np.sqrt(np.maximum(var_v, 0) * var_y_t), 0.0)
        corr = np.where(var_y_t > 0, np.clip(corr, -1.0, 1.0), np.nan)
        rho[units] = 1.0 - corr
    return rho


def _fitted_patterns(stats, key, types):
    """{type: (D, C) float64 pattern} from the statistics (not rounded to the layer dtype)."""
    node = stats.key_nodes[key]
    params = node_params(node)
    kernel = np.asarray(params.kernel().numpy(), dtype="float64")
    raw = stats.statistics()[key]
    out = {}
    for t in types:
        a = pattern_from_statistics(
            kernel, raw[t]["count"], raw[t]["sum_x"], raw[t]["sum_xy"], raw["sum_y"], raw["n_rows"],
            depthwise=params.depthwise, name=key,
        )
        out[t] = to_matrix(a, kernel.shape, params.depthwise)
    return out


def _random_directions(stats, seed):
    """{key: (D, C)}: for every kernel layer in graph order, u ~ N(0, I) per unit, scaled to w^T u = 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, node in stats.key_nodes.items():
        d, c, _ = _patch_geometry(node)
        out[key] = rng.standard_normal((d, c))
    return out


def _unit_normalized(direction, w):
    """direction / (w^T direction) per column; columns with w^T direction == 0 are returned as is."""
    dot = np.sum(w * direction, axis=0)
    return direction / np.where(dot == 0, 1.0, dot)


def signal_quality(model, fit_data, v_data, test_data, layers=None,
                   estimators=("random", "S_w", "S_a", "S_a+-"), batch_size=32, seed=0):
    """The quality rho(S) of signal estimators, per unit of every kernel layer (the paper's Fig. 3).

    Kindermans et al., "Learning how to explain neural networks: PatternNet and
    PatternAttribution", ICLR 2018 (arXiv 1705.05598), Sec. 4.1, eq. 1:

        rho(S) = 1 - max_v corr(w^T x, v^T (x - S(x)))

    for each output unit with weights w of each kernel layer, over the rows x the unit sees: one
    sample for Dense, one output position's patch for a convolution (zero padding included as
    observations, exactly the rows of the pattern statistics). The protocol is the paper's:
    patterns are fitted on ``fit_data``, v on ``v_data``, and rho is reported on ``test_data``.
    Higher is better; 1 means that no information about y is left in the estimated distractor.

    Estimators (each has w^T S(x) = w^T x, so the residual carries no output directly):

    * ``"random"``: S(x) = u (w^T x) with u a random Gaussian direction per unit scaled to
      w^T u = 1 (the paper's random baseline; the scale is not stated there, this one makes it a
      valid signal estimator). For every kernel layer in graph order (all of them, so that
      ``layers`` does not change the draws) ``np.random.default_rng(seed).standard_normal((D, C))``
      gives the directions;
    * ``"S_w"``: the filter-based estimator S(x) = w (w^T x) / (w^T w) (DeConvNet, Guided
      BackProp);
    * ``"S_a"``: the linear pattern S(x) = a (w^T x), a = cov(x, y) / var(y) (eq. 4; the
      library's ``"linear"`` pattern);
    * ``"S_a+-"``: the two-component estimator S(x) = a+ (w^T x) where the unit is on and
      a- (w^T x) where it is off (eqs. 5-8; the library's ``"relu"`` and ``"relu.negative"``
      patterns). "On" is the gate the pattern statistics use: the unit's output after its ReLU
      (bias included) > 0, or the pre-activation > 0 for a unit without one; the paper writes
      w^T x > 0, which differs by the bias. y is always the bias-free w^T x.

    How it is computed. Every estimator is S(x) = y (m p + (1 - m) q) with a 0/1 gate m and
    per-unit directions p, q, so the means and covariances of the residual r = x - S(x) are
    closed-form functions of float64 streaming sums of x, x x^T, x y, x y m, y, y^2, y m and
    y^2 m over the rows (one pass over ``v_data``, one over ``test_data``; patches are formed
    batch by batch with the layer's own convolution and an identity kernel, so strides,
    dilation, padding and depthwise kernels are exactly the layer's). The best v is the least-
    squares regression of y on r over ``v_data``: v = (Cov(r) + lambda I)^-1 Cov(r, y), solved
    in float64 per unit. Cov(r) is singular by construction (w^T r = 0 for every estimator
    but S_a+-, and patch entries can be collinear, e.g. zero padding), so lambda is a tiny ridge,
    ``RIDGE`` (1e-9) times the mean eigenvalue tr(Cov(r)) / D: it selects (to within that
    relative size) the minimum-norm least-squares v, and leaves out only directions of r whose
    variance is below 1e-9 of the average. rho is then 1 - corr(y, v^T r) on ``test_data``
    (computed from the test moments; it can exceed 1 when the correlation found on ``v_data``
    has the opposite sign on the test data).

    Limits. The dense D x D input covariance (D = inputs per unit: the patch size times the
    input channels, or the input width for Dense) is formed per layer and one D x D system is
    solved per unit, O(C D^3). Layers with D > ``MAX_PATCH_DIM`` (4096) raise a ValueError
    naming the layer (leave them out with ``layers=``); there is no SGD fallback. A unit whose
    output is constant on ``test_data`` (e.g. an all-zero filter) has no correlation to speak
    of: its rho is NaN and a warning names how many such units each layer has.

    Args:
        model: a Keras model (Functional or Sequential, one output; never modified). Give the
            model without softmax, as for the analyzers (the estimators only use kernel layers
            and the ReLU gates, so the softmax changes nothing but the last layer's gate).
        fit_data: data to fit the patterns on (anything :meth:`PatternComputer.compute` takes:
            arrays, ``tf.data``, ``PyDataset``, generators).
        v_data: data to fit v on (same kinds). Needs more rows than the patch dimension D of
            every reported layer.
        test_data: data rho is reported on (same kinds); at least 2 rows.
        layers: names of kernel layers to report (a SeparableConv name selects both its parts).
            Defaults to `None` (all kernel layers).
        estimators: names from :data:`ESTIMATORS`. Defaults to `("random", "S_w", "S_a", "S_a+-")`.
        batch_size: samples per batch for array data. Defaults to `32`.
        seed: seed of the random directions. Defaults to `0`.

    Returns:
        ``{estimator: {layer_name: rho}}``, rho a float64 NumPy array with one entry per output
        unit (for a convolution, per output channel; for a depthwise one, per (channel,
        multiplier) in Keras order).

    Raises:
        ValueError: an unknown estimator, a layer not in the model, a bad ``batch_size`` or
            ``seed``, batches of the wrong shape, empty data or too few rows (each data set is
            named), a layer too wide for the dense covariance, a grouped convolution.
        NonFiniteDataError: data holding NaN or Inf.

    Example:

    ```python
    rho = kp.evaluation.signal_quality(logits, x_train[:3000], x_train[3000:], x_test)
    {est: {k: float(np.mean(r)) for k, r in per_layer.items()} for est, per_layer in rho.items()}
    ```
    """
    estimators = _check_estimators(estimators)
    batch_size = validation.positive_int("batch_size", batch_size)
    seed = validation.non_negative_int("seed", seed)
    graph = prepare_graph(model)
    types = ["linear"] if "S_a" in estimators or "S_a+-" not in estimators else []
    if "S_a+-" in estimators:
        types += ["relu", "relu.negative"]
    stats = PatternStatistics(graph, types)
    keys = _select_keys(stats, layers)
    for key in keys:
        _check_layer(key, stats.key_nodes[key])
    random_dirs = _random_directions(stats, seed)
    moments = _Moments(stats, keys)

    _pass(stats, fit_data, batch_size, "fit_data")
    for key, rows in stats.n_rows.items():
        if key in keys and rows < 2:
            raise ValueError(
                f"`fit_data` must give at least 2 rows per layer to fit patterns. Received: {int(rows)} "
                f"row(s) for layer {key!r}"
            )
    _pass(moments, v_data, batch_size, "v_data")
    v_sums = moments.sums
    _pass(moments, test_data, batch_size, "test_data")
    t_sums = moments.sums

    out = {e: {} for e in estimators}
    for key in keys:
        node = stats.key_nodes[key]
        d, c, depthwise = _patch_geometry(node)
        params = node_params(node)
        if v_sums[key]["n"] <= d:
            raise ValueError(
                f"`v_data` must give more rows than the {d} inputs per unit of layer {key!r} to fit v "
                f"(a least-squares regression with {d} coefficients). Received: {int(v_sums[key]['n'])} rows"
            )
        if t_sums[key]["n"] < 2:
            raise ValueError(
                f"`test_data` must give at least 2 rows per layer. Received: {int(t_sums[key]['n'])} row(s) "
                f"for layer {key!r}"
            )
        cin = params.kernel_shape[-2] if depthwise else None
        m_v = _per_unit_moments(v_sums[key], depthwise, cin)
        m_t = _per_unit_moments(t_sums[key], depthwise, cin)
        w = to_matrix(np.asarray(params.kernel().numpy(), "float64"), params.kernel_shape, depthwise)
        pats = _fitted_patterns(stats, key, types)
        for est in estimators:
            if est == "random":
                p = q = _unit_normalized(random_dirs[key], w)
            elif est == "S_w":
                p = q = _unit_normalized(w, w)
            elif est == "S_a":
                p = q = pats["linear"]
            else:
                p, q = pats["relu"], pats["relu.negative"]
            rho = _rho(m_v, m_t, p, q)
            out[est][key] = rho
        dead = int(np.isnan(out[estimators[0]][key]).sum())
        if dead:
            warnings.warn(
                f"signal_quality: {dead} unit(s) of layer {key!r} have a constant output on `test_data`; "
                "their rho is undefined and reported as NaN.",
                stacklevel=user_stacklevel(),
            )
    return out

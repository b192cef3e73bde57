"""``run.py --compare-xplique``: xplique's methods on the same model, batch and baseline, in one process.

Each xplique method is timed alternately with the same compiled tape gradient as ours
(``_common.interleaved_ratio``), so its ratio sits next to ours in the table. Sampling methods get
``batch_size = batch * n`` (xplique counts the expanded inputs in ``batch_size``), so that one call
explains the same samples as ours; Occlusion gets our patch size and stride.
"""

import numpy as np
import tensorflow as tf

from _common import interleaved_ratio, tape_gradient_fn

#: xplique method -> the registered analyzer it is compared with
PAIRS = {"Saliency": "gradient", "GradientInput": "input_t_gradient", "SmoothGrad": "smoothgrad",
         "IntegratedGradients": "integrated_gradients", "GradCAM": "grad_cam", "Occlusion": "occlusion"}


def _make(method, model, batch, n, patch):
    from xplique import attributions as xa

    if method == "SmoothGrad":
        return xa.SmoothGrad(model, nb_samples=n, batch_size=batch * n, noise=1.0), n
    if method == "IntegratedGradients":
        return xa.IntegratedGradients(model, steps=n, batch_size=batch * n), n
    if method == "Occlusion":
        return xa.Occlusion(model, batch_size=batch, patch_size=patch, patch_stride=patch), 1
    return getattr(xa, method)(model, batch_size=batch), 1


def compare_xplique(key, model, x, args):
    """Times xplique's Saliency, GradientInput, SmoothGrad, IntegratedGradients, GradCAM, Occlusion.

    Args:
        key: the model's key in ``run.MODELS`` (for messages).
        model: the Keras model (logits).
        x: one batch of inputs.
        args: ``run.py``'s parsed arguments (``rounds``, ``n_samples``, ``min_round_s``).

    Returns:
        ``{"status": "ok", "version": ..., "methods": {method: {"ours": name, "status", "ratio",
        "samples_per_s"}}}``, or ``{"status": "skipped", "message": ...}`` without xplique.
    """
    try:
        import xplique
    except ImportError as e:
        print(f"  {key}: xplique comparison skipped (import xplique failed: {e})", flush=True)
        return {"status": "skipped", "message": f"import xplique failed: {e}"}
    grad = tape_gradient_fn(model, x.shape[1:])
    xt = tf.constant(x)
    targets = tf.one_hot(tf.argmax(model(xt, training=False), axis=1), model.output_shape[-1])

    def base():
        grad(xt).numpy()

    methods = {}
    for method, ours in PAIRS.items():
        try:
            explainer, n = _make(method, model, len(x), args.n_samples, max(1, x.shape[1] // 4))
            explainer.explain(xt, targets)
            r = interleaved_ratio(base, lambda: np.asarray(explainer.explain(xt, targets)), args.rounds,
                                  scale=n, min_round_s=args.min_round_s)
        except Exception as e:  # an xplique refusal is a result too
            methods[method] = {"ours": ours, "status": "refused", "error": type(e).__name__,
                               "message": str(e).splitlines()[0][:300] if str(e) else ""}
            print(f"  {key:15s} xplique {method:22s} refused: {type(e).__name__}", flush=True)
            continue
        methods[method] = {"ours": ours, "status": "ok", "ratio": r["ratio"], "samples_per_s": len(x) / r["s"]}
        print(f"  {key:15s} xplique {method:22s} ratio {r['ratio']:5.2f}", flush=True)
    return {"status": "ok", "version": xplique.__version__, "methods": methods}

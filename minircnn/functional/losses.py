"""The two losses of Fast R-CNN's multi-task objective (paper Eq. 1-3): softmax log loss and smooth L1."""
from __future__ import annotations

from ..backend import get_array_module
from ._checks import check_array, check_same_shape


def softmax_cross_entropy(scores, labels):
    """Mean softmax log loss over rows, and its gradient (Caffe's SoftmaxWithLoss with normalize=true, docs/reference.md
    §3).

    Numerically stable: log p_u = s_u - max(s) - log(sum exp(s - max(s))), so large scores never overflow.

    Args:
        scores: (N, K) floating, unnormalised class scores (K = classes + background).
        labels: (N,) integer class ids in [0, K).

    Returns:
        loss: float, ``-mean_i log softmax(scores_i)[labels_i]``.
        dscores: (N, K), ``(softmax(scores) - onehot(labels)) / N``.
    """
    check_array("scores", scores, 2, "(N, K)", finite=True)
    xp = get_array_module(scores)
    labels = xp.asarray(labels)
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape ({scores.shape[0]},) (one per row of scores), got {labels.shape}")
    if labels.size and not xp.issubdtype(labels.dtype, xp.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    n, k = scores.shape
    if n == 0:
        raise ValueError("scores has no rows: the mean loss of an empty batch is undefined")
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k}) for {k} score columns, got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    rows = xp.arange(n)
    loss = -float(log_p[rows, labels].mean())
    dscores = xp.exp(log_p)
    dscores[rows, labels] -= 1
    dscores /= n
    return loss, dscores


def smooth_l1_loss(pred, target, weights, sigma: float = 1.0):
    """Smooth L1 loss of Fast R-CNN's box regression (paper Eq. 3; the original layer's normalisation, docs/reference.md
    §3).

    With ``d = weights * (pred - target)`` elementwise:
    ``f(d) = 0.5 * sigma^2 * d^2`` if ``|d| < 1/sigma^2`` else ``|d| - 0.5/sigma^2``.
    The loss is ``sum(f(d)) / N``: summed over every element (the 0/1 weights pick the 4 columns of each
    foreground RoI's class) and divided by the number of rows N (RoIs), not by the number of foreground RoIs.

    Args:
        pred: (N, D) floating, predicted regression values (D = 4 * (classes + 1) in Fast R-CNN).
        target: (N, D), regression targets.
        weights: (N, D), per-element weights (1 on the target class's 4 columns of foreground rows, else 0).
        sigma: sharpness; the quadratic zone is ``|d| < 1/sigma^2``. sigma=1 is Fast R-CNN's loss.

    Returns:
        loss: float.
        dpred: (N, D), ``weights * f'(d) / N`` with ``f'(d) = sigma^2 d`` inside the quadratic zone, else
            ``sign(d)``.
    """
    check_array("pred", pred, 2, "(N, D)", finite=True)
    check_same_shape("target", target, "pred", pred.shape)
    check_same_shape("weights", weights, "pred", pred.shape)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    xp = get_array_module(pred)
    n = pred.shape[0]
    if n == 0:
        raise ValueError("pred has no rows: the loss normalised by the number of rows is undefined")
    s2 = sigma * sigma
    d = weights * (pred - target)
    abs_d = xp.abs(d)
    quadratic = abs_d < 1.0 / s2
    f = xp.where(quadratic, 0.5 * s2 * d * d, abs_d - 0.5 / s2)
    dd = xp.where(quadratic, s2 * d, xp.sign(d))
    return float(f.sum()) / n, (weights * dd / n).astype(pred.dtype, copy=False)

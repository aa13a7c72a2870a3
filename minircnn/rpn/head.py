"""The RPN head and its loss (Faster R-CNN Sec. 3.1, Fig. 3; docs/reference.md §16), backward written out.

On the backbone's feature map (N, C, h, w), with A anchors per cell::

    features --rpn_conv (3x3, C -> C', pad 1), rpn_relu--> (N, C', h, w)
        --rpn_cls_score (1x1, C' -> 2A)--> (N, 2A, h, w)   channel 2a + c: class c (0 background, 1 object) of anchor a
        --rpn_bbox_pred (1x1, C' -> 4A)--> (N, 4A, h, w)   channel 4a + i: (dx, dy, dw, dh)[i] of anchor a

The 3x3 conv is the paper's "mini-network" sliding over the map (its n x n window, n = 3); the two 1x1 convs are the
sibling fully connected layers applied at every position. :meth:`RPNHead.forward` returns the outputs one row per
anchor, in the order of :func:`~minircnn.rpn.anchors.grid_anchors`: scores (N, h*w*A, 2) and deltas (N, h*w*A, 4).

Loss (paper Eq. 1, for the sampled anchors of :func:`~minircnn.rpn.targets.anchor_targets`)::

    L = (1 / N_cls) sum_i L_cls(p_i, p*_i) + lambda (1 / N_reg) sum_i p*_i L_reg(t_i, t*_i)

a two-class softmax log loss over the N_cls sampled anchors (256 per image at most) and a smooth L1 over the
foreground ones, divided by N_reg, the number of anchor *locations* (feature cells, h * w per image), with
lambda = 10, all as the paper writes it. The paper chose lambda = 10 so that, with its ~2400 locations, the two terms
weigh about the same (10 * 256 / 2400 ~ 1); the released code instead divides both by the 256 samples with
lambda = 1, which is the same balance *at the paper's map size only*. Our feature maps are small (18 x 24 cells at
288 x 384 pixels), so the paper's formula weighs the box term about six times more than the released code's would,
and that is what our anchors need: their deltas are a large share of a small anchor (half a cell is dx = 0.5 for a
16-pixel anchor), so the regression, not the anchor grid, has to bring proposals onto small objects. Measured on
the built-in set after 1000 iterations, a 5x heavier box term raised the correlation of the predicted dx, dy with
their targets from 0.25 to 0.40 and the proposals' recall at IoU 0.5 on objects under 24 pixels from 0.45 to 0.65.

The smooth L1 is the released code's sharper one, sigma = 3 (quadratic only for ``|d| < 1/9``; the paper's Eq. 1
uses Fast R-CNN's, sigma = 1): deltas are small numbers, and with sigma = 1 their gradient ``d`` is as small, so the
few foreground anchors of a small object barely teach the regression; with sigma = 3 each pulls with ``sign(d)`` once
``|d| > 1/9``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import functional as F
from ..backend import get_array_module
from ..nn import Conv2d, ReLU, gaussian_

RPN_STD = 0.01        # Gaussian init of the three layers, biases 0 (as the released Faster R-CNN prototxts)
RPN_SIGMA = 3.0       # sharpness of the RPN's smooth L1 (the released code's; see the module docstring)
RPN_LAMBDA = 10.0     # weight of the box term, normalised by the anchor locations (paper Eq. 1)


class RPNLossTerms(NamedTuple):
    """The RPN loss and its two terms (floats)."""
    total: float
    cls: float
    bbox: float


def rpn_loss(scores, deltas, labels, targets, num_locations: int, bbox_loss_weight: float = RPN_LAMBDA,
             sigma: float = RPN_SIGMA):
    """The RPN's loss over the sampled anchors (paper Eq. 1, see the module docstring), and its gradients.

    Args:
        scores: (M, 2) floating, object/background scores of every anchor (all images of the batch, concatenated).
        deltas: (M, 4), predicted ``(dx, dy, dw, dh)`` of every anchor.
        labels: (M,) int: 1 foreground, 0 background, -1 not sampled (no loss).
        targets: (M, 4) regression targets (used where ``labels == 1``).
        num_locations: N_reg, the number of anchor locations (feature cells) of the batch: M / A.
        bbox_loss_weight: lambda.
        sigma: sharpness of the smooth L1 (:func:`~minircnn.functional.smooth_l1_loss`).

    Returns:
        terms: :class:`RPNLossTerms`: total, cls (the log loss over N_cls), bbox (the smooth L1 sum over N_reg,
            before lambda); 0 for everything when no anchor is sampled.
        dscores: (M, 2), dL/dscores (zero on unsampled rows).
        ddeltas: (M, 4), dL/ddeltas (non-zero on foreground rows only).
    """
    xp = get_array_module(scores)
    labels = xp.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] != 2 or deltas.shape != (scores.shape[0], 4):
        raise ValueError(f"scores must be (M, 2) and deltas (M, 4), got {tuple(scores.shape)} and "
                         f"{tuple(deltas.shape)}")
    if labels.shape != (scores.shape[0],) or tuple(targets.shape) != tuple(deltas.shape):
        raise ValueError(f"labels must be ({scores.shape[0]},) and targets {tuple(deltas.shape)}, got "
                         f"{tuple(labels.shape)} and {tuple(targets.shape)}")
    if not num_locations >= 1:
        raise ValueError(f"num_locations (N_reg, the anchor locations of the batch) must be >= 1, got "
                         f"{num_locations!r}")
    dscores, ddeltas = xp.zeros_like(scores), xp.zeros_like(deltas)
    sampled = xp.flatnonzero(labels >= 0)
    if sampled.size == 0:
        return RPNLossTerms(0.0, 0.0, 0.0), dscores, ddeltas
    loss_cls, dsel = F.softmax_cross_entropy(scores[sampled], labels[sampled])
    dscores[sampled] = dsel
    weights = xp.repeat((labels[sampled] == 1)[:, None], 4, axis=1).astype(deltas.dtype)
    loss_bbox, dsel = F.smooth_l1_loss(deltas[sampled], xp.asarray(targets, dtype=deltas.dtype)[sampled], weights,
                                       sigma)
    per_location = sampled.size / num_locations           # smooth_l1_loss divides by its N_cls rows; we want N_reg
    loss_bbox *= per_location
    ddeltas[sampled] = dsel * deltas.dtype.type(bbox_loss_weight * per_location)
    return RPNLossTerms(loss_cls + bbox_loss_weight * loss_bbox, loss_cls, loss_bbox), dscores, ddeltas


def _to_rows(maps, per_anchor):
    """(N, A * k, h, w) -> (N, h * w * A, k): one row per anchor, in grid_anchors' order."""
    n, ak, h, w = maps.shape
    return maps.reshape(n, ak // per_anchor, per_anchor, h, w).transpose(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)


def _to_maps(rows, shape):
    """Inverse of :func:`_to_rows`: (N, h * w * A, k) -> (N, A * k, h, w) of ``shape``."""
    n, ak, h, w = shape
    k = rows.shape[2]
    xp = get_array_module(rows)
    return xp.ascontiguousarray(rows.reshape(n, h, w, ak // k, k).transpose(0, 3, 4, 1, 2).reshape(shape))


class RPNHead:
    """The three layers of the RPN (their parameters belong to the detector that holds them).

    Args:
        in_channels: C, the backbone's output channels.
        num_anchors: A, anchors per cell.
        width: C', channels of the 3x3 conv (the paper: 512 for VGG16, 256 for ZF; here the backbone's C).
        dtype: parameter dtype.
        rng: ``numpy.random.Generator`` for the initial weights; None leaves them at zero (to be loaded).

    Attributes:
        layers: ``[rpn_conv, rpn_relu, rpn_cls_score, rpn_bbox_pred]``.
    """

    def __init__(self, in_channels: int, num_anchors: int, width: int | None = None, dtype=np.float32, rng=None):
        width = int(width or in_channels)
        self.num_anchors = int(num_anchors)
        self.rpn_conv = Conv2d("rpn_conv", in_channels, width, 3, 1, 1, dtype)
        self.rpn_relu = ReLU("rpn_relu")
        self.rpn_cls_score = Conv2d("rpn_cls_score", width, 2 * num_anchors, 1, 1, 0, dtype)
        self.rpn_bbox_pred = Conv2d("rpn_bbox_pred", width, 4 * num_anchors, 1, 1, 0, dtype)
        if rng is not None:
            for layer in (self.rpn_conv, self.rpn_cls_score, self.rpn_bbox_pred):
                gaussian_(layer, RPN_STD, rng)
        self.layers = [self.rpn_conv, self.rpn_relu, self.rpn_cls_score, self.rpn_bbox_pred]
        self._shapes = None

    def plan_backward(self, features_need_grad: bool) -> None:
        """Which layers return an input gradient: the conv only if the backbone below it trains."""
        self.rpn_conv.need_dx = features_need_grad
        self.rpn_relu.need_dx = self.rpn_cls_score.need_dx = self.rpn_bbox_pred.need_dx = self.rpn_conv.trainable \
            or features_need_grad

    def forward(self, features, train: bool = True):
        """(N, C, h, w) features -> scores (N, h*w*A, 2) and deltas (N, h*w*A, 4), one row per anchor."""
        x = self.rpn_relu.forward(self.rpn_conv.forward(features, train=train), train=train)
        cls_maps = self.rpn_cls_score.forward(x, train=train)
        box_maps = self.rpn_bbox_pred.forward(x, train=train)
        self._shapes = (cls_maps.shape, box_maps.shape)
        return _to_rows(cls_maps, 2), _to_rows(box_maps, 4)

    def backward(self, dscores, ddeltas):
        """Gradients of the per-anchor outputs -> the gradient of the features (None if the backbone is frozen)."""
        cls_shape, box_shape = self._shapes
        dx = self.rpn_cls_score.backward(_to_maps(dscores, cls_shape))
        dbox = self.rpn_bbox_pred.backward(_to_maps(ddeltas, box_shape))
        if dx is None or dbox is None:
            dx = dbox if dx is None else dx
        else:
            dx += dbox                                   # both 1x1 convs read the same 3x3 conv output
        return self.rpn_conv.backward(self.rpn_relu.backward(dx))

    @staticmethod
    def objectness(scores):
        """(…, 2) scores -> the softmax probability of "object", (…): ``1 / (1 + exp(s0 - s1))``."""
        xp = get_array_module(scores)
        return 1.0 / (1.0 + xp.exp(scores[..., 0] - scores[..., 1]))

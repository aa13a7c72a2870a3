"""R-CNN's post-hoc linear SVMs on the detector's fc7 features (paper Sec. 5.4, Table 8).

R-CNN fine-tuned its network with a softmax, then threw the softmax away and trained one linear SVM per class on the
fc7 features, with hard negative mining. Fast R-CNN asks whether that second stage is still needed once the network
is trained end to end, and answers no (softmax 66.9 vs SVMs 66.8 mAP for VGG16). The pieces to redo the experiment,
following R-CNN's rules as ``FR:tools/train_svms.py`` applies them to a Fast R-CNN network:

* features: fc7 after ReLU, dropout off (:func:`fc7_features`), multiplied by one constant so that their mean L2
  norm over the training set is 20 (:func:`feature_scale`, R-CNN's ``feat_norm_mean``);
* per class k: positives are the ground-truth boxes of class k; negatives are proposals whose IoU with every
  class-k ground-truth box is below 0.3 (:func:`collect_features` runs a split through the net once, and
  :meth:`FeatureSet.class_examples` picks them);
* the SVM (:func:`train_svm`): minimise over ``w`` and ``b``::

      J(w, b) = 1/2 |w|^2 + 1/2 (b / B)^2 + C * sum_i c_i * max(0, 1 - y_i (w . x_i + b))^2

  with ``y_i = +1 / -1``, ``c_i = pos_weight`` (2) for positives and 1 for negatives, ``C = 0.001`` and the bias
  regularised through liblinear's ``intercept_scaling`` ``B = 10`` (the values of ``train_svms.py``). One
  difference: R-CNN minimised the hinge ``max(0, 1 - y f)`` (liblinear's L1-loss SVM, solved in the dual); we
  minimise its square (the L2-loss SVM), which is smooth, so L-BFGS solves the primal exactly in a few lines.
  Both give a max-margin linear classifier; negatives beyond the margin (score < -1) add nothing to either;
* hard negative mining (:func:`mine_hard_negatives`): start from a random subset of the negatives, then repeat:
  train, score every negative, add the ones inside the margin (score > -1) to the cache, drop cached ones far
  outside it (score < -1.1), until no new hard negative appears;
* test time: the SVMs replace ``cls_score`` (:func:`install_svms`) and the detector is scored with the raw
  class scores, no softmax (:class:`RawScores`; ``TEST.SVM = True`` in the original).

A control the paper did not need: a *post-hoc softmax* (:func:`train_softmax`), the network's own last layer
retrained on the same fixed fc7 features with its own loss and labels (Fast R-CNN's: IoU >= 0.5 is the class,
[0.1, 0.5) background; :meth:`FeatureSet.softmax_examples`) but solved to the optimum like the SVMs. Where SVMs beat
the network's softmax, it tells apart "the SVM's loss is better" from "SGD left the softmax layer short of its
optimum".
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ..backend import asnumpy
from ..boxes import clip_boxes, iou

TARGET_NORM = 20.0          # R-CNN: features scaled so that their mean L2 norm is 20
NEG_IOU_THRESH = 0.3        # a proposal is a class-k negative if its IoU with every class-k gt box is below this
HARD_THRESH = -1.0          # a negative scoring above this lies inside the margin: it is "hard"
EVICT_THRESH = -1.1         # cached negatives scoring below this are dropped (train_svms.py's evict_thresh)


# ------------------------------------------------------------------------------------------------ the SVM itself
def svm_objective(params, X, y, C=0.001, pos_weight=2.0, bias_scale=10.0):
    """The L2-loss SVM objective ``J(w, b)`` (module docstring) and its gradient, vectorised.

    Args:
        params: (D + 1,) float64, ``w`` followed by ``b``.
        X: (N, D) float, one example per row.
        y: (N,) labels +1 (positive) or -1 (negative).
        C: weight of the loss against the regulariser.
        pos_weight: the loss of a positive counts this many times (R-CNN: 2).
        bias_scale: B; the bias is penalised as ``1/2 (b / B)^2`` (liblinear's ``intercept_scaling``).

    Returns:
        J (float) and dJ/dparams, (D + 1,) float64.
    """
    w, b = params[:-1], params[-1]
    y = np.asarray(y, dtype=np.float64)
    cost = C * np.where(y > 0, pos_weight, 1.0)
    margin = np.maximum(0.0, 1.0 - y * (X @ w + b))          # zero for examples beyond the margin
    loss = 0.5 * w @ w + 0.5 * (b / bias_scale) ** 2 + np.sum(cost * margin ** 2)
    coef = -2.0 * cost * margin * y                           # dJ/df_i for f_i = w . x_i + b
    grad = np.concatenate([w + X.T @ coef, [b / bias_scale ** 2 + coef.sum()]])
    return float(loss), grad


def train_svm(X, y, C=0.001, pos_weight=2.0, bias_scale=10.0, init=None, tol=1e-8, max_iter=1000):
    """Minimise :func:`svm_objective` with L-BFGS (scipy); the objective is convex and smooth.

    Args:
        X: (N, D) float examples; y: (N,) labels +1 / -1; C, pos_weight, bias_scale: see :func:`svm_objective`.
        init: optional (w, b) to start from (hard negative mining restarts from the previous solution).
        tol: stop when the largest gradient entry is below this (L-BFGS-B's ``pgtol``).
        max_iter: L-BFGS iterations at most.

    Returns:
        w (D,) float64 and b (float).
    """
    from scipy.optimize import minimize
    X = np.asarray(X, dtype=np.float64)
    x0 = np.zeros(X.shape[1] + 1) if init is None else np.concatenate([np.ravel(init[0]), [init[1]]])
    # maxls: with a large C the objective is badly conditioned, and scipy's default of 20 line-search steps can give
    # up far from the minimum (an "ABNORMAL" stop, seen with scipy 1.17 on the max-margin test)
    res = minimize(svm_objective, x0, args=(X, y, C, pos_weight, bias_scale), jac=True, method="L-BFGS-B",
                   options={"gtol": tol, "ftol": 0.0, "maxiter": max_iter, "maxcor": 20, "maxls": 100})
    return res.x[:-1], float(res.x[-1])


class MiningRound(NamedTuple):
    """What one round of :func:`mine_hard_negatives` saw."""
    cache: int           # negatives the SVM of this round was trained on
    hard: int            # negatives of the whole pool inside the margin (score > -1) under this round's SVM
    new: int             # of those, how many were not in the cache (added for the next round)
    objective: float     # J(w, b) over the positives and *all* negatives of the pool


def mine_hard_negatives(pos, neg, C=0.001, pos_weight=2.0, bias_scale=10.0, init_negatives=1000, max_rounds=10,
                        hard_thresh=HARD_THRESH, evict_thresh=EVICT_THRESH, seed=0):
    """Train an SVM on ``pos`` against a pool of negatives that is mostly easy, by hard negative mining.

    The SVM is trained on a cache of negatives: at first ``init_negatives`` drawn at random from the pool; after
    each training, every negative of the pool is scored, the ones inside the margin (score > ``hard_thresh``) join
    the cache and cached ones far outside (score < ``evict_thresh``) leave it. Mining stops when no new hard negative
    appears: then no negative left out of the cache has a loss or a gradient, so the solution is the one of the
    SVM trained on the whole pool.

    Args:
        pos: (P, D) float positives; neg: (M, D) float pool of negatives.
        C, pos_weight, bias_scale: see :func:`svm_objective`.
        init_negatives: size of the first random cache.
        max_rounds: trainings at most.
        hard_thresh, evict_thresh: see above.
        seed: seeds the first cache.

    Returns:
        w (D,) float64, b (float), history: list of :class:`MiningRound`, one per training.
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg)    # the pool stays in its dtype (memory)
    rng = np.random.default_rng(seed)
    cache = np.sort(rng.choice(len(neg), size=min(init_negatives, len(neg)), replace=False))

    def examples(rows):
        return (np.concatenate([pos, neg[rows].astype(np.float64)]),
                np.concatenate([np.ones(len(pos)), -np.ones(len(rows))]))

    history, w, b = [], None, 0.0
    for _ in range(max_rounds):
        w, b = train_svm(*examples(cache), C, pos_weight, bias_scale, init=None if w is None else (w, b))
        scores = neg @ w.astype(neg.dtype) + b
        hard = np.flatnonzero(scores > hard_thresh)
        new = np.setdiff1d(hard, cache)
        # negatives scoring <= -1 add nothing to J, so J over positives + hard negatives is J over the whole pool
        J = svm_objective(np.concatenate([w, [b]]), *examples(np.flatnonzero(scores > -1.0)), C, pos_weight,
                          bias_scale)[0]
        history.append(MiningRound(len(cache), len(hard), len(new), J))
        if len(new) == 0:
            break
        cache = np.union1d(cache[scores[cache] >= evict_thresh], new)
    return w, b, history


def softmax_objective(params, X, y, num_classes, weight_decay=0.0005):
    """The mean softmax log loss of ``X W^T + b`` plus ``weight_decay / 2 |W|^2`` (biases not decayed, as in the
    network's training), and its gradient.

    Args:
        params: ((K+1) D + K+1,) float64, ``W`` (K+1, D) row-major followed by ``b`` (K+1,).
        X: (N, D) float examples; y: (N,) int classes in 0..K (0 = background).
        num_classes: K + 1.
        weight_decay: the L2 penalty on W.

    Returns:
        J (float) and dJ/dparams, same shape as params.
    """
    N, D = X.shape
    W, b = params[:num_classes * D].reshape(num_classes, D), params[num_classes * D:]
    z = X @ W.T + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(N), y]).mean() + 0.5 * weight_decay * np.sum(W * W)
    p[np.arange(N), y] -= 1.0                                  # dL/dz = (p - onehot(y)) / N
    p /= N
    return float(loss), np.concatenate([(p.T @ X + weight_decay * W).ravel(), p.sum(axis=0)])


def train_softmax(X, y, num_classes, weight_decay=0.0005, init=None, tol=1e-6, max_iter=2000):
    """Minimise :func:`softmax_objective` with L-BFGS (convex, smooth); starts from zero or from ``init``.

    Returns:
        W (K+1, D) float64 and b (K+1,) float64: a ``cls_score`` layer (:func:`set_cls_score`).
    """
    from scipy.optimize import minimize
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
    D = X.shape[1]
    x0 = (np.zeros(num_classes * (D + 1)) if init is None
          else np.concatenate([np.ravel(init[0]), np.ravel(init[1])]))
    res = minimize(softmax_objective, x0, args=(X, y, num_classes, weight_decay), jac=True, method="L-BFGS-B",
                   options={"gtol": tol, "ftol": 0.0, "maxiter": max_iter, "maxcor": 20})
    return res.x[:num_classes * D].reshape(num_classes, D), res.x[num_classes * D:]


# ------------------------------------------------------------------------------------------- features of the net
def fc7_features(model, images, rois):
    """The detector's fc7 features (after relu7; dropout off, as at test time) of every RoI.

    Args:
        model: a :class:`~minircnn.models.FastRCNN`.
        images: (N, 3, H, W) preprocessed image blob.
        rois: (R, 5) ``(batch_index, x1, y1, x2, y2)`` in blob pixels.

    Returns:
        (R, fc_width) float32 NumPy array (what ``cls_score`` and ``bbox_pred`` read).
    """
    xp = model.xp
    x = model.backbone.forward(xp.asarray(images, dtype=model.dtype), train=False)
    x = model.trunk[0].forward(x, xp.asarray(rois), train=False)            # roi_pool5
    for layer in model.trunk[1:]:                                            # fc6 ... relu7, drop7 (identity)
        x = layer.forward(x, train=False)
    return asnumpy(x).astype(np.float32, copy=False)


def feature_scale(features, target_norm=TARGET_NORM) -> float:
    """The constant that makes the mean L2 norm of the rows of ``features`` (N, D) equal ``target_norm``."""
    return float(target_norm / np.linalg.norm(np.asarray(features, dtype=np.float64), axis=1).mean())


class FeatureSet(NamedTuple):
    """fc7 features of a split for the post-hoc classifiers (:func:`collect_features`); features are unscaled."""
    gt_features: np.ndarray      # (G, D) float32, every ground-truth box of every image
    gt_labels: np.ndarray        # (G,) int64, their classes 1..K
    features: np.ndarray         # (M, D) float32, the sampled proposals
    overlaps: np.ndarray         # (M, K+1) float32, IoU of each with the closest gt box of each class (col 0: 0)

    def class_examples(self, k, neg_iou_thresh=NEG_IOU_THRESH):
        """R-CNN's SVM data for class k: (positives, negatives) = (its gt boxes, the proposals with IoU < 0.3 with
        all of them), (P, D) and (M_k, D) float32."""
        return self.gt_features[self.gt_labels == k], self.features[self.overlaps[:, k] < neg_iou_thresh]

    def softmax_examples(self, fg_thresh=0.5, bg_thresh_lo=0.1):
        """Fast R-CNN's softmax data (docs/reference.md §6): the gt boxes with their classes; proposals whose highest
        IoU is >= 0.5 labelled with that gt box's class; those in [0.1, 0.5) labelled 0 (background); the rest unused.

        Returns:
            X (N, D) float32 and y (N,) int64.
        """
        best, cls = self.overlaps.max(axis=1), self.overlaps.argmax(axis=1)
        used = best >= bg_thresh_lo
        labels = np.where(best >= fg_thresh, cls, 0)[used]
        return (np.concatenate([self.gt_features, self.features[used]]),
                np.concatenate([self.gt_labels, labels]).astype(np.int64))


def collect_features(model, dataset, proposals, preprocessing, scale, max_size, per_image=128, seed=0,
                     progress=True) -> FeatureSet:
    """Run every image of ``dataset`` once through the net: fc7 of its gt boxes and of ``per_image`` proposals.

    Args:
        model: a trained :class:`~minircnn.models.FastRCNN`.
        dataset: a :class:`~minircnn.data.VOCDataset` split (the training split: the classifiers' training data).
        proposals: per image, (P_i, 4) boxes in image pixels.
        preprocessing: the model's :class:`~minircnn.data.transforms.Preprocessing`.
        scale, max_size: the image's shorter side and longer-side cap (the test scale: features as at test time).
        per_image: proposals kept per image, drawn at random without replacement (all when fewer); R-CNN kept all
            ~2000, a memory cost this subsampling avoids.
        seed: seeds the draw.

    Returns:
        :class:`FeatureSet`.
    """
    from ..data import prepare_image
    rng = np.random.default_rng(seed)
    k1 = dataset.num_classes
    gt_f, gt_l, feats, overlaps = [], [], [], []
    for i in tqdm(range(len(dataset)), desc="fc7 features", unit="img", disable=not progress):
        note = dataset.annotation(i)
        boxes = clip_boxes(np.asarray(proposals[i], dtype=np.float32).reshape(-1, 4), (note.height, note.width))
        boxes = boxes[np.sort(rng.choice(len(boxes), size=min(per_image, len(boxes)), replace=False))]
        gt = np.asarray(note.boxes, dtype=np.float32).reshape(-1, 4)
        blob, factor = prepare_image(dataset.load_image(i), scale, max_size, preprocessing)
        both = np.concatenate([gt, boxes])
        rois = np.concatenate([np.zeros((len(both), 1), np.float32), both * np.float32(factor)], axis=1)
        f = fc7_features(model, blob[None], rois)
        ov = np.zeros((len(boxes), k1), np.float32)
        if len(gt) and len(boxes):
            pair = iou(boxes, gt)
            for k in np.unique(note.labels):
                ov[:, k] = pair[:, note.labels == k].max(axis=1)
        gt_f.append(f[:len(gt)])
        gt_l.append(np.asarray(note.labels, dtype=np.int64))
        feats.append(f[len(gt):])
        overlaps.append(ov)
    return FeatureSet(np.concatenate(gt_f), np.concatenate(gt_l), np.concatenate(feats), np.concatenate(overlaps))


# ----------------------------------------------------------------------------------------------------- test time
def set_cls_score(model, weight, bias):
    """Overwrite the detector's ``cls_score`` layer (in place) with ``weight`` (K+1, D) and ``bias`` (K+1,)."""
    layer, xp = model.cls_score, model.xp
    layer.params["weight"][...] = xp.asarray(weight, dtype=layer.params["weight"].dtype)
    layer.params["bias"][...] = xp.asarray(bias, dtype=layer.params["bias"].dtype)


def install_svms(model, weights, biases, scale=1.0):
    """Put per-class SVMs into the detector's ``cls_score`` layer (as ``train_svms.py`` does).

    An SVM trained on features multiplied by ``scale`` scores a raw feature ``x`` as ``(scale w) . x + b``, so row
    k of ``cls_score.weight`` becomes ``scale * weights[k - 1]``; the background row is set to zero.

    Args:
        model: a :class:`~minircnn.models.FastRCNN` (changed in place).
        weights: (K, D) float, the SVM of class k in row k - 1; biases: (K,) float.
        scale: the feature scale the SVMs were trained with (:func:`feature_scale`).
    """
    w = np.zeros(model.cls_score.params["weight"].shape, np.float64)
    b = np.zeros(model.cls_score.params["bias"].shape, np.float64)
    w[1:], b[1:] = scale * np.asarray(weights, np.float64), np.asarray(biases, np.float64)
    set_cls_score(model, w, b)


class RawScores:
    """A detector whose ``predict`` gives the raw ``cls_score`` outputs, not their softmax (``TEST.SVM = True``).

    With SVMs installed in ``cls_score`` (:func:`install_svms`) these are the SVM scores; hand it to
    :func:`minircnn.inference.detect_split` in place of the model. Column 0 (background) is zero and never used.
    """

    def __init__(self, model):
        self.model = model
        self.num_classes = model.num_classes

    def predict(self, images, rois):
        """(R, K+1) raw class scores and (R, 4(K+1)) box deltas."""
        return self.model.forward(images, rois, train=False)

"""Readable reference implementations: the package's vectorised algorithms written again as plain loops.

Every function here computes what one fast function of the package computes (its docstring names it), one RoI,
bin, pixel, box or detection at a time, in the order the paper's math and the original code describe. They are

* the answer key of the exercises (what ``roi_pool_forward`` and friends must compute, in a form one can read);
* the oracle of the tests (``tests/functional/test_roi_pool.py`` and others compare the package with them, and
  ``tests/functional/test_naive.py`` checks them against the package and against hand-computed values);
* the loop versions the lessons show (lesson 02 prints :func:`roi_pool_forward_naive`, lesson 12 :func:`nms_naive`).

The semantics are the fast functions', rounding details included: RoI pooling and NMS work in the input's dtype
like the originals, so in float32 they agree with the package bit for bit. They are slow (Python loops: seconds on
small inputs, far too slow for training), take NumPy arrays (CuPy inputs are copied to the host) and work in any
floating dtype, float64 for gradient checks included. Forward functions whose backward is not written here return
only ``y``. They do not check their inputs; the fast functions do.

Not exported by ``minircnn.functional``: ``from minircnn.functional import naive``.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import asnumpy
from .roi_pool import RoIPoolCache


def _host(*arrays):
    return [np.asarray(asnumpy(a)) for a in arrays]


# ---------------------------------------------------------------------------------------------------------- layers
def conv2d_forward_naive(x, w, b, stride=1, pad=0, groups=1):
    """Convolution by its definition: ``y[n, o, r, s] = b[o] + sum_{c,i,j} w[o, c, i, j] x_pad[n, c, r*stride + i,
    s*stride + j]``, over the input channels of output o's group. Mirrors :func:`minircnn.functional.conv2d_forward`.

    Args:
        x: (N, C, H, W) floating input.
        w: (out, C/groups, kh, kw) weights (a cross-correlation: the kernel is not flipped, as in Caffe).
        b: (out,) biases.
        stride, pad: window step and zero padding on each side.
        groups: consecutive channel blocks; output block t sees only input block t.

    Returns:
        y: (N, out, H_out, W_out), x's dtype, ``H_out = (H + 2 pad - kh) // stride + 1`` (floor, like Caffe's conv).
    """
    x, w, b = _host(x, w, b)
    n, _, h, wd = x.shape
    out, c_group, kh, kw = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.empty((n, out, h_out, w_out), dtype=x.dtype)
    for img in range(n):
        for o in range(out):
            g = o // (out // groups)                                      # the group of output channel o
            channels = slice(g * c_group, (g + 1) * c_group)
            for r in range(h_out):
                for s in range(w_out):
                    window = x_pad[img, channels, r * stride:r * stride + kh, s * stride:s * stride + kw]
                    y[img, o, r, s] = (w[o] * window).sum() + b[o]
    return y


def _caffe_pool_size(size, kernel, stride, pad):
    """Caffe's pooled size: rounded *up*, minus one if the last window would start inside the padding only."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def max_pool2d_forward_naive(x, kernel_size=2, stride=2, pad=0):
    """Caffe's max pooling loop, each window clipped to the input. Mirrors
    :func:`minircnn.functional.max_pool2d_forward`.

    Args:
        x: (N, C, H, W) floating input.
        kernel_size, stride, pad: square window, its step, implicit padding (never picked).

    Returns:
        y: (N, C, H_out, W_out), x's dtype, with Caffe's ceil rule for the sizes (VGG16: 75 rows pool to 38).
    """
    (x,) = _host(x)
    n, c, h, w = x.shape
    h_out = _caffe_pool_size(h, kernel_size, stride, pad)
    w_out = _caffe_pool_size(w, kernel_size, stride, pad)
    y = np.empty((n, c, h_out, w_out), dtype=x.dtype)
    for i in range(h_out):
        h0, h1 = max(i * stride - pad, 0), min(i * stride - pad + kernel_size, h)
        for j in range(w_out):
            w0, w1 = max(j * stride - pad, 0), min(j * stride - pad + kernel_size, w)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].max(axis=(2, 3))        # every image and channel at once
    return y


def lrn_forward_naive(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN across channels, one activation at a time: ``y = x * (k + alpha / local_size * sum of x^2 over
    the local_size channels centred on it) ^ -beta``, channels past the ends counting as 0. Mirrors
    :func:`minircnn.functional.lrn_forward`.

    Args:
        x: (N, C, H, W) floating input.

    Returns:
        y: (N, C, H, W), x's dtype.
    """
    (x,) = _host(x)
    n, c, h, w = x.shape
    y = np.empty_like(x)
    for img in range(n):
        for ch in range(c):
            lo, hi = max(0, ch - local_size // 2), min(c, ch + local_size // 2 + 1)
            for r in range(h):
                for s in range(w):
                    energy = sum(x[img, cc, r, s] ** 2 for cc in range(lo, hi))
                    y[img, ch, r, s] = x[img, ch, r, s] * (k + alpha / local_size * energy) ** -beta
    return y


def _c_round(v):
    """C's ``round``: halves away from zero (2.5 -> 3, -2.5 -> -3). Compares the fractional part, which is exact:
    ``floor(v + 0.5)`` is wrong in float32 (0.49999997 + 0.5 rounds to 1.0)."""
    a = abs(float(v))
    whole = math.floor(a)
    rounded = whole + 1 if a - whole >= 0.5 else whole
    return rounded if v >= 0 else -rounded


def roi_pool_forward_naive(x, rois, output_size=(7, 7), spatial_scale=1.0 / 16):
    """RoI max pooling (paper Sec. 2.1), one RoI and one bin at a time, as the original Caffe layer computes it.
    Mirrors :func:`minircnn.functional.roi_pool_forward`, bit for bit (see its module docstring for the rules).

    Args:
        x: (N, C, H, W) floating feature map.
        rois: (R, 5) ``(batch_index, x1, y1, x2, y2)`` in image pixels, inclusive corners; cast to x's dtype.
        output_size: ``(pooled_h, pooled_w)`` or an int.
        spatial_scale: feature-map cells per image pixel.

    Returns:
        y: (R, C, pooled_h, pooled_w), x's dtype; 0 in bins that lie off the map.
        cache: :class:`minircnn.functional.roi_pool.RoIPoolCache` whose ``argmax`` (int32, same shape as y) is the
            flat index ``h * W + w`` of each bin's maximum in its channel plane, -1 for empty bins. It works with
            :func:`roi_pool_backward_naive` and with the fast backward alike.
    """
    x, rois = _host(x, rois)
    n, c, h, w = x.shape
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    t = x.dtype.type                       # every step in x's dtype: float32 rounds differently from float64
    y = np.zeros((len(rois), c, ph, pw), dtype=x.dtype)                 # an empty bin outputs 0 ...
    argmax = np.full((len(rois), c, ph, pw), -1, dtype=np.int32)        # ... and has no switch
    batch = np.zeros(len(rois), dtype=np.int64)
    for r, roi in enumerate(rois.astype(x.dtype)):
        b = batch[r] = int(roi[0])                                      # the image (truncated, as C casts)
        # corners to feature-map cells, rounded half away from zero like C's round
        start_w, start_h, end_w, end_h = (_c_round(v * t(spatial_scale)) for v in roi[1:])
        roi_h = max(end_h - start_h + 1, 1)                             # inclusive sizes; a malformed RoI
        roi_w = max(end_w - start_w + 1, 1)                             # (end < start) becomes one cell
        bin_h, bin_w = t(roi_h) / t(ph), t(roi_w) / t(pw)
        for i in range(ph):
            # bin i covers rows [floor(i * bin_h), ceil((i + 1) * bin_h)) of the RoI, clipped to the map
            hstart = min(max(math.floor(t(i) * bin_h) + start_h, 0), h)
            hend = min(max(math.ceil(t(i + 1) * bin_h) + start_h, 0), h)
            for j in range(pw):
                wstart = min(max(math.floor(t(j) * bin_w) + start_w, 0), w)
                wend = min(max(math.ceil(t(j + 1) * bin_w) + start_w, 0), w)
                if hend <= hstart or wend <= wstart:
                    continue                                            # the bin lies off the map
                window = x[b, :, hstart:hend, wstart:wend].reshape(c, -1)   # (C, cells), cells in row-major order
                best = window.argmax(axis=1)                            # the first maximum wins, per channel
                y[r, :, i, j] = window[np.arange(c), best]
                argmax[r, :, i, j] = (hstart + best // (wend - wstart)) * w + wstart + best % (wend - wstart)
    return y, RoIPoolCache(argmax, batch, (n, c, h, w))


def roi_pool_backward_naive(dy, cache):
    """Paper Eq. 4, one output at a time: each output gradient is added to the input cell its bin picked.
    Mirrors :func:`minircnn.functional.roi_pool_backward`.

    Args:
        dy: (R, C, pooled_h, pooled_w) gradient of the pooled output.
        cache: the cache of :func:`roi_pool_forward_naive` or of the fast forward.

    Returns:
        dx: (N, C, H, W), dy's dtype, zero where no bin took its maximum.
    """
    dy, argmax, batch = _host(dy, cache.argmax, cache.batch)
    n, c, h, w = cache.x_shape
    dx = np.zeros((n, c, h, w), dtype=dy.dtype)
    r_count, _, ph, pw = dy.shape
    for r in range(r_count):
        for ch in range(c):
            for i in range(ph):
                for j in range(pw):
                    cell = argmax[r, ch, i, j]
                    if cell >= 0:                                       # empty bins pass no gradient
                        dx[batch[r], ch, cell // w, cell % w] += dy[r, ch, i, j]
    return dx


# ---------------------------------------------------------------------------------------------------------- losses
def softmax_cross_entropy_naive(scores, labels):
    """Softmax log loss averaged over rows (paper Eq. 1's L_cls), and its gradient, one row at a time. Mirrors
    :func:`minircnn.functional.softmax_cross_entropy`.

    Args:
        scores: (N, K) floating class scores. labels: (N,) int classes in [0, K).

    Returns:
        loss: float, ``-mean_i log p_i[labels_i]``. dscores: (N, K), scores' dtype, ``(p - onehot) / N``.
    """
    scores, labels = _host(scores, labels)
    n, k = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(n):
        row, u = [float(s) for s in scores[i]], int(labels[i])
        shift = max(row)                        # subtract the row's maximum: same probabilities, no overflow
        z = sum(math.exp(s - shift) for s in row)
        loss -= (row[u] - shift - math.log(z)) / n
        for j in range(k):
            p = math.exp(row[j] - shift) / z
            dscores[i, j] = (p - (j == u)) / n
    return float(loss), dscores


def smooth_l1_loss_naive(pred, target, weights, sigma=1.0):
    """Smooth L1 (paper Eq. 3) summed over elements and divided by the number of rows, one element at a time.
    Mirrors :func:`minircnn.functional.smooth_l1_loss`.

    With ``d = weight * (pred - target)``: ``0.5 sigma^2 d^2`` if ``|d| < 1 / sigma^2``, else ``|d| - 0.5 / sigma^2``.

    Args:
        pred, target, weights: (N, D) floating.

    Returns:
        loss: float. dpred: (N, D), pred's dtype, ``weight * f'(d) / N``.
    """
    pred, target, weights = _host(pred, target, weights)
    n, d_count = pred.shape
    s2 = sigma * sigma
    loss, dpred = 0.0, np.zeros_like(pred)
    for i in range(n):
        for j in range(d_count):
            d = float(weights[i, j] * (pred[i, j] - target[i, j]))
            if abs(d) < 1.0 / s2:
                loss += 0.5 * s2 * d * d
                slope = s2 * d
            else:
                loss += abs(d) - 0.5 / s2
                slope = 1.0 if d > 0 else -1.0
            dpred[i, j] = weights[i, j] * slope / n
    return loss / n, dpred


# ----------------------------------------------------------------------------------------------------------- boxes
def _float_type(*arrays):
    dtype = np.result_type(*(a.dtype for a in arrays))
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _inter_union(p, q):
    """Intersection and union areas of boxes p and q, ``+1`` widths, in the same order of operations as
    :mod:`minircnn.boxes` (so float32 results match it bit for bit)."""
    zero = type(p[0])(0)
    iw = max(min(p[2], q[2]) - max(p[0], q[0]) + 1, zero)
    ih = max(min(p[3], q[3]) - max(p[1], q[1]) + 1, zero)
    inter = iw * ih
    union = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (q[2] - q[0] + 1) * (q[3] - q[1] + 1) - inter
    return inter, union


def iou_naive(a, b):
    """IoU of every pair of boxes, ``+1`` areas (docs/reference.md §7). Mirrors :func:`minircnn.boxes.iou`.

    Args:
        a: (N, 4), b: (K, 4) boxes ``(x1, y1, x2, y2)``, inclusive corners.

    Returns:
        (N, K) array in the boxes' float dtype (float64 for integers); 0 where the union is empty.
    """
    a, b = _host(a, b)
    dtype = _float_type(a, b)
    out = np.zeros((len(a), len(b)), dtype=dtype)
    for i, p in enumerate(a.astype(dtype)):
        for k, q in enumerate(b.astype(dtype)):
            inter, union = _inter_union(p, q)
            out[i, k] = inter / union if union > 0 else 0
    return out


def nms_naive(boxes, scores, threshold):
    """Greedy non-maximum suppression (docs/reference.md §9): visit the boxes by descending score (equal scores by
    index) and keep a box unless its IoU with an already kept box is strictly above ``threshold``. Mirrors
    :func:`minircnn.boxes.nms`.

    IoUs are computed in the boxes' dtype (float64 for integers) and compared with the threshold as a double, like
    the C++ code; zero-area boxes (empty union) suppress nothing.

    Args:
        boxes: (N, 4) boxes ``(x1, y1, x2, y2)``. scores: (N,) numbers. threshold: IoU threshold.

    Returns:
        (M,) int64 indices of the kept boxes, by descending score.
    """
    boxes, scores = _host(boxes, scores)
    rows = [tuple(row) for row in boxes.astype(_float_type(boxes))]   # four scalars of the dtype per box
    order = sorted(range(len(rows)), key=lambda i: -float(scores[i]))   # sorted() is stable: ties by index
    keep = []
    for i in order:
        suppressed = False
        for j in keep:
            inter, union = _inter_union(rows[j], rows[i])
            if union > 0 and float(inter / union) > threshold:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def batched_nms_naive(boxes, scores, labels, threshold):
    """:func:`nms_naive` on each class's boxes alone, merged by descending score (ties by index). Mirrors
    :func:`minircnn.boxes.batched_nms`.

    Args:
        boxes: (N, 4). scores: (N,). labels: (N,) int class of each box. threshold: IoU threshold.

    Returns:
        (M,) int64 indices of the kept boxes.
    """
    boxes, scores, labels = _host(boxes, scores, labels)
    kept = []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        kept += members[nms_naive(boxes[members], scores[members], threshold)].tolist()
    kept.sort(key=lambda i: (-float(scores[i]), i))
    return np.array(kept, dtype=np.int64)


def _centre_size(box):
    """Centre and ``+1`` size of one box, in its own dtype."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    return x1 + 0.5 * w, y1 + 0.5 * h, w, h


def encode_naive(rois, gt):
    """Regression targets one proposal at a time (paper Sec. 2.3): ``((gx - px) / pw, (gy - py) / ph, log(gw / pw),
    log(gh / ph))`` of the centres and ``+1`` sizes. Mirrors :func:`minircnn.boxes.encode`.

    Args:
        rois: (N, 4) proposals P. gt: (N, 4) their ground-truth boxes G.

    Returns:
        (N, 4) ``(dx, dy, dw, dh)`` in the inputs' float dtype (float64 for integers).
    """
    rois, gt = _host(rois, gt)
    dtype = _float_type(rois, gt)
    out = np.zeros((len(rois), 4), dtype=dtype)
    for i, (p, g) in enumerate(zip(rois.astype(dtype), gt.astype(dtype))):
        pcx, pcy, pw, ph = _centre_size(p)
        gcx, gcy, gw, gh = _centre_size(g)
        out[i] = ((gcx - pcx) / pw, (gcy - pcy) / ph, np.log(gw / pw), np.log(gh / ph))
    return out


def decode_naive(rois, deltas):
    """Apply class-wise deltas one proposal and one class at a time; the inverse of :func:`encode_naive` (the
    ``-1`` makes a decoded box ``w`` pixels wide in the inclusive convention). Mirrors :func:`minircnn.boxes.decode`.

    Args:
        rois: (N, 4) proposals. deltas: (N, 4K) ``(dx, dy, dw, dh)`` per class.

    Returns:
        (N, 4K) boxes ``(x1, y1, x2, y2)`` per class, in the inputs' float dtype.
    """
    rois, deltas = _host(rois, deltas)
    dtype = _float_type(rois, deltas)
    out = np.zeros(deltas.shape, dtype=dtype)
    for i, (p, d) in enumerate(zip(rois.astype(dtype), deltas.astype(dtype))):
        pcx, pcy, pw, ph = _centre_size(p)
        for k in range(0, len(d), 4):
            dx, dy, dw, dh = d[k:k + 4]
            cx, cy, w, h = dx * pw + pcx, dy * ph + pcy, np.exp(dw) * pw, np.exp(dh) * ph
            out[i, k:k + 4] = (cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w - 1, cy + 0.5 * h - 1)
    return out


# ------------------------------------------------------------------------------------------------------ evaluation
def voc_ap_naive(recall, precision, use_07_metric=True):
    """Average precision of one precision/recall curve (docs/reference.md §10). Mirrors
    :func:`minircnn.evaluation.voc_ap`.

    11-point (VOC2007): the mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t (0 if never reached).
    Area (VOC2010+): the area under the envelope "best precision at any higher recall", with sentinels (0, 0) and
    (1, 0).

    Args:
        recall, precision: (D,) float sequences of the ranked detections.

    Returns:
        float AP; 0 for an empty curve.
    """
    recall, precision = [float(r) for r in recall], [float(p) for p in precision]
    if use_07_metric:
        total = 0.0
        for step in range(11):
            best = 0.0
            for r, p in zip(recall, precision):
                if r >= step / 10 and p > best:
                    best = p
            total += best
        return total / 11
    mrec, mpre = [0.0] + recall + [1.0], [0.0] + precision + [0.0]
    for i in range(len(mpre) - 2, -1, -1):                  # the envelope, from the right
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def eval_detection_voc_naive(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult=None,
                             iou_thresh=0.5, use_07_metric=True, num_classes=None):
    """The VOC devkit's ``VOCevaldet``, class by class and detection by detection (docs/reference.md §10). Mirrors
    :func:`minircnn.evaluation.eval_detection_voc`.

    For class k: rank its detections over all images by descending score (a stable sort: ties keep the input
    order). Each detection takes the box of its image and class with the largest IoU (the first on ties), before
    looking at whether that box is taken: IoU >= iou_thresh on a difficult box: ignored; on a box already matched:
    a duplicate, FP; on a free box: TP; otherwise FP. Then precision, recall and :func:`voc_ap_naive`.

    Args:
        pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels: per image, (P, 4), (P,), (P,), (G, 4), (G,).
        gt_difficult: per image (G,) bool, or None (no box difficult).
        iou_thresh, use_07_metric, num_classes: as in the fast function.

    Returns:
        dict: ``"ap"`` (num_classes,) float64, NaN for background and classes without non-difficult ground truth;
        ``"map"`` the mean of the other entries (NaN if none).
    """
    pred = [_host(b, lab, s) for b, lab, s in zip(pred_boxes, pred_labels, pred_scores)]
    gt_boxes, gt_labels = [_host(b)[0] for b in gt_boxes], [_host(g)[0] for g in gt_labels]
    gt_difficult = ([np.zeros(len(g), bool) for g in gt_labels] if gt_difficult is None
                    else [_host(d)[0].astype(bool) for d in gt_difficult])
    if num_classes is None:
        num_classes = 1 + max([0] + [int(labels.max()) for _, labels, _ in pred if labels.size]
                              + [int(labels.max()) for labels in gt_labels if labels.size])
    ap = np.full(num_classes, np.nan)
    for k in range(1, num_classes):
        dets = [(float(s), img, b) for img, (boxes, labels, scores) in enumerate(pred)
                for b, lab, s in zip(boxes.astype(np.float64), labels, scores) if lab == k]
        dets.sort(key=lambda det: -det[0])
        objects = [[(g, bool(d)) for g, lab, d in zip(gb.astype(np.float64), gl, gd) if lab == k]
                   for gb, gl, gd in zip(gt_boxes, gt_labels, gt_difficult)]
        npos = sum(not difficult for boxes in objects for _, difficult in boxes)
        if npos == 0:
            continue
        taken = [[False] * len(boxes) for boxes in objects]
        tp, fp = [], []
        for _, img, det in dets:
            best, best_j = -math.inf, -1
            for j, (g, _) in enumerate(objects[img]):
                inter, union = _inter_union(det, g)
                if inter > 0 and inter / union > best:
                    best, best_j = inter / union, j
            if best >= iou_thresh:
                if objects[img][best_j][1]:
                    continue                                      # difficult: neither TP nor FP
                tp.append(not taken[img][best_j])
                fp.append(taken[img][best_j])
                taken[img][best_j] = True
            else:
                tp.append(False)
                fp.append(True)
        ctp, cfp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
        ap[k] = voc_ap_naive(ctp / npos, ctp / np.maximum(ctp + cfp, 1), use_07_metric)
    valid = ap[~np.isnan(ap)]
    return {"ap": ap, "map": float(valid.mean()) if valid.size else float("nan")}

"""Boxes: IoU, the R-CNN box parameterisation (encode/decode), clipping and non-maximum suppression.

Boxes are ``(x1, y1, x2, y2)``, 0-based, with inclusive pixel corners, so a box is ``x2 - x1 + 1`` pixels wide
(docs/reference.md §7). Every function runs on NumPy or CuPy arrays: the array module is taken from the inputs and the
result lives on the same device.

Conventions that differ between the original codebases (docs/reference.md §14.6 and §14.15):

* IoU, NMS and evaluation use ``+1`` widths everywhere.
* The regression encoding here also uses ``+1`` widths (py-faster-rcnn's choice). The paper's own code used
  ``w = x2 - x1 + EPS`` (EPS = 1e-14). Targets and decoding must use the same choice; this module is self-consistent,
  and its :func:`decode` subtracts 1 from x2/y2 so that it exactly inverts :func:`encode` (py-faster-rcnn did not).
* :func:`nms` suppresses a box when its IoU with a kept box is strictly greater than the threshold (the python and GPU
  NMS of the original code); the Cython NMS used for the paper's test numbers suppressed at ``>=``. The two differ
  only when an IoU equals the threshold exactly.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import asnumpy, get_array_module

__all__ = ["iou", "encode", "decode", "encode_classwise", "scatter_classwise", "clip_boxes", "nms", "batched_nms"]


# ----------------------------------------------------------------------------------------------------------- checks
def _as_boxes(xp, a, name, classwise=False):
    """``a`` as an ``xp`` array of shape (N, 4) (or (N, 4K) when ``classwise``); ValueError naming ``name`` if not."""
    a = xp.asarray(a)
    if classwise:
        if a.ndim != 2 or a.shape[1] == 0 or a.shape[1] % 4:
            raise ValueError(f"{name} must have shape (N, 4K) with K >= 1, got shape {tuple(a.shape)}")
    elif a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2) rows, got shape {tuple(a.shape)}")
    return a


def _float_dtype(xp, *arrays):
    """The floating dtype to compute in: the inputs' float type, float64 for integer inputs."""
    dt = np.result_type(*(a.dtype for a in arrays))
    return dt if dt.kind == "f" else np.dtype(np.float64)


def _stable_argsort(xp, a):
    """Indices sorting ``a`` ascending, equal values in index order. CuPy's argsort is always stable (older CuPy
    versions reject the ``kind`` argument), NumPy's default quicksort is not."""
    return np.argsort(a, kind="stable") if xp is np else xp.argsort(a)


def _same_rows(a, b, name_a, name_b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")


# -------------------------------------------------------------------------------------------------------------- IoU
def _inter_union(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2):
    """Intersection and union areas of every box a with every box b (columns given separately, b broadcast).

    The exact order of operations is part of the contract: minircnn.functional.naive.nms_naive computes
    ``max(0, min(x2) - max(x1) + 1)`` etc. in this order, so results are bit-identical (docs/reference.md §7 and §9).
    """
    xp = get_array_module(ax1, bx1)
    iw = xp.minimum(ax2[:, None], bx2[None, :])
    iw -= xp.maximum(ax1[:, None], bx1[None, :])
    iw += 1
    xp.maximum(iw, 0, out=iw)
    ih = xp.minimum(ay2[:, None], by2[None, :])
    ih -= xp.maximum(ay1[:, None], by1[None, :])
    ih += 1
    xp.maximum(ih, 0, out=ih)
    iw *= ih                                         # iw is now the intersection area
    area_a = (ax2 - ax1 + 1) * (ay2 - ay1 + 1)
    area_b = (bx2 - bx1 + 1) * (by2 - by1 + 1)
    union = area_a[:, None] + area_b[None, :]
    union -= iw
    return iw, union


def iou(a, b):
    """Intersection over union of every box in ``a`` with every box in ``b`` (docs/reference.md §7, ``+1`` areas).

    Args:
        a: (N, 4) float or int array, boxes ``(x1, y1, x2, y2)``, inclusive corners.
        b: (K, 4) float or int array, boxes in the same format.

    Returns:
        (N, K) array of the inputs' float dtype (float64 for integer inputs), ``iou[i, k]`` in ``[0, 1]`` for boxes
        with ``x2 >= x1`` and ``y2 >= y1``. Pairs whose union is empty (two zero-area boxes) get 0.

    Raises:
        ValueError: ``a`` or ``b`` is not of shape (N, 4).
    """
    xp = get_array_module(a, b)
    a, b = _as_boxes(xp, a, "a"), _as_boxes(xp, b, "b")
    dt = _float_dtype(xp, a, b)
    a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
    inter, union = _inter_union(*(a[:, i] for i in range(4)), *(b[:, i] for i in range(4)))
    empty = union <= 0
    # Degenerate pairs: avoid 0/0 (and NumPy's warning) by dividing by 1 there; their intersection is 0 anyway.
    return xp.where(empty, 0, inter / xp.where(empty, 1, union)).astype(dt, copy=False)


# ---------------------------------------------------------------------------------------------- encoding / decoding
def _centre_size(boxes):
    """Widths, heights (``+1``, py-faster-rcnn) and centres of (N, 4) boxes, each (N,)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode(rois, gt):
    """Regression targets that move each proposal onto its ground-truth box (paper Sec. 2.3, docs/reference.md §7).

    ``dx = (Gcx - Pcx) / Pw``, ``dy = (Gcy - Pcy) / Ph``, ``dw = log(Gw / Pw)``, ``dh = log(Gh / Ph)`` with
    ``w = x2 - x1 + 1`` and ``cx = x1 + 0.5 w``. The ``+1`` is py-faster-rcnn's convention; the original Fast R-CNN
    code used ``w = x2 - x1 + EPS`` (EPS = 1e-14) instead (docs/reference.md §14.6). :func:`decode` inverts this
    exactly.

    Args:
        rois: (N, 4) float array, proposals P ``(x1, y1, x2, y2)``; widths and heights must be positive.
        gt: (N, 4) float array, the ground-truth box G assigned to each proposal.

    Returns:
        (N, 4) float array ``(dx, dy, dw, dh)``, dtype of the inputs (float64 for integers). Not normalised by the
        per-class target mean/std (docs/reference.md §5); that belongs to the data pipeline.

    Raises:
        ValueError: a shape is not (N, 4) or the row counts differ.
    """
    xp = get_array_module(rois, gt)
    rois, gt = _as_boxes(xp, rois, "rois"), _as_boxes(xp, gt, "gt")
    _same_rows(rois, gt, "rois", "gt")
    dt = _float_dtype(xp, rois, gt)
    pcx, pcy, pw, ph = _centre_size(rois.astype(dt, copy=False))
    gcx, gcy, gw, gh = _centre_size(gt.astype(dt, copy=False))
    return xp.stack([(gcx - pcx) / pw, (gcy - pcy) / ph, xp.log(gw / pw), xp.log(gh / ph)], axis=1)


def decode(rois, deltas):
    """Apply regression deltas to proposals: the inverse of :func:`encode` (docs/reference.md §7,
        ``FR:test.py::_bbox_pred``).

    ``pcx = dx * w + cx``, ``pw = exp(dw) * w`` (``w = x2 - x1 + 1``), box ``= (pcx - pw/2, pcy - ph/2,
    pcx + pw/2 - 1, pcy + ph/2 - 1)``. The ``-1`` makes the decoded box ``pw`` pixels wide in the inclusive convention,
    so ``decode(rois, encode(rois, gt)) == gt``. Neither original codebase has it (docs/reference.md §7): with FR's EPS
    widths none is needed, but py-faster-rcnn's ``+1`` widths without it decode boxes one pixel too wide and tall
    (Detectron later added the ``-1``). Class-wise deltas (the network's ``(N, 4K)`` ``bbox_pred``, class k in columns
    ``4k..4k+3``)
    give one decoded box per class in the same layout. Deltas are not clamped: a huge ``dw`` overflows to ``inf``
    like in the original code.

    Args:
        rois: (N, 4) float array, proposals in the coordinates the boxes should come out in.
        deltas: (N, 4K) float array, ``(dx, dy, dw, dh)`` per class (K = 1 for class-agnostic deltas).

    Returns:
        (N, 4K) float array, decoded boxes ``(x1, y1, x2, y2)`` per class; dtype of the inputs.

    Raises:
        ValueError: ``rois`` is not (N, 4), ``deltas`` not (N, 4K), or the row counts differ.
    """
    xp = get_array_module(rois, deltas)
    rois = _as_boxes(xp, rois, "rois")
    deltas = _as_boxes(xp, deltas, "deltas", classwise=True)
    _same_rows(rois, deltas, "rois", "deltas")
    dt = _float_dtype(xp, rois, deltas)
    cx, cy, w, h = (v[:, None] for v in _centre_size(rois.astype(dt, copy=False)))
    d = deltas.astype(dt, copy=False).reshape(deltas.shape[0], deltas.shape[1] // 4, 4)          # (N, K, 4)
    pcx, pcy = d[..., 0] * w + cx, d[..., 1] * h + cy
    pw, ph = xp.exp(d[..., 2]) * w, xp.exp(d[..., 3]) * h
    out = xp.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw - 1, pcy + 0.5 * ph - 1], axis=2)
    return out.reshape(deltas.shape)


def encode_classwise(rois, gt, labels, num_classes):
    """Targets in the network's class-wise ``(N, 4K)`` layout, with the weights that select them (docs/reference.md §5,
    §6).

    Row i holds :func:`encode` ``(rois[i], gt[i])`` in columns ``4 l .. 4 l + 3`` for its label ``l`` and zeros
    elsewhere; the weights are 1 exactly there. Background rows (label 0) are all zero: they get no box loss.

    Args:
        rois: (N, 4) float array, proposals.
        gt: (N, 4) float array, the ground-truth box assigned to each proposal (ignored for background rows).
        labels: (N,) int array, class of each proposal in ``[0, num_classes)``, 0 = background.
        num_classes: K, including the background class.

    Returns:
        targets: (N, 4K) array of the inputs' float dtype.
        weights: (N, 4K) array of the same dtype, 1 in the four columns of a foreground row's class, else 0.

    Raises:
        ValueError: bad shapes, or a label outside ``[0, num_classes)``.
    """
    xp = get_array_module(rois, gt, labels)
    deltas = encode(rois, gt)
    labels = xp.asarray(labels)
    if labels.shape != (deltas.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({deltas.shape[0]},), got shape {tuple(labels.shape)}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return scatter_classwise(deltas, labels, num_classes)


def scatter_classwise(deltas, labels, num_classes):
    """Per-RoI deltas in the network's class-wise ``(N, 4K)`` layout, and the weights that select them
    (docs/reference.md §6).

    The one place this layout is built: training targets (:func:`encode_classwise`, the sampler), and the
    ``[u >= 1]`` weights of the multi-task loss (:func:`minircnn.models.fast_rcnn.bbox_loss_weights`).

    Args:
        deltas: (N, 4) float array, row i's four values (ignored for background rows).
        labels: (N,) int array in ``[0, num_classes)``, 0 = background.
        num_classes: K, including the background class.

    Returns:
        targets: (N, 4K) array of ``deltas``'s dtype, row i's deltas in columns ``4 l .. 4 l + 3`` of its label l,
            zeros elsewhere and in background rows.
        weights: (N, 4K) array of the same dtype, 1 exactly where targets were placed.
    """
    xp = get_array_module(deltas, labels)
    n = deltas.shape[0]
    targets = xp.zeros((n, num_classes, 4), dtype=deltas.dtype)
    weights = xp.zeros_like(targets)
    fg = xp.flatnonzero(labels > 0)
    targets[fg, labels[fg]] = deltas[fg]
    weights[fg, labels[fg]] = 1
    return targets.reshape(n, 4 * num_classes), weights.reshape(n, 4 * num_classes)


def clip_boxes(boxes, image_shape):
    """Clamp every coordinate into the image: x to ``[0, W-1]``, y to ``[0, H-1]`` (docs/reference.md §7, two-sided like
        PY).

    Args:
        boxes: (N, 4K) float array, boxes ``(x1, y1, x2, y2)`` per class (K = 1 for plain boxes).
        image_shape: ``(H, W)`` or ``(H, W, C)`` (e.g. ``image.shape`` of an HWC image) of the original image.

    Returns:
        (N, 4K) array, a clipped copy with the dtype of ``boxes``.

    Raises:
        ValueError: ``boxes`` is not (N, 4K) or ``image_shape`` has fewer than two positive entries.
    """
    xp = get_array_module(boxes)
    boxes = _as_boxes(xp, boxes, "boxes", classwise=True)
    if len(image_shape) < 2 or image_shape[0] < 1 or image_shape[1] < 1:
        raise ValueError(f"image_shape must start with (H, W), both >= 1, got {tuple(image_shape)}")
    height, width = image_shape[0], image_shape[1]
    out = boxes.copy()
    xp.clip(out[:, 0::2], 0, width - 1, out=out[:, 0::2])
    xp.clip(out[:, 1::2], 0, height - 1, out=out[:, 1::2])
    return out


# -------------------------------------------------------------------------------------------------------------- NMS
def _threshold_below(threshold, dtype):
    """The largest value of ``dtype`` that is <= ``threshold``.

    ``iou > t`` in ``dtype`` then equals ``float64(iou) > threshold``: the comparison C/C++ NMS codes make when a
    float32 IoU meets a double threshold. NumPy would otherwise round the threshold to float32 (0.7 -> 0.69999999).
    """
    t = np.asarray(threshold, dtype=dtype)
    if float(t) > threshold:
        t = np.nextafter(t, np.asarray(-np.inf, dtype=dtype))
    return t[()]


def _resolve_block(ov, max_sweeps=8):
    """Greedy NMS inside one block: which of m score-sorted candidates survive each other.

    ``ov[i, j]`` (only ``j > i`` set) says that i would suppress j. Greedy keeps j iff no kept i < j suppresses it.
    That recurrence has a unique solution, so we iterate ``keep <- not any(keep[i] & ov[i, j])`` from "all kept" until
    it stops changing: each sweep fixes at least the next link of the longest suppression chain, so random boxes
    settle in 2-4 vectorised sweeps. Long chains (e.g. boxes sliding by one pixel) fall back to a host loop.

    Args:
        ov: (m, m) bool array (NumPy or CuPy), strictly upper triangular.

    Returns:
        (m,) bool array on the same device, True for kept candidates.
    """
    xp = get_array_module(ov)
    keep = xp.ones(ov.shape[0], dtype=bool)
    for _ in range(max_sweeps):
        new = ~ov[keep].any(axis=0)
        if bool((new == keep).all()):
            return keep
        keep = new
    ovh = asnumpy(ov)
    keep = np.ones(ovh.shape[0], dtype=bool)
    for i in range(ovh.shape[0]):
        if keep[i]:
            keep &= ~ovh[i]
    return xp.asarray(keep)


_FIRST_BLOCK = 32


def nms(boxes, scores, threshold, block=None, max_keep=None):
    """Greedy non-maximum suppression (docs/reference.md §9).

    Visit boxes by descending score; keep a box unless its IoU (``+1`` areas) with an already kept box is strictly
    greater than ``threshold``. Equal scores are visited in index order (a stable sort), so the result is
    deterministic -- the original code's unstable sort left that order to chance.

    The work is done block by block: the next ``size`` undecided boxes (in score order) are resolved against each
    other (:func:`_resolve_block`), then the kept ones remove every later box they overlap in one vectorised IoU, and
    the survivors are the next undecided boxes. That is exactly the greedy answer, with a Python-level step per block
    rather than per box (a loop with one vectorised IoU per kept box measured 1.6-2.6x torchvision; this one 0.4-1x,
    ``benchmarks/bench_boxes.py``). The same code runs on CuPy with larger blocks; only rare long suppression chains
    are resolved on the host.

    Args:
        boxes: (N, 4) float array, boxes ``(x1, y1, x2, y2)``. IoUs are computed in its dtype (float64 for ints);
            a float32 IoU is compared with the threshold as a double, like the C++/CUDA implementations.
        scores: (N,) float array, higher is better; NaN is rejected.
        threshold: IoU above which a lower-scored box is suppressed (0.3 at test time in the paper).
        block: largest block (default 256 on NumPy, 2048 on CuPy); blocks start at 32 boxes and double up to it.
            Only speed depends on it.
        max_keep: stop once this many boxes are kept (None: all). Greedy NMS decides boxes in score order, so the
            result is exactly the first ``max_keep`` of the full one; the RPN's proposal stage keeps 300 of
            thousands of boxes this way and skips suppressing the rest.

    Returns:
        (M,) int64 array on the device of ``boxes``: indices of the kept boxes, by descending score, ties by index.

    Raises:
        ValueError: bad shapes, mismatched lengths, a NaN score or a NaN threshold.
    """
    xp = get_array_module(boxes, scores)
    boxes = _as_boxes(xp, boxes, "boxes")
    scores = xp.asarray(scores)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape (N,) = ({boxes.shape[0]},) to match boxes, "
                         f"got shape {tuple(scores.shape)}")
    if math.isnan(threshold):
        raise ValueError("threshold must be a number, got NaN")
    if max_keep is not None and max_keep < 1:
        raise ValueError(f"max_keep must be >= 1 or None, got {max_keep}")
    n = boxes.shape[0]
    if n == 0:
        return xp.zeros(0, dtype=np.int64)
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)         # so that negating cannot wrap around (unsigned ints)
    elif bool(xp.isnan(scores).any()):
        raise ValueError("scores contains NaN")
    if block is None:
        block = 256 if xp is np else 2048
    dt = _float_dtype(xp, boxes)
    t = _threshold_below(float(threshold), dt)

    order = _stable_argsort(xp, -scores)            # descending score, equal scores by index
    b = boxes[order].astype(dt)
    x1, y1, x2, y2 = (xp.ascontiguousarray(b[:, i]) for i in range(4))
    m = min(block, n)
    upper = xp.triu(xp.ones((m, m), dtype=bool), 1)  # "i before j" inside a block
    kept, num_kept = [], 0
    max_keep = n if max_keep is None else max_keep

    def overlaps(i, j):                             # (len(i), len(j)) bool: IoU(i, j) > threshold
        inter, union = _inter_union(x1[i], y1[i], x2[i], y2[i], x1[j], y1[j], x2[j], y2[j])
        inter /= union                              # 0/0 = NaN for zero-area pairs compares False: no suppression
        return inter > t

    undecided = xp.arange(n)                        # sorted positions neither kept nor suppressed yet
    # Blocks start small and double: the top boxes often suppress most of the rest, which is cheaper to find out
    # before paying for a big block-against-itself IoU.
    size = min(_FIRST_BLOCK, block)
    with np.errstate(divide="ignore", invalid="ignore"):
        while undecided.size:
            cand, later = undecided[:size], undecided[size:]
            ov = overlaps(cand, cand)
            ov &= upper[:cand.size, :cand.size]
            cand = cand[_resolve_block(ov)][:max_keep - num_kept]
            kept.append(cand)
            num_kept += cand.size
            if num_kept >= max_keep:
                break
            undecided = later[~overlaps(cand, later).any(axis=0)] if later.size else later
            size = min(2 * size, block)
    return order[xp.concatenate(kept)].astype(np.int64, copy=False)


def batched_nms(boxes, scores, labels, threshold):
    """NMS run separately for each class: boxes of different labels never suppress each other (docs/reference.md §8).

    Args:
        boxes: (N, 4) float array, boxes ``(x1, y1, x2, y2)``.
        scores: (N,) float array.
        labels: (N,) int array, the class of each box.
        threshold: IoU threshold of :func:`nms`.

    Returns:
        (M,) int64 array on the device of ``boxes``: kept indices over all classes, by descending score, ties by
        index (as if the classes' results were merged and stably sorted).

    Raises:
        ValueError: bad shapes or mismatched lengths (see :func:`nms`).
    """
    xp = get_array_module(boxes, scores, labels)
    boxes = _as_boxes(xp, boxes, "boxes")
    scores, labels = xp.asarray(scores), xp.asarray(labels)
    for name, a in (("scores", scores), ("labels", labels)):
        if a.shape != (boxes.shape[0],):
            raise ValueError(f"{name} must have shape (N,) = ({boxes.shape[0]},) to match boxes, "
                             f"got shape {tuple(a.shape)}")
    kept = [xp.zeros(0, dtype=np.int64)]
    for c in asnumpy(xp.unique(labels)).tolist():  # one host sync; the class loop is short
        idx = xp.flatnonzero(labels == c)
        kept.append(idx[nms(boxes[idx], scores[idx], threshold)])
    kept = xp.sort(xp.concatenate(kept))           # by index, so the stable sort below breaks ties by index
    s = scores[kept] if scores.dtype.kind == "f" else scores[kept].astype(np.float64)
    return kept[_stable_argsort(xp, -s)]

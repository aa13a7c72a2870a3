"""PASCAL VOC detection evaluation: per-class average precision and mAP (docs/reference.md §10, §14.16).

The paper's VOC07 numbers come from the MATLAB devkit (``VOCevaldet``); this module follows it rather than
py-faster-rcnn's Python port where the two differ:

* a detection matches a ground truth when IoU **>= iou_thresh** (the port uses ``>``), IoU with ``+1`` areas;
* detections of a class are ranked by descending score over the whole set with a **stable** sort (ties keep the
  input order: image by image, detection by detection), like MATLAB's ``sort``;
* each detection takes the ground truth of its image and class with the largest IoU (the first on ties) *before*
  looking at whether it is already matched: on a difficult box it is ignored (neither TP nor FP), on an already
  matched box it is a false positive (a duplicate), otherwise a true positive;
* ``use_07_metric=True`` is the VOC2007 11-point AP the paper reports; ``False`` is the VOC2010+ area under the
  monotone precision envelope.

:func:`eval_detection_coco_style` averages the AP over IoU thresholds 0.50:0.05:0.95, the idea of the COCO metric
(paper Sec. 5.6), with these same matching rules (not the COCO toolkit's).

Matching only ever involves detections and ground truths of one image, so each image is matched as it arrives and
only ``(label, score, outcome)`` per detection is kept: evaluation streams over any iterables of per-image arrays.
"""
from __future__ import annotations

from itertools import zip_longest

import numpy as np

from ..backend import asnumpy
from ..boxes import iou

__all__ = ["COCO_IOUS", "eval_detection_coco_style", "eval_detection_voc", "precision_recall", "voc_ap"]

_TP, _FP, _IGNORED = 1, 0, -1
COCO_IOUS = np.arange(10, 20) / 20      # 0.50, 0.55, ..., 0.95; k / 20 is exact, so an IoU of 0.7 counts at 0.7
_FIELDS = ("pred_boxes", "pred_labels", "pred_scores", "gt_boxes", "gt_labels", "gt_difficult")
_MISSING = object()


# ------------------------------------------------------------------------------------------------ input checking
def _boxes(i, name, a):
    a = np.asarray(asnumpy(a))
    if a.size == 0:
        return np.zeros((0, 4))
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"image {i}: {name} must have shape (N, 4), got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"image {i}: {name} contains NaN or infinite coordinates")
    bad = np.flatnonzero((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1]))
    if bad.size:
        raise ValueError(f"image {i}: {name} row {bad[0]} has x2 < x1 or y2 < y1: {a[bad[0]].tolist()}")
    return a


def _vector(i, name, a, n, kind):
    a = np.asarray(asnumpy(a))
    if a.size == 0 and n == 0:
        a = a.reshape(0)
    if a.shape != (n,):
        raise ValueError(f"image {i}: {name} must have shape ({n},) to match the boxes, got shape {a.shape}")
    if kind == "label":
        if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
            raise ValueError(f"image {i}: {name} must hold integer class ids, got {a.dtype} values")
        return a.astype(np.int64, copy=False)
    if kind == "score":
        if a.dtype.kind not in "fiu":
            raise ValueError(f"image {i}: {name} must be numbers, got dtype {a.dtype}")
        if np.isnan(a).any():
            raise ValueError(f"image {i}: {name} contains NaN")
        return a.astype(np.float64, copy=False)
    return a.astype(bool, copy=False)


def _check_labels(i, name, labels, num_classes):
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 1 or (num_classes is not None and hi >= num_classes):
        allowed = f"[1, {num_classes})" if num_classes is not None else ">= 1 (0 is background)"
        raise ValueError(f"image {i}: {name} must be class ids {allowed}, got values in [{lo}, {hi}]")


def _images(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult, num_classes):
    """Yield validated per-image NumPy arrays, checking that all iterables have the same length."""
    streams = [pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels]
    if gt_difficult is not None:
        streams.append(gt_difficult)
    fields = _FIELDS[:len(streams)]
    # zip would stop silently at the shortest input; zip_longest lets us say which one ran out
    for i, item in enumerate(zip_longest(*streams, fillvalue=_MISSING)):
        if any(x is _MISSING for x in item):
            ended = ", ".join(f for f, x in zip(fields, item) if x is _MISSING)
            going = ", ".join(f for f, x in zip(fields, item) if x is not _MISSING)
            raise ValueError(f"the inputs have different lengths: {ended} ended before image {i} but {going} did not")
        pb, pl, ps, gb, gl = item[:5]
        pb, gb = _boxes(i, "pred_boxes", pb), _boxes(i, "gt_boxes", gb)
        pl = _vector(i, "pred_labels", pl, len(pb), "label")
        ps = _vector(i, "pred_scores", ps, len(pb), "score")
        gl = _vector(i, "gt_labels", gl, len(gb), "label")
        gd = _vector(i, "gt_difficult", item[5], len(gb), "flag") if len(item) > 5 else np.zeros(len(gb), bool)
        _check_labels(i, "pred_labels", pl, num_classes)
        _check_labels(i, "gt_labels", gl, num_classes)
        yield pb, pl, ps, gb, gl, gd


# ------------------------------------------------------------------------------------------------------- matching
def _match_image(pb, pl, ps, gb, gl, gd, iou_thresh):
    """Outcome of each detection of one image: ``_TP``, ``_FP`` or ``_IGNORED`` (devkit rules, docs/reference.md §10).

    Args:
        pb: (P, 4) float64, predicted boxes. pl: (P,) int64 labels. ps: (P,) float64 scores.
        gb: (G, 4) float64, ground-truth boxes. gl: (G,) int64 labels. gd: (G,) bool, difficult flags.
        iou_thresh: minimum IoU for a match.

    Returns:
        outcomes: (P,) int8 in the input order of the detections.
        matched: (P,) int64, the ground-truth box each true positive found (-1 for the other detections).
    """
    out = np.full(len(pb), _FP, dtype=np.int8)
    matched = np.full(len(pb), -1, dtype=np.int64)
    if len(pb) == 0 or len(gb) == 0:
        return out, matched
    ov = iou(pb, gb)
    ov[pl[:, None] != gl[None, :]] = -1.0         # a detection only competes for boxes of its own class
    best = ov.argmax(axis=1)                      # first ground truth on ties, as the devkit's strict '>' scan
    ovmax = ov[np.arange(len(pb)), best]
    # the devkit only considers boxes that really intersect (iw > 0 and ih > 0), hence ovmax > 0 even at thresh 0
    hit = (ovmax >= iou_thresh) & (ovmax > 0)
    out[hit & gd[best]] = _IGNORED
    cand = np.flatnonzero(hit & ~gd[best])
    # Among detections hitting the same box, the best-ranked one (descending score, then input order) is the TP;
    # the others are duplicates and stay FP. Ranking within the image equals ranking over the whole set.
    cand = cand[np.argsort(-ps[cand], kind="stable")]
    _, first = np.unique(best[cand], return_index=True)
    out[cand[first]] = _TP
    matched[cand[first]] = best[cand[first]]
    return out, matched


def match_detections(boxes, labels, scores, gt_boxes, gt_labels, gt_difficult=None, iou_thresh=0.5):
    """Which detections of one image are right, by the VOC devkit's rules, and which objects they found.

    Args:
        boxes: (P, 4) float detections ``(x1, y1, x2, y2)``. labels: (P,) int in 1..K. scores: (P,) float.
        gt_boxes: (G, 4) float. gt_labels: (G,) int. gt_difficult: (G,) bool, or None (none difficult).
        iou_thresh: minimum IoU with a ground-truth box of the same class.

    Returns:
        correct: (P,) bool, the true positives (the best-scored detection of an object, IoU >= iou_thresh).
        ignored: (P,) bool, detections of difficult objects (neither right nor wrong for the devkit).
        found: (G,) bool, the objects some true positive matched.
    """
    pb, pl, ps, gb, gl, gd = next(_images([boxes], [labels], [scores], [gt_boxes], [gt_labels],
                                          None if gt_difficult is None else [gt_difficult], None))
    outcomes, matched = _match_image(pb, pl, ps, gb, gl, gd, iou_thresh)
    found = np.zeros(len(gb), bool)
    found[matched[matched >= 0]] = True
    return outcomes == _TP, outcomes == _IGNORED, found


def _accumulate(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult, iou_thresh, num_classes):
    """Match every image; return labels, scores, outcomes of all detections (input order), npos and num_classes."""
    if not 0 <= iou_thresh <= 1:
        raise ValueError(f"iou_thresh must lie in [0, 1], got {iou_thresh}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (it counts the background class), got {num_classes}")
    labels, scores, outcomes = [], [], []
    npos = np.zeros(1 if num_classes is None else num_classes, dtype=np.int64)
    max_label = 0
    for pb, pl, ps, gb, gl, gd in _images(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels,
                                          gt_difficult, num_classes):
        outcomes.append(_match_image(pb, pl, ps, gb, gl, gd, iou_thresh)[0])
        labels.append(pl)
        scores.append(ps)
        max_label = max(max_label, int(pl.max(initial=0)), int(gl.max(initial=0)))
        counts = np.bincount(gl[~gd], minlength=len(npos))
        if len(counts) > len(npos):
            counts[:len(npos)] += npos
            npos = counts
        else:
            npos += counts
    if num_classes is None:
        num_classes = max_label + 1
    npos = np.pad(npos, (0, num_classes - len(npos)))
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
    return cat(labels, np.int64), cat(scores, np.float64), cat(outcomes, np.int8), npos, num_classes


# ------------------------------------------------------------------------------------------------ public functions
def precision_recall(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult=None,
                     iou_thresh=0.5, num_classes=None):
    """Per-class precision and recall curves over a set of images (VOC devkit matching, docs/reference.md §10).

    Each argument is an iterable with one entry per image (lists, or generators: it is consumed once). Detections on
    difficult boxes are left out of the curves; they change neither precision nor recall.

    Args:
        pred_boxes: per image, (P, 4) float array of detected boxes ``(x1, y1, x2, y2)``, 0-based inclusive corners.
        pred_labels: per image, (P,) int array of class ids >= 1.
        pred_scores: per image, (P,) float array of confidences (no NaN).
        gt_boxes: per image, (G, 4) float array of ground-truth boxes.
        gt_labels: per image, (G,) int array of class ids >= 1.
        gt_difficult: per image, (G,) bool array; ``None`` means no box is difficult.
        iou_thresh: a detection matches a box when IoU >= iou_thresh (0.5 for VOC).
        num_classes: number of classes including background; default: the largest label seen + 1.

    Returns:
        precision: list of ``num_classes`` entries; entry k is a (D_k,) float64 array over class k's ranked
            detections (``cumTP / (cumTP + cumFP)``), entry 0 (background) is None.
        recall: list of the same length; entry k is a (D_k,) float64 array ``cumTP / npos_k``, or None when class k
            has no non-difficult ground truth (recall is undefined) and for entry 0.

    Raises:
        ValueError: inputs of different lengths, bad shapes, x2 < x1, NaN scores or labels out of range, naming the
            image and the field.
    """
    labels, scores, outcomes, npos, num_classes = _accumulate(
        pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult, iou_thresh, num_classes)
    counted = outcomes != _IGNORED
    labels, scores, outcomes = labels[counted], scores[counted], outcomes[counted]
    # One stable sort: by class, then descending score; equal scores keep the input order (devkit's stable sort).
    order = np.lexsort((-scores, labels))
    labels, outcomes = labels[order], outcomes[order]
    bounds = np.searchsorted(labels, np.arange(num_classes + 1))
    precision, recall = [None], [None]
    for k in range(1, num_classes):
        o = outcomes[bounds[k]:bounds[k + 1]]
        tp = np.cumsum(o == _TP)
        fp = np.cumsum(o == _FP)
        precision.append(tp / np.maximum(tp + fp, 1))
        recall.append(tp / npos[k] if npos[k] > 0 else None)
    return precision, recall


def voc_ap(recall, precision, use_07_metric=True):
    """Average precision of one class from its precision/recall curve (docs/reference.md §10).

    * 11-point (VOC2007, ``use_07_metric=True``): mean over t in {0, 0.1, ..., 1} of the largest precision at
      recall >= t (0 if the curve never reaches t). The thresholds are ``k / 10`` exactly, so a recall of exactly
      3/10 counts at t = 0.3 (``np.arange(0, 1.1, 0.1)`` would give 0.30000000000000004 and miss it).
    * area (VOC2010+): make precision non-increasing from the right, then sum the rectangles
      ``(r[i+1] - r[i]) * p[i+1]`` where recall changes, with sentinels (0, 0) and (1, 0).

    Args:
        recall: (D,) float array, non-decreasing, in [0, 1].
        precision: (D,) float array in [0, 1], same length.
        use_07_metric: 11-point AP if True, else the area AP.

    Returns:
        float AP in [0, 1]; 0 for an empty curve.

    Raises:
        ValueError: the arrays are not 1-D of the same length.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(f"recall and precision must be 1-D of the same length, got shapes {recall.shape} "
                         f"and {precision.shape}")
    if use_07_metric:
        total = 0.0
        for k in range(11):
            reached = precision[recall >= k / 10]
            total += reached.max() if reached.size else 0.0
        return total / 11
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]       # precision envelope: best precision at any higher recall
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def eval_detection_voc(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult=None,
                       iou_thresh=0.5, use_07_metric=True, num_classes=None):
    """PASCAL VOC average precision per class and its mean (docs/reference.md §10; paper Table 1-3 use the defaults).

    Streams over the inputs: each is an iterable with one entry per image, consumed once; memory grows only with the
    total number of detections (a label, a score and an outcome each), not with images or boxes.

    Args:
        pred_boxes: per image, (P, 4) float array of detected boxes ``(x1, y1, x2, y2)``, 0-based inclusive corners.
        pred_labels: per image, (P,) int array of class ids >= 1 (0 is background).
        pred_scores: per image, (P,) float array of confidences (no NaN).
        gt_boxes: per image, (G, 4) float array of ground-truth boxes.
        gt_labels: per image, (G,) int array of class ids >= 1.
        gt_difficult: per image, (G,) bool array marking boxes that are neither required nor penalised; None: none.
        iou_thresh: a detection matches a box when IoU (``+1`` areas) >= iou_thresh.
        use_07_metric: VOC2007 11-point AP (the paper's metric) if True, else the VOC2010+ area AP.
        num_classes: number of classes including background (21 for VOC); default: the largest label seen + 1.

    Returns:
        dict with ``"ap"``: (num_classes,) float64 array, ``ap[k]`` the AP of class k, NaN for background (k = 0)
        and for classes without any non-difficult ground truth; ``"map"``: float, the mean of the non-NaN entries
        (NaN if there are none).

    Raises:
        ValueError: inputs of different lengths, bad shapes, x2 < x1, NaN scores or labels out of range, naming the
            image and the field.
    """
    precision, recall = precision_recall(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult,
                                         iou_thresh=iou_thresh, num_classes=num_classes)
    ap = np.full(len(precision), np.nan)
    for k, (p, r) in enumerate(zip(precision, recall)):
        if r is not None:
            ap[k] = voc_ap(r, p, use_07_metric=use_07_metric)
    valid = ap[~np.isnan(ap)]
    return {"ap": ap, "map": float(valid.mean()) if valid.size else float("nan")}


def eval_detection_coco_style(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult=None,
                              iou_threshs=COCO_IOUS, use_07_metric=False, num_classes=None):
    """COCO-style AP: the VOC AP of :func:`eval_detection_voc` averaged over IoU thresholds 0.50, 0.55, ..., 0.95.

    This is the idea of the COCO metric ("AP@[.5:.95]", paper Sec. 5.6), which rewards well-localised boxes, computed
    with this module's VOC machinery: devkit matching at each threshold and, by default, the area AP. It is *not* the
    COCO toolkit (``pycocotools``), which interpolates precision at 101 recall points, matches a detection to the
    best still-unmatched ground truth, ignores "crowd" boxes rather than "difficult" ones, measures areas without the
    ``+1`` and keeps at most 100 detections per image: expect numbers close to it, not equal.

    Args:
        pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult, num_classes: as in
            :func:`eval_detection_voc` (iterables with one entry per image; each is read once).
        iou_threshs: the IoU thresholds to average over (default :data:`COCO_IOUS`).
        use_07_metric: 11-point AP at each threshold if True; the area AP (default) if False.

    Returns:
        dict with ``"map"``: float, the mean over thresholds of each threshold's mAP; ``"map_per_iou"``: (T,) float64,
        the mAP at each threshold; ``"ap"``: (T, num_classes) float64, per threshold and class (NaN for background
        and classes without non-difficult ground truth); ``"iou_threshs"``: (T,) float64.
    """
    inputs = [list(x) for x in (pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels)]
    difficult = None if gt_difficult is None else list(gt_difficult)
    threshs = np.asarray(iou_threshs, dtype=np.float64).reshape(-1)
    if threshs.size == 0:
        raise ValueError("iou_threshs must hold at least one threshold")
    results = [eval_detection_voc(*inputs, difficult, iou_thresh=float(t), use_07_metric=use_07_metric,
                                  num_classes=num_classes) for t in threshs]
    per_iou = np.array([r["map"] for r in results])
    return {"map": float(per_iou.mean()), "map_per_iou": per_iou, "ap": np.stack([r["ap"] for r in results]),
            "iou_threshs": threshs}

"""Exercise: the box arithmetic of detection -- IoU, the regression targets and their inverse, greedy NMS
(paper Sec. 2.3 and 4; docs/reference.md §7, §9; lessons 07 and 12).

Copy this file (e.g. to ``my_boxes.py``), fill in the functions in this order, and check them::

    python -m pytest tests/test_boxes.py --impl my_boxes.py

Functions you have not written yet (still raising NotImplementedError) fail their own tests only. Tests of bad input
(shapes, NaN) are left out unless you add ``--with-validation``. The package's answers are in ``minircnn/boxes.py``:
read them after your own attempt. NumPy arrays in, NumPy arrays out; boxes are ``(x1, y1, x2, y2)`` with inclusive
corners, so a box from x1 = 0 to x2 = 9 is 10 pixels wide.
"""
import numpy as np


def iou(a, b):
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Args:
        a: (N, 4) boxes.
        b: (K, 4) boxes.

    Returns:
        (N, K) float array (float64 for integer boxes, else the boxes' dtype).

    Steps:
        1. the intersection of a[i] and b[k]: ``max(0, min(x2) - max(x1) + 1)`` times the same in y (the +1: inclusive
           corners);
        2. areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``; union = area_a + area_b - intersection;
        3. intersection / union, and 0 where the union is 0 (two empty boxes), not NaN.
        Broadcast ``a[:, None]`` against ``b[None, :]`` instead of looping.
    """
    raise NotImplementedError("write iou: see the steps in its docstring")


def encode(rois, gt):
    """Regression targets ``(dx, dy, dw, dh)`` that move each proposal onto its ground-truth box (paper Eq. 2's t).

    Args:
        rois: (N, 4) proposals P, positive widths and heights.
        gt: (N, 4) the ground-truth box G of each proposal.

    Returns:
        (N, 4) ``dx = (Gcx - Pcx) / Pw``, ``dy = (Gcy - Pcy) / Ph``, ``dw = log(Gw / Pw)``, ``dh = log(Gh / Ph)``,
        with ``w = x2 - x1 + 1`` and centre ``cx = x1 + 0.5 * w`` (likewise in y).
    """
    raise NotImplementedError("write encode: see its docstring")


def decode(rois, deltas):
    """The inverse of :func:`encode`: move each proposal by its deltas.

    Args:
        rois: (N, 4) proposals.
        deltas: (N, 4K) deltas, four columns per class (K = 1 for one box per proposal).

    Returns:
        (N, 4K) boxes, four columns per class: centre ``dx * w + cx``, size ``exp(dw) * w`` (same in y), then corners
        ``(cx - w/2, cy - h/2, cx + w/2 - 1, cy + h/2 - 1)`` so that ``decode(p, encode(p, g)) == g``.
    """
    raise NotImplementedError("write decode: see its docstring")


def nms(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) boxes.
        scores: (N,) higher is better.
        threshold: a box is dropped if its IoU with an already kept box is strictly greater than this.

    Returns:
        (M,) int64 indices of the kept boxes, best score first; equal scores are visited in index order
        (``np.argsort(-scores, kind="stable")``).

    Steps:
        1. order the boxes by descending score (stable);
        2. take the first box left: keep it, and drop every remaining box whose IoU with it exceeds ``threshold``;
        3. repeat until no box is left.
    """
    raise NotImplementedError("write nms: see the steps in its docstring")

"""Exercise: average precision of one class from its precision/recall curve, the two PASCAL VOC rules (paper
Sec. 4; docs/reference.md §10; lesson 12).

Copy this file (e.g. to ``my_ap.py``), fill in ``voc_ap``, and check it::

    python -m pytest tests/evaluation/test_voc_ap.py --impl my_ap.py

The package's answer is ``minircnn/evaluation/voc.py``: read it after your own attempt.
"""
import numpy as np


def voc_ap(recall, precision, use_07_metric=True):
    """AP of one class.

    Args:
        recall: (D,) non-decreasing recalls in [0, 1], one per detection in descending score order.
        precision: (D,) the precisions at the same detections.
        use_07_metric: True for VOC 2007's 11-point AP, False for the area AP of VOC 2010 and later.

    Returns:
        float in [0, 1]; 0 for an empty curve.

    Steps:
        * 11-point: for t = 0, 0.1, ..., 1.0 take the largest precision at any recall >= t (0 if none), and average
          the 11 numbers. Write t as ``k / 10`` for k = 0..10: ``np.arange(0, 1.1, 0.1)`` gives 0.30000000000000004
          and misses a recall of exactly 0.3.
        * area: put a (recall 0, precision 0) point in front and (1, 0) at the end; replace every precision by the
          largest precision at its recall or beyond (the "envelope"); sum ``(r[i+1] - r[i]) * p[i+1]`` over the
          points where recall changes.
    """
    raise NotImplementedError("write voc_ap: see the steps in its docstring")

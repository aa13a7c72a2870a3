"""Exercise: the RPN's anchor targets (Faster R-CNN Sec. 3.1.2; docs/reference.md §16; lesson 20).

Copy this file (e.g. to ``my_rpn.py``), fill in ``anchor_targets``, and check it::

    python -m pytest tests/rpn/test_anchor_targets.py --impl my_rpn.py

The tests' header says which functions came from your file; each test's docstring states the case it checks, worked
out by hand. The package's answer is ``minircnn/rpn/targets.py``: read it after your own attempt.
"""
import numpy as np

from minircnn.boxes import encode, iou        # iou(a, b): (len(a), len(b)) with +1 areas; encode(anchors, gt)
from minircnn.rpn import AnchorTargetSettings


def anchor_targets(anchors, gt_boxes, image_size, rng, settings=AnchorTargetSettings()):
    """Label and regression target of every anchor of one image.

    Args:
        anchors: (M, 4) float boxes ``(x1, y1, x2, y2)``, inclusive corners, in the scaled image's pixels.
        gt_boxes: (G, 4) float ground-truth boxes in the same pixels (G may be 0).
        image_size: ``(height, width)`` of the scaled image.
        rng: ``numpy.random.Generator`` for the sampling (step 5).
        settings: ``fg_thresh`` 0.7, ``bg_thresh`` 0.3, ``batch_size`` 256, ``fg_fraction`` 0.5.

    Returns:
        labels: (M,) int64: 1 foreground, 0 background, -1 ignored.
        targets: (M, 4) float32: ``encode(anchor, its best ground-truth box)`` for foreground anchors, 0 elsewhere.

    Steps:
        1. every label starts at -1 (ignored);
        2. only anchors wholly inside the image take part: 0 <= x1, 0 <= y1, x2 <= width - 1, y2 <= height - 1;
        3. an inside anchor whose best IoU with any ground-truth box is below ``bg_thresh`` is background (0); with
           no ground truth at all, every inside anchor is;
        4. foreground (1): for each ground-truth box, the inside anchor(s) with the highest IoU with it (ties: all of
           them; a box no anchor overlaps at all gets none), and every inside anchor with IoU >= ``fg_thresh``;
        5. at most ``int(fg_fraction * batch_size)`` foreground anchors stay (the others, drawn at random with
           ``rng.choice(..., replace=False)``, become -1), then at most ``batch_size`` minus the foreground left
           background ones (the same way);
        6. the targets of the foreground anchors that remain.
    """
    raise NotImplementedError("write anchor_targets: see the steps in its docstring")

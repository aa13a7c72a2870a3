"""Anchor targets: which anchors the RPN learns as objects, as background, or not at all (Faster R-CNN Sec. 3.1.2;
docs/reference.md §16).

For one image, with IoU computed like everywhere else in the project (``+1`` areas, :func:`minircnn.boxes.iou`):

1. anchors that cross the image's border are ignored (label -1): the paper found that training on them adds large,
   hard-to-correct errors (Sec. 3.3). The border is the *scaled image's*, not the padded blob's;
2. an anchor whose highest IoU with any ground-truth box is below 0.3 is background (0);
3. for each ground-truth box, the anchor(s) with the highest IoU with it are foreground (1) -- this catches objects
   no anchor covers at 0.7 (small or oddly shaped ones) -- and so is every anchor with an IoU of at least 0.7;
4. a mini-batch of 256 anchors at most is sampled, at most half of it foreground: the extra foreground anchors are
   drawn out at random, then background ones until the batch has 256; the rest become -1. An image with few
   objects pads the batch with background, as in the paper.

A foreground anchor's regression target is :func:`minircnn.boxes.encode` of the anchor onto its best ground-truth
box (not normalised: RPN deltas are already of order 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import encode, iou

__all__ = ["AnchorTargetSettings", "anchor_targets", "inside_image"]


@dataclass(frozen=True)
class AnchorTargetSettings:
    """The paper's numbers (Faster R-CNN Sec. 3.1.2, 3.1.3).

    Attributes:
        fg_thresh: IoU from which an anchor is foreground (0.7).
        bg_thresh: IoU below which it is background (0.3).
        batch_size: anchors sampled per image (256).
        fg_fraction: largest share of foreground in that sample (0.5).
    """
    fg_thresh: float = 0.7
    bg_thresh: float = 0.3
    batch_size: int = 256
    fg_fraction: float = 0.5

    def __post_init__(self):
        if not 0 <= self.bg_thresh <= self.fg_thresh <= 1:
            raise ValueError(f"need 0 <= bg_thresh <= fg_thresh <= 1, got {self.bg_thresh} and {self.fg_thresh}")
        if self.batch_size < 1 or not 0 <= self.fg_fraction <= 1:
            raise ValueError(f"need batch_size >= 1 and fg_fraction in [0, 1], got {self.batch_size} and "
                             f"{self.fg_fraction}")


def inside_image(anchors, image_size):
    """(M,) bool: the anchors lying wholly inside an image of ``image_size`` = (height, width) pixels."""
    h, w = image_size
    return ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= w - 1) & (anchors[:, 3] <= h - 1))


def anchor_targets(anchors, gt_boxes, image_size, rng, settings=AnchorTargetSettings()):
    """Label and regression target of every anchor of one image (see the module docstring).

    Args:
        anchors: (M, 4) float boxes in blob pixels (:func:`~minircnn.rpn.anchors.grid_anchors`).
        gt_boxes: (G, 4) float ground-truth boxes in the same pixels (G may be 0).
        image_size: ``(height, width)`` of the scaled image inside the blob.
        rng: ``numpy.random.Generator`` that draws the sample (step 4).
        settings: :class:`AnchorTargetSettings`.

    Returns:
        labels: (M,) int64: 1 foreground, 0 background, -1 ignored (not in the sample).
        targets: (M, 4) float32 ``(dx, dy, dw, dh)`` of the foreground anchors; zeros elsewhere.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    m = len(anchors)
    labels = np.full(m, -1, dtype=np.int64)
    targets = np.zeros((m, 4), dtype=np.float32)
    inside = np.flatnonzero(inside_image(anchors, image_size))
    if len(gt_boxes):
        overlaps = iou(anchors[inside], gt_boxes)                          # (I, G)
        best_gt = overlaps.argmax(axis=1)
        best = overlaps[np.arange(len(inside)), best_gt]
        labels[inside[best < settings.bg_thresh]] = 0
        per_gt = overlaps.max(axis=0)                                      # each box's best IoU with any anchor
        ties = (overlaps == per_gt) & (per_gt > 0)                         # all anchors sharing that best
        labels[inside[ties.any(axis=1)]] = 1
        labels[inside[best >= settings.fg_thresh]] = 1
    else:
        best_gt = np.zeros(len(inside), dtype=np.int64)
        labels[inside] = 0
    fg = np.flatnonzero(labels == 1)
    max_fg = int(settings.fg_fraction * settings.batch_size)
    if len(fg) > max_fg:
        labels[rng.choice(fg, size=len(fg) - max_fg, replace=False)] = -1
    bg = np.flatnonzero(labels == 0)
    max_bg = settings.batch_size - int(np.count_nonzero(labels == 1))
    if len(bg) > max_bg:
        labels[rng.choice(bg, size=len(bg) - max_bg, replace=False)] = -1
    fg = np.flatnonzero(labels == 1)
    if len(fg):
        assigned = np.empty(m, dtype=np.int64)
        assigned[inside] = best_gt
        targets[fg] = encode(anchors[fg], gt_boxes[assigned[fg]])
    return labels, targets

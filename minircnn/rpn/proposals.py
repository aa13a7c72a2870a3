"""The proposal stage: from the RPN's outputs on one image to a few hundred scored boxes (Faster R-CNN Sec. 3.1,
3.3; docs/reference.md §16). No gradient flows through it.

1. decode every anchor's deltas into a box (:func:`minircnn.boxes.decode`), after capping ``dw`` and ``dh`` at
   ln(1000/16) so that an untrained head cannot overflow ``exp``;
2. clip the boxes to the scaled image (:func:`minircnn.boxes.clip_boxes`);
3. drop boxes narrower or shorter than ``min_size`` image pixels (times the image's scale);
4. keep the ``pre_nms_top_n`` boxes of highest objectness;
5. NMS at IoU 0.7 (:func:`minircnn.boxes.nms`): neighbouring anchors that found the same object leave one box;
6. keep the ``post_nms_top_n`` best: the proposals, best first.

The paper's numbers: 12000 before and 2000 after NMS for training, 6000 and 300 at test time, and a 16-pixel minimum
for 128-512-pixel anchors. Our smallest anchors are eight times smaller than the paper's, so the minimum is 4 pixels
(2 would be the same ratio; 4 still keeps every object of the built-in set, whose smallest side is 8 pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..backend import get_array_module
from ..boxes import clip_boxes, decode, nms

__all__ = ["ProposalSettings", "TRAIN_PROPOSALS", "TEST_PROPOSALS", "proposals_from_outputs"]

LOG_SIZE_CAP = math.log(1000.0 / 16)     # largest dw, dh decoded: a box grows at most 62.5x its anchor


@dataclass(frozen=True)
class ProposalSettings:
    """The proposal stage's numbers (see the module docstring)."""
    pre_nms_top_n: int = 6000
    post_nms_top_n: int = 300
    nms_thresh: float = 0.7
    min_size: float = 4.0

    def __post_init__(self):
        if self.pre_nms_top_n < 1 or self.post_nms_top_n < 1:
            raise ValueError(f"pre_nms_top_n and post_nms_top_n must be >= 1, got {self.pre_nms_top_n} and "
                             f"{self.post_nms_top_n}")
        if not 0 < self.nms_thresh <= 1 or self.min_size < 0:
            raise ValueError(f"need nms_thresh in (0, 1] and min_size >= 0, got {self.nms_thresh} and "
                             f"{self.min_size}")

    def replace(self, **changes) -> "ProposalSettings":
        import dataclasses
        return dataclasses.replace(self, **changes)


TRAIN_PROPOSALS = ProposalSettings(pre_nms_top_n=12000, post_nms_top_n=2000)
TEST_PROPOSALS = ProposalSettings(pre_nms_top_n=6000, post_nms_top_n=300)


def proposals_from_outputs(anchors, objectness, deltas, image_size, scale=1.0, settings=TEST_PROPOSALS):
    """One image's proposals from the RPN's outputs.

    Args:
        anchors: (M, 4) boxes in blob pixels (:func:`~minircnn.rpn.anchors.grid_anchors`).
        objectness: (M,) probability of "object" for each anchor (:meth:`RPNHead.objectness`).
        deltas: (M, 4) the RPN's ``(dx, dy, dw, dh)``.
        image_size: ``(height, width)`` of the scaled image (the blob may be padded beyond it).
        scale: the image's scale factor (blob pixels per image pixel): ``min_size`` is in image pixels.
        settings: :class:`ProposalSettings` (:data:`TRAIN_PROPOSALS` or :data:`TEST_PROPOSALS`).

    Returns:
        boxes: (P, 4) float32 ``(x1, y1, x2, y2)`` in blob pixels, P <= ``post_nms_top_n``, by descending objectness.
        scores: (P,) their objectness.
        Both on the device of the inputs.
    """
    xp = get_array_module(deltas)
    anchors = xp.asarray(anchors, dtype=xp.float32)
    deltas = xp.asarray(deltas, dtype=xp.float32).copy()
    deltas[:, 2:] = xp.minimum(deltas[:, 2:], LOG_SIZE_CAP)
    boxes = clip_boxes(decode(anchors, deltas), image_size)
    side = settings.min_size * scale
    big = xp.flatnonzero((boxes[:, 2] - boxes[:, 0] + 1 >= side) & (boxes[:, 3] - boxes[:, 1] + 1 >= side))
    order = big[xp.argsort(-objectness[big], kind="stable")[:settings.pre_nms_top_n]]
    boxes, scores = boxes[order], objectness[order]
    keep = nms(boxes, scores, settings.nms_thresh, max_keep=settings.post_nms_top_n)
    return boxes[keep].astype(xp.float32), scores[keep]

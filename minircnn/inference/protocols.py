"""Test protocols: which scored, regressed proposals of each image become its detections (docs/reference.md §8, §14.12).

Input per image (from :func:`minircnn.inference.im_detect`): class probabilities ``probs`` (P, K+1) and
class-specific boxes ``boxes`` (P, K+1, 4). A *candidate* is a (proposal, class k >= 1) pair, scored ``p_k``, with
its class-k box; candidates whose box the regression shrank below one pixel (``x2 < x1`` or ``y2 < y1``) are
dropped first, in both protocols.

``simple`` (our default; py-faster-rcnn's ``test_net``), image by image:
    candidates with ``p_k > 0.05`` -> NMS per class at IoU 0.3 -> the 100 best detections over all classes.

``paper`` (``FR:lib/fast_rcnn/test.py::test_net``, the protocol behind the paper's VOC07 numbers), over the set:
    1. per image and class: candidates with ``p_k > thresh_k``, the 100 best of them (before NMS);
    2. per class, a min-heap of every score kept so far holds at most ``max_per_set = 40 * num_images``: when it
       overflows, its smallest scores are popped and ``thresh_k`` rises to the heap's minimum. ``thresh_k`` starts
       at -inf and only rises, so about 40 detections per class per image survive on average over the test set,
       with no fixed score threshold;
    3. after the last image, every image's class-k candidates are filtered to ``score > thresh_k`` (strictly: the
       heap's minimum itself goes too), then NMS per class at 0.3, with no cap per image.
    Unlike ``simple``, the result of an image depends on the other images of the set.
"""
from __future__ import annotations

import heapq

import numpy as np

from ..boxes import batched_nms

PROTOCOLS = ("simple", "paper")
PAPER_MEAN_PER_CLASS = 40     # FR: max_per_set = 40 * num_images


def candidates(probs, boxes, thresh):
    """Every (proposal, class k >= 1) pair scoring above the class's threshold, with a box of at least one pixel.

    Args:
        probs: (P, K+1) float class probabilities (column 0: background, never a candidate).
        boxes: (P, K+1, 4) float boxes ``(x1, y1, x2, y2)``, the class-specific regressed boxes.
        thresh: a float, or a (K+1,) float array of per-class thresholds (``p_k > thresh[k]``).

    Returns:
        boxes (D, 4), labels (D,) int64 in 1..K, scores (D,): in proposal order, then class order.
    """
    probs = np.asarray(probs)
    boxes = np.asarray(boxes).reshape(probs.shape[0], probs.shape[1], 4)
    thresh = np.broadcast_to(np.asarray(thresh, dtype=np.float64), (probs.shape[1],))
    rows, labels = np.nonzero(probs[:, 1:] > thresh[1:])
    labels = labels + 1                                                  # column k of probs[:, 1:] is class k + 1
    cand = boxes[rows, labels]
    proper = (cand[:, 2] >= cand[:, 0]) & (cand[:, 3] >= cand[:, 1])     # decode can shrink a box below 1 px
    return cand[proper], labels[proper].astype(np.int64), probs[rows, labels][proper]


def top_per_class(boxes, labels, scores, k):
    """The ``k`` best candidates of each class (ties: the earlier candidate first); the order is by class, then
    by descending score."""
    order = np.lexsort((np.arange(len(scores)), -scores, labels))
    labels_sorted = labels[order]
    first = np.searchsorted(labels_sorted, labels_sorted, side="left")   # where each class's run starts
    keep = order[np.arange(len(order)) - first < k]
    return boxes[keep], labels[keep], scores[keep]


def _nms(boxes, labels, scores, nms_thresh, cap=None):
    keep = np.asarray(batched_nms(boxes, scores, labels, nms_thresh))[:cap]
    return boxes[keep].astype(np.float32), labels[keep].astype(np.int64), scores[keep].astype(np.float32)


def _columns(found):
    """[(boxes, labels, scores) per image] -> ([boxes...], [labels...], [scores...])."""
    return tuple(list(column) for column in zip(*found)) if found else ([], [], [])


class SimpleProtocol:
    """Per image: ``p_k > score_thresh``, NMS per class at ``nms_thresh``, the ``max_per_image`` best overall."""

    def __init__(self, score_thresh=0.05, nms_thresh=0.3, max_per_image=100):
        self.score_thresh, self.nms_thresh, self.max_per_image = score_thresh, nms_thresh, max_per_image
        self.found = []

    def add(self, probs, boxes):
        """One image's (P, K+1) probabilities and (P, K+1, 4) boxes."""
        self.found.append(_nms(*candidates(probs, boxes, self.score_thresh), self.nms_thresh, self.max_per_image))

    def results(self):
        """Lists (boxes (D_i, 4) float32, labels (D_i,) int64, scores (D_i,) float32) over the images added,
        each image's detections by descending score."""
        return _columns(self.found)


class PaperProtocol(SimpleProtocol):
    """The original protocol over a set of ``num_images`` images (module docstring, ``FR:test.py``).

    Args:
        num_classes: K + 1.
        num_images: images in the set; ``max_per_set = mean_per_class * num_images`` per class.
        nms_thresh: IoU of the per-class NMS applied at the end.
        max_per_class: candidates kept per class per image before NMS (100).
        mean_per_class: the average number of detections per class per image the threshold aims at (40).

    Attributes:
        thresh: (K+1,) float64, the running per-class thresholds (-inf until a class's heap overflows).
    """

    def __init__(self, num_classes, num_images, nms_thresh=0.3, max_per_class=100,
                 mean_per_class=PAPER_MEAN_PER_CLASS):
        super().__init__(None, nms_thresh, None)
        self.max_per_class = max_per_class
        self.max_per_set = mean_per_class * num_images
        self.thresh = np.full(num_classes, -np.inf)
        self.heaps = [[] for _ in range(num_classes)]          # min-heaps of the scores kept per class

    def add(self, probs, boxes):
        boxes, labels, scores = top_per_class(*candidates(probs, boxes, self.thresh), self.max_per_class)
        for j in np.unique(labels).tolist():
            heap = self.heaps[j]
            for value in scores[labels == j].tolist():
                heapq.heappush(heap, value)
            if len(heap) > self.max_per_set:
                while len(heap) > self.max_per_set:
                    heapq.heappop(heap)
                self.thresh[j] = heap[0]
        self.found.append((boxes, labels, scores))

    def results(self):
        """As :meth:`SimpleProtocol.results`, after the final per-class thresholds and NMS (no cap per image)."""
        final = []
        for boxes, labels, scores in self.found:
            keep = scores > self.thresh[labels]
            final.append(_nms(boxes[keep], labels[keep], scores[keep], self.nms_thresh))
        return _columns(final)


def make_protocol(name, num_classes, num_images, score_thresh=0.05, nms_thresh=0.3, max_per_image=100):
    """A :class:`SimpleProtocol` or a :class:`PaperProtocol` (whose per-class cap before NMS is
    ``max_per_image``, 100 in both)."""
    if name == "simple":
        return SimpleProtocol(score_thresh, nms_thresh, max_per_image)
    if name == "paper":
        return PaperProtocol(num_classes, num_images, nms_thresh, max_per_class=max_per_image)
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")

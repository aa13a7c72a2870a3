"""Training the RPN and the detector together on shared convolutions: approximate joint training (Faster R-CNN
Sec. 3.2, "approximate joint training"; docs/reference.md §16).

One SGD step, for N images::

    blob --backbone--> features --RPN head--> objectness, deltas --RPN loss (sampled anchors)--+
                          |                         '--proposal stage (no gradient)--> boxes    |
                          |                                 '--sample R RoIs (+ ground truth)   |
                          '--RoI pool, fc6, fc7, heads (the RoIs)--> multi-task loss ----------+--> total
    backward: the detector's gradient (through the RoI pool) and the RPN's (through its 3x3 conv) add at the
    feature map, then go down the backbone.

Why this scheme and not the paper's 4-step alternating training: it is one run with one solver, the code path of an
ordinary step plus the RPN's, and the paper reports close mAP with 25-50% less training time (docs/reference.md §16).
"Approximate" because the proposals are treated as constants: their coordinates depend on the RPN's deltas, but no
gradient flows from the RoI pool back into them. Alternating training would need four runs, two of them with frozen
shared layers, a poor fit for a few-minute CPU run.

Data: the roidb holds ground truth only (the proposals come from the network at each step). The anchor targets depend on
the image and its boxes alone, so they are computed with the mini-batch in the prefetch thread. The detector's RoIs are
drawn, after the RPN's forward, by the Fast R-CNN sampler (:func:`minircnn.data.sampler.sample_rois`) from the step's
proposals with the ground-truth boxes added (so that early, before the RPN has learned, the detector still sees
objects), from stream :data:`RPN_ROIS`, with Fast R-CNN's thresholds: background from IoU 0.1. (The released
end-to-end config takes background from IoU 0; measured here, that made no difference on the built-in set -- three
seeds, mAP 0.790 against 0.789 -- and cost 0.06 mAP on the photos set, one seed, paired 95% interval [-0.091,
-0.017]; probably because easy RoIs on empty background crowd out the near misses.) The detector's regression targets
are normalised with fixed statistics, :data:`TARGET_STDS` (the released code's, for the same reason: the proposals'
targets are not known before training).
Every draw of step i still comes from ``(seed, stream, i)``, so a resumed run is bit-exact.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import asnumpy
from ..boxes import clip_boxes, encode, scatter_classwise
from ..data.roidb import build_roidb
from ..data.sampler import ROIS, images_of_step, sample_rois, step_rng
from ..data.transforms import images_to_blob, prepare_image
from .proposals import TRAIN_PROPOSALS
from .targets import anchor_targets

__all__ = ["RPN_ROIS", "TARGET_MEANS", "TARGET_STDS", "JointBatch", "JointTerms", "joint_minibatch",
           "detector_rois", "joint_step", "target_statistics"]

RPN_ROIS = 5                                          # the random stream of the detector's RoIs of a step
TARGET_MEANS = (0.0, 0.0, 0.0, 0.0)
TARGET_STDS = (0.1, 0.1, 0.2, 0.2)                    # (dx, dy, dw, dh), the released end-to-end code's


def target_statistics(num_classes):
    """The fixed (K+1, 4) means and stds of the detector's regression targets in joint training."""
    return (np.tile(np.asarray(TARGET_MEANS, np.float64), (num_classes, 1)),
            np.tile(np.asarray(TARGET_STDS, np.float64), (num_classes, 1)))


class JointBatch(NamedTuple):
    """The inputs of one joint step.

    Attributes:
        blob: (N, 3, H, W) float32 preprocessed images.
        image_sizes: (N, 2) int, (height, width) of each scaled image inside the blob.
        scales: (N,) float, each image's scale factor.
        gt_boxes: N arrays (G_b, 4) float32, ground truth in blob pixels.
        gt_labels: N arrays (G_b,) int, their classes (1..K).
        anchor_labels: (N, M) int64, 1 / 0 / -1 (:func:`~minircnn.rpn.targets.anchor_targets`).
        anchor_targets: (N, M, 4) float32.
    """
    blob: np.ndarray
    image_sizes: np.ndarray
    scales: np.ndarray
    gt_boxes: list
    gt_labels: list
    anchor_labels: np.ndarray
    anchor_targets: np.ndarray


class JointTerms(NamedTuple):
    """The four losses of a joint step (floats); total is their sum."""
    total: float
    cls: float
    bbox: float
    rpn_cls: float
    rpn_bbox: float


def joint_minibatch(i, roidb, load_image, preprocessing, sampler, seed, anchors_for):
    """The images, ground truth and anchor targets of step ``i`` (the images of step i as in Fast R-CNN training).

    Args:
        i: the step.
        roidb: entries with ground truth (flipped copies included).
        load_image: ``image_index -> (H, W, 3) uint8`` of the unflipped image.
        preprocessing: the weights' :class:`~minircnn.data.transforms.Preprocessing`.
        sampler: the :class:`~minircnn.data.sampler.SamplerConfig` (N, scales, max_size).
        seed: the run's seed.
        anchors_for: ``(blob height, blob width) -> (M, 4)`` anchors of the feature map (:meth:`FastRCNN.anchors`).
    """
    entries = [roidb[j] for j in images_of_step(i, len(roidb), sampler.ims_per_batch, seed)]
    rng = step_rng(seed, ROIS, i)
    scale_inds = rng.integers(0, len(sampler.scales), size=len(entries))
    images, sizes, scales, gt_boxes, gt_labels = [], [], [], [], []
    for entry, s in zip(entries, scale_inds):
        im, scale = prepare_image(load_image(entry.image_index), sampler.scales[s], sampler.max_size, preprocessing,
                                  flip=entry.flipped)
        images.append(im)
        sizes.append(im.shape[1:])
        scales.append(scale)
        gt_boxes.append(clip_boxes(entry.boxes[:entry.num_gt].astype(np.float64) * scale, im.shape[1:])
                        .astype(np.float32))
        gt_labels.append(entry.gt_classes[:entry.num_gt].astype(np.int64))
    blob = images_to_blob(images)
    anchors = anchors_for(blob.shape[2:])
    targets = [anchor_targets(anchors, g, size, rng) for g, size in zip(gt_boxes, sizes)]
    return JointBatch(blob, np.asarray(sizes), np.asarray(scales), gt_boxes, gt_labels,
                      np.stack([t[0] for t in targets]), np.stack([t[1] for t in targets]))


def detector_rois(proposals, batch, sampler, num_classes, rng, stds=TARGET_STDS):
    """The detector's RoIs of a step, sampled from the RPN's proposals plus the ground truth.

    Args:
        proposals: N arrays (P_b, 4) of the step's proposals in blob pixels (host arrays).
        batch: the step's :class:`JointBatch`.
        sampler: :class:`~minircnn.data.sampler.SamplerConfig` (R/N per image, fg share and IoU thresholds).
        num_classes: K + 1.
        rng: the generator of stream :data:`RPN_ROIS`.
        stds: the (dx, dy, dw, dh) target stds (means are 0).

    Returns:
        rois (R', 5) float32 ``(b, x1, y1, x2, y2)``, labels (R',) int64, bbox_targets and bbox_weights
        (R', 4 * num_classes) float32 -- the same blobs as :class:`~minircnn.data.sampler.MiniBatch`'s.
    """
    rois, labels, targets = [], [], []
    for b, found in enumerate(proposals):
        height, width = (int(v) for v in batch.image_sizes[b])
        found = clip_boxes(np.asarray(found, np.float32).reshape(-1, 4), (height, width))
        entry = build_roidb([batch.gt_boxes[b]], [batch.gt_labels[b]], [found], [(height, width)], num_classes)[0]
        keep, lab = sample_rois(entry, sampler, rng)
        boxes = entry.boxes[keep].astype(np.float64)
        t = np.zeros((len(keep), 4))
        fg = lab > 0
        if fg.any():
            t[fg] = encode(boxes[fg], entry.boxes[entry.gt_assignment[keep[fg]]].astype(np.float64))
        rois.append(np.concatenate([np.full((len(keep), 1), b), boxes], axis=1))
        labels.append(lab)
        targets.append(t / np.asarray(stds))
    labels = np.concatenate(labels)
    bbox_targets, bbox_weights = scatter_classwise(np.concatenate(targets).astype(np.float32), labels, num_classes)
    return np.concatenate(rois).astype(np.float32), labels, bbox_targets, bbox_weights


def joint_step(model, batch, i, config, num_classes):
    """Forward and loss of one joint step (the gradients are kept for ``model.backward()``).

    Args:
        model: a :class:`~minircnn.models.FastRCNN` with an RPN.
        batch: the step's :class:`JointBatch`.
        i: the step (draws the detector's RoIs from ``(config.seed, RPN_ROIS, i)``).
        config: the run's :class:`~minircnn.training.config.TrainConfig`.
        num_classes: K + 1.

    Returns:
        :class:`JointTerms`.
    """
    features = model.features(batch.blob, train=True)
    rpn_scores, rpn_deltas, proposals, _ = model.propose(features, batch.image_sizes, batch.scales,
                                                         TRAIN_PROPOSALS, train=True)
    rpn_terms = model.rpn_loss(rpn_scores, rpn_deltas, batch.anchor_labels, batch.anchor_targets)
    rois, labels, targets, weights = detector_rois([asnumpy(p) for p in proposals], batch, config.sampler,
                                                   num_classes, step_rng(config.seed, RPN_ROIS, i))
    scores, deltas = model.head_forward(features, model.xp.asarray(rois))
    terms = model.loss(scores, deltas, labels, targets, weights, bbox_loss_weight=config.bbox_loss_weight)
    return JointTerms(terms.total + rpn_terms.total, terms.cls, terms.bbox, rpn_terms.cls, rpn_terms.bbox)

"""Test time, per image (paper Sec. 2.4 and 3; FR: lib/fast_rcnn/test.py, docs/reference.md §8): :func:`im_detect` and
friends.

1. proposals, clipped to the image;
2. the image resized to the test scale (or an image pyramid, each proposal pooled from the level where its scaled
   area is closest to 224², paper Sec. 3), scaled proposals, one forward pass; class probabilities ``p`` (softmax)
   and class-specific deltas;
3. deltas un-normalised with the training statistics (:func:`~minircnn.data.unnormalize_deltas`), decoded onto the
   proposals (:func:`~minircnn.boxes.decode`) and clipped to the image (:func:`~minircnn.boxes.clip_boxes`);
   without box regression every class's box is the proposal itself (paper Table 6);
4. a test protocol turns the scored boxes into detections (:mod:`minircnn.inference.protocols`):

   * ``simple`` (the default; py-faster-rcnn's rule): per class k >= 1 every proposal with ``p_k > 0.05`` is a
     candidate, NMS per class at IoU 0.3, then the 100 best detections of the image over all classes;
   * ``paper`` (the original ``FR:test.py``, behind the paper's VOC07 numbers; docs/reference.md §8, §14.12): the 100
     best candidates per class per image *before* NMS, an adaptive per-class threshold that keeps about 40 detections
     per class per image on average over the whole test set (a min-heap of ``40 * num_images`` scores per class),
     then NMS 0.3 with no cap per image. No fixed score threshold.

   In both, candidates whose box the regression shrank below one pixel are dropped.

With a detector that has a Region Proposal Network (:mod:`minircnn.rpn`), step 1 is the network's own: pass
``None`` as an image's proposals and the RPN proposes on the feature map of the same forward pass (single scale),
which the detector's head then reuses (Faster R-CNN's shared convolutions).

Still different from the original: we skip the DEDUP_BOXES hashing (duplicates are kept; NMS removes their
duplicate detections) and run only the proposals (the original also ran the test ground-truth boxes through the
net, then dropped them).
"""
from __future__ import annotations

import numbers
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from ..backend import asnumpy
from ..boxes import clip_boxes, decode
from ..data import image_pyramid, pyramid_rois, scaled_size, unnormalize_deltas
from ..threads import cpu_count
from ..models import softmax
from .protocols import make_protocol


def im_detect(model, image, proposals, means, stds, preprocessing, scales, max_size, bbox_reg=True,
              canonical_size=224):
    """Class probabilities and class-specific boxes of every proposal (docs/reference.md §8, ``im_detect``, without
    DEDUP).

    With one scale the image is resized once; with several, into a pyramid (:func:`~minircnn.data.image_pyramid`)
    where each proposal is pooled from the level whose scaled area is closest to ``canonical_size**2``
    (:func:`~minircnn.data.pyramid_rois`; paper Sec. 3, after SPPnet). All levels go through the convs as one batch.

    Args:
        model: a :class:`~minircnn.models.FastRCNN`.
        image: (H, W, 3) uint8 RGB.
        proposals: (P, 4) float boxes ``(x1, y1, x2, y2)`` in the image's pixels (clipped to it here); None: the
            model's RPN proposes them (one test scale).
        means, stds: (K+1, 4) target normalisation of the training roidb.
        preprocessing: the model's :class:`~minircnn.data.transforms.Preprocessing`.
        scales: the test shorter side (an int) or the pyramid's sides (a sequence, e.g. ``(480, 576, 688, 864,
            1200)``).
        max_size: cap on the longer side.
        bbox_reg: False: every class's box is the proposal itself (the paper's Table 6 without test-time bbox
            regression; docs/reference.md §8 step 4).
        canonical_size: the side whose square the pyramid rule aims at (224, the ImageNet input).

    Returns:
        probs: (P, K+1) float32 softmax probabilities (``cls_prob``).
        boxes: (P, K+1, 4) float32 boxes in image pixels, clipped to the image; ``boxes[:, k]`` is class k's.
    """
    return detect_proposals(model, image, proposals, means, stds, preprocessing, scales, max_size, bbox_reg,
                            canonical_size)[:2]


def detect_proposals(model, image, proposals, means, stds, preprocessing, scales, max_size, bbox_reg=True,
                     canonical_size=224):
    """:func:`im_detect`, also returning the proposals it used (the RPN's when ``proposals`` is None) and the
    seconds spent making them (0 for given proposals).

    Returns:
        probs (P, K+1), boxes (P, K+1, 4), proposals (P, 4) float32 in image pixels, proposal seconds (float).
    """
    k1 = model.num_classes
    scales = (scales,) if isinstance(scales, numbers.Integral) else tuple(scales)
    if proposals is None and len(scales) != 1:
        raise ValueError(f"RPN proposals are made at one test scale, got the pyramid {list(scales)}")
    blob, factors = image_pyramid(image, scales, max_size, preprocessing)
    seconds, features = 0.0, None
    if proposals is None:                     # Faster R-CNN: the RPN proposes on the features the head then pools
        features = model.features(blob, train=False)
        tic = time.perf_counter()
        proposals, _ = rpn_proposals(model, features, image.shape, factors[0])
        seconds = time.perf_counter() - tic
    else:
        proposals = clip_boxes(np.asarray(proposals, dtype=np.float32).reshape(-1, 4), image.shape)
    if len(proposals) == 0:
        return np.zeros((0, k1), np.float32), np.zeros((0, k1, 4), np.float32), proposals, seconds
    rois = pyramid_rois(proposals, factors, canonical_size)
    if features is not None:
        scores, deltas = model.head_forward(features, model.xp.asarray(rois), train=False)
        probs = softmax(scores)
    else:
        probs, deltas = model.predict(blob, rois)
    probs = asnumpy(probs).astype(np.float32, copy=False)
    if not bbox_reg:
        return probs, proposal_boxes(proposals, k1), proposals, seconds
    boxes = clip_boxes(decode(proposals, unnormalize_deltas(asnumpy(deltas), means, stds)), image.shape)
    return probs, boxes.reshape(len(proposals), k1, 4).astype(np.float32, copy=False), proposals, seconds


def rpn_proposals(model, features, image_shape, factor, settings=None):
    """One image's proposals by the detector's RPN, from the feature map of its scaled image.

    Args:
        model: a :class:`~minircnn.models.FastRCNN` with an RPN (:meth:`~minircnn.models.FastRCNN.add_rpn`).
        features: (1, C, h, w) the backbone's output for the image's blob (:meth:`~minircnn.models.FastRCNN.features`).
        image_shape: ``(H, W, ...)`` of the original image.
        factor: the blob's scale factor (blob pixels per image pixel, from :func:`~minircnn.data.image_pyramid`).
        settings: :class:`~minircnn.rpn.ProposalSettings` (default: the test-time ones, 6000 before NMS, 300 after).

    Returns:
        boxes: (P, 4) float32 ``(x1, y1, x2, y2)`` in the image's pixels, clipped to it, best first.
        scores: (P,) float32 their objectness.
    """
    size = scaled_size(image_shape[0], image_shape[1], factor)
    _, _, found, objectness = model.propose(features, [size], [factor], settings)
    boxes = clip_boxes(asnumpy(found[0]) / np.float32(factor), image_shape).astype(np.float32)
    return boxes, asnumpy(objectness[0]).astype(np.float32)


def proposal_boxes(proposals, num_classes):
    """(P, 4) proposals as every class's box, (P, num_classes, 4): the boxes without test-time regression."""
    return np.repeat(np.asarray(proposals, np.float32).reshape(-1, 1, 4), num_classes, axis=1)


def detect_image(model, image, proposals, means, stds, preprocessing, scale, max_size, score_thresh=0.05,
                 nms_thresh=0.3, max_per_image=100, protocol="simple", bbox_reg=True):
    """Detections on one image: :func:`im_detect`, then a test protocol (:mod:`minircnn.inference.protocols`).

    Args:
        model, image, proposals, means, stds, preprocessing, max_size, bbox_reg: see :func:`im_detect`.
        scale: the test shorter side, or a sequence of them (multi-scale test, see :func:`im_detect`).
        score_thresh, nms_thresh, max_per_image: see the module docstring.
        protocol: ``"simple"`` or ``"paper"`` (here over a set of one image: about 40 detections per class).

    Returns:
        boxes (D, 4) float32 in image pixels, labels (D,) int64 in 1..K, scores (D,) float32, best first.
    """
    chosen = make_protocol(protocol, model.num_classes, 1, score_thresh, nms_thresh, max_per_image)
    chosen.add(*im_detect(model, image, proposals, means, stds, preprocessing, scale, max_size, bbox_reg))
    return tuple(column[0] for column in chosen.results())


def detect_images(model, load_image, proposals, means, stds, preprocessing, config, bbox_reg=True, progress=True,
                  desc="detecting"):
    """:func:`im_detect` on images ``load_image(0 .. len(proposals) - 1)``, then ``config.protocol`` over them.

    The test settings come from ``config`` (a :class:`~minircnn.training.config.TrainConfig`): ``test_scales`` (or
    ``test_scale`` when empty), ``test_max_size``, ``protocol``, ``score_thresh``, ``nms_thresh``, ``max_per_image``.

    Returns:
        lists (boxes, labels, scores), one entry per image.
    """
    return detect_images_both(model, load_image, proposals, means, stds, preprocessing, config, (bbox_reg,),
                              progress, desc)[bbox_reg]


def detect_images_both(model, load_image, proposals, means, stds, preprocessing, config, bbox_reg=(True, False),
                       progress=True, desc="detecting", timing=None):
    """:func:`detect_images` with and without test-time box regression, from one pass of the network per image.

    ``proposals[i]`` may be None: the model's RPN proposes for image i (:func:`detect_proposals`). With a dict
    ``timing``, ``timing["proposal_seconds"]`` receives the total seconds the RPN spent proposing.

    Returns:
        dict ``{setting: (boxes, labels, scores)}`` for each setting of ``bbox_reg`` (True: regressed boxes; False:
        every class's box is the proposal, paper Table 6).
    """
    chosen = {reg: make_protocol(config.protocol, model.num_classes, len(proposals), config.score_thresh,
                                 config.nms_thresh, config.max_per_image) for reg in bbox_reg}

    def network(i):
        return detect_proposals(model, load_image(i), proposals[i], means, stds, preprocessing,
                                config.test_scales or config.test_scale, config.test_max_size, any(bbox_reg))

    # the images go through the network in parallel threads (one per core, a few images ahead); the protocols
    # take them in order, so the detections are the same as one image at a time
    seconds = 0.0
    for probs, boxes, used, spent in tqdm(ordered_map(network, len(proposals)), total=len(proposals), desc=desc,
                                          unit="img", disable=not progress):
        seconds += spent
        for reg in bbox_reg:
            chosen[reg].add(probs, boxes if reg else proposal_boxes(used, model.num_classes))
    if timing is not None:
        timing["proposal_seconds"] = seconds
    return {reg: protocol.results() for reg, protocol in chosen.items()}


def proposals_for_test(dataset, config, progress=True):
    """The proposals of a split for testing with ``config``: ``[None] * len(dataset)`` for ``"rpn"`` (the detector
    proposes), else the cached or computed ones of :func:`~minircnn.data.proposals.proposals_for_split`."""
    if config.proposals == "rpn":
        return [None] * len(dataset)
    from ..data.proposals import proposals_for_split
    return proposals_for_split(dataset, method=config.proposals, max_boxes=config.max_proposals, progress=progress)


def ordered_map(function, n, ahead=4):
    """``function(0), ..., function(n - 1)`` in order, computed by one thread per core at most ``ahead`` items in
    advance (NumPy releases the GIL in the network's BLAS calls and element-wise loops; ``ahead`` bounds memory)."""
    workers = min(cpu_count(), max(n, 1))
    if workers == 1:
        yield from (function(i) for i in range(n))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minircnn-detect") as pool:
        pending = deque(pool.submit(function, i) for i in range(min(ahead, n)))
        for i in range(ahead, n + ahead):
            result = pending.popleft().result()
            if i < n:
                pending.append(pool.submit(function, i))
            yield result


def detect_split(model, dataset, proposals, means, stds, preprocessing, config, progress=True, bbox_reg=True):
    """:func:`detect_images` over every image of a dataset; returns the lists (boxes, labels, scores)."""
    return detect_images(model, dataset.load_image, proposals, means, stds, preprocessing, config, bbox_reg,
                         progress, desc=f"detecting on {dataset.split}")


def proposal_seconds_per_image(dataset, config, timing, sample=5):
    """Seconds a proposal method takes per image of ``dataset``: the RPN's measured during detection (``timing``
    from :func:`~minircnn.inference.detect_images_both`); selective search or dense boxes timed on the first
    ``sample`` images, one process (their cached boxes cost nothing now); None for precomputed files."""
    if config.proposals == "rpn":
        return timing["proposal_seconds"] / max(len(dataset), 1)
    from ..data.proposals import METHODS, propose
    if config.proposals not in METHODS or len(dataset) == 0:
        return None
    images = [dataset.load_image(i) for i in range(min(sample, len(dataset)))]
    tic = time.perf_counter()
    for i, image in enumerate(images):
        propose(image, config.proposals, config.max_proposals, seed=i)
    return (time.perf_counter() - tic) / len(images)

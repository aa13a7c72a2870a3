"""Evaluate a trained detector on a dataset split: ``python -m minircnn.evaluate --checkpoint CKPT``.

Test time, per image (:func:`im_detect`, spec §8):

1. proposals (the checkpoint's method: selective search "fast" by default), clipped to the image;
2. the image resized to the test scale (``--test-scales S1,S2,...``: an image pyramid, each proposal pooled from
   the level where its scaled area is closest to 224², paper Sec. 3), scaled proposals, one forward pass; class
   probabilities ``p`` (softmax) and class-specific deltas;
3. deltas un-normalised with the training statistics (:func:`~minircnn.data.unnormalize_deltas`), decoded onto the
   proposals (:func:`~minircnn.boxes.decode`) and clipped to the image (:func:`~minircnn.boxes.clip_boxes`);
   with ``--no-bbox-reg`` every class's box is the proposal itself (paper Table 6);
4. a test protocol turns the scored boxes into detections (:mod:`minircnn.protocols`, ``--protocol``):

   * ``simple`` (the default; py-faster-rcnn's rule): per class k >= 1 every proposal with ``p_k > 0.05`` is a
     candidate, NMS per class at IoU 0.3, then the 100 best detections of the image over all classes;
   * ``paper`` (the original ``FR:test.py``, behind the paper's VOC07 numbers; spec §8, §14.12): the 100 best
     candidates per class per image *before* NMS, an adaptive per-class threshold that keeps about 40 detections
     per class per image on average over the whole test set (a min-heap of ``40 * num_images`` scores per class),
     then NMS 0.3 with no cap per image. No fixed score threshold.

   In both, candidates whose box the regression shrank below one pixel are dropped.

``--svd fc6=R6,fc7=R7`` compresses fc6/fc7 by truncated SVD first (:mod:`minircnn.svd`, paper Sec. 3.1).

Still different from the original: we skip the DEDUP_BOXES hashing (duplicates are kept; NMS removes their
duplicate detections), run only the proposals (the original also ran the test ground-truth boxes through the net,
then dropped them), and score with our Python VOC07 AP (:mod:`minircnn.evaluation`), not the MATLAB devkit.

Writes ``metrics.json`` (``map``, ``ap`` per class, ``metric``, the test settings, ...) and ``pr_curves.png`` into
``--out``, and prints a per-class AP table.
"""
from __future__ import annotations

import argparse
import json
import numbers
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .backend import asnumpy
from .boxes import clip_boxes, decode
from .config import set_blas_threads
from .data import VOCDataset, ensure_shapes_dataset, image_pyramid, pyramid_rois, unnormalize_deltas
from .data.proposals import proposals_for_split
from .evaluation import eval_detection_coco_style, eval_detection_voc, precision_recall
from .io import atomic_write_text
from .protocols import PROTOCOLS, make_protocol
from .svd import compress, parse_ranks


def im_detect(model, image, proposals, means, stds, preprocessing, scales, max_size, bbox_reg=True,
              canonical_size=224):
    """Class probabilities and class-specific boxes of every proposal (spec §8, ``im_detect``, without DEDUP).

    With one scale the image is resized once; with several, into a pyramid (:func:`~minircnn.data.image_pyramid`)
    where each proposal is pooled from the level whose scaled area is closest to ``canonical_size**2``
    (:func:`~minircnn.data.pyramid_rois`; paper Sec. 3, after SPPnet). All levels go through the convs as one batch.

    Args:
        model: a :class:`~minircnn.models.FastRCNN`.
        image: (H, W, 3) uint8 RGB.
        proposals: (P, 4) float boxes ``(x1, y1, x2, y2)`` in the image's pixels (clipped to it here).
        means, stds: (K+1, 4) target normalisation of the training roidb.
        preprocessing: the model's :class:`~minircnn.data.transforms.Preprocessing`.
        scales: the test shorter side (an int) or the pyramid's sides (a sequence, e.g. ``(480, 576, 688, 864,
            1200)``).
        max_size: cap on the longer side.
        bbox_reg: False: every class's box is the proposal itself (the paper's Table 6 without test-time bbox
            regression; spec §8 step 4).
        canonical_size: the side whose square the pyramid rule aims at (224, the ImageNet input).

    Returns:
        probs: (P, K+1) float32 softmax probabilities (``cls_prob``).
        boxes: (P, K+1, 4) float32 boxes in image pixels, clipped to the image; ``boxes[:, k]`` is class k's.
    """
    k1 = model.num_classes
    proposals = clip_boxes(np.asarray(proposals, dtype=np.float32).reshape(-1, 4), image.shape)
    if len(proposals) == 0:
        return np.zeros((0, k1), np.float32), np.zeros((0, k1, 4), np.float32)
    scales = (scales,) if isinstance(scales, numbers.Integral) else tuple(scales)
    blob, factors = image_pyramid(image, scales, max_size, preprocessing)
    probs, deltas = model.predict(blob, pyramid_rois(proposals, factors, canonical_size))
    probs = asnumpy(probs).astype(np.float32, copy=False)
    if not bbox_reg:
        return probs, proposal_boxes(proposals, k1)
    boxes = clip_boxes(decode(proposals, unnormalize_deltas(asnumpy(deltas), means, stds)), image.shape)
    return probs, boxes.reshape(len(proposals), k1, 4).astype(np.float32, copy=False)


def proposal_boxes(proposals, num_classes):
    """(P, 4) proposals as every class's box, (P, num_classes, 4): the boxes without test-time regression."""
    return np.repeat(np.asarray(proposals, np.float32).reshape(-1, 1, 4), num_classes, axis=1)


def detect_image(model, image, proposals, means, stds, preprocessing, scale, max_size, score_thresh=0.05,
                 nms_thresh=0.3, max_per_image=100, protocol="simple", bbox_reg=True):
    """Detections on one image: :func:`im_detect`, then a test protocol (:mod:`minircnn.protocols`).

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

    The test settings come from ``config`` (a :class:`~minircnn.config.TrainConfig`): ``test_scales`` (or
    ``test_scale`` when empty), ``test_max_size``, ``protocol``, ``score_thresh``, ``nms_thresh``, ``max_per_image``.

    Returns:
        lists (boxes, labels, scores), one entry per image.
    """
    return detect_images_both(model, load_image, proposals, means, stds, preprocessing, config, (bbox_reg,),
                              progress, desc)[bbox_reg]


def detect_images_both(model, load_image, proposals, means, stds, preprocessing, config, bbox_reg=(True, False),
                       progress=True, desc="detecting"):
    """:func:`detect_images` with and without test-time box regression, from one pass of the network per image.

    Returns:
        dict ``{setting: (boxes, labels, scores)}`` for each setting of ``bbox_reg`` (True: regressed boxes; False:
        every class's box is the proposal, paper Table 6).
    """
    chosen = {reg: make_protocol(config.protocol, model.num_classes, len(proposals), config.score_thresh,
                                 config.nms_thresh, config.max_per_image) for reg in bbox_reg}

    def network(i):
        image = load_image(i)
        probs, boxes = im_detect(model, image, proposals[i], means, stds, preprocessing,
                                 config.test_scales or config.test_scale, config.test_max_size, any(bbox_reg))
        return image.shape, probs, boxes

    # the images go through the network in parallel threads (one per core, a few images ahead); the protocols
    # take them in order, so the detections are the same as one image at a time
    for i, (shape, probs, boxes) in enumerate(tqdm(_ordered_map(network, len(proposals)), total=len(proposals),
                                                   desc=desc, unit="img", disable=not progress)):
        for reg in bbox_reg:
            own = boxes if reg else proposal_boxes(clip_boxes(np.asarray(proposals[i], np.float32).reshape(-1, 4),
                                                              shape), model.num_classes)
            chosen[reg].add(probs, own)
    return {reg: protocol.results() for reg, protocol in chosen.items()}


def _ordered_map(function, n, ahead=4):
    """``function(0), ..., function(n - 1)`` in order, computed by one thread per core at most ``ahead`` items in
    advance (NumPy releases the GIL in the network's BLAS calls and element-wise loops; ``ahead`` bounds memory)."""
    workers = min(os.cpu_count() or 1, max(n, 1))
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


def score_detections(dataset, boxes, labels, scores, class_names):
    """VOC07 AP of the detections against the split's ground truth, and how well they are localised.

    Returns:
        metrics: dict with ``map`` (VOC07 11-point mAP at IoU 0.5, difficult objects ignored: the VOC protocol),
            ``ap`` {class name: AP}, ``map_70`` (the same at IoU 0.7), ``map_coco`` (COCO-style: the area AP
            averaged over IoU 0.50:0.05:0.95, :func:`~minircnn.evaluation.eval_detection_coco_style`),
            ``map_all_objects`` (difficult objects counted like the others), ``metric`` ``"voc07"``, ``images``.
        curves: (precision, recall) lists per class id, for :func:`~minircnn.visualize.plot_precision_recall_curves`.
    """
    notes = [dataset.annotation(i) for i in range(len(dataset))]
    found = (boxes, labels, scores)
    gt = ([a.boxes for a in notes], [a.labels for a in notes])
    difficult = [a.difficult for a in notes]
    k1 = len(class_names) + 1
    voc = eval_detection_voc(*found, *gt, difficult, num_classes=k1)
    strict = eval_detection_voc(*found, *gt, difficult, iou_thresh=0.7, num_classes=k1)
    coco = eval_detection_coco_style(*found, *gt, difficult, num_classes=k1)
    everything = eval_detection_voc(*found, *gt, None, num_classes=k1)
    curves = precision_recall(*found, *gt, difficult, num_classes=k1)
    ap = {name: (None if np.isnan(voc["ap"][k + 1]) else float(voc["ap"][k + 1]))
          for k, name in enumerate(class_names)}
    metrics = {"map": float(voc["map"]), "ap": ap, "metric": "voc07", "iou_thresh": 0.5,
               "map_70": float(strict["map"]), "map_coco": float(coco["map"]),
               "map_all_objects": float(everything["map"]), "images": len(dataset),
               "detections": int(sum(len(b) for b in boxes))}
    return metrics, curves


LOCALISATION_KEYS = ("map", "map_70", "map_coco")   # the mAPs reported without box regression too


def score_both(dataset, found, class_names):
    """:func:`score_detections` of :func:`detect_images_both`'s results: the metrics with regression, with the
    mAPs without it under ``metrics["without_bbox_reg"]`` (``map``, ``map_70``, ``map_coco``); and the curves."""
    metrics, curves = score_detections(dataset, *found[True], class_names)
    if False in found:
        plain, _ = score_detections(dataset, *found[False], class_names)
        metrics["without_bbox_reg"] = {key: plain[key] for key in LOCALISATION_KEYS}
    return metrics, curves


def write_results(out, metrics, curves, class_names):
    """``metrics.json`` and ``pr_curves.png`` into the folder ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .visualize import plot_precision_recall_curves
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    fig, ax = plt.subplots(figsize=(6, 5))
    ap = np.array([np.nan] + [np.nan if v is None else v for v in metrics["ap"].values()])
    plot_precision_recall_curves(curves[0], curves[1], class_names=class_names, ap=ap, ax=ax)
    ax.set_title(f"VOC07 mAP {metrics['map']:.3f}")
    fig.savefig(out / "pr_curves.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def format_table(metrics) -> str:
    """The per-class AP table printed by the commands, then mAP at IoU 0.5 and 0.7 and COCO-style AP (with and
    without test-time box regression when ``metrics`` holds both)."""
    width = max([len(n) for n in metrics["ap"]] + [13])
    lines = [f"{'class':<{width}}  AP"]
    for name, ap in metrics["ap"].items():
        lines.append(f"{name:<{width}}  {'  n/a' if ap is None else f'{ap:.3f}'}")
    lines.append(f"{'mAP':<{width}}  {metrics['map']:.3f}   (VOC07 11-point at IoU 0.5, difficult ignored; "
                 f"all objects counted: {metrics['map_all_objects']:.3f})")
    if "map_70" in metrics:
        plain = metrics.get("without_bbox_reg")
        lines.append("")
        lines.append(f"{'':<{width}}  {'box reg.':>8}" + (f"  {'without':>8}" if plain else ""))
        for key, label in (("map", "mAP@0.5"), ("map_70", "mAP@0.7"), ("map_coco", "AP@[.5:.95]")):
            lines.append(f"{label:<{width}}  {metrics[key]:8.3f}" + (f"  {plain[key]:8.3f}" if plain else ""))
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple:
    """``"480,576,688"`` -> ``(480, 576, 688)`` (an argparse ``type``: errors name the flag)."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, such as "
                                         f"480,576,688,864,1200, got {text!r}")
    return sizes


def add_test_arguments(parser) -> None:
    """The test-time flags shared by ``evaluate`` and ``detect``."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="'simple': per image, score > 0.05, NMS 0.3, the 100 best; 'paper': the original "
                             "FR:test.py, 100 per class per image before NMS, an adaptive per-class threshold "
                             "keeping ~40 detections per class per image over the whole set, NMS 0.3, no cap "
                             "(default: the checkpoint's config, 'simple')")
    parser.add_argument("--test-scales", type=parse_sizes, default=None, metavar="S1,S2,...",
                        help="multi-scale test: shorter sides of an image pyramid, e.g. 480,576,688,864,1200 (with "
                             "--test-max-size 2000, the paper's); each proposal is pooled from the level where its "
                             "area is closest to 224x224. One number: single scale (default: the config's "
                             "test_scale)")
    parser.add_argument("--test-max-size", type=int, default=None,
                        help="cap on the longer image side at test time (default: the config's test_max_size)")
    parser.add_argument("--no-bbox-reg", action="store_true",
                        help="no test-time box regression: every class's box is the proposal itself (paper Table 6)")
    parser.add_argument("--svd", type=parse_ranks, default=None, metavar="fc6=R6,fc7=R7",
                        help="compress fc layers by truncated SVD before testing (paper Sec. 3.1), e.g. "
                             "fc6=1024,fc7=256 for VGG16 (tiny: fc6 and fc7 have 512 outputs)")


def apply_test_arguments(args, ckpt):
    """The checkpoint's (config, model) with the test-time flags applied (the model compressed if --svd)."""
    changes = {key: value for key, value in (("protocol", args.protocol), ("test_scales", args.test_scales),
                                             ("test_max_size", args.test_max_size)) if value is not None}
    config = ckpt.config.replace(**changes)
    if args.svd:
        try:
            compress(ckpt.model, args.svd)
        except ValueError as e:
            raise SystemExit(f"--svd: {e}") from None
    return config, ckpt.model


def main(argv=None):
    from .checkpoint import load_checkpoint
    parser = argparse.ArgumentParser(prog="python -m minircnn.evaluate",
                                     description="Run proposals and a trained detector on a dataset split and "
                                                 "report VOC07 AP per class (protocol: see the module docstring).")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by minircnn.train")
    parser.add_argument("--data", default=None, help="VOC-format folder (default: the one the checkpoint was "
                                                     "trained on; the built-in shapes dataset if none)")
    parser.add_argument("--split", default=None, help="image set to evaluate (default: the training config's "
                                                      "test split, 'test')")
    parser.add_argument("--out", default=None, help="folder for metrics.json and pr_curves.png (default: the "
                                                    "checkpoint's folder)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the network runs")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: one per core; default 1)")
    add_test_arguments(parser)
    args = parser.parse_args(argv)
    set_blas_threads(args.threads)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:             # missing file, not a checkpoint, parameters that do not fit
        raise SystemExit(f"error: {e}") from None
    config, model = apply_test_arguments(args, ckpt)
    model = model.to(args.device) if args.device == "gpu" else model
    root = args.data or config.data or ensure_shapes_dataset()
    dataset = VOCDataset(root, args.split or config.test_split)
    if tuple(dataset.class_names) != ckpt.class_names:
        raise SystemExit(f"{root}: its classes {list(dataset.class_names)} differ from the checkpoint's "
                         f"{list(ckpt.class_names)}")
    proposals = proposals_for_split(dataset, method=config.proposals, max_boxes=config.max_proposals)
    start = time.perf_counter()
    settings = (False,) if args.no_bbox_reg else (True, False)
    found = detect_images_both(model, dataset.load_image, proposals, ckpt.bbox_means, ckpt.bbox_stds,
                               ckpt.preprocessing, config, settings, desc=f"detecting on {dataset.split}")
    seconds = time.perf_counter() - start
    if args.no_bbox_reg:
        metrics, curves = score_detections(dataset, *found[False], ckpt.class_names)
    else:
        metrics, curves = score_both(dataset, found, ckpt.class_names)
    metrics.update(checkpoint=str(args.checkpoint), split=dataset.split, iteration=ckpt.iteration,
                   seconds_per_image=seconds / max(len(dataset), 1), protocol=config.protocol,
                   test_scales=list(config.test_scales or (config.test_scale,)), test_max_size=config.test_max_size,
                   bbox_reg=not args.no_bbox_reg, svd=args.svd or {})
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    write_results(out, metrics, curves, ckpt.class_names)
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'pr_curves.png'}")
    return metrics


if __name__ == "__main__":
    main()

"""Evaluate a trained detector on a dataset split: ``python -m minircnn.evaluate --checkpoint CKPT``.

Test-time protocol (per image, :func:`detect_image`):

1. proposals (the checkpoint's method: selective search "fast" by default), scaled like the image;
2. one forward pass at the test scale; class probabilities ``p`` (softmax) and class-specific deltas;
3. deltas un-normalised with the training statistics (:func:`~minircnn.data.unnormalize_deltas`), decoded onto the
   proposals (:func:`~minircnn.boxes.decode`) and clipped to the image (:func:`~minircnn.boxes.clip_boxes`);
4. per class k >= 1: every proposal with ``p_k > 0.05`` is a candidate, scored ``p_k``, with its class-k box
   (dropped if the regression shrank it below one pixel, ``x2 < x1`` or ``y2 < y1``);
5. NMS per class at IoU 0.3 (:func:`~minircnn.boxes.batched_nms`), then at most 100 detections per image, the
   highest-scoring over all classes.

How this differs from the original protocol (spec §8, §14.12): the original ``FR:test.py`` uses no fixed score
threshold; it keeps the 100 best candidates per class per image *before* NMS, then an adaptive per-class threshold
that keeps about 40 detections per class per image on average over the test set, then NMS 0.3 with no per-image
cap. We follow py-faster-rcnn's simpler, per-image rule above (threshold 0.05, NMS, 100 per image). It also skips
the DEDUP_BOXES hashing (duplicates are kept; NMS removes their duplicate detections), runs only the proposals (the
original also ran the test ground-truth boxes through the net, then dropped them), and scores with our Python VOC07
AP (:mod:`minircnn.evaluation`), not the MATLAB devkit.

Writes ``metrics.json`` (``map``, ``ap`` per class, ``metric``, ...) and ``pr_curves.png`` into ``--out``, and
prints a per-class AP table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .backend import asnumpy
from .boxes import batched_nms, clip_boxes, decode
from .config import set_blas_threads
from .data import VOCDataset, ensure_shapes_dataset, prepare_image, unnormalize_deltas
from .data.proposals import proposals_for_split
from .evaluation import eval_detection_voc, precision_recall
from .io import atomic_write_text


def detect_image(model, image, proposals, means, stds, preprocessing, scale, max_size, score_thresh=0.05,
                 nms_thresh=0.3, max_per_image=100):
    """Detections on one image (the protocol in the module docstring).

    Args:
        model: a :class:`~minircnn.models.FastRCNN`.
        image: (H, W, 3) uint8 RGB.
        proposals: (P, 4) float boxes ``(x1, y1, x2, y2)`` in the image's pixels.
        means, stds: (K+1, 4) target normalisation of the training roidb.
        preprocessing: the model's :class:`~minircnn.data.transforms.Preprocessing`.
        scale, max_size: test shorter side and cap on the longer side.
        score_thresh, nms_thresh, max_per_image: see the module docstring.

    Returns:
        boxes (D, 4) float32 in image pixels, labels (D,) int64 in 1..K, scores (D,) float32, best first.
    """
    proposals = clip_boxes(np.asarray(proposals, dtype=np.float32).reshape(-1, 4), image.shape)
    if len(proposals) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
    blob, factor = prepare_image(image, scale, max_size, preprocessing)
    rois = np.zeros((len(proposals), 5), dtype=np.float32)
    rois[:, 1:] = proposals * np.float32(factor)
    probs, deltas = model.predict(blob[None], rois)
    probs, deltas = asnumpy(probs), asnumpy(deltas)
    boxes = clip_boxes(decode(proposals, unnormalize_deltas(deltas, means, stds)), image.shape)
    rows, labels = np.nonzero(probs[:, 1:] > score_thresh)
    labels = labels + 1                                                   # column k of probs[:, 1:] is class k + 1
    scores = probs[rows, labels]
    cand = boxes.reshape(len(proposals), -1, 4)[rows, labels]
    proper = (cand[:, 2] >= cand[:, 0]) & (cand[:, 3] >= cand[:, 1])     # decode can shrink a box below 1 px
    cand, labels, scores = cand[proper], labels[proper], scores[proper]
    keep = asnumpy(batched_nms(cand, scores, labels, nms_thresh))[:max_per_image]
    return cand[keep].astype(np.float32), labels[keep].astype(np.int64), scores[keep].astype(np.float32)


def detect_split(model, dataset, proposals, means, stds, preprocessing, config, progress=True):
    """:func:`detect_image` over every image of a dataset; returns the lists (boxes, labels, scores)."""
    out = ([], [], [])
    for i in tqdm(range(len(dataset)), desc=f"detecting on {dataset.split}", unit="img", disable=not progress):
        found = detect_image(model, dataset.load_image(i), proposals[i], means, stds, preprocessing,
                             config.test_scale, config.test_max_size, config.score_thresh, config.nms_thresh,
                             config.max_per_image)
        for lst, a in zip(out, found):
            lst.append(a)
    return out


def score_detections(dataset, boxes, labels, scores, class_names):
    """VOC07 AP of the detections against the split's ground truth.

    Returns:
        metrics: dict with ``map`` (difficult objects ignored, the VOC protocol), ``ap`` {class name: AP},
            ``map_all_objects`` (difficult objects counted like the others), ``metric`` ``"voc07"``, ``images``.
        curves: (precision, recall) lists per class id, for :func:`~minircnn.visualize.plot_precision_recall_curves`.
    """
    notes = [dataset.annotation(i) for i in range(len(dataset))]
    gt = ([a.boxes for a in notes], [a.labels for a in notes])
    k1 = len(class_names) + 1
    voc = eval_detection_voc(boxes, labels, scores, *gt, [a.difficult for a in notes], num_classes=k1)
    everything = eval_detection_voc(boxes, labels, scores, *gt, None, num_classes=k1)
    curves = precision_recall(boxes, labels, scores, *gt, [a.difficult for a in notes], num_classes=k1)
    ap = {name: (None if np.isnan(voc["ap"][k + 1]) else float(voc["ap"][k + 1]))
          for k, name in enumerate(class_names)}
    metrics = {"map": float(voc["map"]), "ap": ap, "metric": "voc07", "iou_thresh": 0.5,
               "map_all_objects": float(everything["map"]), "images": len(dataset),
               "detections": int(sum(len(b) for b in boxes))}
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
    """The per-class AP table printed by the command."""
    width = max([len(n) for n in metrics["ap"]] + [5])
    lines = [f"{'class':<{width}}  AP"]
    for name, ap in metrics["ap"].items():
        lines.append(f"{name:<{width}}  {'  n/a' if ap is None else f'{ap:.3f}'}")
    lines.append(f"{'mAP':<{width}}  {metrics['map']:.3f}   (VOC07 11-point, difficult ignored; "
                 f"all objects counted: {metrics['map_all_objects']:.3f})")
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    set_blas_threads(args.threads)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:             # missing file, not a checkpoint, parameters that do not fit
        raise SystemExit(f"error: {e}") from None
    config = ckpt.config
    model = ckpt.model.to(args.device) if args.device == "gpu" else ckpt.model
    root = args.data or config.data or ensure_shapes_dataset()
    dataset = VOCDataset(root, args.split or config.test_split)
    if tuple(dataset.class_names) != ckpt.class_names:
        raise SystemExit(f"{root}: its classes {list(dataset.class_names)} differ from the checkpoint's "
                         f"{list(ckpt.class_names)}")
    proposals = proposals_for_split(dataset, method=config.proposals, max_boxes=config.max_proposals)
    start = time.perf_counter()
    found = detect_split(model, dataset, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, config)
    seconds = time.perf_counter() - start
    metrics, curves = score_detections(dataset, *found, ckpt.class_names)
    metrics.update(checkpoint=str(args.checkpoint), split=dataset.split, iteration=ckpt.iteration,
                   seconds_per_image=seconds / max(len(dataset), 1))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    write_results(out, metrics, curves, ckpt.class_names)
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'pr_curves.png'}")
    return metrics


if __name__ == "__main__":
    main()

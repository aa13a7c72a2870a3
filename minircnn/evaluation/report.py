"""Scoring a split's detections and reporting them: VOC07 AP per class, mAP at IoU 0.5 and 0.7, COCO-style AP,
with and without test-time box regression; ``metrics.json``, ``pr_curves.png`` and the printed table.

The AP itself is computed in :mod:`minircnn.evaluation.voc` (our Python VOC07 AP, not the MATLAB devkit).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from .voc import eval_detection_coco_style, eval_detection_voc, precision_recall


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
    from ..visualize import save_precision_recall_curves
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    ap = np.array([np.nan] + [np.nan if v is None else v for v in metrics["ap"].values()])
    save_precision_recall_curves(curves[0], curves[1], class_names, ap, f"VOC07 mAP {metrics['map']:.3f}",
                                 out / "pr_curves.png")


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

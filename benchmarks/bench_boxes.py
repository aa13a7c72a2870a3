"""Timing of minircnn.boxes.nms (NumPy) against torchvision.ops.nms, and of streaming VOC evaluation.

Usage: ``python benchmarks/bench_boxes.py [--repeat 30] [--images 5000]``

NMS: 2000 random boxes with integer corners in a 1000x600 image, uniform scores. Corners are integers so that
torchvision (areas without +1) sees boxes with x2 + 1, y2 + 1 and computes exactly our +1 IoUs; the script checks both
keep the same boxes. torchvision is optional (only this script uses it) and is timed interleaved with ours, with a
pause between library switches (PERFORMANCE_NOTES.md: idle thread pools spin). Reported: median of ``--repeat`` runs.

Evaluation: ``--images`` synthetic images x 300 detections (20 classes, 3 ground truths per image), streamed through
eval_detection_voc from generators.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
from minircnn.boxes import nms  # noqa: E402
from minircnn.evaluation import eval_detection_voc  # noqa: E402


def random_boxes(rng, n, kind):
    """(n, 4) float32 integer-valued boxes and (n,) float32 scores. ``kind``: 'uniform' sizes 16..300 px anywhere;
    'clustered' jittered copies of 30 objects (like proposals around objects: heavy suppression)."""
    if kind == "uniform":
        wh = rng.integers(16, 301, (n, 2))
        xy = rng.integers(0, 1000, (n, 2)) % (np.array([1000, 600]) - wh)
    else:
        centres = rng.integers(100, 500, (30, 2)); sizes = rng.integers(40, 200, (30, 2))
        pick = rng.integers(0, 30, n)
        wh = np.maximum(sizes[pick] + rng.integers(-20, 21, (n, 2)), 8)
        xy = np.maximum(centres[pick] - wh // 2 + rng.integers(-20, 21, (n, 2)), 0)
    boxes = np.concatenate([xy, xy + wh - 1], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def bench_nms(repeat):
    try:
        import torch
        import torchvision
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print("| boxes | threshold | kept | minircnn nms (ms) | torchvision nms (ms) | ratio |")
    print("|---|---|---|---|---|---|")
    for kind in ("uniform", "clustered"):
        boxes, scores = random_boxes(rng, 2000, kind)
        for thr in (0.3, 0.5, 0.7):
            ours, theirs = [], []
            for _ in range(repeat):
                t0 = time.perf_counter(); keep = nms(boxes, scores, thr); ours.append(time.perf_counter() - t0)
                if torch is not None:
                    time.sleep(0.2)
                    tb = torch.from_numpy(boxes + np.array([0, 0, 1, 1], np.float32)); ts = torch.from_numpy(scores)
                    t0 = time.perf_counter()
                    tk = torchvision.ops.nms(tb, ts, thr)
                    theirs.append(time.perf_counter() - t0)
                    time.sleep(0.2)
            o = statistics.median(ours) * 1e3
            if torch is not None:
                assert np.array_equal(keep, tk.numpy()), "kept boxes differ from torchvision"
                t = statistics.median(theirs) * 1e3
                print(f"| 2000 {kind} | {thr} | {len(keep)} | {o:.2f} | {t:.2f} | {o / t:.2f} |")
            else:
                print(f"| 2000 {kind} | {thr} | {len(keep)} | {o:.2f} | - | - |")


def bench_eval(n_images, n_det=300, n_cls=20):
    """Time eval_detection_voc on n_images synthetic images (3 ground truths, n_det jittered detections each)."""
    rng = np.random.default_rng(1)
    gt_boxes, gt_labels, gt_difficult, pred_boxes, pred_labels, pred_scores = [], [], [], [], [], []
    for _ in range(n_images):
        xy = rng.uniform(0, 400, (3, 2))
        g = np.concatenate([xy, xy + rng.uniform(20, 200, (3, 2))], axis=1)
        gl = rng.integers(1, n_cls + 1, 3)
        gt_boxes.append(g); gt_labels.append(gl); gt_difficult.append(rng.random(3) < 0.1)
        src = rng.integers(0, 3, n_det)
        p = g[src] + rng.normal(0, 15, (n_det, 4))
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2])
        # half the detections carry their source box's label, the rest a random one
        pl = np.where(rng.random(n_det) < 0.5, gl[src], rng.integers(1, n_cls + 1, n_det))
        pred_boxes.append(p); pred_labels.append(pl); pred_scores.append(rng.random(n_det))
    t0 = time.perf_counter()
    # generators, so the evaluation sees one image at a time as it would from a detector
    res = eval_detection_voc(iter(pred_boxes), iter(pred_labels), iter(pred_scores), iter(gt_boxes),
                             iter(gt_labels), iter(gt_difficult), num_classes=n_cls + 1)
    dt = time.perf_counter() - t0
    print(f"\neval_detection_voc, 11-point AP: {n_images} images x {n_det} detections, {n_cls} classes: "
          f"{dt:.2f} s (mAP {res['map']:.3f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs per setting (median reported)")
    ap.add_argument("--images", type=int, default=5000, help="images in the evaluation benchmark (0 to skip)")
    args = ap.parse_args()
    import platform
    versions = f"numpy {np.__version__}"
    try:
        import torch
        import torchvision
        versions += f", torch {torch.__version__}, torchvision {torchvision.__version__} (nms single-threaded)"
    except ImportError:
        versions += ", torchvision not installed"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {versions}, "
          f"{time.strftime('%Y-%m-%d')}\n")
    bench_nms(args.repeat)
    if args.images:
        bench_eval(args.images)

#!/usr/bin/env python
"""Truncated SVD of fc6/fc7 (paper Sec. 3.1, Fig. 2; minircnn.inference.svd): forward time saved, and detection accuracy
lost.

1. Timing, VGG16 sizes: fc6 (25088 -> 4096) and fc7 (4096 -> 4096), with relu6/relu7 (dropout is the identity at
   test), on ``--rois`` (2000) RoI-pool outputs of shape (512, 7, 7), float32 NumPy, before and after
   :func:`minircnn.inference.svd.compress` with ``--vgg-ranks`` (the paper's fc6=1024,fc7=256), with one BLAS thread and
   with all of them. The weights are random (the forward time does not depend on their values); the time of the
   compression itself (two SVDs) is reported too. Each timed call follows a garbage collection and a 0.2 s pause
   (idle BLAS threads spin; see benchmarks/README.md); median and best of ``--repeat`` calls.
2. Accuracy, with ``--checkpoint runs/tiny/checkpoint.npz``: VOC07 mAP of that detector on its test split (the
   shapes test split for the tiny preset) without SVD and with each of ``--ranks`` (tiny: fc6 is 512 x 6272, fc7
   512 x 512), the relative Frobenius error ``||W - U L|| / ||W||`` of each compressed layer, and the test time per
   image (one BLAS thread, simple protocol).

Usage::

    python benchmarks/bench_svd.py                                   # timing only (the SVDs take minutes)
    python benchmarks/bench_svd.py --factors random                  # timing without the SVDs (~1 minute)
    python benchmarks/bench_svd.py --checkpoint runs/tiny/checkpoint.npz --ranks fc6=128,fc7=64 fc6=64,fc7=32
    python benchmarks/bench_svd.py --skip-timing --checkpoint runs/tiny/checkpoint.npz
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from minircnn.threads import set_blas_threads  # noqa: E402
from minircnn.inference.svd import compress
from minircnn.cli import parse_ranks  # noqa: E402


def timed(fn, repeat, sleep_s=0.2):
    """(median, best) seconds of ``repeat`` calls after one warm-up, each after gc and a pause."""
    fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        time.sleep(sleep_s)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def fc_forward(model, x):
    """fc6 .. drop7 of the model's trunk (test mode) on pooled features x (R, C, 7, 7)."""
    for layer in model.trunk[1:]:
        x = layer.forward(x, train=False)
    return x


def fc_params(model):
    return sum(v.size for k, v in model.state_dict().items() if k.startswith(("fc6", "fc7")))


def bench_timing(rois, ranks, repeat, factors="svd"):
    from minircnn.models import build_model
    from minircnn.inference.svd import factor_layers
    rng = np.random.default_rng(0)
    full = build_model("vgg16", 21, init=False)                 # zero weights, untouched memory: cheap
    for layer, std in ((full.fc6, 0.01), (full.fc7, 0.01)):
        layer.params["weight"] = rng.standard_normal(layer.params["weight"].shape, dtype=np.float32) * std
        layer.params["bias"] = rng.standard_normal(layer.params["bias"].shape, dtype=np.float32) * std
    small = build_model("vgg16", 21, init=False)
    for name in ("fc6", "fc7"):
        small[name].params = dict(full[name].params)            # the same arrays; compress leaves them alone
    set_blas_threads(0)
    start = time.perf_counter()
    if factors == "svd":
        compress(small, ranks)
        done = f"compression (2 SVDs, all threads): {time.perf_counter() - start:.1f} s"
    else:                                                       # the same shapes, random values: same GEMM time
        factor_layers(small, ranks)
        for layer in small.trunk:
            for key, value in layer.params.items():
                layer.params[key] = rng.standard_normal(value.shape, dtype=np.float32) * 0.01
        done = "random factors (--factors random: no SVD)"
    x = np.maximum(rng.standard_normal((rois, 512, 7, 7), dtype=np.float32), 0)
    rows = []
    for threads in (1, 0):
        n = set_blas_threads(threads) or "?"
        before = timed(lambda: fc_forward(full, x), repeat)
        after = timed(lambda: fc_forward(small, x), repeat)
        rows.append((threads or os.cpu_count(), n, before, after))
    print(f"\n### fc6 + fc7 forward, VGG16 sizes, {rois} RoIs, float32 NumPy, ranks "
          f"{','.join(f'{k}={v}' for k, v in ranks.items())}\n")
    print(f"fc6+fc7 weights: {fc_params(full) / 1e6:.1f}M -> {fc_params(small) / 1e6:.1f}M; {done}\n")
    print("| BLAS threads | full median (ms) | full best | SVD median (ms) | SVD best | speed-up (medians) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads, _, (bm, bb), (am, ab) in rows:
        print(f"| {threads} | {bm * 1e3:.0f} | {bb * 1e3:.0f} | {am * 1e3:.0f} | {ab * 1e3:.0f} | {bm / am:.2f}x |")


def bench_map(checkpoint, rank_sets):
    from minircnn.training.checkpoint import load_checkpoint
    from minircnn.data import VOCDataset, ensure_shapes_dataset
    from minircnn.data.proposals import proposals_for_split
    from minircnn.inference import detect_split
    from minircnn.evaluation import score_detections
    set_blas_threads(1)
    ckpt = load_checkpoint(checkpoint)
    config = ckpt.config
    dataset = VOCDataset(config.data or ensure_shapes_dataset(), config.test_split)
    proposals = proposals_for_split(dataset, method=config.proposals, max_boxes=config.max_proposals,
                                    progress=False)
    print(f"\n### VOC07 mAP of {checkpoint} on {dataset.split} ({len(dataset)} images), simple protocol, "
          "1 BLAS thread\n")
    print("| --svd | fc6+fc7 weights | rel. error fc6 | rel. error fc7 | mAP | s / image |")
    print("|---|---:|---:|---:|---:|---:|")
    for ranks in [{}] + rank_sets:
        model = load_checkpoint(checkpoint).model
        weights = {name: model[name].params["weight"].copy() for name in ranks}
        compress(model, ranks)
        errors = []
        for name in ("fc6", "fc7"):
            if name in ranks:
                approx = model[f"{name}_U"].params["weight"] @ model[f"{name}_L"].params["weight"]
                errors.append(f"{np.linalg.norm(weights[name] - approx) / np.linalg.norm(weights[name]):.3f}")
            else:
                errors.append("-")
        start = time.perf_counter()
        found = detect_split(model, dataset, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                             config, progress=False)
        seconds = (time.perf_counter() - start) / len(dataset)
        metrics, _ = score_detections(dataset, *found, ckpt.class_names)
        label = ",".join(f"{k}={v}" for k, v in ranks.items()) or "none"
        print(f"| {label} | {fc_params(model) / 1e6:.2f}M | {errors[0]} | {errors[1]} | {metrics['map']:.3f} | "
              f"{seconds:.3f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rois", type=int, default=2000, help="RoIs per forward (2000: one test image)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per case")
    p.add_argument("--vgg-ranks", type=parse_ranks, default=parse_ranks("fc6=1024,fc7=256"),
                   help="ranks for the VGG16-size timing (the paper's fc6=1024,fc7=256)")
    p.add_argument("--factors", choices=("svd", "random"), default="svd",
                   help="svd: compress the random VGG16-size weights (two SVDs, minutes on 2 cores); random: factor "
                        "layers of the same shapes with random values (the forward time is the same)")
    p.add_argument("--skip-timing", action="store_true", help="only the mAP part")
    p.add_argument("--checkpoint", help="a checkpoint.npz: also measure its mAP without and with SVD")
    p.add_argument("--ranks", type=parse_ranks, nargs="+",
                   default=[parse_ranks("fc6=256,fc7=128"), parse_ranks("fc6=128,fc7=64"),
                            parse_ranks("fc6=64,fc7=32"), parse_ranks("fc6=32,fc7=16")],
                   help="rank settings for the mAP part (default: fc6=256,fc7=128 fc6=128,fc7=64 fc6=64,fc7=32 "
                        "fc6=32,fc7=16)")
    args = p.parse_args()
    print(f"## bench_svd ({time.strftime('%Y-%m-%d %H:%M %Z')}): {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    if not args.skip_timing:
        bench_timing(args.rois, args.vgg_ranks, args.repeat, args.factors)
    if args.checkpoint:
        bench_map(args.checkpoint, args.ranks)


if __name__ == "__main__":
    main()

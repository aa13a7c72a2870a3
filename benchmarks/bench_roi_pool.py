#!/usr/bin/env python
"""Time minircnn's RoI max pooling forward and backward, and torchvision.ops.roi_pool when it is installed.

What is measured (issue 2, item 8): RoI max pooling (7x7, spatial scale 1/16) forward, backward and both, with 128
(one training minibatch) and 2000 (one test image) random RoIs on a 1x512x38x50 conv5_3 map (that of a 600x800
image). RoI sides are log-uniform in 16..600 px inside the 600x800 image, with fractional corners. torchvision's
float32 forward is the same algorithm, so the outputs should be identical.

Both libraries run on the same number of threads, interleaved, with a pause before every timed call
(benchmarks/README.md, "Why the benchmark sleeps"; benchmarks/_bench_harness.py). The "check" column (on the
fwd+bwd row) is ||ours - torch|| / ||torch||, the worse of the forward output and the input gradient: "0 (identical)"
when both sides did exactly the same work.

Usage::

    python benchmarks/bench_roi_pool.py                   # 128 and 2000 RoIs
    python benchmarks/bench_roi_pool.py --quick           # smoke run: 128 RoIs, one timed repeat
    python benchmarks/bench_roi_pool.py --repeat 5        # more timed calls: the 2000-RoI median swings
    python benchmarks/bench_roi_pool.py --device gpu      # ours on CuPy, torchvision on CUDA
    python benchmarks/bench_roi_pool.py --impl my_layers.py   # time a learner's own layers (exercise mode)

PyTorch/torchvision are optional; without them only our times are printed. The conv stack and fc6/fc7 benchmarks
are bench_conv_stack.py and bench_fc.py.
"""
from __future__ import annotations

import sys

import numpy as np

import _bench_common as common
from _bench_harness import Case

ROI_MAP = (1, 512, 38, 50)           # conv5_3 of a 600x800 image
IMAGE_HW = (600, 800)
POOLED = (7, 7)
SPATIAL_SCALE = 1.0 / 16
NEEDED = ("roi_pool_forward", "roi_pool_backward")
TARGETS = (("roi_pool fwd+bwd", "2000 RoIs", 1.0),)   # issue 2's target, ours / PyTorch-CPU


def random_rois(rng, n):
    """n RoIs (batch 0) inside a 600x800 image, sides log-uniform in 16..600 px, fractional corners, inclusive."""
    H, W = IMAGE_HW
    bw = np.exp(rng.uniform(np.log(16), np.log(600), n))
    bh = np.exp(rng.uniform(np.log(16), np.log(600), n))
    bw, bh = np.minimum(bw, W), np.minimum(bh, H)
    x1 = rng.uniform(0, W - bw)
    y1 = rng.uniform(0, H - bh)
    rois = np.stack([np.zeros(n), x1, y1, x1 + bw - 1, y1 + bh - 1], axis=1)
    return rois.astype(np.float32)


def roi_cases(env, counts):
    F, xp, torch_mod, tv_roi_pool, tdev, rng = env.F, env.xp, env.torch, env.tv_roi_pool, env.tdev, env.rng
    x_np = rng.standard_normal(ROI_MAP, dtype=np.float32)
    cases = []
    for n in counts:
        rois_np = random_rois(rng, n)
        dy_np = rng.standard_normal((n, ROI_MAP[1]) + POOLED, dtype=np.float32)
        x, rois, dy = xp.asarray(x_np), xp.asarray(rois_np), xp.asarray(dy_np)

        def ours(impl, rois=rois, dy=dy):
            t0 = impl.clock()
            y, cache = F.roi_pool_forward(x, rois, output_size=POOLED, spatial_scale=SPATIAL_SCALE)
            t1 = impl.clock()
            dx = F.roi_pool_backward(dy, cache)
            t2 = impl.clock()
            return {"y": y, "dx": dx}, {"fwd": t1 - t0, "bwd": t2 - t1}

        theirs = None
        if torch_mod is not None and tv_roi_pool is not None:
            tx = torch_mod.from_numpy(x_np).to(tdev).requires_grad_(True)
            trois, tdy = torch_mod.from_numpy(rois_np).to(tdev), torch_mod.from_numpy(dy_np).to(tdev)

            def theirs(impl, tx=tx, trois=trois, tdy=tdy):
                tx.grad = None
                t0 = impl.clock()
                y = tv_roi_pool(tx, trois, output_size=POOLED, spatial_scale=SPATIAL_SCALE)
                t1 = impl.clock()
                y.backward(tdy)
                t2 = impl.clock()
                return {"y": y, "dx": tx.grad}, {"fwd": t1 - t0, "bwd": t2 - t1}

        cases.append(Case("roi_pool", f"{n} RoIs", ours, theirs,
                          rows={" fwd": ["fwd"], " bwd": ["bwd"], " fwd+bwd": ["fwd", "bwd"]}))
    return cases


def main(argv=None):
    p = common.make_parser(__doc__, "smoke run: 128 RoIs only, 1 timed repeat")
    args = common.parse_args(p, argv)
    counts = [128] if args.quick else [128, 2000]
    return common.run(args, title="RoI pooling", script="benchmarks/bench_roi_pool.py", needed=NEEDED,
                      make_cases=lambda env: roi_cases(env, counts), targets=TARGETS)


if __name__ == "__main__":
    sys.exit(main())

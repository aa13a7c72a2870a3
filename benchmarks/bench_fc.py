#!/usr/bin/env python
"""Time minircnn's linear layer on VGG16's fc6 and fc7, and torch.nn.functional.linear when PyTorch is installed.

What is measured (issue 2, item 8): fc6 (25088 -> 4096) and fc7 (4096 -> 4096) forward for 128 rows (one training
minibatch of RoIs) and 2000 rows (one test image's RoIs), He-initialised float32 weights and non-negative
(post-ReLU-like) inputs. Both are one GEMM, so this measures NumPy's BLAS against PyTorch's.

Both libraries run on the same number of threads, interleaved, with a pause before every timed call
(benchmarks/README.md, "Why the benchmark sleeps"; benchmarks/_bench_harness.py). The "check" column is
||ours - torch|| / ||torch|| on the output (~1e-6 from float32 rounding). The time fc6/fc7 save after truncated SVD
is bench_svd.py's.

Usage::

    python benchmarks/bench_fc.py                         # 128 and 2000 rows
    python benchmarks/bench_fc.py --quick                 # smoke run: 128 rows, one timed repeat
    python benchmarks/bench_fc.py --threads 1             # one BLAS thread for both libraries
    python benchmarks/bench_fc.py --impl my_layers.py     # time a learner's own linear_forward (exercise mode)

PyTorch is optional; without it only our times are printed. The conv stack and RoI pooling benchmarks are
bench_conv_stack.py and bench_roi_pool.py.
"""
from __future__ import annotations

import sys

import numpy as np

import _bench_common as common
from _bench_harness import Case

FC_LAYERS = (("fc6", 25088, 4096), ("fc7", 4096, 4096))
NEEDED = ("linear_forward",)


def fc_cases(env, row_counts):
    F, xp, torch_mod, TF, tdev, rng = env.F, env.xp, env.torch, env.TF, env.tdev, env.rng
    cases = []
    for name, fan_in, fan_out in FC_LAYERS:
        w_np = rng.standard_normal((fan_out, fan_in), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b_np = rng.standard_normal(fan_out, dtype=np.float32) * np.float32(0.01)
        w, b = xp.asarray(w_np), xp.asarray(b_np)
        tw = tb = None
        if torch_mod is not None:
            tw, tb = torch_mod.from_numpy(w_np).to(tdev), torch_mod.from_numpy(b_np).to(tdev)
        for rows in row_counts:
            x_np = np.abs(rng.standard_normal((rows, fan_in), dtype=np.float32))   # post-ReLU-like input
            x = xp.asarray(x_np)

            def ours(impl, x=x, w=w, b=b):
                t0 = impl.clock()
                y, _ = F.linear_forward(x, w, b)
                return {"y": y}, {"total": impl.clock() - t0}

            theirs = None
            if torch_mod is not None:
                tx = torch_mod.from_numpy(x_np).to(tdev)

                def theirs(impl, tx=tx, tw=tw, tb=tb):
                    with torch_mod.no_grad():
                        t0 = impl.clock()
                        y = TF.linear(tx, tw, tb)
                        t1 = impl.clock()
                    return {"y": y}, {"total": t1 - t0}

            cases.append(Case(f"{name} fwd ({fan_in}->{fan_out})", f"{rows} rows", ours, theirs))
    return cases


def main(argv=None):
    p = common.make_parser(__doc__, "smoke run: 128 rows only, 1 timed repeat")
    args = common.parse_args(p, argv)
    row_counts = [128] if args.quick else [128, 2000]
    return common.run(args, title="fc6 / fc7", script="benchmarks/bench_fc.py", needed=NEEDED,
                      make_cases=lambda env: fc_cases(env, row_counts))


if __name__ == "__main__":
    sys.exit(main())

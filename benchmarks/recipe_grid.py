#!/usr/bin/env python
"""How the tiny preset's training recipe was chosen: train candidate recipes and tabulate what each learned.

Each candidate is the tiny preset with a few settings changed, trained by :func:`minircnn.training.loop.train` (the code
the command runs) into ``runs/recipe/<data>/<candidate>`` and evaluated on the test split. A finished run is read
back instead of retrained, so the table can be rebuilt and extended. Per candidate the table gives VOC07 mAP (IoU
0.5), mAP at IoU 0.7, COCO-style AP, the lowest per-class AP and each class's, the box loss's mean over the last
100 iterations against the first 100, and the training time (the run's own clock: training only, not proposals
or pretraining; runs that shared the CPU with another are slower).

Usage::

    python benchmarks/recipe_grid.py                               # every candidate on the built-in shapes set
    python benchmarks/recipe_grid.py --only old default           # some of them
    python benchmarks/recipe_grid.py --data data/photos --only old default   # on a VOC-format folder
    python benchmarks/recipe_grid.py --seeds 3 4 5 --only default  # the spread over seeds
    python benchmarks/recipe_grid.py --seeds 3 4 5 --only default rpn_long   # selective search against the RPN

Results are in ``benchmarks/RESULTS.md`` ("The default recipe").
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from minircnn.training.config import configure  # noqa: E402

# the recipe before this study: lr 0.005, dropout 0.5, the classifier's own 4x4 RoI grid, 1200 iterations
OLD = dict(base_lr=0.005, dropout=0.5, roi_size=4, iters=1200, stepsize=900)

#: name -> changes to the tiny preset (lr 0.01, no dropout, 7x7 grid, 3000 iterations, step at 2250)
CANDIDATES = {
    "old": OLD,
    "grid4_2400": dict(roi_size=4, iters=2400, stepsize=1800),
    "grid7_2400": dict(iters=2400, stepsize=1800),
    "scale416_1200": dict(scales=(416,), max_size=693, test_scale=416, test_max_size=693, iters=1200,
                          stepsize=900),
    "default": {},
    # Faster R-CNN: the RPN learns the proposals on the shared feature map (issue 17, benchmarks/bench_rpn.py)
    "rpn": dict(proposals="rpn", iters=3000, stepsize=2250),
    # the RPN trained 1.75x longer, the released end-to-end schedule's proportion (70k against Fast R-CNN's 40k):
    # what `--proposals rpn` trains (minircnn.training.config.configure)
    "rpn_long": dict(proposals="rpn"),
    # selective search on the same longer schedule: the fair partner of rpn_long
    "default_long": {key: getattr(configure("tiny", proposals="rpn"), key) for key in ("iters", "stepsize")},
}


def summarise(out: Path) -> dict:
    """The numbers of a finished run folder (``metrics.json`` and ``log.csv``)."""
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    box = np.array([float(r["loss_bbox"]) for r in rows])
    k = min(100, len(box))
    ap = {name: v for name, v in metrics["ap"].items() if v is not None}
    return {"map": metrics["map"], "map_70": metrics.get("map_70"), "map_coco": metrics.get("map_coco"),
            "without_reg": metrics.get("without_bbox_reg", {}).get("map"), "ap": ap,
            "lowest": min(ap.values()), "box_first": box[:k].mean(), "box_last": box[-k:].mean(),
            "seconds": float(rows[-1]["seconds"]), "iters": len(rows)}


def table(results: dict) -> str:
    """A markdown table, one row per run."""
    lines = ["| candidate | iters | mAP | mAP@0.7 | COCO-style | without box reg. | lowest AP | per-class AP | "
             "box loss first → last 100 | training s |", "|---" * 10 + "|"]
    for name, r in results.items():
        per_class = ", ".join(f"{k} {v:.2f}" for k, v in r["ap"].items())
        change = 100 * (r["box_last"] / r["box_first"] - 1)
        lines.append(f"| {name} | {r['iters']} | {r['map']:.3f} | {r['map_70']:.3f} | {r['map_coco']:.3f} | "
                     f"{r['without_reg']:.3f} | {r['lowest']:.2f} | {per_class} | {r['box_first']:.3f} → "
                     f"{r['box_last']:.3f} ({change:+.0f}%) | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    from minircnn.training.loop import train
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="a VOC-format folder (default: the built-in shapes set)")
    p.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), help="candidates to run (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="train each candidate with these seeds")
    p.add_argument("--runs", default=str(REPO / "runs" / "recipe"), help="where the runs go")
    args = p.parse_args(argv)
    results = {}
    data_name = Path(args.data).name if args.data else "shapes"
    for name in args.only or CANDIDATES:
        for seed in args.seeds or [None]:
            changes = dict(CANDIDATES[name], **({} if seed is None else {"seed": seed}))
            config = configure("tiny", data=args.data, **changes)
            tag = name if seed is None else f"{name}_seed{seed}"
            out = Path(args.runs) / data_name / tag
            finished = (out / "metrics.json").is_file() and (out / "config.json").is_file() and \
                json.loads((out / "config.json").read_text()) == json.loads(config.to_json())
            if not finished:
                print(f"training {tag} into {out}", file=sys.stderr)
                train(config, out, progress=False)
            results[tag] = summarise(out)
    print(table(results))
    if args.seeds and len(args.seeds) > 1:
        maps = [r["map"] for r in results.values()]
        print(f"\nmAP over seeds {args.seeds}: mean {np.mean(maps):.3f}, min {min(maps):.3f}, max {max(maps):.3f}, "
              f"spread (max - min) {max(maps) - min(maps):.3f}")


if __name__ == "__main__":
    main()

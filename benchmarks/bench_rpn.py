#!/usr/bin/env python
"""Proposals learned by a Region Proposal Network against selective search (Faster R-CNN; docs/reference.md §16).

Compares detectors trained with ``python -m minircnn.train --proposals rpn`` against detectors trained with selective
search (``ss-fast``, the default), on the test split of the dataset they were trained on:

1. **recall** at IoU 0.5 and 0.7 against the number of proposals per image, the best-ranked N of each method (the
   RPN's by objectness after NMS 0.7; selective search's by its randomised hierarchical ranking), first pair only;
2. **time per image on one core**, median over ``--time-images`` test images, the two methods interleaved image by
   image: the proposal stage (selective search; the RPN's head, decoding and NMS), the network, and the whole image
   (image in, scored boxes out);
3. **mAP** (VOC07, IoU 0.5) of each detector with its own proposals (the RPN's 300, selective search's 2000), judged
   by :func:`minircnn.lab.experiments.paired_map_difference`: a paired bootstrap over the test images, with the
   seed-to-seed spread when several runs per side are given (pair them by seed);
4. **where a difference comes from**: each RPN-trained detector tested with selective search's boxes instead of its
   own, against the selective-search detectors (same boxes, so only the detectors differ). If these do not differ
   while (3) does, the difference lies in the proposals, not in the detector joint training made.

Usage::

    python -m minircnn.train --out runs/tiny && python -m minircnn.train --proposals rpn --out runs/rpn
    python benchmarks/bench_rpn.py --rpn runs/rpn/checkpoint.npz --ss runs/tiny/checkpoint.npz
    python benchmarks/recipe_grid.py --seeds 3 4 5 --only default rpn_long   # three seeds of each, then:
    python benchmarks/bench_rpn.py --rpn runs/recipe/shapes/rpn_long_seed{3,4,5}/checkpoint.npz \\
                                   --ss runs/recipe/shapes/default_seed{3,4,5}/checkpoint.npz

(``rpn_long`` is what ``--proposals rpn`` trains: 1.75x the preset's iterations; ``rpn`` is the same at the
preset's 3000.)

Timings pin BLAS to one thread (``minircnn.threads``); unset ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` for a
measurement that matches a user's machine. Results are in ``benchmarks/RESULTS.md`` ("Region proposals").
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from minircnn.data import VOCDataset, ensure_shapes_dataset  # noqa: E402
from minircnn.data.proposals import proposal_recall, proposals_for_split, propose  # noqa: E402
from minircnn.inference import detect_proposals, detect_split  # noqa: E402
from minircnn.lab.experiments import difference_verdict, paired_map_difference, split_rpn_proposals  # noqa: E402
from minircnn.rpn import TEST_PROPOSALS  # noqa: E402
from minircnn.threads import set_blas_threads  # noqa: E402
from minircnn.training.checkpoint import load_checkpoint  # noqa: E402

COUNTS = (10, 20, 50, 100, 300, 1000, 2000)


def recall_table(rpn_boxes, ss_boxes, dataset, counts):
    """Markdown rows: recall at IoU 0.5 / 0.7 of each method's best ``n`` proposals per image, for each n."""
    notes = [dataset.annotation(i) for i in range(len(dataset))]
    gt, ignore = [n.boxes for n in notes], [n.difficult for n in notes]
    lines = ["| proposals per image | RPN recall@0.5 | RPN recall@0.7 | RPN boxes/img | selective search "
             "recall@0.5 | selective search recall@0.7 | selective search boxes/img |", "|---" * 7 + "|"]
    for n in counts:
        cells = []
        for boxes in (rpn_boxes, ss_boxes):
            r = proposal_recall([b[:n] for b in boxes], gt, (0.5, 0.7), ignore)
            cells += [f"{r['recall'][0.5]:.3f}", f"{r['recall'][0.7]:.3f}", f"{r['boxes_per_image']:.0f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_images(rpn, ss, dataset, n_images):
    """Median seconds per image, one core, the two detectors interleaved: {method: {stage: seconds}}."""
    times = {"RPN (300)": {"proposals": [], "network": [], "whole image": []},
             "selective search (2000)": {"proposals": [], "network": [], "whole image": []}}
    for i in range(min(n_images, len(dataset))):
        image = dataset.load_image(i)
        for name, ckpt in (("RPN (300)", rpn), ("selective search (2000)", ss)):
            config = ckpt.config
            tic = time.perf_counter()
            given = None if name.startswith("RPN") else propose(image, "ss-fast", config.max_proposals, seed=(0, i))
            made = time.perf_counter() - tic
            _, _, _, rpn_seconds = detect_proposals(ckpt.model, image, given, ckpt.bbox_means, ckpt.bbox_stds,
                                                    ckpt.preprocessing, config.test_scale, config.test_max_size)
            whole = time.perf_counter() - tic
            proposals = made + rpn_seconds
            for stage, seconds in (("proposals", proposals), ("network", whole - proposals), ("whole image", whole)):
                times[name][stage].append(seconds)
    return {name: {stage: float(np.median(v)) for stage, v in stages.items()} for name, stages in times.items()}


def timing_table(times):
    lines = ["| method | proposals s/img | network s/img | whole image s/img |", "|---|---|---|---|"]
    for name, t in times.items():
        lines.append(f"| {name} | {t['proposals']:.4f} | {t['network']:.4f} | {t['whole image']:.4f} |")
    return "\n".join(lines)


def map_table(rpn_found, rpn_ss_found, ss_found, dataset, rpn_paths, ss_paths, samples):
    """The mAP table of (3) and (4) and the two verdicts."""
    result = paired_map_difference(dataset, rpn_found, ss_found, samples=samples)
    swapped = paired_map_difference(dataset, rpn_ss_found, ss_found, samples=samples)
    lines = ["| run | RPN checkpoint | mAP, RPN (300 proposals) | same detector, selective search's boxes | "
             "selective search checkpoint | mAP, selective search (2000) |", "|---|---|---|---|---|---|"]
    for k in range(max(len(rpn_paths), len(ss_paths))):
        cells = [f"`{rpn_paths[k]}`", f"{result['first'][k]:.3f}", f"{swapped['first'][k]:.3f}"] \
            if k < len(rpn_paths) else ["", "", ""]
        cells += [f"`{ss_paths[k]}`", f"{result['second'][k]:.3f}"] if k < len(ss_paths) else ["", ""]
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    lines.append(f"| mean | | {np.mean(result['first']):.3f} | {np.mean(swapped['first']):.3f} | | "
                 f"{np.mean(result['second']):.3f} |")
    verdicts = [difference_verdict(result, "The RPN detector", "the selective-search detector"),
                "With selective search's boxes for both: "
                + difference_verdict(swapped, "the RPN-trained detector", "the selective-search detector")]
    return "\n".join(lines), " ".join(verdicts), result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rpn", nargs="+", required=True, help="checkpoint(s) trained with --proposals rpn")
    p.add_argument("--ss", nargs="+", required=True, help="checkpoint(s) trained with selective search (ss-fast)")
    p.add_argument("--counts", default=",".join(map(str, COUNTS)), help="numbers of proposals for the recall rows")
    p.add_argument("--time-images", type=int, default=30, help="test images timed (default 30)")
    p.add_argument("--samples", type=int, default=200, help="bootstrap resamples of the test images (default 200)")
    p.add_argument("--output", default=None, help="also write the report to this markdown file")
    args = p.parse_args(argv)
    set_blas_threads(1)
    counts = tuple(int(c) for c in args.counts.split(","))
    rpns, sss = [load_checkpoint(c) for c in args.rpn], [load_checkpoint(c) for c in args.ss]
    for path, ckpt in zip(args.rpn, rpns):
        if ckpt.config.proposals != "rpn":
            raise SystemExit(f"--rpn: {path} was trained with {ckpt.config.proposals!r} proposals, not rpn")
    for path, ckpt in zip(args.ss, sss):
        if ckpt.config.proposals != "ss-fast":
            raise SystemExit(f"--ss: {path} was trained with {ckpt.config.proposals!r} proposals, not ss-fast")
    dataset = VOCDataset(rpns[0].config.data or ensure_shapes_dataset(), rpns[0].config.test_split)
    print(f"test split: {dataset.root} ({dataset.split}, {len(dataset)} images)", file=sys.stderr)

    ss_boxes = proposals_for_split(dataset, "ss-fast", max_boxes=sss[0].config.max_proposals)
    rpn_boxes, _, _ = split_rpn_proposals(rpns[0], dataset, TEST_PROPOSALS.replace(post_nms_top_n=max(counts)))
    recall = recall_table(rpn_boxes, ss_boxes, dataset, counts)
    times = time_images(rpns[0], sss[0], dataset, args.time_images)
    speedup = times["selective search (2000)"]["whole image"] / times["RPN (300)"]["whole image"]
    rpn_found = [detect_split(c.model, dataset, [None] * len(dataset), c.bbox_means, c.bbox_stds, c.preprocessing,
                              c.config) for c in rpns]
    ss_found = [detect_split(c.model, dataset, ss_boxes, c.bbox_means, c.bbox_stds, c.preprocessing, c.config)
                for c in sss]
    rpn_ss_found = [detect_split(c.model, dataset, ss_boxes, c.bbox_means, c.bbox_stds, c.preprocessing, c.config)
                    for c in rpns]
    maps, verdict, _ = map_table(rpn_found, rpn_ss_found, ss_found, dataset, args.rpn, args.ss, args.samples)

    report = "\n\n".join([
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; test split {dataset.split} of "
        f"`{dataset.root}` ({len(dataset)} images); recall and timing from the first pair of checkpoints.",
        "Recall against the number of proposals (difficult objects ignored):", recall,
        f"Seconds per image, one core, medians over {min(args.time_images, len(dataset))} test images:",
        timing_table(times) + f"\n\nA whole image is {speedup:.1f}x faster with the RPN.",
        "Detector mAP (VOC07, IoU 0.5), each with its own proposals, and the RPN-trained detectors with selective "
        "search's boxes:", maps, verdict])
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


if __name__ == "__main__":
    main()

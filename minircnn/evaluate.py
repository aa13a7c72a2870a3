"""Evaluate a trained detector on a dataset split: ``python -m minircnn.evaluate --checkpoint CKPT``.

Runs the checkpoint's proposals and the detector on every image of the split (test time:
:mod:`minircnn.inference.im_detect`; the two protocols: :mod:`minircnn.inference.protocols`), scores the detections
(:mod:`minircnn.evaluation`), writes ``metrics.json`` (``map``, ``ap`` per class, ``map_70``, ``map_coco``, the
test settings, ...) and ``pr_curves.png`` into ``--out``, and prints a per-class AP table with mAP at IoU 0.5 and 0.7
and COCO-style AP, with and without test-time box regression. ``--svd fc6=R6,fc7=R7`` compresses fc6/fc7 by
truncated SVD first (:mod:`minircnn.inference.svd`, paper Sec. 3.1).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .cli import add_test_arguments, load_for_test, run_command
from .data import VOCDataset, ensure_shapes_dataset
from .evaluation import format_table, score_both, score_detections, write_results
from .inference import detect_images_both, proposal_seconds_per_image, proposals_for_test


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minircnn.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by minircnn.train")
    parser.add_argument("--data", default=None, help="VOC-format folder (default: the one the checkpoint was "
                                                     "trained on; the built-in shapes dataset if none)")
    parser.add_argument("--split", default=None, help="image set to evaluate (default: the training config's "
                                                      "test split, 'test')")
    parser.add_argument("--out", default=None, help="folder for metrics.json and pr_curves.png (default: the "
                                                    "checkpoint's folder)")
    add_test_arguments(parser)
    return parser.parse_args(argv)


@run_command
def main(argv=None):
    args = parse_args(argv)
    ckpt, config, model = load_for_test(args)
    root = args.data or config.data or ensure_shapes_dataset()
    dataset = VOCDataset(root, args.split or config.test_split)
    if tuple(dataset.class_names) != ckpt.class_names:
        raise ValueError(f"{root}: its classes {list(dataset.class_names)} differ from the checkpoint's "
                         f"{list(ckpt.class_names)}")
    proposals = proposals_for_test(dataset, config)
    start = time.perf_counter()
    settings = (False,) if args.no_bbox_reg else (True, False)
    timing = {}
    found = detect_images_both(model, dataset.load_image, proposals, ckpt.bbox_means, ckpt.bbox_stds,
                               ckpt.preprocessing, config, settings, desc=f"detecting on {dataset.split}",
                               timing=timing)
    seconds = time.perf_counter() - start
    if args.no_bbox_reg:
        metrics, curves = score_detections(dataset, *found[False], ckpt.class_names)
    else:
        metrics, curves = score_both(dataset, found, ckpt.class_names)
    metrics.update(checkpoint=str(args.checkpoint), split=dataset.split, iteration=ckpt.iteration,
                   seconds_per_image=seconds / max(len(dataset), 1), protocol=config.protocol,
                   proposals=config.proposals,
                   proposal_seconds_per_image=proposal_seconds_per_image(dataset, config, timing),
                   test_scales=list(config.test_scales or (config.test_scale,)), test_max_size=config.test_max_size,
                   bbox_reg=not args.no_bbox_reg, svd=args.svd or {})
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    write_results(out, metrics, curves, ckpt.class_names)
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'pr_curves.png'}")
    return metrics


if __name__ == "__main__":
    main()

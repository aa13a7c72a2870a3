"""Detect objects in your own images: ``python -m minircnn.detect --checkpoint CKPT IMAGE... [--out DIR]``.

For each image: proposals by the checkpoint's method (selective search "fast" by default; a detector trained with
``--proposals rpn`` proposes with its own RPN), then the test protocol
of :mod:`minircnn.inference.im_detect` (by default: score > 0.05, class-specific regression, NMS 0.3, at most 100;
the same ``--protocol``, ``--test-scales``, ``--no-bbox-reg`` and ``--svd`` flags as ``evaluate``; ``--protocol
paper`` treats the images given as the set). Detections scoring at least ``--show`` (0.5) are listed on stdout as
``image class score x1 y1 x2 y2`` (0-based inclusive pixels) and drawn into ``DIR/<image name>_detections.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .cli import add_test_arguments, load_for_test, run_command
from .data.proposals import propose
from .data.voc import read_image
from .inference import detect_images


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minircnn.detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by minircnn.train")
    parser.add_argument("--out", default="detections", help="folder for the drawn images")
    parser.add_argument("--show", type=float, default=0.5, help="list and draw detections scoring at least this")
    add_test_arguments(parser)
    return parser.parse_args(argv)


@run_command
def main(argv=None):
    args = parse_args(argv)
    from .visualize import save_detections
    ckpt, config, model = load_for_test(args)
    images = [read_image(path) for path in args.images]          # a file that is not an image fails here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proposals = [None if config.proposals == "rpn" else propose(image, config.proposals, config.max_proposals)
                 for image in images]
    found = detect_images(model, images.__getitem__, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                          config, bbox_reg=not args.no_bbox_reg, progress=False)
    results = {}
    for path, image, boxes, labels, scores in zip(args.images, images, *found):
        shown = scores >= args.show
        results[path] = (boxes[shown], labels[shown], scores[shown])
        for b, k, s in zip(*results[path]):
            print(f"{path} {ckpt.class_names[k - 1]} {s:.3f} " + " ".join(f"{v:.1f}" for v in b))
        save_detections(image, *results[path], ckpt.class_names, out / f"{Path(path).stem}_detections.png")
    print(f"{sum(len(r[0]) for r in results.values())} detections with score >= {args.show} drawn into {out}")
    return results


if __name__ == "__main__":
    main()

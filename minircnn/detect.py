"""Detect objects in your own images: ``python -m minircnn.detect --checkpoint CKPT IMAGE... [--out DIR]``.

For each image: selective search proposals (the checkpoint's method), then the test protocol of
:mod:`minircnn.evaluate` (by default: score > 0.05, class-specific regression, NMS 0.3, at most 100; the same
``--protocol``, ``--test-scales``, ``--no-bbox-reg`` and ``--svd`` flags; ``--protocol paper`` treats the images
given as the set). Detections scoring at least ``--show`` (0.5) are listed on stdout as
``image class score x1 y1 x2 y2`` (0-based inclusive pixels) and drawn into ``DIR/<image name>_detections.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from .config import set_blas_threads
from .data.proposals import dense_boxes
from .data.selective_search import selective_search
from .evaluate import add_test_arguments, apply_test_arguments, detect_images


def load_rgb(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file (grey and RGBA images are converted)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def propose(image, method, max_boxes):
    """One image's proposals with the method the detector was trained with."""
    if method == "dense":
        return dense_boxes(image.shape)
    return selective_search(image, mode={"ss-fast": "fast", "ss-quality": "quality"}[method], max_boxes=max_boxes)


def main(argv=None):
    from .checkpoint import load_checkpoint
    parser = argparse.ArgumentParser(prog="python -m minircnn.detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by minircnn.train")
    parser.add_argument("--out", default="detections", help="folder for the drawn images")
    parser.add_argument("--show", type=float, default=0.5, help="list and draw detections scoring at least this")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the network runs")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: one per core; default 1)")
    add_test_arguments(parser)
    args = parser.parse_args(argv)
    set_blas_threads(args.threads)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .visualize import draw_boxes
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:             # missing file, not a checkpoint, parameters that do not fit
        raise SystemExit(f"error: {e}") from None
    config, model = apply_test_arguments(args, ckpt)
    if args.device == "gpu":
        model.to("gpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [load_rgb(path) for path in args.images]
    proposals = [propose(image, config.proposals, config.max_proposals) for image in images]
    found = detect_images(model, images.__getitem__, proposals, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                          config, bbox_reg=not args.no_bbox_reg, progress=False)
    results = {}
    for path, image, boxes, labels, scores in zip(args.images, images, *found):
        shown = scores >= args.show
        results[path] = (boxes[shown], labels[shown], scores[shown])
        for b, k, s in zip(*results[path]):
            print(f"{path} {ckpt.class_names[k - 1]} {s:.3f} " + " ".join(f"{v:.1f}" for v in b))
        fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
        draw_boxes(image, *results[path], class_names=ckpt.class_names, ax=ax)
        ax.set_axis_off()
        fig.savefig(out / f"{Path(path).stem}_detections.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    print(f"{sum(len(r[0]) for r in results.values())} detections with score >= {args.show} drawn into {out}")
    return results


if __name__ == "__main__":
    main()

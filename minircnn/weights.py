"""ImageNet weights for the backbone: convert torchvision's or Caffe's VGG16 file into one checked ``.npz``.

The paper starts every detector from an ImageNet classifier (Sec. 2.2). This command turns the two public releases
of those weights (read and checked by :mod:`minircnn.models.imagenet_weights`) into the ``.npz`` that
``python -m minircnn.train --weights`` reads::

    python -m minircnn.weights convert vgg16-397923af.pth vgg16_torchvision.npz --arch vgg16
    python -m minircnn.weights convert VGG16.v2.caffemodel vgg16_caffe.npz --arch vgg16
    python -m minircnn.weights info vgg16_torchvision.npz
"""
from __future__ import annotations

import argparse
import sys

from .cli import run_command
from .models.backbones import BACKBONES
from .io import read_npz
from .models.imagenet_weights import FORMATS, METADATA_KEYS, WeightsError, convert, verify_checksum


def info(path) -> str:
    """A printable summary of a converted file: arch, source, preprocessing, parameter table, checksum status."""
    arrays = read_npz(path)
    params = {k: v for k, v in arrays.items() if k not in METADATA_KEYS}
    try:
        verify_checksum(arrays, str(path))
        status = f"ok (sha256 {str(arrays['checksum'])[:16]}...)"
    except WeightsError as e:
        status = f"FAILED: {e}"
    meta = {k: str(arrays[k]) if k in arrays else "(absent)" for k in METADATA_KEYS}
    width = max([len(n) for n in params] + [9])
    lines = [f"file:          {path}", f"arch:          {meta['arch']}", f"source:        {meta['source']}",
             f"preprocessing: {meta['preprocessing']}", f"checksum:      {status}", "",
             f"{'parameter':<{width}}  {'shape':<20} {'dtype':<8} {'values':>12}"]
    lines += [f"{n:<{width}}  {str(tuple(a.shape)):<20} {str(a.dtype):<8} {a.size:>12,}" for n, a in params.items()]
    lines.append(f"{'total':<{width}}  {'':<20} {'':<8} {sum(a.size for a in params.values()):>12,}")
    return "\n".join(lines)


@run_command
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minircnn.weights", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n" + __doc__.split("::\n\n")[1].split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert a torchvision .pth or Caffe .caffemodel into a checked .npz",
                       description="Read SRC (without PyTorch or Caffe), check every name and shape against "
                                   "--arch, and write OUT atomically: parameters under our names, the "
                                   "preprocessing the weights expect, the source and a checksum. Nothing is "
                                   "written if a check fails.")
    c.add_argument("src", metavar="SRC", help="the downloaded weights: torchvision state dict (.pth, zip or legacy "
                                              "format) or Caffe .caffemodel")
    c.add_argument("out", metavar="OUT.npz", help="the file to write; give it to `python -m minircnn.train "
                                                  "--weights OUT.npz`")
    c.add_argument("--arch", default="vgg16", choices=sorted(BACKBONES),
                   help="backbone the weights must fit (names and shapes come from its spec; default vgg16)")
    c.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                   help="input format; auto: a zip archive or .pth/.pt name is torchvision, .caffemodel is Caffe")
    i = sub.add_parser("info", help="show a converted file: arch, source, preprocessing, parameters, checksum",
                       description="Print a converted file's arch, source, preprocessing, a table of its "
                                   "parameters and whether its checksum holds (exit status 1 if not).")
    i.add_argument("file", metavar="FILE.npz", help="a file written by `convert`")
    args = parser.parse_args(argv)
    if args.command == "info":
        text = info(args.file)
        print(text)
        return 1 if "checksum:      FAILED" in text else 0
    params = convert(args.src, args.out, arch=args.arch, fmt=args.format)
    total = sum(a.size for a in params.values())
    print(f"wrote {args.out}: {len(params)} parameters ({total:,} values) of {args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

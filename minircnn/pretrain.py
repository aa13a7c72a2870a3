"""Pretrain the tiny backbone as a classifier on the generated ImageNet stand-in: ``python -m minircnn.pretrain``.

``python -m minircnn.train`` does this by itself on first use; run it by hand to pretrain with other settings
(the library side is :mod:`minircnn.training.pretrain`)::

    python -m minircnn.pretrain [--iters N] [--batch-size B] [--seed S] [--out FILE] [--threads T]
"""
from __future__ import annotations

import argparse
import time

from .cli import add_threads_argument, run_command
from .threads import set_blas_threads
from .training.pretrain import PretrainConfig, pretrain


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minircnn.pretrain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = PretrainConfig()
    parser.add_argument("--iters", type=int, default=d.iters, help=f"SGD iterations (default {d.iters})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per step ({d.batch_size})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the crops and the initial weights")
    parser.add_argument("--out", default=None, help="output .npz (default: data/pretrained/tiny_<hash>.npz, "
                                                    "the file train looks for)")
    add_threads_argument(parser)
    return parser.parse_args(argv)


@run_command
def main(argv=None):
    args = parse_args(argv)
    set_blas_threads(args.threads)
    config = PretrainConfig(iters=args.iters, batch_size=args.batch_size, seed=args.seed)
    start = time.perf_counter()
    path = pretrain(config, args.out)
    print(f"done in {time.perf_counter() - start:.0f} s: {path}")
    return path


if __name__ == "__main__":
    main()

"""Train a Fast R-CNN detector: ``python -m minircnn.train`` (tiny preset on the built-in dataset, then evaluate).

This command parses the flags into a :class:`~minircnn.training.config.TrainConfig` (a preset with the flags'
overrides) and calls :func:`minircnn.training.loop.train`, whose docstring describes the run stage by stage.
With ``--resume`` it continues a killed run from its checkpoint, with the checkpoint's config.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .cli import add_device_argument, parse_sizes, run_command
from .inference.protocols import PROTOCOLS
from .training.checkpoint import load_config
from .training.config import PRESETS, configure, get_preset
from .training.loop import train

# argparse flag -> config key, for the flags that override the preset
OVERRIDES = {"data": "data", "train_split": "train_split", "test_split": "test_split", "iters": "iters",
             "seed": "seed", "checkpoint_every": "checkpoint_every", "weights": "weights", "scale": None,
             "lr": "base_lr", "stepsize": "stepsize", "proposals": "proposals", "threads": "blas_threads",
             "frozen": "frozen", "bbox_loss_weight": "bbox_loss_weight", "train_images": "train_images",
             "scales": "scales", "test_scales": "test_scales", "max_size": None, "protocol": "protocol",
             "dropout": "dropout", "roi_size": "roi_size"}


def parse_args(argv=None):
    tiny, vgg = get_preset("tiny"), get_preset("vgg16_voc07")

    def preset_default(key):
        return f" (tiny: {getattr(tiny, key)}; vgg16_voc07: {getattr(vgg, key)})"

    p = argparse.ArgumentParser(
        prog="python -m minircnn.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes into --out: checkpoint.npz, config.json, log.csv (iteration, lr, loss_cls, loss_bbox, "
               "seconds),\nloss.png, and after evaluation metrics.json, pr_curves.png and detections.png.")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="starting configuration: 'tiny' (CPU minutes, built-in dataset) or 'vgg16_voc07' (the "
                        "paper's settings: s=600/max 1000, N=2, R=128, lr 0.001 -> 0.0001 at 30k, 40k iterations); "
                        "default tiny")
    p.add_argument("--data", help="a VOC-format folder (JPEGImages, Annotations, ImageSets/Main, classes.txt); "
                                  "default: the built-in shapes dataset, generated on first use")
    p.add_argument("--train-split", help="image set to train on (preset: trainval)")
    p.add_argument("--test-split", help="image set to evaluate on (preset: test)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<preset>)")
    p.add_argument("--iters", type=int, help="SGD iterations in total (with --resume: continue up to this many)"
                   + preset_default("iters"))
    p.add_argument("--seed", type=int, help="seed of every random draw (initial heads, image order, RoIs, dropout)"
                   + preset_default("seed"))
    add_device_argument(p)
    p.add_argument("--checkpoint-every", type=int, help="write checkpoint.npz every K iterations (and at the end)"
                   + preset_default("checkpoint_every"))
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation on the test split after training")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz with its config (--iters may raise the total; other "
                        "flags may be repeated with the checkpoint's values)")
    p.add_argument("--weights", help="initial weights: 'pretrained' (tiny backbone pretrained by minircnn.pretrain, "
                                     "run on first use), 'none' (from scratch), or an .npz of parameters"
                        + preset_default("weights"))
    p.add_argument("--scale", type=int, help="shorter image side for training and testing (longer side capped at "
                                             "5/3 of it); e.g. 64 to try vgg16_voc07 quickly")
    p.add_argument("--scales", type=parse_sizes, metavar="S1,S2,...",
                   help="multi-scale training: each image of a step gets one of these shorter sides at random, e.g. "
                        "480,576,688,864,1200 with --max-size 2000 (the paper's; docs/reference.md §4)"
                        + preset_default("scales"))
    p.add_argument("--test-scales", type=parse_sizes, metavar="S1,S2,...",
                   help="multi-scale test: an image pyramid of these shorter sides, each proposal pooled from the "
                        "level where its area is closest to 224x224 (default: single scale, test_scale)")
    p.add_argument("--max-size", type=int, help="cap on the longer image side, training and test"
                   + preset_default("max_size"))
    p.add_argument("--protocol", choices=PROTOCOLS, help="test protocol of the evaluation: 'simple' (per image: "
                   "score > 0.05, NMS, 100 best) or 'paper' (FR:test.py: ~40 per class per image over the set, then "
                   "NMS; see minircnn.inference.im_detect)" + preset_default("protocol"))
    p.add_argument("--lr", type=float, help="base learning rate" + preset_default("base_lr"))
    p.add_argument("--stepsize", type=int, help="multiply the learning rate by 0.1 every this many iterations"
                   + preset_default("stepsize"))
    p.add_argument("--proposals", metavar="METHOD|FILES",
                   help="region proposals: ss-fast, ss-quality (selective search), dense (sliding windows), rpn (a "
                        "Region Proposal Network trained with the detector on the same convs: Faster R-CNN; without --iters "
                        "and --stepsize it trains 1.75x the preset's iterations), or "
                        "precomputed files: a path with {split} (e.g. selective_search_data/voc_2007_{split}.mat, the "
                        "original release's), or a folder of <prefix>_<split>.mat/.npz files"
                        + preset_default("proposals"))
    p.add_argument("--threads", type=int, help="BLAS threads (0: one per core; presets: 1, fastest on a shared "
                                               "2-core machine; see minircnn.threads)")
    p.add_argument("--frozen", type=_names, help="comma-separated layers to keep fixed instead of the backbone's own "
                                                 "(e.g. conv1,conv2,conv3,conv4,conv5; '' for none)")
    p.add_argument("--bbox-loss-weight", type=float, help="lambda of the multi-task loss (0: classification only)"
                   + preset_default("bbox_loss_weight"))
    p.add_argument("--dropout", type=float, help="drop probability after relu6 and relu7 (the paper's models: 0.5)"
                   + preset_default("dropout"))
    p.add_argument("--roi-size", type=int, help="RoI pool grid; for a detector made from a classifier, fc6 is "
                   "resized from the classifier's grid (default: the classifier's)" + preset_default("roi_size"))
    p.add_argument("--train-images", type=int, help="train on a random subset of this many images (0: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _names(text):
    """``"conv1,conv2"`` -> ``("conv1", "conv2")``; ``""`` -> ``()``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def overrides(args) -> dict:
    """{config key: value} of the flags that were given, as they change the preset.

    Raises:
        ValueError: ``--scale`` and ``--scales`` together.
    """
    changes = {key: getattr(args, flag) for flag, key in OVERRIDES.items()
               if key is not None and getattr(args, flag) is not None}
    if args.scale is not None:
        if args.scales is not None:
            raise ValueError("give --scale (one training and test scale) or --scales (training scales), not both")
        changes.update(scales=(args.scale,), test_scale=args.scale, max_size=args.scale * 5 // 3,
                       test_max_size=args.scale * 5 // 3)
    if args.max_size is not None:
        changes.update(max_size=args.max_size, test_max_size=args.max_size)
    return changes


def resolve_config(args):
    """The preset with the command line's overrides (only flags that were given; ``--proposals rpn`` without
    ``--iters``/``--stepsize`` also lengthens the schedule, :func:`~minircnn.training.config.configure`)."""
    return configure(args.preset or "tiny", **overrides(args))


def check_resume_flags(args, ckpt_config, path) -> None:
    """A resumed run keeps its checkpoint's config: flags repeated with the checkpoint's values are accepted, and
    ``--iters`` may raise the total; any other difference is refused, naming the flag and both values.

    Raises:
        ValueError: a flag differs from the checkpoint's config.
    """
    differ = []
    given = [flag for flag in OVERRIDES if flag != "iters" and getattr(args, flag) is not None]
    for flag in given + (["preset"] if args.preset is not None else []):
        alone = argparse.Namespace(**{f: None for f in OVERRIDES})
        setattr(alone, flag, getattr(args, flag))
        asked = {"preset": args.preset} if flag == "preset" else overrides(alone)
        resolved = ckpt_config.replace(**asked)        # the values as the config normalises them (tuples, ...)
        keys = [key for key in asked if getattr(resolved, key) != getattr(ckpt_config, key)]
        if keys:
            held = ", ".join(f"{key}={_show(getattr(ckpt_config, key))}" for key in keys)
            differ.append(f"--{flag.replace('_', '-')} {_show(getattr(args, flag))} (the checkpoint has {held})")
    if differ:
        raise ValueError(f"--resume continues with the config of {path}; only --iters may change it, but "
                         + "; ".join(differ))


def _show(value):
    """A config value as a user wrote it (tuples as comma lists)."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


@run_command
def main(argv=None):
    args = parse_args(argv)
    if args.resume:
        out = Path(args.out or f"runs/{args.preset or 'tiny'}")
        path = out / "checkpoint.npz"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: there is no checkpoint at {path}")
        check_resume_flags(args, load_config(path), path)
        config = None
    else:
        config = resolve_config(args)
        out = Path(args.out or f"runs/{config.preset}")
    return train(config, out, device=args.device, resume=args.resume, evaluate=not args.no_eval,
                 progress=not args.quiet, resume_iters=args.iters)


if __name__ == "__main__":
    main()

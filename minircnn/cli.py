"""What the commands share: the device, thread and test-time flags, and how a failure is reported.

The library raises exceptions that name the file, field or argument at fault (``ValueError``,
``FileNotFoundError``, :class:`~minircnn.backend.DeviceUnavailableError`, ...). Only the commands (``python -m
minircnn.train|evaluate|detect|pretrain|weights``) turn them into one line on stderr and exit status 1
(:func:`run_command`), so a user sees ``error: runs/x/config.json is not a minircnn checkpoint ...`` rather than a
traceback, and code that calls the library can catch the exception.
"""
from __future__ import annotations

import argparse
import functools
import sys

from .backend import DEVICES, ENV_VAR, DeviceUnavailableError, get_device
from .inference.protocols import PROTOCOLS

#: exceptions a user's input can cause; a command reports them in one line (anything else is a bug: a traceback)
USER_ERRORS = (ValueError, OSError, DeviceUnavailableError, FloatingPointError)


def run_command(main):
    """Decorate a command's ``main(argv=None)``: a :data:`USER_ERRORS` exception becomes ``SystemExit("error:
    <message>")``, which Python prints on stderr as one line before exiting with status 1; the return value is
    passed through. Ctrl-C ends the command with "interrupted" and status 130 instead of a traceback."""
    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except USER_ERRORS as e:
            message = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
            raise SystemExit(f"error: {message}") from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
    return wrapper


def add_device_argument(parser) -> None:
    """``--device cpu|gpu``, by default ``$MINIRCNN_DEVICE`` (then ``cpu``); check it with :func:`device_of`."""
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help=f"where the network runs (default: ${ENV_VAR}, else cpu); asking for the GPU where "
                             "there is none is an error")


def device_of(args) -> str:
    """The device the command runs on: ``--device``, else ``$MINIRCNN_DEVICE``, else ``cpu``.

    Raises:
        ValueError: ``$MINIRCNN_DEVICE`` is neither cpu nor gpu.
        DeviceUnavailableError: the GPU was asked for and CuPy or a CUDA device is missing.
    """
    return get_device(args.device)


def add_threads_argument(parser, default: int = 1) -> None:
    """``--threads N``: BLAS threads (:mod:`minircnn.threads`)."""
    parser.add_argument("--threads", type=int, default=default,
                        help=f"BLAS threads (0: one per core; default {default}, see minircnn.threads)")


def parse_sizes(text: str) -> tuple:
    """``"480,576,688"`` -> ``(480, 576, 688)`` (an argparse ``type``: errors name the flag)."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, such as "
                                         f"480,576,688,864,1200, got {text!r}")
    return sizes


def parse_ranks(text: str) -> dict:
    """``"fc6=1024,fc7=256"`` -> ``{"fc6": 1024, "fc7": 256}`` (an argparse ``type``: errors name the flag)."""
    ranks = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected LAYER=RANK[,LAYER=RANK...] such as fc6=1024,fc7=256, "
                                             f"got {text!r}")
        if name.strip() in ranks:
            raise argparse.ArgumentTypeError(f"{name.strip()} is given twice in {text!r}")
        ranks[name.strip()] = int(value)
    return ranks


def add_test_arguments(parser) -> None:
    """The flags shared by ``evaluate`` and ``detect``: ``--device``, ``--threads`` and the test-time settings."""
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="'simple': per image, score > 0.05, NMS 0.3, the 100 best; 'paper': the original "
                             "FR:test.py, 100 per class per image before NMS, an adaptive per-class threshold "
                             "keeping ~40 detections per class per image over the whole set, NMS 0.3, no cap "
                             "(default: the checkpoint's config, 'simple')")
    parser.add_argument("--test-scales", type=parse_sizes, default=None, metavar="S1,S2,...",
                        help="multi-scale test: shorter sides of an image pyramid, e.g. 480,576,688,864,1200 (with "
                             "--test-max-size 2000, the paper's); each proposal is pooled from the level where its "
                             "area is closest to 224x224. One number: single scale (default: the config's "
                             "test_scale)")
    parser.add_argument("--test-max-size", type=int, default=None,
                        help="cap on the longer image side at test time (default: the config's test_max_size)")
    parser.add_argument("--no-bbox-reg", action="store_true",
                        help="no test-time box regression: every class's box is the proposal itself (paper Table 6)")
    parser.add_argument("--svd", type=parse_ranks, default=None, metavar="fc6=R6,fc7=R7",
                        help="compress fc layers by truncated SVD before testing (paper Sec. 3.1), e.g. "
                             "fc6=1024,fc7=256 for VGG16 (tiny: fc6 and fc7 have 512 outputs)")


def apply_test_arguments(args, ckpt):
    """The checkpoint's (config, model) with the test-time flags applied (the model compressed if ``--svd``).

    Raises:
        ValueError: a flag's value does not fit the checkpoint (the message names the flag).
    """
    from .inference.svd import compress
    changes = {key: value for key, value in (("protocol", args.protocol), ("test_scales", args.test_scales),
                                             ("test_max_size", args.test_max_size)) if value is not None}
    config = ckpt.config.replace(**changes)
    if args.svd:
        try:
            compress(ckpt.model, args.svd)
        except ValueError as e:
            raise ValueError(f"--svd: {e}") from None
    return config, ckpt.model


def load_for_test(args):
    """What ``evaluate`` and ``detect`` start from: the device checked and the BLAS threads set, then the
    checkpoint read and the test-time flags applied (:func:`apply_test_arguments`), the model on the device.

    Returns:
        (checkpoint, config, model).
    """
    device = device_of(args)
    from .threads import set_blas_threads
    from .training.checkpoint import load_checkpoint
    set_blas_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    config, model = apply_test_arguments(args, ckpt)
    return ckpt, config, model.to(device) if device == "gpu" else model

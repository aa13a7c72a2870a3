#!/usr/bin/env python
"""Time one SGD step of a training preset, ours against a PyTorch twin of the same network, stage by stage.

What is measured (issue 12, deliverable 1): one training step of ``--preset`` (default ``tiny``) on the preset's own
mini-batches (minircnn.training.minibatches.training_minibatch, as the trainer draws them): forward, multi-task loss,
backward, Caffe SGD update. The PyTorch twin is built from our initial weights with torch.nn.functional (conv2d,
relu, max_pool2d with ceil_mode=True as Caffe rounds, local_response_norm, linear, torchvision.ops.roi_pool; channels-
last, its faster CPU layout, or ``--nchw``) and trains on the same mini-batches with the same dropout masks (replayed
from the step's numpy generator), autograd and torch.optim.SGD with Caffe's multipliers (biases: 2x lr, no decay).
Its loss, every parameter gradient and the first update are checked against ours in the same run; the largest
relative difference ||ours - twin|| / ||twin|| is printed under the table (~1e-6 from rounding; ~1e-4 when a ReLU
or max-pool near-tie goes the other way, see benchmarks/README.md "How to read it").

Weights: the preset's architecture at random initialisation (``weights="none"``; the tiny preset's pretrained
classifier would take ~3 minutes to make and changes no timing). Data: ``--images N`` generated shapes images in a
temporary folder (proposals ``--proposals``); ``--images 0``: the preset's own dataset (minutes on first use).

Each timed slot builds the next mini-batch (the "data" row; the trainer builds it on another thread meanwhile) and
runs, interleaved, with a pause before each (benchmarks/README.md, "Why the benchmark sleeps"): a step as the trainer
runs it (ours: ``model.forward`` sends each image through the convs in its own thread, beside the preset's
``blas_threads`` BLAS threads), the twin's step, and a profiled step of each for the stage rows, every layer's
forward and backward timed alone (ours: the images through the convs as one batch, BLAS threads = cores; the twin:
each layer's output detached so that its backward runs alone). The stage rows add up to "profiled step". Settings
below all cores pin every thread of the process to that many CPUs (Linux), so that our per-image threads stay there.

Usage::

    python benchmarks/bench_train_step.py                   # tiny preset, 20 interleaved steps per setting
    python benchmarks/bench_train_step.py --quick           # smoke run: 6 images, dense proposals, small scale
    python benchmarks/bench_train_step.py --preset vgg16_voc07 --images 8 --repeat 3

PyTorch is optional; without it only our times are printed and the twin's columns are skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import _bench_common as common
from _bench_harness import fmt_ms, log
from minircnn.data import generate_shapes_dataset
from minircnn.data.sampler import DROPOUT, step_rng
from minircnn.nn import LRN, Conv2d, Dropout, Linear, MaxPool2d, Module, ReLU, RoIPool
from minircnn.threads import cpu_count, set_blas_threads
from minircnn.training.config import PRESETS, get_preset
from minircnn.training.initialization import apply_frozen, initial_model
from minircnn.training.loop import prepare_data
from minircnn.training.minibatches import ImageCache, training_minibatch
from minircnn.training.optim import SGD

SCRIPT = "benchmarks/bench_train_step.py"
KIND = {Conv2d: "conv", MaxPool2d: "max pool", LRN: "LRN", ReLU: "relu/dropout", Dropout: "relu/dropout",
        RoIPool: "RoI pool", Linear: "fc"}
STAGES = ["conv fwd", "conv bwd", "max pool fwd", "max pool bwd", "LRN fwd", "LRN bwd", "relu/dropout fwd",
          "relu/dropout bwd", "RoI pool fwd", "RoI pool bwd", "fc fwd", "fc bwd", "loss", "SGD update"]


# ----------------------------------------------------------------------------------------------------------------------
# Ours
# ----------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def layer_timers(acc):
    """While active, every Module.forward/backward call adds its wall time to ``acc["<kind> fwd|bwd"]``."""
    fwd, bwd = Module.forward, Module.backward

    def timed(method, suffix):
        def call(layer, *args, **kwargs):
            t0 = time.perf_counter()
            out = method(layer, *args, **kwargs)
            acc[f"{KIND[type(layer)]} {suffix}"] += time.perf_counter() - t0
            return out
        return call
    Module.forward, Module.backward = timed(fwd, "fwd"), timed(bwd, "bwd")
    try:
        yield
    finally:
        Module.forward, Module.backward = fwd, bwd


def ours_step(model, solver, batch, i, config, profile=False, blas_threads=1):
    """One SGD step as minircnn.training.loop.iterate does it; returns (loss, {stage: seconds}).

    The trained step runs with the preset's BLAS threads (at most ``blas_threads``) beside the per-image threads, as
    the trainer does; the profiled one, serial, with ``blas_threads``.
    """
    acc = defaultdict(float)
    set_blas_threads(blas_threads if profile else min(blas_threads, config.blas_threads or blas_threads))
    t0 = time.perf_counter()
    model.set_dropout_rng(step_rng(config.seed, DROPOUT, i))
    timers = (lambda: layer_timers(acc)) if profile else contextlib.nullcontext
    with timers():
        if profile:  # layer by layer, the images through the convs as one batch (the plan is set by earlier steps)
            features = model.backbone.forward(model.xp.asarray(batch.blob), train=True, slices=1)
            scores, deltas = model.head_forward(features, batch.rois, train=True)
        else:
            scores, deltas = model.forward(batch.blob, batch.rois)
    t1 = time.perf_counter()
    terms = model.loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights,
                       bbox_loss_weight=config.bbox_loss_weight)
    t2 = time.perf_counter()
    with timers():
        model.backward()
    t3 = time.perf_counter()
    solver.step()
    t4 = time.perf_counter()
    set_blas_threads(blas_threads)
    acc.update({"loss": t2 - t1, "SGD update": t4 - t3, "step": t4 - t0})
    return terms.total, acc


# ----------------------------------------------------------------------------------------------------------------------
# The PyTorch twin
# ----------------------------------------------------------------------------------------------------------------------
class Twin:
    """Our model's layers as torch functions on copies of our current weights, torch.optim.SGD as Caffe's solver."""

    def __init__(self, torch, TF, tv_roi_pool, model, config, channels_last=True):
        self.torch, self.TF, self.config = torch, TF, config
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.params, self.ops, groups = {}, [], []
        for layer in model.layers:
            names = {}
            for key, value in layer.params.items():
                t = torch.tensor(np.array(value))
                t = (t.contiguous(memory_format=self.fmt) if t.ndim == 4 else t).requires_grad_(not layer.frozen)
                self.params[f"{layer.name}.{key}"], names[key] = t, t
                if not layer.frozen:
                    groups.append({"params": [t], "lr": config.base_lr * layer.lr_mult[key],
                                   "weight_decay": config.weight_decay * layer.decay_mult[key]})
            self.ops.append((layer, KIND[type(layer)], self._op(layer, names, tv_roi_pool)))
        self.heads = self.ops[-2:]                       # cls_score, bbox_pred: both read fc7's output
        self.ops = self.ops[:-2]
        self.opt = torch.optim.SGD(groups, lr=config.base_lr, momentum=config.momentum)

    def _op(self, layer, p, tv_roi_pool):
        TF, torch = self.TF, self.torch
        if isinstance(layer, Conv2d):
            return lambda x: TF.conv2d(x, p["weight"], p["bias"], stride=layer.stride, padding=layer.pad,
                                       groups=layer.groups)
        if isinstance(layer, ReLU):
            return TF.relu
        if isinstance(layer, MaxPool2d):
            return lambda x: TF.max_pool2d(x, layer.kernel_size, layer.stride, layer.pad, ceil_mode=True)
        if isinstance(layer, LRN):
            return lambda x: TF.local_response_norm(x, layer.local_size, layer.alpha, layer.beta, layer.k)
        if isinstance(layer, Linear):
            return lambda x: TF.linear(x.flatten(1), p["weight"], p.get("bias"))
        if isinstance(layer, Dropout):
            def dropout(x):
                if layer.p == 0.0:
                    return x
                keep = self.rng.random(tuple(x.shape)) >= layer.p   # our masks: the same generator, the same order
                mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - layer.p))
                return x * torch.from_numpy(mask)
            return dropout
        if isinstance(layer, RoIPool):
            if tv_roi_pool is None:
                raise RuntimeError("torchvision is not importable: the twin has no RoI pooling")
            return lambda x: tv_roi_pool(x, self.rois, layer.output_size, layer.spatial_scale)
        raise TypeError(f"no twin for layer {layer.name} ({type(layer).__name__})")

    def loss(self, scores, deltas, batch):
        torch, TF = self.torch, self.TF
        labels = torch.from_numpy(np.asarray(batch.labels, np.int64))
        d = torch.from_numpy(batch.bbox_weights) * (deltas - torch.from_numpy(batch.bbox_targets))
        ad = d.abs()
        bbox = torch.where(ad < 1, 0.5 * d * d, ad - 0.5).sum() / d.shape[0]
        return TF.cross_entropy(scores, labels) + self.config.bbox_loss_weight * bbox

    def step(self, batch, i, profile=False):
        """One SGD step; returns (loss, {stage: seconds}). Profiled: each layer run and differentiated alone."""
        torch, acc = self.torch, defaultdict(float)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.rng = step_rng(self.config.seed, DROPOUT, i)
        self.rois = torch.from_numpy(batch.rois)
        x, tape, upstream = torch.from_numpy(batch.blob).contiguous(memory_format=self.fmt), [], False
        for layer, kind, op in self.ops:
            if profile:      # the input needs a gradient iff a trainable layer lies before (our need_dx)
                x = x.detach().requires_grad_(upstream)
                t = time.perf_counter()
            y = op(x)
            if profile:
                acc[kind + " fwd"] += time.perf_counter() - t
                tape.append((kind, x, y))
                upstream = y.requires_grad
            x = y
        if profile:
            x = x.detach().requires_grad_(upstream)
            t = time.perf_counter()
        scores, deltas = (op(x) for _, _, op in self.heads)
        t1 = time.perf_counter()
        if profile:
            acc["fc fwd"] += t1 - t
        loss = self.loss(scores, deltas, batch)
        t2 = time.perf_counter()
        loss.backward()                           # profiled: the loss and the heads only, down to fc7's output
        if profile:
            acc["fc bwd"] += time.perf_counter() - t2
            d = x.grad
            for kind, xin, y in reversed(tape):
                if d is None or not y.requires_grad:
                    break
                t = time.perf_counter()
                y.backward(d)
                acc[kind + " bwd"] += time.perf_counter() - t
                d = xin.grad
        t3 = time.perf_counter()
        self.opt.step()
        t4 = time.perf_counter()
        acc.update({"loss": t2 - t1, "SGD update": t4 - t3, "step": t4 - t0})
        return loss.item(), acc


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.linalg.norm(b.ravel()))
    err = float(np.linalg.norm((a - b).ravel()))
    return err / scale if scale > 0 else err


def check_twin(model, solver, twin, batch, config):
    """Step 0 on both from the same weights: relative differences of the loss, gradients and the update."""
    before = model.state_dict()
    model.set_dropout_rng(step_rng(config.seed, DROPOUT, 0))
    scores, deltas = model.forward(batch.blob, batch.rois)
    loss = model.loss(scores, deltas, batch.labels, batch.bbox_targets, batch.bbox_weights,
                      bbox_loss_weight=config.bbox_loss_weight).total
    model.backward()
    grads = {k: np.array(v) for k, v in model.gradients().items()}
    solver.step()
    tloss, _ = twin.step(batch, 0)               # twin.step also updates: compare the updates afterwards
    gdiff = max((rel(g, twin.params[name].grad.numpy()), name) for name, g in grads.items())
    after = model.state_dict()
    udiff = max((rel(after[n] - before[n], twin.params[n].detach().numpy() - before[n]), n) for n in grads)
    return (f"twin check, step 0 from the same weights: loss {loss:.6f} vs {tloss:.6f} (rel. diff "
            f"{abs(loss - tloss) / abs(tloss):.1e}); largest gradient rel. diff {gdiff[0]:.1e} ({gdiff[1]}, "
            f"{len(grads)} parameters); largest first-update rel. diff {udiff[0]:.1e} ({udiff[1]})")


# ----------------------------------------------------------------------------------------------------------------------
# Setup, the timed loop, the report
# ----------------------------------------------------------------------------------------------------------------------
def pin(cpus):
    """Restrict every thread of this process to ``cpus`` (Linux; threads made later inherit it). False elsewhere."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return False
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:                           # a thread that just ended
            pass
    return True


def setup_data(args, config, tmp):
    if args.images:
        root = Path(tmp) / "shapes"
        log(f"generating {args.images} training images in {root} ...")
        generate_shapes_dataset(root, seed=args.seed, trainval=args.images, test=1, progress=False)
        config = config.replace(data=str(root))
    if args.proposals != "preset":
        config = config.replace(proposals=args.proposals)
    if args.scale:
        config = config.replace(scales=(args.scale,), max_size=max(args.scale, int(args.scale * 5 / 3)))
    log(f"proposals ({config.proposals}) and roidb ...")
    return config, prepare_data(config, progress=False)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="training preset (default tiny)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 6 images, dense proposals, shorter side 160, 3 timed steps per setting")
    p.add_argument("--repeat", type=int, default=None, metavar="N", help="timed steps per setting (default 20)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="generate N shapes training images in a temporary folder (default 24; 0: the preset's data)")
    p.add_argument("--proposals", default=None, choices=("dense", "ss-fast", "ss-quality", "preset"),
                   help="proposal method (default: the preset's, ss-fast; dense with --quick)")
    p.add_argument("--scale", type=int, default=None, help="training shorter side (default: the preset's)")
    p.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                   help="thread settings to compare (default: 1 and all cores)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to N cores for N < all")
    p.add_argument("--nchw", action="store_true", help="the twin in NCHW (default: channels-last, its faster layout)")
    p.add_argument("--no-torch", action="store_true", help="do not import PyTorch; time ours only")
    p.add_argument("--sleep", type=float, default=0.2, metavar="S", help="pause before every timed step (0.2 s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated images (default 0)")
    p.add_argument("--output", default=None, metavar="FILE.md", help="also write the report to this file")
    args = p.parse_args(argv)
    q = args.quick
    args.repeat = args.repeat or (3 if q else 20)
    args.images = (6 if q else 24) if args.images is None else args.images
    args.proposals = args.proposals or ("dense" if q else "preset")
    args.scale = args.scale or (160 if q else None)
    return args


def main(argv=None):
    args = parse_args(argv)
    all_cores = cpu_count()
    settings = args.threads or sorted({1, all_cores})
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    torch = TF = tv_roi_pool = None
    torch_note = "PyTorch: not used (--no-torch)"
    if not args.no_torch:
        torch, TF, tv_roi_pool, _, problem = common.load_torch("cpu")
        torch_note = problem if torch is None else f"torch {torch.__version__}"
        if torch is not None and tv_roi_pool is None:
            torch, torch_note = None, "torchvision not importable: the twin (it needs roi_pool) is skipped"
        elif torch is not None:
            import torchvision
            torch_note += f", torchvision {torchvision.__version__}"
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        config, data = setup_data(args, get_preset(args.preset).replace(weights="none"), tmp)
        num_classes = data.dataset.num_classes
        model, preprocessing = initial_model(config, num_classes, progress=False)
        if config.frozen is not None:
            apply_frozen(model, config.frozen)
        solver = SGD(model.parameters(), base_lr=config.base_lr, momentum=config.momentum,
                     weight_decay=config.weight_decay, gamma=config.gamma, stepsize=config.stepsize)
        load_image = ImageCache(data.dataset)

        def batch_of(i):
            t0 = time.perf_counter()
            batch = training_minibatch(i, data.roidb, load_image, num_classes, preprocessing, config)
            return batch, time.perf_counter() - t0

        notes, sides = [], ["ours"]
        twin = None
        if torch is not None:
            twin = Twin(torch, TF, tv_roi_pool, model, config, channels_last=not args.nchw)
            set_blas_threads(all_cores)
            torch.set_num_threads(all_cores)
            notes.append(check_twin(model, solver, twin, batch_of(0)[0], config))
            log(notes[-1])
            sides.append("twin")
        blob = batch_of(0)[0].blob
        results = defaultdict(list)               # (threads, side, "real"|"prof") -> [stage dicts]
        started, busy_before, own_before = time.perf_counter(), common.busy_cpu_seconds(), sum(os.times()[:2])
        step = 1
        for rep in range(-1, args.repeat):        # rep -1: untimed warm-up
            log(f"step {rep + 1}/{args.repeat} ..." if rep >= 0 else "warm-up ...")
            for n in (settings if rep % 2 == 0 else settings[::-1]):
                if cpus:
                    pin(cpus[:n] if n < all_cores and not args.no_pin else cpus)
                set_blas_threads(n)
                if torch is not None:
                    torch.set_num_threads(n)
                batch, data_s = batch_of(step)
                runs = [(s, prof) for prof in (False, True) for s in sides]
                for side, prof in (runs if rep % 2 == 0 else runs[::-1]):
                    gc.collect()
                    time.sleep(args.sleep)
                    if side == "ours":
                        _, stages = ours_step(model, solver, batch, step, config, profile=prof, blas_threads=n)
                    else:
                        _, stages = twin.step(batch, step, profile=prof)
                    stages["data"] = data_s
                    if rep >= 0:
                        results[(n, side, "prof" if prof else "real")].append(stages)
                step += 1
        elapsed = time.perf_counter() - started
        if cpus:
            pin(cpus)

    # -- report
    def med(n, side, kind, key):
        values = [d.get(key, 0.0) for d in results[(n, side, kind)]]
        return statistics.median(values) if values else None

    for d in (d for r in results.values() for d in r):
        d["sum of stages"] = sum(d.get(s, 0.0) for s in STAGES)
    pinned = lambda n: " pinned" if n < all_cores and not args.no_pin else ""  # noqa: E731
    cols = ["stage (median ms)"] + [c for n in settings for c in [f"ours, {n} core(s){pinned(n)}"]
                                    + ([f"twin, {n} core(s){pinned(n)}", "ours/twin"] if twin else [])]
    rows = []
    for label, kind, key in ([("**step, as trained**", "real", "step"), ("data (mini-batch, not in the step)",
                                                                          "real", "data")]
                             + [(s, "prof", s) for s in STAGES if any(med(n, "ours", "prof", s) for n in settings)]
                             + [("sum of stages", "prof", "sum of stages"), ("profiled step", "prof", "step")]):
        cells = [label]
        for n in settings:
            o, t = med(n, "ours", kind, key), med(n, "twin", kind, key) if twin and key != "data" else None
            cells += [fmt_ms(o)] + ([fmt_ms(t) if t else "(same)", f"{o / t:.2f}x" if o and t else "-"] if twin else [])
        rows.append(cells)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                           for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    table = [line(cols), "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                                        for i, w in enumerate(widths)) + "|"] + [line(r) for r in rows]
    for n in (n for n in settings if twin and n != 1 and 1 in settings):
        gain = [med(1, side, "real", "step") / med(n, side, "real", "step") for side in ("ours", "twin")]
        notes.append(f"speed-up from 1 to {n} cores: ours {gain[0]:.2f}x, twin {gain[1]:.2f}x")
    mem, rev = common.memory_gib(), common.git_revision()
    header = [f"# minircnn training step: preset {args.preset}, ours vs PyTorch twin", "",
              f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
              f"- machine: {common.cpu_model()}, {os.cpu_count()} logical cores ({all_cores} usable)"
              + (f", {mem:.0f} GiB RAM" if mem else "") + f"; {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()}",
              f"- numpy {np.__version__} ({common.numpy_blas_info()[0]}); reference: {torch_note}"
              + (f"; git {rev}" if rev else ""),
              f"- data: {len(data.dataset)} {config.train_split} images of "
              f"{'a generated shapes set' if args.images else data.root}, proposals {config.proposals}, scale "
              f"{config.scales} max {config.max_size}, {config.ims_per_batch} images x {config.batch_size} RoIs per "
              f"step (blob {'x'.join(map(str, blob.shape))} at step 0); weights: random init (weights='none')",
              f"- method: medians of {args.repeat} steps per setting after 1 warm-up; settings, ours/twin and "
              f"trained/profiled steps interleaved (order alternating), gc + {args.sleep:g} s sleep before each; "
              f"threads: torch.set_num_threads = cores; ours: BLAS threads (minircnn.threads) = cores, except in "
              f"'step, as trained': the preset's blas_threads={config.blas_threads} (0: cores) beside its per-image "
              f"threads, as the trainer runs; twin {'NCHW' if args.nchw else 'channels-last'}"
              + ("; fewer cores than all: every thread pinned (sched_setaffinity)" if not args.no_pin else "")]
    header += [f"- {w}" for w in common.openblas_env_warnings(SCRIPT)]
    footer = [f"Note: {n}" for n in notes] + [
        "Stages come from the profiled steps (each layer timed alone; ours runs the images through the convs as one "
        "batch there; the twin's 'fc bwd' includes the loss's backward); 'step, as trained' is unprofiled.",
        f"Total benchmark time: {elapsed:.0f} s."]
    busy_after = common.busy_cpu_seconds()
    if busy_before is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy_before) - (sum(os.times()[:2]) - own_before)) / max(elapsed, 1e-9)
        footer.append(f"Other processes kept ~{others:.2f} cores busy on average during the run.")
    report = "\n".join(header + [""] + table + [""] + footer) + "\n"
    sys.stdout.write("\n" + report)
    if args.output:
        Path(args.output).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

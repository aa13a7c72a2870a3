#!/usr/bin/env python
"""Time minircnn's hand-written layers, and the same work in PyTorch when it is installed.

What is measured (issue 2, item 8):

* the VGG16 conv stack (conv1_1 .. conv5_3, ReLU after every conv, 2x2/2 max pools with Caffe's ceil rule after
  conv1_2, conv2_2, conv3_3 and conv4_3): forward, and forward + backward as Fast R-CNN trains it -- conv3_1 and up
  trainable, so the backward stops at conv3_1 (its weight and bias gradients, no input gradient) and the frozen
  conv1_x / conv2_x layers get no backward at all. A random gradient stands in for the loss gradient at relu5_3.
  Input sizes 1x3x224x224 and 1x3x600x800 (a typical training image; conv5_3 is then 38x50). PyTorch does the same
  with F.conv2d, F.relu (not in place) and F.max_pool2d(ceil_mode=True), autograd enabled only on conv3_1+ weights;
* RoI max pooling (7x7, spatial scale 1/16) forward and backward with 128 (one training minibatch) and 2000 (one test
  image) random RoIs on a 1x512x38x50 conv5_3 map; RoI sides are log-uniform in 16..600 px inside a 600x800 image
  (torchvision.ops.roi_pool, whose float32 forward is the same algorithm, so the outputs should be identical);
* fc6 (25088 -> 4096) and fc7 (4096 -> 4096) forward for 128 and 2000 rows (F.linear).

Fairness rules (benchmarks/README.md, "Why the benchmark sleeps"): both libraries run on the same number of threads
(PyTorch is set to NumPy's OpenBLAS thread count), the two implementations are interleaved run by run (the one that goes
first alternates), and every timed call is preceded by a garbage collection and a short sleep (0.2 s by default), because
idle OpenBLAS/OpenMP worker pools keep spinning for ~0.1 s after a call and would slow the other library down. Each
case gets one untimed warm-up call per implementation; the table reports the median and the best of the timed calls
and the ratio of the medians, ours / PyTorch. Times vary 10-20% from run to run on a shared machine: compare ratios
from one run rather than absolute times across runs.

The "check" column is ||ours - torch|| / ||torch|| (Frobenius norms) on the warm-up outputs, the worst of the compared
tensors (forward output; for the conv forward+backward every weight and bias gradient of conv3_1..conv5_3, naming the
worst when it is above 1e-4; for RoI pooling the forward output and the input gradient). It shows both sides did the
same work; it is not a correctness test (the tests are). Float32 rounding gives ~1e-6. A ReLU whose input is within
rounding of zero, or a max-pool window with a near-tie, can decide differently in the two libraries; one such element
shows up as ~1e-3 in the gradients of the layers below it (seen at 224x224 with seed 0: one relu4_1 flip). A wrong
layer gives ~1.

Usage::

    python benchmarks/bench_layers.py                 # full run (a few minutes on a 2-core machine)
    python benchmarks/bench_layers.py --quick         # smoke run: small sizes only, one timed repeat
    python benchmarks/bench_layers.py --only conv     # just the conv stack (also: roi, fc)
    python benchmarks/bench_layers.py --device gpu    # ours on CuPy, PyTorch on CUDA
    python benchmarks/bench_layers.py --impl my_layers.py   # time a learner's own layers (exercise mode)

PyTorch/torchvision are optional and imported only inside this script; without them only our times are printed.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import glob
import importlib
import importlib.util
import inspect
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

CONTRACT = (
    "conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward", "relu_forward",
    "relu_backward", "linear_forward", "linear_backward", "roi_pool_forward", "roi_pool_backward",
)

# VGG16's conv stack (spec section 2): (name, in, out) for a 3x3 pad-1 conv + ReLU, or "pool" for max pool k2 s2 (ceil).
VGG16 = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), "pool",
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), "pool",
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
FIRST_TRAINABLE = "conv3_1"          # conv1_x and conv2_x are frozen in Fast R-CNN's VGG16
ROI_MAP = (1, 512, 38, 50)           # conv5_3 of a 600x800 image
IMAGE_HW = (600, 800)
POOLED = (7, 7)
SPATIAL_SCALE = 1.0 / 16
FC_LAYERS = (("fc6", 25088, 4096), ("fc7", 4096, 4096))
TARGETS = (  # issue 2's targets, ours / PyTorch-CPU
    ("conv stack fwd", "1x3x224x224", 1.25),
    ("conv stack fwd+bwd (conv3_1+)", "1x3x224x224", 1.5),
    ("roi_pool fwd+bwd", "2000 RoIs", 1.0),
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# Loading the layers
# ----------------------------------------------------------------------------------------------------------------------
def load_layers(impl_path):
    """The contract functions: minircnn.functional's, each replaced by the --impl file's version if it defines one."""
    funcs, source, problem = {}, "minircnn.functional", None
    try:
        package = importlib.import_module("minircnn.functional")
        funcs = {name: getattr(package, name) for name in CONTRACT if hasattr(package, name)}
    except Exception as e:  # not written yet, or broken
        problem = f"minircnn.functional does not import ({type(e).__name__}: {e})"
    if impl_path:
        path = Path(impl_path).resolve()
        spec = importlib.util.spec_from_file_location("bench_impl_" + path.stem, path)
        if spec is None or not path.is_file():
            sys.exit(f"--impl: {impl_path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mine = [name for name in CONTRACT if callable(getattr(module, name, None))]
        funcs.update({name: getattr(module, name) for name in mine})
        source = f"{path.name} ({len(mine)} of {len(CONTRACT)} functions)"
        if len(mine) < len(CONTRACT):
            source += " + minircnn.functional" if not problem else ""
    elif problem:
        sys.exit(problem + "; nothing to benchmark (use --impl FILE.py to time your own layers)")
    if not funcs:
        sys.exit("minircnn.functional defines none of the layer functions yet; nothing to benchmark "
                 "(use --impl FILE.py to time your own layers)")
    missing = [name for name in CONTRACT if name not in funcs]
    if missing:
        log(f"missing layer functions (their benchmarks will show 'error'): {', '.join(missing)}")
    return types.SimpleNamespace(**funcs), source


def conv_backward_caller(F):
    """A function (dy, cache, need_dx) -> (dx, dw, db) that asks for what it needs when the layer supports it.

    The contract's conv2d_backward takes ``need_dx``/``need_dw``; an implementation without them (e.g. a learner's)
    is called plainly and its dx for conv3_1 is simply thrown away (the note under the table says so).
    """
    fn = getattr(F, "conv2d_backward", None)
    if fn is None:
        return None, False
    try:
        params = inspect.signature(fn).parameters
        supports = "need_dx" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        supports = False
    if supports:
        return (lambda dy, cache, need_dx: fn(dy, cache, need_dx=need_dx, need_dw=True)), True
    return (lambda dy, cache, need_dx: fn(dy, cache)), False


# ----------------------------------------------------------------------------------------------------------------------
# Machine, threads, BLAS
# ----------------------------------------------------------------------------------------------------------------------
def _openblas_lib():
    """numpy's bundled OpenBLAS (ctypes handle, symbol prefix, symbol suffix), or None."""
    here = Path(np.__file__).resolve().parent
    candidates = glob.glob(str(here.parent / "numpy.libs" / "*openblas*")) + glob.glob(str(here / ".dylibs" / "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                    return lib, prefix, suffix
    return None


def numpy_blas_info():
    """(description, thread count or None, setter or None) for numpy's BLAS."""
    name, version = "unknown BLAS", ""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name, version = blas.get("name", name), blas.get("version", "")
    except Exception:
        pass
    found = _openblas_lib()
    if found is None:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else None
        return f"{name} {version}".strip(), threads, None
    lib, prefix, suffix = found
    get_threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
    get_threads.restype = ctypes.c_int
    desc = f"{name} {version}".strip()
    corename = getattr(lib, f"{prefix}get_corename{suffix}", None)
    if corename is not None:
        corename.restype = ctypes.c_char_p
        desc += f", kernel {corename().decode()}"
    setter = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
    if setter is not None:
        setter.argtypes = [ctypes.c_int]
    return desc, get_threads(), setter


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def busy_cpu_seconds():
    """CPU seconds the whole machine spent busy since boot (all cores), from /proc/stat; None if unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "minircnn/functional", "minircnn/backend.py"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" + uncommitted changes in minircnn/functional or backend.py" if dirty else "") if rev else None
    except Exception:
        return None


def openblas_env_warnings():
    found = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if not found:
        return []
    setting = ", ".join(f"{k}={v}" for k, v in found.items())
    return [f"WARNING: {setting} is set in the environment. It pins/tunes OpenBLAS for old builds and slows a current "
            f"numpy; for a fair benchmark unset both in this command only: "
            f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_layers.py` "
            f"(and check the kernel named on the numpy line)."]


def load_torch(device):
    """(torch, torch.nn.functional, torchvision.ops.roi_pool or None, torch device, note); torch None if unusable."""
    try:
        import torch
        import torch.nn.functional as TF
    except Exception as e:
        return None, None, None, None, f"PyTorch not importable ({type(e).__name__}: {e}): no reference times"
    try:
        from torchvision.ops import roi_pool
    except Exception as e:
        roi_pool = None
        log(f"torchvision not importable ({type(e).__name__}: {e}): no RoI-pool reference")
    if device == "gpu":
        if not torch.cuda.is_available():
            return None, None, None, None, "PyTorch has no CUDA device here: no reference times"
        # compare like with like: CuPy's float32 GEMMs/convs do not use TF32 by default
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch, TF, roi_pool, torch.device("cuda"), None
    return torch, TF, roi_pool, torch.device("cpu"), None


# ----------------------------------------------------------------------------------------------------------------------
# Timing harness
# ----------------------------------------------------------------------------------------------------------------------
class Impl:
    """One side of a comparison: a name, a synchronising clock, and to_numpy for its outputs."""

    def __init__(self, name, sync, to_numpy):
        self.name, self._sync, self.to_numpy = name, sync, to_numpy

    def clock(self):
        self._sync()
        return time.perf_counter()


class Case:
    """One benchmark: ``run_ours(impl)``/``run_torch(impl)`` -> (outputs dict, {phase: seconds}).

    ``rows`` maps a row label to the phases it sums, e.g. {"fwd": ["fwd"], "fwd+bwd": ["fwd", "bwd"]}.
    """

    def __init__(self, title, size, run_ours, run_torch, rows=None):
        self.title, self.size, self.run_ours, self.run_torch = title, size, run_ours, run_torch
        self.rows = rows or {"": ["total"]}


def rel_diff(ours, ref):
    """Worst ||ours - ref|| / ||ref|| over the tensors both sides returned, as a short string."""
    worst, worst_key = 0.0, None
    for key, r in ref.items():
        if ours.get(key) is None or r is None:
            continue
        a, b = np.asarray(ours[key], np.float64), np.asarray(r, np.float64)
        if a.shape != b.shape:
            return f"{key}: shape {a.shape} vs {b.shape}"
        scale = float(np.linalg.norm(b.ravel()))
        err = float(np.linalg.norm((a - b).ravel()))
        rel = err / scale if scale > 0 else err
        if rel > worst:
            worst, worst_key = rel, key
    if worst == 0:
        return "0 (identical)"
    return f"{worst:.1e}" + (f" ({worst_key})" if worst > 1e-4 and len(ref) > 1 else "")


def run_case(case, ours, torch_impl, repeat, sleep_s, max_case_s):
    """Interleave the implementations (warm-up + timed calls); return per-impl lists of phase dicts, errors, check."""
    sides = [("ours", ours, case.run_ours)]
    if torch_impl is not None and case.run_torch is not None:
        sides.append(("torch", torch_impl, case.run_torch))
    times = {name: [] for name, _, _ in sides}
    errors, warm_outputs, warm_cost = {}, {}, {}
    n, rep = repeat, -1                    # rep -1 is the untimed warm-up
    while rep < n:
        order = sides if rep % 2 == 0 else sides[::-1]
        for name, impl, fn in order:
            if name in errors:
                continue
            gc.collect()
            time.sleep(sleep_s)            # let the other library's idle worker threads stop spinning
            try:
                outputs, phases = fn(impl)
            except Exception as e:         # a layer not written yet, or broken: report it, go on
                errors[name] = f"{type(e).__name__}: {e}"
                log(f"  {name}: {errors[name]}")
                continue
            if rep < 0:
                warm_outputs[name] = {k: (None if v is None else impl.to_numpy(v)) for k, v in outputs.items()}
                warm_cost[name] = sum(phases.values())
            else:
                times[name].append(phases)
            del outputs
        if rep < 0 and warm_cost:          # keep one case within its time budget
            per_rep = sum(warm_cost.values()) + sleep_s * len(warm_cost)
            n = max(1, min(repeat, int(max_case_s // max(per_rep, 1e-9))))
            if n < repeat:
                log(f"  {per_rep:.1f} s per repeat: {n} timed repeat(s) instead of {repeat} (--max-case-seconds)")
        rep += 1
    check = ""
    if "ours" in warm_outputs and "torch" in warm_outputs:
        check = rel_diff(warm_outputs["ours"], warm_outputs["torch"])
    return times, errors, check


def summarise(phase_dicts, phases):
    totals = [sum(d[p] for p in phases) for d in phase_dicts]
    if not totals:
        return None, None
    return statistics.median(totals), min(totals)


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


# ----------------------------------------------------------------------------------------------------------------------
# The work: VGG16 conv stack
# ----------------------------------------------------------------------------------------------------------------------
def vgg16_params(rng):
    """He-initialised float32 weights (keeps activations O(1): no denormals to slow anyone down)."""
    params = {}
    for layer in VGG16:
        if layer == "pool":
            continue
        name, cin, cout = layer
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2.0 / (cin * 9)))
        b = rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
        params[name] = (w, b)
    return params


def conv_stack_output_hw(h, w):
    for layer in VGG16:
        if layer == "pool":
            h, w = -(-h // 2), -(-w // 2)   # Caffe ceil rule for k2 s2
    return h, w


def ours_conv_forward(F, params, x):
    for layer in VGG16:
        if layer == "pool":
            x, _ = F.max_pool2d_forward(x, kernel_size=2, stride=2, pad=0)
        else:
            w, b = params[layer[0]]
            x, _ = F.conv2d_forward(x, w, b, stride=1, pad=1)
            x, _ = F.relu_forward(x)
    return x


def ours_conv_forward_backward(F, conv_bwd, params, x, dy, clock):
    t0 = clock()
    tape, trainable = [], False
    for layer in VGG16:
        if layer == "pool":
            x, cache = F.max_pool2d_forward(x, kernel_size=2, stride=2, pad=0)
            if trainable:
                tape.append(("pool", None, cache))
            continue
        name = layer[0]
        trainable = trainable or name == FIRST_TRAINABLE
        w, b = params[name]
        x, conv_cache = F.conv2d_forward(x, w, b, stride=1, pad=1)
        x, relu_cache = F.relu_forward(x)
        if trainable:                       # frozen layers keep no cache: they get no backward
            tape.append(("conv", name, conv_cache))
            tape.append(("relu", None, relu_cache))
    t1 = clock()
    grads, d = {}, dy
    for kind, name, cache in reversed(tape):
        if kind == "relu":
            d = F.relu_backward(d, cache)
        elif kind == "pool":
            d = F.max_pool2d_backward(d, cache)
        else:
            d, dw, db = conv_bwd(d, cache, name != FIRST_TRAINABLE)
            grads["dw_" + name], grads["db_" + name] = dw, db
    del tape, d
    t2 = clock()
    return grads, {"fwd": t1 - t0, "bwd": t2 - t1}


def torch_conv_forward(TF, tparams, x):
    for layer in VGG16:
        if layer == "pool":
            x = TF.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        else:
            w, b = tparams[layer[0]]
            x = TF.relu(TF.conv2d(x, w, b, stride=1, padding=1))
    return x


def conv_cases(F, xp, torch_mod, TF, tdev, sizes, rng):
    params = vgg16_params(rng)
    conv_bwd, _ = conv_backward_caller(F)
    ours_params = {k: (xp.asarray(w), xp.asarray(b)) for k, (w, b) in params.items()}
    tparams = trainable = None
    if torch_mod is not None:
        tparams, trainable, on = {}, [], False
        for layer in VGG16:
            if layer == "pool":
                continue
            on = on or layer[0] == FIRST_TRAINABLE
            w, b = (torch_mod.from_numpy(a).to(tdev).requires_grad_(on) for a in params[layer[0]])
            tparams[layer[0]] = (w, b)
            if on:
                trainable += [(layer[0], w, b)]
    cases = []
    for (h, w) in sizes:
        x_np = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        oh, ow = conv_stack_output_hw(h, w)
        dy_np = rng.standard_normal((1, 512, oh, ow), dtype=np.float32)
        x, dy = xp.asarray(x_np), xp.asarray(dy_np)
        tx = tdy = None
        if torch_mod is not None:
            tx, tdy = torch_mod.from_numpy(x_np).to(tdev), torch_mod.from_numpy(dy_np).to(tdev)
        size = f"1x3x{h}x{w}"

        def ours_fwd(impl, x=x):
            t0 = impl.clock()
            y = ours_conv_forward(F, ours_params, x)
            return {"y": y}, {"total": impl.clock() - t0}

        def torch_fwd(impl, tx=tx):
            with torch_mod.no_grad():
                t0 = impl.clock()
                y = torch_conv_forward(TF, tparams, tx)
                t1 = impl.clock()
            return {"y": y}, {"total": t1 - t0}

        def ours_fwd_bwd(impl, x=x, dy=dy):
            if conv_bwd is None:
                raise AttributeError("no conv2d_backward")
            return ours_conv_forward_backward(F, conv_bwd, ours_params, x, dy, impl.clock)

        def torch_fwd_bwd(impl, tx=tx, tdy=tdy):
            for _, tw, tb in trainable:
                tw.grad = tb.grad = None
            t0 = impl.clock()
            y = torch_conv_forward(TF, tparams, tx)
            t1 = impl.clock()
            y.backward(tdy)
            t2 = impl.clock()
            grads = {}
            for name, tw, tb in trainable:
                grads["dw_" + name], grads["db_" + name] = tw.grad, tb.grad
            return grads, {"fwd": t1 - t0, "bwd": t2 - t1}

        have_torch = torch_mod is not None
        cases.append(Case("conv stack fwd", size, ours_fwd, torch_fwd if have_torch else None))
        cases.append(Case("conv stack fwd+bwd (conv3_1+)", size, ours_fwd_bwd, torch_fwd_bwd if have_torch else None,
                          rows={"": ["fwd", "bwd"]}))
    return cases


# ----------------------------------------------------------------------------------------------------------------------
# RoI pooling
# ----------------------------------------------------------------------------------------------------------------------
def random_rois(rng, n):
    """n RoIs (batch 0) inside a 600x800 image, sides log-uniform in 16..600 px, fractional corners, inclusive."""
    H, W = IMAGE_HW
    bw = np.exp(rng.uniform(np.log(16), np.log(600), n))
    bh = np.exp(rng.uniform(np.log(16), np.log(600), n))
    bw, bh = np.minimum(bw, W), np.minimum(bh, H)
    x1 = rng.uniform(0, W - bw)
    y1 = rng.uniform(0, H - bh)
    rois = np.stack([np.zeros(n), x1, y1, x1 + bw - 1, y1 + bh - 1], axis=1)
    return rois.astype(np.float32)


def roi_cases(F, xp, torch_mod, tv_roi_pool, tdev, counts, rng):
    x_np = rng.standard_normal(ROI_MAP, dtype=np.float32)
    cases = []
    for n in counts:
        rois_np = random_rois(rng, n)
        dy_np = rng.standard_normal((n, ROI_MAP[1]) + POOLED, dtype=np.float32)
        x, rois, dy = xp.asarray(x_np), xp.asarray(rois_np), xp.asarray(dy_np)

        def ours(impl, rois=rois, dy=dy):
            t0 = impl.clock()
            y, cache = F.roi_pool_forward(x, rois, output_size=POOLED, spatial_scale=SPATIAL_SCALE)
            t1 = impl.clock()
            dx = F.roi_pool_backward(dy, cache)
            t2 = impl.clock()
            return {"y": y, "dx": dx}, {"fwd": t1 - t0, "bwd": t2 - t1}

        theirs = None
        if torch_mod is not None and tv_roi_pool is not None:
            tx = torch_mod.from_numpy(x_np).to(tdev).requires_grad_(True)
            trois, tdy = torch_mod.from_numpy(rois_np).to(tdev), torch_mod.from_numpy(dy_np).to(tdev)

            def theirs(impl, tx=tx, trois=trois, tdy=tdy):
                tx.grad = None
                t0 = impl.clock()
                y = tv_roi_pool(tx, trois, output_size=POOLED, spatial_scale=SPATIAL_SCALE)
                t1 = impl.clock()
                y.backward(tdy)
                t2 = impl.clock()
                return {"y": y, "dx": tx.grad}, {"fwd": t1 - t0, "bwd": t2 - t1}

        cases.append(Case("roi_pool", f"{n} RoIs", ours, theirs,
                          rows={" fwd": ["fwd"], " bwd": ["bwd"], " fwd+bwd": ["fwd", "bwd"]}))
    return cases


# ----------------------------------------------------------------------------------------------------------------------
# fc6 / fc7
# ----------------------------------------------------------------------------------------------------------------------
def fc_cases(F, xp, torch_mod, TF, tdev, row_counts, rng):
    cases = []
    for name, fan_in, fan_out in FC_LAYERS:
        w_np = rng.standard_normal((fan_out, fan_in), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b_np = rng.standard_normal(fan_out, dtype=np.float32) * np.float32(0.01)
        w, b = xp.asarray(w_np), xp.asarray(b_np)
        tw = tb = None
        if torch_mod is not None:
            tw, tb = torch_mod.from_numpy(w_np).to(tdev), torch_mod.from_numpy(b_np).to(tdev)
        for rows in row_counts:
            x_np = np.abs(rng.standard_normal((rows, fan_in), dtype=np.float32))   # post-ReLU-like input
            x = xp.asarray(x_np)

            def ours(impl, x=x, w=w, b=b):
                t0 = impl.clock()
                y, _ = F.linear_forward(x, w, b)
                return {"y": y}, {"total": impl.clock() - t0}

            theirs = None
            if torch_mod is not None:
                tx = torch_mod.from_numpy(x_np).to(tdev)

                def theirs(impl, tx=tx, tw=tw, tb=tb):
                    with torch_mod.no_grad():
                        t0 = impl.clock()
                        y = TF.linear(tx, tw, tb)
                        t1 = impl.clock()
                    return {"y": y}, {"total": t1 - t0}

            cases.append(Case(f"{name} fwd ({fan_in}->{fan_out})", f"{rows} rows", ours, theirs))
    return cases


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: conv stack at 224x224 only, 128 RoIs, 128 fc rows, 1 timed repeat")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="timed calls per implementation and case (default 3; 1 with --quick)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: NumPy vs PyTorch-CPU; gpu: CuPy (minircnn.backend.get_xp('gpu')) vs PyTorch-CUDA")
    p.add_argument("--only", nargs="+", choices=("conv", "roi", "fc"), default=("conv", "roi", "fc"),
                   help="benchmark groups to run (default: all)")
    p.add_argument("--no-torch", action="store_true", help="do not import PyTorch; time ours only")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for both libraries (default: numpy's OpenBLAS thread count)")
    p.add_argument("--sleep", type=float, default=0.2, metavar="S",
                   help="pause before every timed call so idle BLAS/OpenMP pools stop spinning (default 0.2 s)")
    p.add_argument("--max-case-seconds", type=float, default=60.0, metavar="S",
                   help="fewer timed repeats for a case whose repeats would take longer than this (default 60)")
    p.add_argument("--impl", default=None, metavar="FILE.py",
                   help="time the contract functions this file defines instead of minircnn.functional's")
    p.add_argument("--output", default=None, metavar="FILE.md", help="also write the report to this file")
    p.add_argument("--seed", type=int, default=0, help="random seed for inputs and RoIs (default 0)")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    F, layer_source = load_layers(args.impl)
    _, conv_bwd_has_need = conv_backward_caller(F)

    # -- arrays: NumPy or CuPy ------------------------------------------------------------------------------------------
    if args.device == "gpu":
        from minircnn.backend import get_xp
        try:
            xp = get_xp("gpu")
        except Exception as e:
            sys.exit(f"--device gpu: {e}")

        def ours_sync():
            xp.cuda.Device().synchronize()
        ours_to_numpy = xp.asnumpy
    else:
        xp = np

        def ours_sync():
            pass
        ours_to_numpy = np.asarray

    # -- threads --------------------------------------------------------------------------------------------------------
    blas_desc, np_threads, set_np_threads = numpy_blas_info()
    notes = []
    if args.threads is not None:
        if set_np_threads is not None:
            set_np_threads(args.threads)
            np_threads = args.threads
        else:
            notes.append(f"could not set numpy's BLAS threads to {args.threads} (set OPENBLAS_NUM_THREADS instead)")
    threads = args.threads or np_threads or len(os.sched_getaffinity(0))

    # -- PyTorch --------------------------------------------------------------------------------------------------------
    torch_mod = TF = tv_roi_pool = tdev = None
    if args.no_torch:
        torch_note = "PyTorch: not used (--no-torch)"
    else:
        torch_mod, TF, tv_roi_pool, tdev, problem = load_torch(args.device)
        if torch_mod is None:
            torch_note = problem
        else:
            if args.device == "cpu":
                torch_mod.set_num_threads(threads)
            import torchvision
            torch_note = (f"torch {torch_mod.__version__}, torchvision {torchvision.__version__}"
                          if tv_roi_pool is not None else f"torch {torch_mod.__version__} (no torchvision)")

    # -- header ---------------------------------------------------------------------------------------------------------
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        cores = f"{os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)"
    except AttributeError:
        cores = f"{os.cpu_count()} logical cores"
    mem = memory_gib()
    header = ["# minircnn layer benchmark", "",
              f"- date: {now}",
              f"- machine: {cpu_model()}, {cores}" + (f", {mem:.0f} GiB RAM" if mem else "")
              + f"; {platform.system()} {platform.release()}, Python {platform.python_version()}"
              + (f"; load average {os.getloadavg()[0]:.2f} at start" if hasattr(os, "getloadavg") else ""),
              f"- numpy {np.__version__} ({blas_desc}, {np_threads if np_threads else '?'} threads)"]
    if args.device == "gpu":
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        header.append(f"- device: GPU -- ours on CuPy {xp.__version__} ({gpu_name}); PyTorch on CUDA without TF32; "
                      "streams synchronised before every clock reading")
    else:
        header.append("- device: CPU")
    if torch_mod is not None:
        if args.device == "cpu":
            header.append(f"- reference: {torch_note}; torch.set_num_threads({threads}) to match numpy's "
                          f"{np_threads if np_threads else '?'} BLAS threads")
        else:
            header.append(f"- reference: {torch_note} on {torch_mod.cuda.get_device_name(0)}")
    else:
        header.append(f"- reference: {torch_note}")
    rev = git_revision()
    header.append(f"- layers: {layer_source}" + (f" at git {rev}" if rev else ""))
    header.append(f"- method: median and best of {args.repeat} timed call(s) after 1 warm-up per implementation; "
                  + ("implementations interleaved (order alternating), " if torch_mod is not None else "")
                  + f"gc + {args.sleep:g} s sleep before every timed call; ratio = ours median / torch median")
    header += [f"- {w}" for w in openblas_env_warnings()]
    if not conv_bwd_has_need:
        notes.append("conv2d_backward takes no need_dx/need_dw: ours also computes conv3_1's unused input gradient")
    for line in header[2:]:  # the same lines head the report on stdout at the end
        log(line)

    # -- cases ----------------------------------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    conv_sizes = [(224, 224)] if args.quick else [(224, 224), IMAGE_HW]
    roi_counts = [128] if args.quick else [128, 2000]
    fc_rows = [128] if args.quick else [128, 2000]
    ours = Impl("ours", ours_sync, ours_to_numpy)
    torch_impl = None
    if torch_mod is not None:
        tsync = torch_mod.cuda.synchronize if args.device == "gpu" else (lambda: None)
        torch_impl = Impl("torch", tsync, lambda t: t.detach().cpu().numpy())

    groups = []
    if "conv" in args.only:
        groups.append(lambda: conv_cases(F, xp, torch_mod, TF, tdev, conv_sizes, rng))
    if "roi" in args.only:
        groups.append(lambda: roi_cases(F, xp, torch_mod, tv_roi_pool, tdev, roi_counts, rng))
    if "fc" in args.only:
        groups.append(lambda: fc_cases(F, xp, torch_mod, TF, tdev, fc_rows, rng))

    rows, all_errors, measured = [], [], {}
    busy_before, own_before = busy_cpu_seconds(), sum(os.times()[:2])
    started = time.perf_counter()
    for make in groups:
        for case in make():
            log(f"{case.title} {case.size} ...")
            times, errors, check = run_case(case, ours, torch_impl, args.repeat, args.sleep, args.max_case_seconds)
            for name, msg in errors.items():
                all_errors.append(f"{case.title} {case.size}, {name}: {msg}")
            for label, phases in case.rows.items():
                om, ob = summarise(times["ours"], phases)
                tm, tb = summarise(times.get("torch", []), phases) if "torch" in times else (None, None)
                ratio = f"{om / tm:.2f}x" if om is not None and tm else "-"
                if om is not None and tm:
                    measured[(case.title + label, case.size)] = om / tm
                reps = len(times["ours"]) or len(times.get("torch", []))
                rows.append([case.title + label, case.size,
                             fmt_ms(om) if "ours" not in errors else "error", fmt_ms(ob),
                             fmt_ms(tm) if "torch" not in errors else "error", fmt_ms(tb), ratio, str(reps),
                             check if label in ("", " fwd+bwd") else ""])
    elapsed = time.perf_counter() - started

    # -- report ---------------------------------------------------------------------------------------------------------
    cols = ["benchmark", "input", "ours median (ms)", "ours best", "torch median (ms)", "torch best", "ours/torch",
            "reps", "check"]
    if torch_impl is None:
        cols, rows = cols[:4] + ["reps"], [r[:4] + [r[7]] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    right = [i >= 2 for i in range(len(cols))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"
    table = [line(cols), "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                                         for w, r in zip(widths, right)) + "|"]
    table += [line(r) for r in rows]

    footer = []
    if torch_impl is not None and args.device == "cpu":
        hits = [(t, s, lim, measured[(t, s)]) for t, s, lim in TARGETS if (t, s) in measured]
        if hits:
            footer.append("Targets (issue 2, ours/PyTorch-CPU): " + "; ".join(
                f"{t} {s} {r:.2f}x (<= {lim:g}x: {'met' if r <= lim else 'NOT met'})" for t, s, lim, r in hits))
    footer += [f"Note: {n}" for n in notes]
    footer += [f"Error: {e}" for e in all_errors]
    footer.append(f"Total benchmark time: {elapsed:.0f} s.")
    busy_after = busy_cpu_seconds()
    if busy_before is not None and busy_after is not None:
        own = sum(os.times()[:2]) - own_before
        others = max(0.0, (busy_after - busy_before) - own) / max(elapsed, 1e-9)
        footer.append(f"Other processes kept ~{others:.2f} cores busy on average during the run"
                      + (": the times are noisy, rerun on a quiet machine." if others > 0.15 else "."))

    report = "\n".join(header + [""] + table + [""] + footer) + "\n"
    sys.stdout.write("\n" + report)
    if args.output:
        Path(args.output).write_text(report, encoding="utf-8")
        log(f"written to {args.output}")
    return 1 if all_errors else 0


if __name__ == "__main__":
    sys.exit(main())

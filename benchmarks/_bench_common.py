"""What the layer benchmarks (bench_conv_stack.py, bench_roi_pool.py, bench_fc.py) share around the timing harness.

* the layers to time: minircnn.functional's, or those a learner's ``--impl FILE.py`` defines (exercise mode);
* the machine, NumPy's BLAS and its threads (set through :mod:`minircnn.threads`, the package's one thread-control
  module), the OpenBLAS-environment warnings, and the optional PyTorch/torchvision reference;
* the command-line flags every script has, and :func:`run`, which prints the header, times the cases
  (``_bench_harness``) and writes the report: a markdown table with the machine, library versions and date.

PyTorch/torchvision are optional and imported only here, inside :func:`load_torch`; without them only our times are
printed and the PyTorch columns are skipped.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from threadpoolctl import threadpool_info  # noqa: E402  (read-only: the count and kernel for the header)

from minircnn.threads import cpu_count, openblas_path, set_blas_threads  # noqa: E402

from _bench_harness import Impl, log, markdown_table, time_cases  # noqa: E402

# The layer functions a benchmark may time (the same contract as the tests' exercise mode).
CONTRACT = (
    "conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward", "relu_forward",
    "relu_backward", "linear_forward", "linear_backward", "roi_pool_forward", "roi_pool_backward",
)


# ----------------------------------------------------------------------------------------------------------------------
# Loading the layers
# ----------------------------------------------------------------------------------------------------------------------
def load_layers(impl_path, needed=CONTRACT):
    """The ``needed`` functions: minircnn.functional's, each replaced by the --impl file's version if it defines one."""
    funcs, source, problem = {}, "minircnn.functional", None
    try:
        package = importlib.import_module("minircnn.functional")
        funcs = {name: getattr(package, name) for name in needed if hasattr(package, name)}
    except Exception as e:  # not written yet, or broken
        problem = f"minircnn.functional does not import ({type(e).__name__}: {e})"
    if impl_path:
        path = Path(impl_path).resolve()
        spec = importlib.util.spec_from_file_location("bench_impl_" + path.stem, path)
        if spec is None or not path.is_file():
            sys.exit(f"--impl: {impl_path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mine = [name for name in needed if callable(getattr(module, name, None))]
        funcs.update({name: getattr(module, name) for name in mine})
        source = f"{path.name} ({len(mine)} of {len(needed)} functions)"
        if len(mine) < len(needed):
            source += " + minircnn.functional" if not problem else ""
    elif problem:
        sys.exit(problem + "; nothing to benchmark (use --impl FILE.py to time your own layers)")
    if not funcs:
        sys.exit("minircnn.functional defines none of the layer functions yet; nothing to benchmark "
                 "(use --impl FILE.py to time your own layers)")
    missing = [name for name in needed if name not in funcs]
    if missing:
        log(f"missing layer functions (their benchmarks will show 'error'): {', '.join(missing)}")
    return types.SimpleNamespace(**funcs), source


# ----------------------------------------------------------------------------------------------------------------------
# Machine, threads, BLAS
# ----------------------------------------------------------------------------------------------------------------------
def numpy_blas_info():
    """(description, thread count or None) of numpy's BLAS: its name and version, and the OpenBLAS kernel."""
    name, version = "unknown BLAS", ""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name, version = blas.get("name", name), blas.get("version", "")
    except Exception:
        pass
    desc = f"{name} {version}".strip()
    path = openblas_path()
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    pool = next((p for p in pools if path and p.get("filepath") == path), pools[0] if pools else None)
    if pool is None:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        return desc, (int(env) if env and env.isdigit() else None)
    if pool.get("architecture"):
        desc += f", kernel {pool['architecture']}"
    return desc, pool.get("num_threads")


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


def openblas_env_warnings(script):
    found = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if not found:
        return []
    setting = ", ".join(f"{k}={v}" for k, v in found.items())
    return [f"WARNING: {setting} is set in the environment. It pins/tunes OpenBLAS for old builds and slows a current "
            f"numpy; for a fair benchmark unset both in this command only: "
            f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python {script}` "
            f"(and check the kernel named on the numpy line)."]


def load_torch(device):
    """(torch, torch.nn.functional, torchvision.ops.roi_pool or None, torch device, note); torch None if unusable."""
    try:
        import torch
        import torch.nn.functional as TF
    except Exception as e:
        return None, None, None, None, (f"PyTorch not importable ({type(e).__name__}: {e}): no reference times, "
                                        "the PyTorch columns are skipped")
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
# Command line
# ----------------------------------------------------------------------------------------------------------------------
def make_parser(doc, quick_help):
    """The flags every layer benchmark has; a script adds its own before parsing with :func:`parse_args`."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="timed calls per implementation and case (default 3; 1 with --quick)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: NumPy vs PyTorch-CPU; gpu: CuPy (minircnn.backend.get_xp('gpu')) vs PyTorch-CUDA")
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
    return p


def parse_args(p, argv=None):
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


# ----------------------------------------------------------------------------------------------------------------------
# The run: header, cases, report
# ----------------------------------------------------------------------------------------------------------------------
def run(args, *, title, script, needed, make_cases, targets=()):
    """Time the cases ``make_cases(env)`` returns and print the report; returns the exit status (1 on any error).

    ``env`` has the layers ``F``, the array module ``xp``, the PyTorch modules (``torch``, ``TF``, ``tv_roi_pool``,
    ``tdev``; None without PyTorch), an ``rng`` seeded with ``--seed``, and ``notes``, a list a script may append to
    (printed under the table). ``targets``: (benchmark, input, limit) rows of issue 2's targets, ours / PyTorch-CPU.
    """
    F, layer_source = load_layers(args.impl, needed)

    # -- arrays: NumPy or CuPy
    # ------------------------------------------------------------------------------------------
    if args.device == "gpu":
        from minircnn.backend import get_xp
        try:
            xp = get_xp("gpu")
        except Exception as e:
            sys.exit(f"--device gpu: {e}")
        ours = Impl("ours", lambda: xp.cuda.Device().synchronize(), xp.asnumpy)
    else:
        xp = np
        ours = Impl("ours", lambda: None, np.asarray)

    # -- threads
    # --------------------------------------------------------------------------------------------------------
    notes = []
    if args.threads is not None:
        set_blas_threads(args.threads)
    blas_desc, np_threads = numpy_blas_info()
    if args.threads is not None and np_threads != args.threads:
        notes.append(f"could not set numpy's BLAS threads to {args.threads} (set OPENBLAS_NUM_THREADS instead)")
    threads = args.threads or np_threads or cpu_count()

    # -- PyTorch
    # --------------------------------------------------------------------------------------------------------
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
            torch_note = f"torch {torch_mod.__version__} (no torchvision)"
            if tv_roi_pool is not None:
                import torchvision
                torch_note = f"torch {torch_mod.__version__}, torchvision {torchvision.__version__}"

    # -- header
    # ---------------------------------------------------------------------------------------------------------
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = f"{os.cpu_count()} logical cores ({cpu_count()} usable)"
    mem = memory_gib()
    header = [f"# minircnn layer benchmark: {title}", "",
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
    header += [f"- {w}" for w in openblas_env_warnings(script)]
    for line in header[2:]:  # the same lines head the report on stdout at the end
        log(line)

    # -- cases
    # ----------------------------------------------------------------------------------------------------------
    torch_impl = None
    if torch_mod is not None:
        tsync = torch_mod.cuda.synchronize if args.device == "gpu" else (lambda: None)
        torch_impl = Impl("torch", tsync, lambda t: t.detach().cpu().numpy())
    env = types.SimpleNamespace(F=F, xp=xp, torch=torch_mod, TF=TF, tv_roi_pool=tv_roi_pool, tdev=tdev,
                                rng=np.random.default_rng(args.seed), notes=notes)
    busy_before, own_before = busy_cpu_seconds(), sum(os.times()[:2])
    started = time.perf_counter()
    rows, all_errors, measured = time_cases(make_cases(env), ours, torch_impl, args.repeat, args.sleep,
                                            args.max_case_seconds)
    elapsed = time.perf_counter() - started

    # -- report
    # ---------------------------------------------------------------------------------------------------------
    table = markdown_table(rows, with_torch=torch_impl is not None)
    footer = []
    if torch_impl is not None and args.device == "cpu":
        hits = [(t, s, lim, measured[(t, s)]) for t, s, lim in targets if (t, s) in measured]
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

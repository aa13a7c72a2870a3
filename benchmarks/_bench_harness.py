"""The timing harness the layer benchmarks share: interleaved, warmed-up, paused timed calls and the results table.

Fairness rules (benchmarks/README.md, "Why the benchmark sleeps"): the two implementations are interleaved run by run
(the one that goes first alternates), and every timed call is preceded by a garbage collection and a short sleep
(0.2 s by default), because idle OpenBLAS/OpenMP worker pools keep spinning for ~0.1 s after a call and would slow the
other library down. Each case gets one untimed warm-up call per implementation; the table reports the median and the
best of the timed calls and the ratio of the medians, ours / PyTorch.

The "check" column is ||ours - torch|| / ||torch|| (Frobenius norms) on the warm-up outputs, the worst of the compared
tensors, naming the worst when it is above 1e-4. It shows both sides did the same work; it is not a correctness test
(the tests are).
"""
from __future__ import annotations

import gc
import statistics
import sys
import time

import numpy as np


def log(msg):
    """Progress goes to stderr; the report goes to stdout at the end."""
    print(msg, file=sys.stderr, flush=True)


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
    """(median, best) of the summed ``phases`` over the timed calls; (None, None) when there were none."""
    totals = [sum(d[p] for p in phases) for d in phase_dicts]
    if not totals:
        return None, None
    return statistics.median(totals), min(totals)


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def time_cases(cases, ours, torch_impl, repeat, sleep_s, max_case_s):
    """Run every case; return (table rows, errors, {(benchmark, input): ours/torch median ratio})."""
    rows, all_errors, measured = [], [], {}
    for case in cases:
        log(f"{case.title} {case.size} ...")
        times, errors, check = run_case(case, ours, torch_impl, repeat, sleep_s, max_case_s)
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
    return rows, all_errors, measured


def markdown_table(rows, with_torch):
    """The report's table; without PyTorch its columns (torch times, ratio, check) are left out."""
    cols = ["benchmark", "input", "ours median (ms)", "ours best", "torch median (ms)", "torch best", "ours/torch",
            "reps", "check"]
    if not with_torch:
        cols, rows = cols[:4] + ["reps"], [r[:4] + [r[7]] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    right = [i >= 2 for i in range(len(cols))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"
    table = [line(cols), "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                                         for w, r in zip(widths, right)) + "|"]
    return table + [line(r) for r in rows]

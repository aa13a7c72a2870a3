"""``log.csv``: one row per SGD step (iteration, lr, the loss terms, seconds), readable while the run goes on.

A run that trains an RPN too (``--proposals rpn``) has two more columns, ``loss_rpn_cls`` and ``loss_rpn_bbox``.
"""
from __future__ import annotations

import csv
from pathlib import Path

LOG_FIELDS = ("iteration", "lr", "loss_cls", "loss_bbox", "seconds")   # seconds: since this process began training
RPN_FIELDS = ("loss_rpn_cls", "loss_rpn_bbox")


def log_fields(rpn: bool = False) -> tuple:
    """The columns of a run's log: :data:`LOG_FIELDS`, with the RPN's two losses before ``seconds`` if ``rpn``."""
    return LOG_FIELDS[:-1] + RPN_FIELDS + LOG_FIELDS[-1:] if rpn else LOG_FIELDS


def read_log(path, upto):
    """Rows of an existing log.csv with iteration <= upto (a resumed run drops the steps it will redo)."""
    if not Path(path).is_file():
        return []
    kept = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):                 # a killed run may have left a half-written last line
            if any(not row.get(k) for k in LOG_FIELDS) or row["iteration"] != str(len(kept) + 1) \
                    or len(kept) == upto:
                break
            kept.append(row)
    return kept


def log_row(iteration, lr, terms, seconds) -> dict:
    """One row of the log (the values as the file holds them)."""
    row = {"iteration": iteration, "lr": f"{lr:.6g}", "loss_cls": f"{terms.cls:.6f}",
           "loss_bbox": f"{terms.bbox:.6f}", "seconds": f"{seconds:.3f}"}
    if hasattr(terms, "rpn_cls"):
        row.update(loss_rpn_cls=f"{terms.rpn_cls:.6f}", loss_rpn_bbox=f"{terms.rpn_bbox:.6f}")
    return row


def running_means(rows, window=20) -> dict:
    """The mean of each loss over the last ``window`` rows, for the progress bar."""
    keys = [k[len("loss_"):] for k in rows[-1] if k.startswith("loss_")]
    return {key: f"{sum(float(r['loss_' + key]) for r in rows[-window:]) / len(rows[-window:]):.3f}"
            for key in keys}


def save_loss_plot(rows, path) -> None:
    """``loss.png`` from the rows (:func:`minircnn.visualize.save_loss_curves`)."""
    from ..visualize import save_loss_curves
    keys = [k for k in rows[0] if k.startswith("loss_")]
    save_loss_curves([int(r["iteration"]) for r in rows], {key: [float(r[key]) for r in rows] for key in keys}, path)

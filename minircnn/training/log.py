"""``log.csv``: one row per SGD step (iteration, lr, the two loss terms, seconds), readable while the run goes on."""
from __future__ import annotations

import csv
from pathlib import Path

LOG_FIELDS = ("iteration", "lr", "loss_cls", "loss_bbox", "seconds")   # seconds: since this process began training


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
    return {"iteration": iteration, "lr": f"{lr:.6g}", "loss_cls": f"{terms.cls:.6f}",
            "loss_bbox": f"{terms.bbox:.6f}", "seconds": f"{seconds:.3f}"}


def running_means(rows, window=20) -> dict:
    """The mean of each loss over the last ``window`` rows, for the progress bar."""
    return {key: f"{sum(float(r['loss_' + key]) for r in rows[-window:]) / len(rows[-window:]):.3f}"
            for key in ("cls", "bbox")}


def save_loss_plot(rows, path) -> None:
    """``loss.png`` from the rows (:func:`minircnn.visualize.save_loss_curves`)."""
    from ..visualize import save_loss_curves
    save_loss_curves([int(r["iteration"]) for r in rows],
                     {key: [float(r[key]) for r in rows] for key in ("loss_cls", "loss_bbox")}, path)

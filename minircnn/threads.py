"""Thread control, in one place: how many threads BLAS uses, and where NumPy's OpenBLAS library is.

minircnn's CPU work runs on two kinds of threads:

* **BLAS threads**, inside the GEMMs of NumPy's OpenBLAS (convolutions, fc layers). They are set here, through
  threadpoolctl, by every command (``--threads``) and by the training config (``blas_threads``). The presets use 1:
  OpenBLAS threads busy-wait for work, and on a 2-core machine shared with another process two BLAS threads made a
  pretraining step 7x slower than one (3.5 s against 0.45 s, measured).
* **minircnn's own worker threads**, which use the cores instead: the images of a training step go through the
  convs in parallel threads (:class:`minircnn.nn.Sequential`, ``slices``), the images of a test set through the
  network in parallel (:mod:`minircnn.inference.im_detect`), and the next mini-batch is prepared while a step
  computes. NumPy releases the GIL inside BLAS calls and element-wise loops, so these threads run at once.

With one BLAS thread per worker thread the cores are not oversubscribed.
"""
from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else ``os.cpu_count()``)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:                # macOS, Windows
        return os.cpu_count() or 1


def set_blas_threads(n: int) -> int:
    """Use ``n`` BLAS threads from now on (0: one per core); returns the number set.

    Raises:
        ValueError: ``n`` is negative.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"threads must be >= 0 (0: one per core), got {n}")
    n = n or cpu_count()
    threadpool_limits(limits=n, user_api="blas")
    return n


def openblas_path() -> str | None:
    """The file of the OpenBLAS library NumPy calls (NumPy's bundled one in a wheel), or None for another BLAS."""
    import numpy  # noqa: F401  (threadpoolctl lists the libraries loaded so far)
    for pool in threadpool_info():
        if pool.get("internal_api") == "openblas":
            return pool["filepath"]
    return None

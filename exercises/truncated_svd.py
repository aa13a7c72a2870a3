"""Exercise: truncated SVD of a fully connected layer's weight, Fast R-CNN's test-time compression (paper Sec. 3.1,
Eq. 5; docs/reference.md §11; lesson 10).

Copy this file (e.g. to ``my_svd.py``), fill in ``truncated_svd``, and check it::

    python -m pytest tests/inference/test_svd.py --impl my_svd.py

The package's answer is ``minircnn/inference/svd.py``: read it after your own attempt.
"""
import numpy as np


def truncated_svd(w, rank):
    """The two factors of the best rank-``rank`` approximation of ``w``: one fc layer becomes two.

    Args:
        w: (out, in) float array, an fc layer's weight.
        rank: t, with 1 <= t <= min(out, in).

    Returns:
        L: (t, in) ``Sigma_t V_t^T``, the first layer's weight (row i has norm sigma_i).
        U: (out, t) ``U_t``, the second layer's weight (orthonormal columns); ``U @ L`` approximates ``w``.
        Both in ``w``'s dtype.

    Steps: ``np.linalg.svd(w, full_matrices=False)`` gives U, the singular values s (largest first) and V^T; keep
    the first t of each, and put the singular values into L (scale row i of V^T by s[i]).
    """
    raise NotImplementedError("write truncated_svd: see its docstring")

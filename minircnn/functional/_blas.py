"""``c += a @ b`` without a temporary, by calling the BLAS that NumPy already uses with beta = 1.

Why: a convolution here is a sum of kh*kw matrix products into one output. With ``c += a @ b`` every product
writes a fresh output-sized temporary and then reads it back to add it: two extra passes over the output per
kernel offset, which at ~20 GB/s cost about as much as the arithmetic for the early VGG16 layers. GEMM itself can
accumulate (``C = alpha*A*B + beta*C``), and it reads strided operands in place (a leading dimension per matrix).

This is only a speed-up: when NumPy's bundled OpenBLAS cannot be found (another NumPy build), when the arrays are
CuPy arrays, or when a layout is not a plain strided matrix, it falls back to ``c += a @ b``. Same numbers either way,
up to float rounding order.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..threads import openblas_path

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _load_gemm():
    """{dtype: cblas function} from the OpenBLAS NumPy calls (:func:`minircnn.threads.openblas_path`), or {}."""
    path = openblas_path()
    try:
        lib = ctypes.CDLL(path) if path else None
    except OSError:
        lib = None
    if lib is None:
        return {}
    for prefix, suffix, int_t in (("scipy_", "64_", ctypes.c_int64), ("", "64_", ctypes.c_int64),
                                  ("scipy_", "", ctypes.c_int), ("", "", ctypes.c_int)):
        found = {}
        for dtype, name, real in ((np.float32, "sgemm", ctypes.c_float), (np.float64, "dgemm", ctypes.c_double)):
            fn = getattr(lib, f"{prefix}cblas_{name}{suffix}", None)
            if fn is None:
                break
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real, ctypes.c_void_p,
                           int_t, ctypes.c_void_p, int_t, real, ctypes.c_void_p, int_t]
            found[np.dtype(dtype)] = fn
        if len(found) == 2:
            return found
    return {}


_GEMM = _load_gemm()


def _layout(a):
    """(transpose flag, leading dimension) of a 2-D NumPy array BLAS can read in place, or None."""
    item = a.itemsize
    s0, s1 = a.strides
    if s1 == item and s0 % item == 0 and s0 // item >= max(a.shape[1], 1):
        return _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(a.shape[0], 1):
        return _TRANS, s1 // item
    return None


def matmul_accumulate(a, b, c) -> None:
    """In place ``c += a @ b`` for 2-D arrays: a (M, K), b (K, N), c (M, N), one floating dtype.

    a and b may be transposed or strided views (row stride >= row length); c must have unit column stride.
    """
    fn = _GEMM.get(c.dtype) if isinstance(c, np.ndarray) else None
    la, lb = (_layout(a), _layout(b)) if fn is not None else (None, None)
    if (fn is None or la is None or lb is None or not (a.dtype == b.dtype == c.dtype)
            or c.strides[1] != c.itemsize or not c.flags.writeable):
        c += a @ b
        return
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0 or k == 0:
        return
    fn(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1], 1.0, c.ctypes.data,
       c.strides[0] // c.itemsize)

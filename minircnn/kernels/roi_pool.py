"""RoI max pooling forward as a CUDA kernel: one thread per output element (r, c, i, j).

The bins come from :func:`minircnn.functional.roi_pool.roi_bins`, computed with the same CuPy/NumPy code as on the
CPU, so the kernel only takes the max of its bin, scanning row-major and replacing only on a strictly larger value
(first maximum wins, like the original layer). The NumPy twin is ``minircnn.functional._roi_pool_cpu``; a ``gpu``
test checks that both give identical values and argmaxes.
"""
from __future__ import annotations

from ..backend import get_array_module

_SOURCE = r"""
const int j = i % PW;
const int ii = (i / PW) % PH;
const int c = (i / (PW * PH)) % C;
const int r = i / (PW * PH * C);
const long long h0 = hstart[r * PH + ii], h1 = hend[r * PH + ii];
const long long w0 = wstart[r * PW + j], w1 = wend[r * PW + j];
if (h1 <= h0 || w1 <= w0) {          // bin entirely off the map
    y = 0;
    argmax = -1;
} else {
    const long long plane = (batch[r] * C + c) * (long long)H * W;
    int best_at = (int)(h0 * W + w0);
    T best = x[plane + best_at];
    for (long long h = h0; h < h1; ++h) {
        for (long long w = w0; w < w1; ++w) {
            const int at = (int)(h * W + w);
            const T v = x[plane + at];
            if (v > best) { best = v; best_at = at; }
        }
    }
    y = best;
    argmax = best_at;
}
"""

_kernel = None


def _get_kernel(cupy):
    global _kernel
    if _kernel is None:
        _kernel = cupy.ElementwiseKernel(
            "raw T x, raw int64 batch, raw int64 hstart, raw int64 hend, raw int64 wstart, raw int64 wend, "
            "int32 C, int32 H, int32 W, int32 PH, int32 PW",
            "T y, int32 argmax",
            _SOURCE,
            "minircnn_roi_pool_forward",
        )
    return _kernel


def roi_pool_forward_gpu(x, bins, output_size):
    """Pool every RoI's bins of the CuPy feature map x; returns (y, argmax) like the CPU twin.

    Args:
        x: (N, C, H, W) CuPy float array.
        bins: :class:`minircnn.functional.roi_pool.RoIBins` (CuPy int64 arrays).
        output_size: (pooled_h, pooled_w).

    Returns:
        y: (R, C, pooled_h, pooled_w), x's dtype; argmax: same shape, int32, -1 for empty bins.
    """
    cupy = get_array_module(x)
    n, c, h, w = x.shape
    ph, pw = output_size
    r = bins.batch.shape[0]
    y = cupy.empty((r, c, ph, pw), dtype=x.dtype)
    argmax = cupy.empty((r, c, ph, pw), dtype=cupy.int32)
    if y.size:
        contiguous = [cupy.ascontiguousarray(a) for a in
                      (x, bins.batch, bins.hstart, bins.hend, bins.wstart, bins.wend)]
        _get_kernel(cupy)(*contiguous, c, h, w, ph, pw, y, argmax)
    return y, argmax

"""RoI max pooling forward on the CPU: window-maximum tables shared by all RoIs, then one gather per bin size.

A bin covers ``bh x bw`` cells of the map starting at ``(hstart, wstart)``. Many bins of many RoIs share a size, so
instead of reducing every bin separately (a Python loop over 2000 RoIs x 49 bins), the max over *every*
``bh x bw`` window of the map is computed once as a table, and each bin's answer is read from the table at its
top-left corner. The tables are built incrementally and separably (a window of width k is a window of width k-1
plus one column; then likewise for rows), so each distinct bin size costs about one elementwise ``maximum`` over
the map. The map is kept channels-last, so reading a bin's answer copies one contiguous row of C values.

Max and argmax come from one reduction: each float is mapped to an integer key of the same order and packed with
its flat position into one int64, ``key << 32 | (2**32 - 1 - position)``. The largest packed number is the largest
value and, among equal values, the smallest position -- the original layer's "first maximum in row-major order".
"""
from __future__ import annotations

import numpy as np

ROIS_PER_CHUNK = 128      # output cells gathered and decoded per step
CHANNELS_PER_BLOCK = 64   # channels whose window-maximum tables are built together (they stay in the L2 cache)


def order_keys(x):
    """int32 keys with the order of x's values (equal values, including -0.0 and +0.0, get equal keys), as int64.

    float32: the IEEE bit pattern with the magnitude bits of negatives flipped -- exact, and its own inverse
    (:func:`float32_bits_from_keys`). Other dtypes (float64 in gradient checks): the rank among x's distinct values.
    """
    if x.dtype == np.float32:
        bits = x.view(np.int32).copy()
        bits[bits == np.iinfo(np.int32).min] = 0          # -0.0 -> +0.0
        return _flip_negatives(bits).astype(np.int64)
    return np.unique(x, return_inverse=True)[1].reshape(x.shape).astype(np.int64)


def _flip_negatives(bits):
    """In place on int32: flip the 31 magnitude bits where the sign bit is set (maps float order to int order)."""
    bits ^= (bits >> 31) & 0x7FFFFFFF
    return bits


def pack(x_cl):
    """int64 ``key << 32 | (2**32 - 1 - position)``: its max is the max value and, on ties, the first position.

    Args:
        x_cl: (N, H, W, C) channels-last map. Position = h*W + w in the map's plane.
    """
    _, h, w, _ = x_cl.shape
    low = (0xFFFFFFFF - np.arange(h * w, dtype=np.int64)).reshape(1, h, w, 1)
    return (order_keys(x_cl) << 32) | low


def _unpack_into(rows, y, argmax, x_cl, rows_b):
    """Packed (k*ph*pw, C) rows -> y (k, C, ph, pw) values and argmax positions, transposing on the way.

    As int32 words the packed number is (low, high) on a little-endian machine: high is the key, and
    low = 2**32 - 1 - position reads as ``-1 - position`` = ``~position``. A row of zeros unpacks to value +0.0 with
    argmax -1, which is what an empty bin outputs.
    """
    k, c, ph, pw = y.shape
    cells_last = np.ascontiguousarray(rows.reshape(k, ph * pw, c).transpose(0, 2, 1))    # (k, C, ph*pw) int64
    words = cells_last.view(np.int32).reshape(k, c, ph, pw, 2)
    low, high = (0, 1) if np.little_endian else (1, 0)
    np.invert(words[..., low], out=argmax)
    if x_cl.dtype == np.float32:
        bits = y.view(np.int32)
        bits[...] = words[..., high]
        _flip_negatives(bits)
    else:
        flat = x_cl.reshape(x_cl.shape[0], -1, c)
        channel = np.arange(c)[None, :, None, None]
        y[...] = np.where(argmax >= 0, flat[rows_b.reshape(k, 1, ph, pw), np.maximum(argmax, 0), channel], 0)


def roi_pool_forward_cpu(x, bins, output_size):
    """Pool every RoI's bins of the NumPy feature map x; returns (y, argmax) like the original layer.

    Args:
        x: (N, C, H, W) float array.
        bins: :class:`minircnn.functional.roi_pool.RoIBins` (NumPy arrays).
        output_size: (pooled_h, pooled_w).

    Returns:
        y: (R, C, pooled_h, pooled_w), x's dtype, 0 in empty bins.
        argmax: same shape, int32 flat index h*W + w of the max in its plane, -1 in empty bins.
    """
    n, c, h, w = x.shape
    ph, pw = output_size
    r_count = bins.batch.shape[0]
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))                       # (N, H, W, C)
    packed = pack(x_cl)

    # every output cell (r, i, j) as one row: its bin size and the table corner its answer sits at
    def per_cell(a):
        return np.broadcast_to(a, (r_count, ph, pw)).reshape(r_count, ph * pw)
    bh = per_cell((bins.hend - bins.hstart)[:, :, None])
    bw = per_cell((bins.wend - bins.wstart)[:, None, :])
    b_at, h_at, w_at = (per_cell(bins.batch[:, None, None]), per_cell(bins.hstart[:, :, None]),
                        per_cell(bins.wstart[:, None, :]))
    size_code = np.unique(bh * (w + 1) + bw)                                   # distinct (height, width) pairs
    sizes = np.stack([size_code // (w + 1), size_code % (w + 1)], axis=1)

    # which cells of each chunk of RoIs read which table, and where: worked out once, used for every channel block
    plan = []
    for lo in range(0, r_count, ROIS_PER_CHUNK):
        hi = min(lo + ROIS_PER_CHUNK, r_count)
        size_lo = bh[lo:hi].ravel() * (w + 1) + bw[lo:hi].ravel()
        reads = []
        for code in np.unique(size_lo):
            cells = np.flatnonzero(size_lo == code)
            reads.append((divmod(int(code), w + 1), cells,
                          (b_at[lo:hi].ravel()[cells], h_at[lo:hi].ravel()[cells], w_at[lo:hi].ravel()[cells])))
        empty = (bh[lo:hi] == 0).ravel() | (bw[lo:hi] == 0).ravel()
        plan.append((lo, hi, reads, empty))

    y = np.empty((r_count, c, ph, pw), dtype=x.dtype)
    argmax = np.empty((r_count, c, ph, pw), dtype=np.int32)
    buf = np.empty((min(ROIS_PER_CHUNK, r_count) * ph * pw, min(CHANNELS_PER_BLOCK, c)), dtype=np.int64)
    for c0 in range(0, c, CHANNELS_PER_BLOCK):   # a block's tables fit in cache, so building them is fast
        c1 = min(c0 + CHANNELS_PER_BLOCK, c)
        tables = _window_max_tables(np.ascontiguousarray(packed[..., c0:c1]), sizes)
        for lo, hi, reads, empty in plan:
            rows = buf[:(hi - lo) * ph * pw, :c1 - c0]
            for size, cells, corner in reads:
                if size in tables:
                    rows[cells] = tables[size][corner]
            rows[empty] = 0                                                   # empty bins: 0, argmax -1
            _unpack_into(rows, y[lo:hi, c0:c1], argmax[lo:hi, c0:c1], x_cl[..., c0:c1], b_at[lo:hi].ravel())
    if x.dtype == np.float32 and np.signbit(x[x == 0]).any():
        # keys merged -0.0 into +0.0; give zero outputs the sign of the element that won, as the original does
        idx = np.nonzero((y == 0) & (argmax >= 0))
        y[idx] = x.reshape(n, c, h * w)[bins.batch[idx[0]], idx[1], argmax[idx]]
    return y, argmax


def _window_max_tables(packed, sizes):
    """{(j, k): table} with table[n, h, w] = max of packed[n, h:h+j, w:w+k] for every (j, k) in sizes (j, k >= 1).

    Built incrementally: a width-k row maximum is a width-(k-1) one and one more column; a j x k window maximum is a
    (j-1) x k one and one more row. So each distinct size costs about one elementwise maximum over the map.
    """
    tables = {}
    row_max, k_now = packed, 1
    for k in np.unique(sizes[:, 1]):
        if k < 1:
            continue
        while k_now < k:
            row_max = np.maximum(row_max[:, :, :-1], packed[:, :, k_now:])
            k_now += 1
        win_max, j_now = row_max, 1
        for j in np.unique(sizes[sizes[:, 1] == k, 0]):
            if j < 1:
                continue
            while j_now < j:
                win_max = np.maximum(win_max[:, :-1], row_max[:, j_now:])
                j_now += 1
            tables[(int(j), int(k))] = win_max
    return tables

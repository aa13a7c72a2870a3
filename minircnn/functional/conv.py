"""2-D convolution (cross-correlation, like Caffe and PyTorch) as a sum of GEMMs over kernel offsets.

The idea, in one picture. Zero-pad each input plane and flatten it row by row (row length ``Wp``). For kernel offset
``(i, j)`` the inputs that meet weight ``w[:, :, i, j]`` are, for every output pixel, the pixel ``(i, j)`` away from
the window's corner. In the flattened plane that is one *strided slice*, starting at ``i*Wp + j`` and stepping by
the stride. So

    y[:, q] = sum over (i, j) of  w[:, :, i, j] @ x_flat[:, i*Wp + j + stride*q]

is ``kh*kw`` matrix products ``(out, in) @ (in, L)`` accumulated into one output, with no im2col matrix: for stride 1
each slice is a view that BLAS reads in place. The output is computed at the padded row length (a few junk columns
per row, where the slice wraps into the next row) and cropped. Backward uses the same slices:
``dw[:, :, i, j] = dy @ slice^T`` and ``dx[slice] += w[:, :, i, j]^T @ dy``. With a stride > 1 an offset's inputs are
a 2-D strided window of the padded plane instead (copied into a matrix for the product; no junk columns).

When the input has few channels (conv1_1 has 3), ``kh*kw`` thin products would each re-read the whole output, so the
slices are stacked into a small im2col matrix and one product does the layer; likewise for small maps, where each
offset's product would have too few columns to run BLAS at full speed. Output rows are computed in chunks small enough
for the accumulator to stay in cache across the ``kh*kw`` products.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module
from ._blas import matmul_accumulate
from ._checks import check_array, check_positive_int

# Stack the offsets into one im2col matrix when in_channels * kh * kw is at most this (conv1_1: 3*3*3 = 27), or when
# the map is small enough that one product with K = C*kh*kw beats kh*kw products with few columns (VGG16's conv5 at
# 14x14).
IM2COL_MAX_ROWS = 64
IM2COL_MAX_COLUMNS = 1024
# Outputs per plane computed in one go (a chunk of whole output rows); see _row_chunks.
CHUNK_COLUMNS = 8192


class ConvGeometry(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    pad: int
    h_out: int
    w_out: int
    wp: int       # padded row length
    rows: int     # padded rows, enough that every offset's slice stays inside the buffer
    wq: int       # outputs computed per row: wp for stride 1 (the last wp - w_out are junk, cropped), else w_out
    length: int   # outputs computed per plane: h_out * wq

    def offsets(self):
        """Kernel offsets (i, j) in row-major order (w's layout)."""
        return [(i, j) for i in range(self.kh) for j in range(self.kw)]


class Conv2dCache(NamedTuple):
    x_flat: object        # (N, C, rows*wp) zero-padded, flattened input
    w: object             # (out, in, kh, kw)
    geometry: ConvGeometry


class GroupedConv2dCache(NamedTuple):
    caches: tuple         # one Conv2dCache per group, in channel order
    out_shape: tuple      # (N, out, H_out, W_out) of the whole output


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe/PyTorch convolution output size: floor((size + 2*pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def _geometry(x_shape, w_shape, stride, pad) -> ConvGeometry:
    n, c, h, w = x_shape
    _, _, kh, kw = w_shape
    h_out, w_out = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"the {kh}x{kw} kernel does not fit the padded {h + 2 * pad}x{w + 2 * pad} input "
                         f"(x {tuple(x_shape)}, pad {pad})")
    wp = w + 2 * pad
    wq = wp if stride == 1 else w_out
    length = h_out * wq
    rows = h + 2 * pad
    if stride == 1:
        last = (kh - 1) * wp + (kw - 1) + length - 1          # largest flat index a slice reads
        rows = max(rows, last // wp + 1)
    return ConvGeometry(n, c, h, w, kh, kw, stride, pad, h_out, w_out, wp, rows, wq, length)


def _window(plane, offset, g: ConvGeometry, r0: int, r1: int):
    """The inputs that meet kernel offset (i, j) for output rows [r0, r1), as a writable view of a flattened
    (C, rows*wp) plane.

    Stride 1: a (C, (r1-r0)*wp) slice of the flat plane starting at (i + r0)*wp + j. Stride s: the
    (C, r1-r0, w_out) window ``plane[:, i + s*r0 : ... : s, j::s]`` of the 2-D plane.
    """
    i, j = offset
    if g.stride == 1:
        start = (i + r0) * g.wp + j
        return plane[:, start: start + (r1 - r0) * g.wp]
    s = g.stride
    grid = plane.reshape(g.c, g.rows, g.wp)
    return grid[:, i + s * r0: i + s * (r1 - 1) + 1: s, j: j + s * (g.w_out - 1) + 1: s]


def _cols(plane, offset, g: ConvGeometry, r0: int, r1: int):
    """The (C, (r1-r0)*wq) matrix of :func:`_window` (a view for stride 1, a copy otherwise)."""
    return _window(plane, offset, g, r0, r1).reshape(g.c, -1)


def _use_im2col(g: ConvGeometry) -> bool:
    return g.c * g.kh * g.kw <= IM2COL_MAX_ROWS or g.length <= IM2COL_MAX_COLUMNS


def _im2col(plane, g: ConvGeometry, r0: int, r1: int):
    """(C*kh*kw, (r1-r0)*wq) matrix of all offset windows, rows ordered (c, i, j) like ``w.reshape(out, -1)``."""
    xp = get_array_module(plane)
    cols = xp.stack([_cols(plane, off, g, r0, r1) for off in g.offsets()], axis=1)
    return cols.reshape(g.c * g.kh * g.kw, -1)


def _row_chunks(g: ConvGeometry):
    """Output rows in chunks of about CHUNK_COLUMNS outputs, so each chunk's accumulator stays in cache while all
    kh*kw products add into it (measured ~12% faster than whole-plane products for VGG16's conv1_2)."""
    step = max(1, CHUNK_COLUMNS // g.wq)
    return step, [(r0, min(r0 + step, g.h_out)) for r0 in range(0, g.h_out, step)]


def conv2d_forward(x, w, b, stride: int = 1, pad: int = 0, groups: int = 1):
    """Convolution forward: ``y[n, o] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j]``.

    With ``groups`` g > 1 the channels split into g consecutive blocks and output block t sees only input block t
    (Caffe's ``group``, CaffeNet's conv2, conv4 and conv5: g = 2, docs/reference.md §2): ``w`` then holds C/g input
    channels.

    Args:
        x: (N, C, H, W) floating input.
        w: (out, C/groups, kh, kw) weights, same dtype as x (Caffe/torchvision layout).
        b: (out,) biases, same dtype as x.
        stride: step of the window, >= 1.
        pad: zeros added on each side, >= 0.
        groups: number of channel groups, dividing both C and out.

    Returns:
        y: (N, out, H_out, W_out) with ``H_out = floor((H + 2*pad - kh) / stride) + 1`` (likewise W_out).
        cache: for :func:`conv2d_backward`.
    """
    check_array("x", x, 4, "(N, C, H, W)")
    check_array("w", w, 4, "(out, in, kh, kw)")
    check_array("b", b, 1, "(out,)")
    groups = check_positive_int("groups", groups, 1)
    if w.shape[1] * groups != x.shape[1] or w.shape[0] % groups:
        raise ValueError(f"w has {w.shape[1]} input channels per group and {w.shape[0]} outputs (shape "
                         f"{tuple(w.shape)}) but x has {x.shape[1]} input channels (shape {tuple(x.shape)}) and "
                         f"groups={groups}: need w.shape[1] * groups == C and out divisible by groups")
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"b must have shape ({w.shape[0]},) to match w's {w.shape[0]} outputs, got {tuple(b.shape)}")
    if not (x.dtype == w.dtype == b.dtype):
        raise ValueError(f"x, w and b must share one dtype, got {x.dtype}, {w.dtype}, {b.dtype}")
    stride = check_positive_int("stride", stride, 1)
    pad = check_positive_int("pad", pad, 0)
    if groups > 1:
        return _grouped_forward(x, w, b, stride, pad, groups)
    xp = get_array_module(x)
    g = _geometry(x.shape, w.shape, stride, pad)

    x_pad = xp.zeros((g.n, g.c, g.rows, g.wp), dtype=x.dtype)
    x_pad[:, :, pad:pad + g.h, pad:pad + g.w] = x
    x_flat = x_pad.reshape(g.n, g.c, g.rows * g.wp)

    out_c = w.shape[0]
    y = xp.empty((g.n, out_c, g.h_out, g.w_out), dtype=x.dtype)
    step, chunks = _row_chunks(g)
    buf = xp.empty((out_c, step * g.wq), dtype=x.dtype)
    if _use_im2col(g):
        w2 = w.reshape(out_c, -1)
    else:
        w_ij = xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(g.kh * g.kw, out_c, g.c)
    for n in range(g.n):
        for r0, r1 in chunks:
            acc = buf[:, :(r1 - r0) * g.wq]
            acc[...] = b[:, None]                           # start from the bias, then add every offset's product
            if _use_im2col(g):
                matmul_accumulate(w2, _im2col(x_flat[n], g, r0, r1), acc)
            else:
                for k, off in enumerate(g.offsets()):     # acc += w[:, :, i, j] @ window, inside the GEMM
                    matmul_accumulate(w_ij[k], _cols(x_flat[n], off, g, r0, r1), acc)
            y[n, :, r0:r1] = acc.reshape(out_c, r1 - r0, g.wq)[:, :, :g.w_out]
    return y, Conv2dCache(x_flat, w, g)


def conv2d_backward(dy, cache: Conv2dCache, need_dx: bool = True, need_dw: bool = True):
    """Convolution backward.

    Args:
        dy: (N, out, H_out, W_out) gradient of the loss with respect to y.
        cache: from :func:`conv2d_forward`.
        need_dx: compute dx (False for a network's first trainable layer saves the largest GEMMs).
        need_dw: compute dw and db (False for frozen layers).

    Returns:
        dx: (N, C, H, W) or None.
        dw: (out, C/groups, kh, kw) or None.
        db: (out,) or None.
    """
    if isinstance(cache, GroupedConv2dCache):
        return _grouped_backward(dy, cache, need_dx, need_dw)
    x_flat, w, g = cache
    out_c = w.shape[0]
    if tuple(dy.shape) != (g.n, out_c, g.h_out, g.w_out):
        raise ValueError(f"dy must have shape {(g.n, out_c, g.h_out, g.w_out)} (N, out, H_out, W_out), "
                         f"got {tuple(dy.shape)}")
    xp = get_array_module(dy)
    im2col = _use_im2col(g)
    dx_flat = xp.zeros_like(x_flat) if need_dx else None
    dw = xp.zeros_like(w) if need_dw else None
    db = dy.sum(axis=(0, 2, 3)) if need_dw else None
    if not (need_dx or need_dw):
        return None, None, None
    step, chunks = _row_chunks(g)
    # dy at the padded row length: zeros in the junk columns (never written), so they add nothing to dw
    dy_buf = xp.zeros((out_c, step * g.wq), dtype=dy.dtype)
    if need_dw:
        dw_ij = xp.zeros((g.kh * g.kw, out_c, g.c), dtype=w.dtype)
    w_ij = xp.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(g.kh * g.kw, g.c, out_c)  # w[:, :, i, j]^T
    for n in range(g.n):
        for r0, r1 in chunks:
            dy_chunk = dy_buf[:, :(r1 - r0) * g.wq]
            dy_chunk.reshape(out_c, r1 - r0, g.wq)[:, :, :g.w_out] = dy[n, :, r0:r1]
            if need_dw and im2col:
                matmul_accumulate(dy_chunk, _im2col(x_flat[n], g, r0, r1).T, dw.reshape(out_c, -1))
            for k, off in enumerate(g.offsets()):
                if need_dw and not im2col:
                    matmul_accumulate(dy_chunk, _cols(x_flat[n], off, g, r0, r1).T, dw_ij[k])
                if need_dx:
                    window = _window(dx_flat[n], off, g, r0, r1)
                    if window.ndim == 2:
                        matmul_accumulate(w_ij[k], dy_chunk, window)
                    else:
                        window += (w_ij[k] @ dy_chunk).reshape(window.shape)
    if need_dw and not im2col:
        dw[...] = dw_ij.reshape(g.kh, g.kw, out_c, g.c).transpose(2, 3, 0, 1)
    dx = None
    if need_dx:
        dx_pad = dx_flat.reshape(g.n, g.c, g.rows, g.wp)
        dx = xp.ascontiguousarray(dx_pad[:, :, g.pad:g.pad + g.h, g.pad:g.pad + g.w])
    return dx, dw, db


def _grouped_forward(x, w, b, stride, pad, groups):
    """Grouped convolution as ``groups`` ordinary ones: output block t = conv(input block t, weight block t)."""
    xp = get_array_module(x)
    c_in, c_out = x.shape[1] // groups, w.shape[0] // groups
    y, caches = None, []
    for t in range(groups):
        out = slice(t * c_out, (t + 1) * c_out)
        y_t, cache = conv2d_forward(x[:, t * c_in:(t + 1) * c_in], w[out], b[out], stride=stride, pad=pad)
        if y is None:
            y = xp.empty((x.shape[0], w.shape[0]) + y_t.shape[2:], dtype=x.dtype)
        y[:, out] = y_t
        caches.append(cache)
    return y, GroupedConv2dCache(tuple(caches), tuple(y.shape))


def _grouped_backward(dy, cache: GroupedConv2dCache, need_dx, need_dw):
    """Each group's backward on its block of dy; dx, dw and db are the groups' blocks side by side."""
    if tuple(dy.shape) != cache.out_shape:
        raise ValueError(f"dy must have shape {cache.out_shape} (N, out, H_out, W_out), got {tuple(dy.shape)}")
    xp = get_array_module(dy)
    c_out = cache.out_shape[1] // len(cache.caches)
    parts = [conv2d_backward(dy[:, t * c_out:(t + 1) * c_out], c, need_dx=need_dx, need_dw=need_dw)
             for t, c in enumerate(cache.caches)]
    dx = xp.concatenate([p[0] for p in parts], axis=1) if need_dx else None
    dw = xp.concatenate([p[1] for p in parts], axis=0) if need_dw else None
    db = xp.concatenate([p[2] for p in parts], axis=0) if need_dw else None
    return dx, dw, db

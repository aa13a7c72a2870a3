"""RoI max pooling (paper Sec. 2.1, Eq. 4), exactly as the original Caffe layer computes it (docs/reference.md §1,
§14.1-5).

A RoI ``(batch_index, x1, y1, x2, y2)`` in image pixels is projected onto the feature map by ``spatial_scale``,
rounded to whole cells, split into an ``H x W`` grid of bins, and each bin is max-pooled per channel. The details
that make the output bit-identical to the original layer (and to torchvision's ``roi_pool``) in float32:

1. corners are rounded half *away from zero* (C ``round``), not half-to-even like ``numpy.round``;
2. the RoI size is inclusive, ``end - start + 1``, and a malformed RoI (end < start) becomes 1x1;
3. bin edges are ``floor(p * bin)`` and ``ceil((p + 1) * bin)`` with ``bin = size / pooled``, computed in the
   input's dtype (float32 products overshoot differently from float64 ones, docs/reference.md §14.2);
4. bins are clipped to the map after adding the RoI's offset; a bin left empty outputs 0 with argmax -1;
5. the first maximum in row-major order wins; the argmax is the flat index ``h * W + w`` in its (batch, channel) plane.

The backward is Eq. 4: each output gradient is added to the input cell its bin picked (argmax), summed over bins and
RoIs (overlapping RoIs and bins share cells, so their gradients add up).

The bin arithmetic below is written once for NumPy and CuPy. The max itself runs on the CPU as a separable,
vectorised reduction (``_roi_pool_cpu``) and on the GPU as a CUDA kernel with one thread per output element
(``minircnn.kernels.roi_pool``); tests check that both give the same result.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import get_array_module, is_gpu_array, scatter_add
from ._checks import check_array, pair

ROIS_PER_SCATTER = 8   # small chunks keep the index arrays in cache (measured: 8 -> 163 ms, 64 -> 232 ms for 2000 RoIs)


class RoIBins(NamedTuple):
    """Where each RoI's bins lie on the feature map (all int64, NumPy or CuPy like the inputs).

    batch: (R,) image index of each RoI.
    start_h, start_w, end_h, end_w: (R,) rounded feature-map corners, inclusive, unclipped.
    hstart, hend: (R, pooled_h) first row and one-past-last row of each bin row, clipped to [0, H].
    wstart, wend: (R, pooled_w) likewise for columns, clipped to [0, W].
    """
    batch: object
    start_h: object
    start_w: object
    end_h: object
    end_w: object
    hstart: object
    hend: object
    wstart: object
    wend: object


class RoIPoolCache(NamedTuple):
    argmax: object      # (R, C, ph, pw) int32 flat index h*W + w of the max in its plane, -1 for empty bins
    batch: object       # (R,) int64 image index of each RoI
    x_shape: tuple


def round_half_away(v):
    """C's ``round``: halves go away from zero (2.5 -> 3, -2.5 -> -3), in v's own dtype.

    ``floor(a + 0.5)`` is *not* this in float32 (0.49999997 + 0.5 rounds up to 1.0), so the fractional part is
    compared instead: it is computed exactly.
    """
    xp = get_array_module(v)
    a = xp.abs(v)
    f = xp.floor(a)
    return xp.copysign(f + (a - f >= 0.5), v)


def roi_bins(rois, map_hw, output_size=(7, 7), spatial_scale=1.0 / 16, dtype=None) -> RoIBins:
    """The bins of every RoI on an H x W feature map, computed like the original layer (see module docstring).

    Args:
        rois: (R, 5) ``(batch_index, x1, y1, x2, y2)`` in input-image pixels, 0-based inclusive corners.
        map_hw: (H, W) of the feature map.
        output_size: (pooled_h, pooled_w).
        spatial_scale: feature-map cells per image pixel (1/16 for VGG16's conv5_3).
        dtype: floating dtype of the arithmetic (the feature map's); default: rois' dtype.

    Returns:
        RoIBins.
    """
    xp = get_array_module(rois)
    dtype = xp.dtype(dtype if dtype is not None else rois.dtype)
    ph, pw = output_size
    h, w = map_hw
    r = rois.astype(dtype, copy=False)
    batch = r[:, 0].astype(xp.int64)  # C truncation, like int(roi[0])
    corners = round_half_away(r[:, 1:5] * dtype.type(spatial_scale)).astype(xp.int64)
    start_w, start_h, end_w, end_h = corners.T
    roi_h = xp.maximum(end_h - start_h + 1, 1)
    roi_w = xp.maximum(end_w - start_w + 1, 1)

    def edges(size, pooled, start, limit):
        bin_size = size.astype(dtype) / dtype.type(pooled)            # float division in the input's dtype
        p = xp.arange(pooled, dtype=dtype)
        lo = xp.floor(p[None, :] * bin_size[:, None]).astype(xp.int64)
        hi = xp.ceil((p + 1)[None, :] * bin_size[:, None]).astype(xp.int64)
        return (xp.clip(lo + start[:, None], 0, limit), xp.clip(hi + start[:, None], 0, limit))

    hstart, hend = edges(roi_h, ph, start_h, h)
    wstart, wend = edges(roi_w, pw, start_w, w)
    return RoIBins(batch, start_h, start_w, end_h, end_w, hstart, hend, wstart, wend)


def _check_rois(rois, n_images, xp):
    check_array("rois", rois, 2, "(R, 5) = (batch_index, x1, y1, x2, y2)", floating=False)
    if rois.shape[1] != 5:
        raise ValueError(f"rois must have shape (R, 5) = (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}")
    if not (xp.issubdtype(rois.dtype, xp.floating) or xp.issubdtype(rois.dtype, xp.integer)):
        raise ValueError(f"rois must be numeric, got dtype {rois.dtype}")
    if rois.shape[0] == 0:
        return
    if not bool(xp.isfinite(rois).all()):
        raise ValueError("rois contains NaN or infinite values")
    b = rois[:, 0]
    if bool((b != xp.floor(b)).any()) or int(b.min()) < 0 or int(b.max()) >= n_images:
        raise ValueError(f"rois[:, 0] must hold whole image indices in [0, {n_images}) for x with {n_images} "
                         f"images, got values in [{float(b.min())}, {float(b.max())}]")


def roi_pool_forward(x, rois, output_size=(7, 7), spatial_scale=1.0 / 16):
    """RoI max pooling forward.

    Args:
        x: (N, C, H, W) floating feature map (finite).
        rois: (R, 5) ``(batch_index, x1, y1, x2, y2)``, image pixels of the scaled image blob, 0-based inclusive
            corners; cast to x's dtype (the original layer's rois blob has the feature map's dtype).
        output_size: ``(pooled_h, pooled_w)`` or an int (7 for VGG16, 6 for CaffeNet and VGG_CNN_M_1024).
        spatial_scale: feature-map cells per input pixel (1/16 for all three paper models).

    Returns:
        y: (R, C, pooled_h, pooled_w), x's dtype.
        cache: argmax switches for :func:`roi_pool_backward`.
    """
    check_array("x", x, 4, "(N, C, H, W)", finite=True)
    xp = get_array_module(x)
    _check_rois(rois, x.shape[0], xp)
    if get_array_module(rois) is not xp:
        raise ValueError("x and rois must live on the same device (both NumPy or both CuPy arrays)")
    output_size = pair("output_size", output_size)
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale must be > 0, got {spatial_scale!r}")
    bins = roi_bins(rois, x.shape[2:], output_size, spatial_scale, dtype=x.dtype)
    if is_gpu_array(x):
        from ..kernels.roi_pool import roi_pool_forward_gpu
        y, argmax = roi_pool_forward_gpu(x, bins, output_size)
    else:
        from ._roi_pool_cpu import roi_pool_forward_cpu
        y, argmax = roi_pool_forward_cpu(x, bins, output_size)
    return y, RoIPoolCache(argmax, bins.batch, tuple(x.shape))


def roi_pool_backward(dy, cache: RoIPoolCache):
    """RoI max pooling backward (paper Eq. 4): ``dx[argmax(r, c, i, j)] += dy[r, c, i, j]`` for every RoI and bin.

    Args:
        dy: (R, C, pooled_h, pooled_w).

    Returns:
        dx: (N, C, H, W), zero where no bin took its max.
    """
    argmax, batch, (n, c, h, w) = cache
    if tuple(dy.shape) != tuple(argmax.shape):
        raise ValueError(f"dy must have shape {tuple(argmax.shape)} (R, C, pooled_h, pooled_w), "
                         f"got {tuple(dy.shape)}")
    xp = get_array_module(dy)
    size = n * c * h * w
    dx = xp.zeros((size + 1,), dtype=dy.dtype)        # one spare slot takes the (zero) share of empty bins
    channel = xp.arange(c)[None, :, None, None]
    for lo in range(0, argmax.shape[0], ROIS_PER_SCATTER):  # chunks keep the index arrays small
        hi = lo + ROIS_PER_SCATTER
        a = argmax[lo:hi]
        flat = (batch[lo:hi, None, None, None] * c + channel) * (h * w) + a
        flat = xp.where(a >= 0, flat, size)
        scatter_add(dx, flat.ravel(), dy[lo:hi].ravel())
    return dx[:size].reshape(n, c, h, w)

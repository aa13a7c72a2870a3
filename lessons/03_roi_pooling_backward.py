# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 03 — RoI pooling, backward
#
# **The claim (paper Sec. 2.3, "Back-propagation through RoI pooling layers").** Fast R-CNN trains the conv layers
# *through* the RoI pooling layer, which SPPnet could not do efficiently. The derivative is simple. Every output
# `y[r, j]` (RoI `r`, bin `j`) copied one input cell, the bin's maximum `i*(r, j)`. So the loss gradient of an input
# cell `x[i]` is the sum of the output gradients of every (RoI, bin) that picked it — Eq. 4:
#
# $$ \frac{\partial L}{\partial x_i} = \sum_r \sum_j \big[\, i = i^*(r, j) \,\big]\;
#    \frac{\partial L}{\partial y_{rj}}. $$
#
# The sum is there because one cell can be the maximum of several bins of one RoI (bins overlap) and of bins of
# several RoIs (proposals overlap a lot). This lesson: the argmax "switches", why their gradients add up, a gradient
# check, and the two ways to compute the sum — scatter (the package) and gather (the original GPU kernel).
#
# docs/reference.md §1 (backward). Code: `roi_pool_backward` in `minircnn/functional/roi_pool.py`. Tests:
# `tests/functional/test_roi_pool.py`.

# %%
import inspect
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import minircnn.functional as F
from minircnn.functional import naive, roi_bins
from minircnn.gradcheck import check_backward, numerical_gradient, rel_error, tie_free
from minircnn.lab import DEVICE  # noqa: F401  (MINIRCNN_DEVICE=gpu without a GPU stops the lesson here)

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1: smaller sizes
rng = np.random.default_rng(0)
np.set_printoptions(linewidth=120)

# %% [markdown]
# ## 1. Argmax switches
#
# A 6 × 6 map holding the numbers 0..35 in shuffled order, one RoI over all of it, pooled 2 × 2 (scale 1, so pixels
# are cells). The forward keeps, for every output, the flat index `h * W + w` of the cell it copied: the *switch*.

# %%
x = rng.permutation(36).astype(np.float32).reshape(1, 1, 6, 6)
whole = np.array([[0, 0, 0, 5, 5]], dtype=np.float32)
y, cache = F.roi_pool_forward(x, whole, output_size=(2, 2), spatial_scale=1.0)
print("map:\n", x[0, 0].astype(int))
print("pooled:\n", y[0, 0].astype(int))
print("switches (h*W + w):\n", cache.argmax[0, 0])

# %% [markdown]
# The backward needs nothing but the switches: each output gradient goes to its switch cell, every other cell gets
# zero (it did not influence the output at all).

# %%
dy = np.array([[[[1, 2], [3, 4]]]], dtype=np.float32)
dx = F.roi_pool_backward(dy, cache)
print("dx:\n", dx[0, 0].astype(int))

# %% [markdown]
# ## 2. Why gradients add up
#
# Two RoIs that overlap, and a strong activation (100) inside the overlap. It is the maximum of a bin in *both* RoIs,
# so it receives both of their gradients. Backpropagating the two RoIs together must give the same as backpropagating
# each alone and adding the results:

# %%
x2 = tie_free((1, 1, 8, 8), rng, 0, 10).astype(np.float32)
x2[0, 0, 3, 4] = 100.0
roi_a = np.array([[0, 0, 0, 5, 5]], dtype=np.float32)
roi_b = np.array([[0, 2, 2, 7, 7]], dtype=np.float32)
both = np.concatenate([roi_a, roi_b])
y_ab, c_ab = F.roi_pool_forward(x2, both, output_size=(2, 2), spatial_scale=1.0)
dy_ab = np.ones_like(y_ab)
dx_ab = F.roi_pool_backward(dy_ab, c_ab)
dx_a = F.roi_pool_backward(dy_ab[:1], F.roi_pool_forward(x2, roi_a, output_size=(2, 2), spatial_scale=1.0)[1])
dx_b = F.roi_pool_backward(dy_ab[1:], F.roi_pool_forward(x2, roi_b, output_size=(2, 2), spatial_scale=1.0)[1])
print("dx(A and B) == dx(A) + dx(B):", np.array_equal(dx_ab, dx_a + dx_b))
print("gradient at the shared maximum (3, 4):", dx_ab[0, 0, 3, 4], "=", dx_a[0, 0, 3, 4], "+", dx_b[0, 0, 3, 4])

# %% [markdown]
# The same happens inside a single RoI when it is smaller than the grid: a 3 × 3-cell window pooled 7 × 7 has 49
# bins but only 9 cells, so cells repeat. With `dy = 1` everywhere, the gradient of each cell counts the bins that
# picked it, and the total is still 49:

# %%
tiny = np.array([[0, 1, 1, 3, 3]], dtype=np.float32)
y_t, c_t = F.roi_pool_forward(x2, tiny, output_size=(7, 7), spatial_scale=1.0)
dx_t = F.roi_pool_backward(np.ones_like(y_t), c_t)
print("bins picking each cell of the window:\n", dx_t[0, 0, 1:4, 1:4].astype(int), " total", int(dx_t.sum()))

# %% [markdown]
# ## 3. A gradient check
#
# The numerical derivative perturbs one input by ±h and watches the loss `L = sum(y * dy)` for a random `dy`
# (`minircnn.gradcheck.check_backward`). It runs in float64, and the map must be *tie-free*: values spaced far more
# than `h` apart, so that nudging a cell never changes which cell is a bin's maximum (`tie_free` makes such maps).
# Two images, three channels, overlapping RoIs, one of them running off the map:

# %%
xg = tie_free((2, 3, 10, 12), rng)
rois_g = np.array([[0, 0, 0, 150, 120], [0, 40, 30, 190, 159], [1, 16, 8, 100, 100], [1, -60, 50, 300, 250]],
                  dtype=np.float64)
errors = check_backward(F.roi_pool_forward, F.roi_pool_backward, [xg, rois_g], wrt=[0],
                        kwargs=dict(output_size=(3, 3), spatial_scale=1 / 16))
print(f"relative error of dL/dx: {errors[0]:.1e}")

# %% [markdown]
# What goes wrong with ties? On a flat map every cell of a bin is "the" maximum. The layer (like the original) gives
# the whole gradient to the first one; the numerical derivative sees each cell raise the max when nudged up and
# leave it unchanged when nudged down, so it reports half the gradient for *every* cell. Both are valid one-sided
# answers at a point where the function has a kink; they just disagree:

# %%
flat = np.ones((1, 1, 2, 2))
one_bin = np.array([[0, 0, 0, 1, 1]], dtype=np.float64)
_, c_flat = F.roi_pool_forward(flat, one_bin, output_size=(1, 1), spatial_scale=1.0)
analytic = F.roi_pool_backward(np.ones((1, 1, 1, 1)), c_flat)
numeric = numerical_gradient(lambda: float(F.roi_pool_forward(flat, one_bin, (1, 1), 1.0)[0].sum()), flat)
print("analytic:", analytic.ravel(), " numerical:", numeric.ravel().round(3),
      f" relative error {rel_error(analytic, numeric):.2f}")

# %% [markdown]
# In a real network ties are common only where a ReLU has output zeros, and there the ReLU's own backward stops the
# gradient anyway, so which zero "wins" does not matter.
#
# ## 4. Scatter and gather
#
# There are two ways to organise the sum of Eq. 4.
#
# **Scatter** (what the package does): walk over the *outputs*; each adds its gradient into its switch cell. As a
# loop this is Eq. 4 read from left to right; the package keeps that loop as its reference version,
# `roi_pool_backward_naive` in `minircnn/functional/naive.py`:

# %%
print(inspect.getsource(naive.roi_pool_backward_naive))

# %% [markdown]
# Vectorised, several outputs may add into the same cell at once, so the adds must accumulate — `np.add.at` on the
# CPU, atomic adds on the GPU. Beware the tempting `dx.flat[idx] += dy`: NumPy evaluates it as one read, one add and
# one write per *distinct* index, so repeated switches are silently counted once:

# %%
def scatter_backward(dy, argmax, batch, x_shape, accumulate=True):
    """Eq. 4 by scattering (teaching code): every output adds its gradient into its switch cell."""
    n, c, h, w = x_shape
    flat = (batch[:, None, None, None] * c + np.arange(c)[None, :, None, None]) * (h * w) + argmax
    keep = argmax >= 0                                   # empty bins (off the map) have no switch
    dx = np.zeros(n * c * h * w, dtype=dy.dtype)
    if accumulate:
        np.add.at(dx, flat[keep], dy[keep])
    else:
        dx[flat[keep]] += dy[keep]                       # WRONG: repeated indices are added only once
    return dx.reshape(x_shape)


print("sum of dy:", dy_ab.sum(), " np.add.at:", scatter_backward(dy_ab, c_ab.argmax, c_ab.batch, x2.shape).sum(),
      " fancy +=:", scatter_backward(dy_ab, c_ab.argmax, c_ab.batch, x2.shape, accumulate=False).sum())

# %% [markdown]
# **Gather** (the original Caffe GPU kernel): walk over the *inputs*; each cell collects the gradients of the outputs
# that picked it. Every cell is written by exactly one worker, so no atomic adds are needed, but each cell must find
# its candidates. The original narrows the search twice: only RoIs whose rounded window contains the cell, and only
# the bins whose row and column ranges can contain it (`floor((h - start_h) / bin_h)` up to
# `ceil((h - start_h + 1) / bin_h)`, and the same for columns). A loop version:

# %%
def gather_backward(dy, argmax, rois, x_shape, output_size, spatial_scale):
    """Eq. 4 by gathering (teaching code): every input cell sums the gradients of the outputs that picked it."""
    n, c, h, w = x_shape
    ph, pw = output_size
    t = np.float32                                        # the original computes bin sizes in float32
    b = roi_bins(rois.astype(t), (h, w), output_size, spatial_scale, dtype=t)
    bin_h = np.maximum(b.end_h - b.start_h + 1, 1).astype(t) / t(ph)
    bin_w = np.maximum(b.end_w - b.start_w + 1, 1).astype(t) / t(pw)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for img in range(n):
        for hh in range(h):
            for ww in range(w):
                total = np.zeros(c, dtype=dy.dtype)
                inside = np.flatnonzero((b.batch == img) & (b.start_h <= hh) & (hh <= b.end_h)
                                        & (b.start_w <= ww) & (ww <= b.end_w))
                for r in inside:                          # only RoIs whose window holds the cell
                    p0 = np.clip(int(np.floor(t(hh - b.start_h[r]) / bin_h[r])), 0, ph)
                    p1 = np.clip(int(np.ceil(t(hh - b.start_h[r] + 1) / bin_h[r])), 0, ph)
                    q0 = np.clip(int(np.floor(t(ww - b.start_w[r]) / bin_w[r])), 0, pw)
                    q1 = np.clip(int(np.ceil(t(ww - b.start_w[r] + 1) / bin_w[r])), 0, pw)
                    for i in range(p0, p1):               # only bins that can contain the cell
                        for j in range(q0, q1):
                            picked = argmax[r, :, i, j] == hh * w + ww
                            total += np.where(picked, dy[r, :, i, j], 0)
                dx[img, :, hh, ww] = total
    return dx


# %% [markdown]
# All three against the package, on a map of VGG16's stride with random proposals (float64 gradients):

# %%
channels, n_rois = (4, 16) if FAST else (32, 128)
feat = rng.standard_normal((2, channels, 19, 25)).astype(np.float32)
x1, y1 = rng.uniform(0, 350, n_rois), rng.uniform(0, 250, n_rois)
rois = np.stack([rng.integers(0, 2, n_rois), x1, y1, np.minimum(x1 + rng.uniform(16, 300, n_rois), 399),
                 np.minimum(y1 + rng.uniform(16, 250, n_rois), 299)], axis=1).astype(np.float32)
y_f, c_f = F.roi_pool_forward(feat, rois, output_size=(7, 7), spatial_scale=1 / 16)
dy_f = rng.standard_normal(y_f.shape)

timings = {}
for name, run in [("package (np.add.at)", lambda: F.roi_pool_backward(dy_f, c_f)),
                  ("scatter, loop (naive)", lambda: naive.roi_pool_backward_naive(dy_f, c_f)),
                  ("scatter, lesson", lambda: scatter_backward(dy_f, c_f.argmax, c_f.batch, feat.shape)),
                  ("gather, lesson", lambda: gather_backward(dy_f, c_f.argmax, rois, feat.shape, (7, 7), 1 / 16))]:
    start = time.perf_counter()
    result = run()
    timings[name] = (time.perf_counter() - start, result)
reference = timings["package (np.add.at)"][1]
for name, (seconds, result) in timings.items():
    print(f"{name:22s} {seconds * 1e3:8.2f} ms   max |difference from package| = "
          f"{np.abs(result - reference).max():.1e}")

# %% [markdown]
# The two loops are slow here only because they are Python; on a GPU each output (scatter) or each cell (gather) is
# one thread and the loops run in parallel. The price of gathering is the search for candidates, the price of
# scattering is contention on the atomic adds when many outputs share a cell. (One subtle difference: when float32
# rounding stretches a RoI's last bin one cell past its window, the original gather kernel never looks there and
# drops that gradient, while a scatter keeps it — docs/reference.md §1, "torchvision vs Caffe".)
#
# ## 5. A picture
#
# Left and middle: the overlapping RoIs of section 2 and their gradient; the shared maximum collects from both.
# Right: where the switches of the 7 × 7 pooling above point on one channel of image 0 — the count of (RoI, bin)
# pairs per cell. The gradient reaching the conv layers is uneven: the line under the figure gives the share of
# cells that receive any of it and how many switches the busiest cell collects.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
axes[0].imshow(x2[0, 0], cmap="viridis")
for (_, a1, b1, a2, b2), colour in zip(both, ("white", "red")):
    axes[0].add_patch(Rectangle((a1 - 0.5, b1 - 0.5), a2 - a1 + 1, b2 - b1 + 1, fill=False, edgecolor=colour, lw=2))
axes[0].set_title("map, RoI A (white), RoI B (red)")
im = axes[1].imshow(dx_ab[0, 0], cmap="magma")
axes[1].set_title("dL/dx with dy = 1")
plt.colorbar(im, ax=axes[1])
counts = np.zeros(feat.shape[2] * feat.shape[3])
on_img0 = (c_f.batch == 0)
np.add.at(counts, c_f.argmax[on_img0, 0].ravel(), 1)
im = axes[2].imshow(counts.reshape(feat.shape[2:]), cmap="magma")
axes[2].set_title(f"switches per cell, channel 0 ({int(on_img0.sum())} RoIs)")
plt.colorbar(im, ax=axes[2])
plt.tight_layout()
plt.show()
print(f"cells of channel 0 that receive any gradient: {np.mean(counts > 0):.0%}; the busiest receives "
      f"{int(counts.max())} of {int(counts.sum())} switches")

# %% [markdown]
# ## Try this next
#
# * Make two RoIs identical and check that every switched cell gets exactly twice the gradient of one RoI.
# * Change `gather_backward` to skip the narrowing (visit every RoI and every bin) and confirm the answer does not
#   change — only the amount of work.
# * Find a RoI whose window is 57 cells tall pooled into 7 rows (float32 overshoot, docs/reference.md §14.2) with its
#   maximum in the row just past the window. Do `gather_backward` and the package agree there?
# * Run the gradient check with `tie_free` replaced by `rng.integers(0, 3, ...)`: how large does the error get?

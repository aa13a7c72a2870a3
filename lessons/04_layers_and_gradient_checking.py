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
# # Lesson 04 — Layers by hand, and gradient checking
#
# **The claim (paper Sec. 2 and 2.3).** A Fast R-CNN is an ordinary stack of conv, max-pool, ReLU, fc and dropout
# layers with a RoI pooling layer and two output layers, and *all* of it is trained together by SGD with
# back-propagation. In this package every layer is a pair of functions, `y, cache = op_forward(...)` and
# `grads = op_backward(dy, cache)`, written by hand — so every backward needs proof that it is the derivative of its
# forward. That proof is the gradient check.
#
# This lesson: the gradient check itself; convolution as matrix products (loops → im2col → the package's
# offset-GEMM); max pooling, fc, ReLU, dropout and the softmax loss, each checked; why the check needs float64; and
# how to run the package's tests on layers you write yourself.
#
# Code: `minircnn/functional/` (`conv.py`, `pool.py`, `linear.py`, `activations.py`, `losses.py`) and
# `minircnn/gradcheck.py`. Tests: `tests/functional/`.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import numpy as np

import minircnn.functional as F
from minircnn.functional import naive
from minircnn.lab.exercises import run_exercise_tests, tests_available
from minircnn.lab.timing import best_time
from minircnn.gradcheck import (GRAD_RTOL, STEP, check_backward, check_loss_gradient, numerical_gradient, rel_error,
                                tie_free)

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1: smaller sizes
rng = np.random.default_rng(0)


# %% [markdown]
# ## 1. The gradient check, by hand
#
# A layer maps `x` to `y`. Its backward receives `dy = ∂L/∂y` and must return `∂L/∂x`. To test it without a whole
# network we invent a loss, `L = Σ y · dy` with a random `dy`: then `∂L/∂y` is exactly `dy`, and the backward's
# answer must equal the derivative of `L` with respect to each input element. That derivative we can estimate by
# nudging one element by `±h` (a centred difference, error of order `h²`):
#
# $$ \frac{\partial L}{\partial x_k} \approx \frac{L(x + h e_k) - L(x - h e_k)}{2h}. $$
#
# We compare the two with a *normwise* relative error, `max|a − b| / max(max|a|, max|b|)`: an elementwise ratio
# would explode on entries whose true gradient is 0. Here it is for the fc layer `y = x Wᵀ + b`:

# %%
x = rng.standard_normal((4, 6))
w = rng.standard_normal((3, 6))
b = rng.standard_normal(3)
y, cache = F.linear_forward(x, w, b)
dy = rng.standard_normal(y.shape)
dx, dw, db = F.linear_backward(dy, cache)


def loss():
    return float((F.linear_forward(x, w, b)[0] * dy).sum())


for name, analytic, array in (("dx", dx, x), ("dW", dw, w), ("db", db, b)):
    print(f"{name}: relative error {rel_error(analytic, numerical_gradient(loss, array)):.1e}")

# %% [markdown]
# `minircnn.gradcheck.check_backward` packages exactly this (it raises if an error exceeds
# `GRAD_RTOL = 1e-6`), and the tests use it for every layer. We collect the errors of this lesson's checks here:

# %%
errors = {"fc": max(check_backward(F.linear_forward, F.linear_backward, [x, w, b], wrt=[0, 1, 2]))}

# %% [markdown]
# ## 2. Convolution as matrix products
#
# A conv layer with weights `w` of shape `(out, in, kh, kw)` computes, for every output position, a dot product of
# the weights with the `in × kh × kw` input window under it (plus a bias). Written as loops, this is the package's
# reference version `conv2d_forward_naive` (`minircnn/functional/naive.py` keeps such loop versions beside the fast
# layers; the tests check the fast layers against them):

# %%
print(inspect.getsource(naive.conv2d_forward_naive))

# %% [markdown]
# **im2col** turns the loops into one matrix product: copy every window into a column of a matrix of shape
# `(in·kh·kw, h_out·w_out)`, then `y = W · cols + b` with `W` reshaped to `(out, in·kh·kw)`. Fast, because a matrix
# product (GEMM) is what BLAS libraries do best — but the matrix holds every input value `kh·kw` times.
#
# **The package's offset-GEMM** (`minircnn/functional/conv.py`) avoids that copy. For a fixed kernel offset
# `(i, j)`, the inputs that meet `w[:, :, i, j]` are the whole input shifted by `(i, j)`. Flatten each padded plane
# row by row (row length `Wp`): the shifted input is then a contiguous *slice* starting at `i·Wp + j`, a view that
# BLAS can read in place. So the layer is `kh·kw` products `(out, in) @ (in, L)` added up, computed at the padded
# row length (a few junk columns per row, cropped at the end). Both, as teaching code:

# %%
def im2col(x, kh, kw, stride, pad):
    """(N, in*kh*kw, h_out*w_out): every window as a column, rows ordered like w.reshape(out, -1) (teaching code)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((n, c, kh, kw, h_out, w_out), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
    return cols.reshape(n, c * kh * kw, h_out * w_out), (h_out, w_out)


def conv_im2col(x, w, b, stride, pad):
    cols, (h_out, w_out) = im2col(x, w.shape[2], w.shape[3], stride, pad)
    y = w.reshape(w.shape[0], -1) @ cols + b[:, None]                     # one GEMM per image
    return y.reshape(x.shape[0], w.shape[0], h_out, w_out)


def conv_offset_gemm(x, w, b, pad):
    """Stride-1 convolution as kh*kw GEMMs over shifted slices of the flattened padded input (teaching code)."""
    n, c, h, wd = x.shape
    out, _, kh, kw = w.shape
    hp, wp = h + 2 * pad, wd + 2 * pad
    h_out, w_out = hp - kh + 1, wp - kw + 1
    flat = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).reshape(n, c, hp * wp)
    flat = np.concatenate([flat, np.zeros((n, c, kw - 1), x.dtype)], axis=2)   # the last slice runs kw-1 past
    length = h_out * wp                                                       # whole padded rows, junk included
    y = np.empty((n, out, h_out, w_out), dtype=x.dtype)
    for img in range(n):
        acc = np.repeat(b[:, None], length, axis=1)
        for i in range(kh):
            for j in range(kw):
                start = i * wp + j
                acc += w[:, :, i, j] @ flat[img, :, start:start + length]    # (out, in) @ (in, L)
        y[img] = acc.reshape(out, h_out, wp)[:, :, :w_out]                   # crop the junk columns
    return y


# %% [markdown]
# All four must agree. We check on a small layer in float64 (where they agree to rounding), then time the three
# fast ones on a bigger float32 layer:

# %%
xs = rng.standard_normal((2, 3, 9, 11))
ws = rng.standard_normal((4, 3, 3, 3))
bs = rng.standard_normal(4)
reference = naive.conv2d_forward_naive(xs, ws, bs, stride=1, pad=1)
print("im2col      vs loops:", rel_error(conv_im2col(xs, ws, bs, 1, 1), reference))
print("offset-GEMM vs loops:", rel_error(conv_offset_gemm(xs, ws, bs, 1), reference))
print("package     vs loops:", rel_error(F.conv2d_forward(xs, ws, bs, stride=1, pad=1)[0], reference))
print("package, stride 2   :", rel_error(F.conv2d_forward(xs, ws, bs, stride=2, pad=1)[0],
                                         naive.conv2d_forward_naive(xs, ws, bs, stride=2, pad=1)))

c_in, side = (16, 28) if FAST else (64, 112)
xb = rng.standard_normal((1, c_in, side, side)).astype(np.float32)
wb = (0.1 * rng.standard_normal((c_in, c_in, 3, 3))).astype(np.float32)
bb = np.zeros(c_in, np.float32)
repeat = 2 if FAST else 5
small = (slice(None), slice(None), slice(0, 16), slice(0, 16))             # the loops get a 16x16 corner only
t_loops = best_time(lambda: naive.conv2d_forward_naive(xb[small], wb, bb, 1, 1), 1) * (side / 16) ** 2
t_im2col = best_time(lambda: conv_im2col(xb, wb, bb, 1, 1), repeat)
t_offset = best_time(lambda: conv_offset_gemm(xb, wb, bb, 1), repeat)
t_package = best_time(lambda: F.conv2d_forward(xb, wb, bb, stride=1, pad=1), repeat)
print(f"\n3x3 conv, {c_in} -> {c_in} channels, {side}x{side}, float32:")
print(f"  loops (timed on 16x16, scaled by area) {t_loops * 1e3:9.1f} ms")
print(f"  im2col                                 {t_im2col * 1e3:9.1f} ms   (its matrix: "
      f"{c_in * 9 * side * side * 4 / 2**20:.1f} MiB, the input: {xb.nbytes / 2**20:.1f} MiB)")
print(f"  offset-GEMM (lesson)                   {t_offset * 1e3:9.1f} ms")
print(f"  package                                {t_package * 1e3:9.1f} ms")

# %% [markdown]
# What the offset-GEMM saves is memory: no `kh·kw`-fold copy of the input (im2col's matrix against the input, printed
# above). It need not win on time, and the timings scatter when other programs are busy on the CPU. Beside the
# lesson's version, which makes a fresh output-sized temporary for every offset (`acc += w @ slice`) and reads it back
# to add it, the package asks BLAS to accumulate into the output directly (`C = A·B + C`,
# `minircnn/functional/_blas.py`) and works on chunks of rows small enough to stay in cache.
#
# The package's conv also has a stride > 1 path and an im2col path for thin inputs (conv1_1 has 3 channels) and
# small maps; the tests run all of them. Its backward reuses the same slices: `dw[:, :, i, j] = dy @ sliceᵀ` and
# `dx[slice] += w[:, :, i, j]ᵀ @ dy`. Gradient check, both strides:

# %%
for stride in (1, 2):
    errs = check_backward(F.conv2d_forward, F.conv2d_backward, [xs, ws, bs], wrt=[0, 1, 2],
                          kwargs=dict(stride=stride, pad=1))
    errors[f"conv, stride {stride}"] = max(errs)
print({k: f"{v:.1e}" for k, v in errors.items()})

# %% [markdown]
# ## 3. Max pooling
#
# Max pooling keeps each window's largest value; the backward sends the gradient to that one input (the "switch",
# as in lesson 03), summed where windows overlap. One detail matters for the paper's models: Caffe computes the
# output size with a *ceiling* (a last, partial window is kept), so VGG16 maps a 600-pixel side to 38 cells at conv5
# where a floor would give 37 (docs/reference.md §2):

# %%
for side_px in (600, 1000):
    ceil_sizes, floor_sizes = [side_px], [side_px]
    for _ in range(4):                                  # VGG16's four 2x2 pools before conv5
        ceil_sizes.append(F.pool_output_size(ceil_sizes[-1], kernel=2, stride=2, pad=0))
        floor_sizes.append((floor_sizes[-1] - 2) // 2 + 1)
    print(f"{side_px}: Caffe (ceil) {ceil_sizes}, floor {floor_sizes}")

# %% [markdown]
# The gradient check needs a tie-free input (lesson 03 shows what ties do). We use CaffeNet's overlapping 3 × 3,
# stride 2, pad 1 pooling:

# %%
xm = tie_free((2, 3, 7, 8), rng)
errors["max pool 3x3/2, pad 1"] = check_backward(F.max_pool2d_forward, F.max_pool2d_backward, [xm], wrt=[0],
                                                 kwargs=dict(kernel_size=3, stride=2, pad=1))[0]

# %% [markdown]
# ## 4. ReLU, dropout and the softmax loss
#
# **ReLU** passes positive inputs and their gradients, and blocks the rest. Its kink at 0 is a trap for the
# numerical gradient: within `h` of 0 the centred difference straddles both pieces. Inputs kept away from 0 check
# fine; one input at `1e-7` fails:

# %%
xr = rng.choice([-1.0, 1.0], size=(3, 5)) * (0.1 + rng.random((3, 5)))      # |x| >= 0.1, far from the kink
errors["ReLU"] = check_backward(F.relu_forward, F.relu_backward, [xr], wrt=[0])[0]
xr[0, 0] = 1e-7
try:
    check_backward(F.relu_forward, F.relu_backward, [xr], wrt=[0])
except AssertionError as e:
    print("input 1e-7 from the kink ->", e)

# %% [markdown]
# **Dropout** (after fc6 and fc7 with p = 0.5 in the paper's networks, docs/reference.md §2) zeroes each unit with
# probability p at training time. Like Caffe's layer it is *inverted*: kept units are multiplied by `1/(1−p)`, so the
# expected output equals the input and
# the test-time layer is the identity. Measured:

# %%
big = np.ones((500, 1000), np.float32)
dropped, _ = F.dropout_forward(big, p=0.5, train=True, rng=np.random.default_rng(1))
print(f"train: fraction zeroed {np.mean(dropped == 0):.4f}, kept value {dropped.max()}, mean {dropped.mean():.4f}; "
      f"test: identity {np.array_equal(F.dropout_forward(big, p=0.5, train=False)[0], big)}")

# The gradient check calls forward many times: it must draw the same mask every time, hence a fresh seeded rng.
xd = rng.standard_normal((4, 6))
errors["dropout"] = check_backward(lambda a: F.dropout_forward(a, p=0.5, rng=np.random.default_rng(2)),
                                   F.dropout_backward, [xd], wrt=[0])[0]

# %% [markdown]
# **Softmax log loss** (the `L_cls` of paper Eq. 1): `L = −mean log p_u` with `p = softmax(scores)`. Its gradient has a
# famously compact form, `(p − onehot(u)) / N`. A loss returns its gradient directly; `check_loss_gradient` checks it:

# %%
scores = rng.standard_normal((8, 6))
labels = rng.integers(0, 6, 8)
errors["softmax log loss"] = check_loss_gradient(F.softmax_cross_entropy, [scores, labels])
print(f"{'layer':24s} relative error (float64, h = {STEP:g}; accepted up to {GRAD_RTOL:g})")
for name, err in errors.items():
    print(f"{name:24s} {err:.1e}")

# %% [markdown]
# ## 5. Why float64
#
# The centred difference has two errors. The *truncation* error shrinks like `h²`. The *round-off* error grows like
# `ε / h`, where `ε` is the machine precision: `L(x+h)` and `L(x−h)` are nearly equal numbers, each rounded to about
# `ε · |L|`, and their difference is divided by `2h`. In float64 (`ε ≈ 1e-16`) a step of `1e-6` makes both about
# `1e-10` or less. In float32 (`ε ≈ 1e-7`) the round-off at that step is of the order of the gradient itself. Measured
# on the softmax loss, over a range of steps:

# %%
steps = np.logspace(-10, -1, 19)
sweep = {}
for dtype in (np.float64, np.float32):
    s = scores.astype(dtype)
    _, analytic = F.softmax_cross_entropy(s, labels)
    sweep[dtype.__name__] = [rel_error(analytic, numerical_gradient(lambda: F.softmax_cross_entropy(s, labels)[0],
                                                                    s, h)) for h in steps]
for name, errs in sweep.items():
    k = int(np.argmin(errs))
    at_default = errs[int(np.argmin(np.abs(steps - STEP)))]
    print(f"{name}: best relative error {errs[k]:.1e} at h = {steps[k]:.0e}; at h = {STEP:g}: {at_default:.1e}")

fig, ax = plt.subplots(figsize=(6, 4))
for name, errs in sweep.items():
    ax.loglog(steps, errs, "o-", label=name)
ax.axhline(GRAD_RTOL, color="grey", linestyle="--", label="GRAD_RTOL")
ax.set_xlabel("finite-difference step h")
ax.set_ylabel("relative error of the gradient")
ax.set_title("round-off (left) vs truncation (right)")
ax.legend()
plt.show()

# %% [markdown]
# Float32's best error (printed above) is orders of magnitude worse than float64's, and the step where it is reached
# depends on the function and the scale of its inputs, so no single step and tolerance would suit every layer. Float64
# leaves a wide margin: in the plot its errors stay below the `GRAD_RTOL` line over a wide range of steps around the
# default `h`. That is why every gradient check in the package runs in float64, while training runs in float32.
#
# ## 6. Check your own layers
#
# The layer tests double as exercises (README, "Exercises"). Put your versions in one file with the package's names
# and signatures, and run `python -m pytest tests/functional --impl my_layers.py`. Functions you define replace the
# package's; the rest fall back, so you can go one layer at a time (`-k relu`). When a test disagrees with you,
# `minircnn/functional/naive.py` shows the same computation as plain loops (conv, max pooling, LRN, RoI pooling,
# the losses): the tests' reference. Below: a ReLU whose backward forgot the mask, then a correct one. (The
# `rejects` tests check input validation, which we skip here.)

# %%
buggy = """
    import numpy as np

    def relu_forward(x):
        return np.maximum(x, 0), x > 0

    def relu_backward(dy, mask):
        return dy                      # bug: the gradient must be blocked where x <= 0
    """
fixed = buggy.replace("return dy                      # bug: the gradient must be blocked where x <= 0",
                      "return dy * mask")

if tests_available("tests/functional"):
    print("--- buggy relu_backward ---")
    run_exercise_tests(buggy, "tests/functional", "-k", "relu and not rejects", name="my_layers.py")
    print("--- fixed ---")
    run_exercise_tests(fixed, "tests/functional", "-k", "relu and not rejects", name="my_layers.py")
else:
    print("The tests are not next to this installation of minircnn; run this from a source checkout.")

# %% [markdown]
# ## Try this next
#
# * Break `conv_offset_gemm` on purpose (forget the extra `kw − 1` zeros): which output positions go wrong, and why
#   only those?
# * Write `conv2d_backward` for stride 1 with the offset-GEMM slices, and check it with `check_backward`. Then run
#   `pytest tests/functional -k conv --impl my_layers.py`.
# * Repeat the float32/float64 sweep on `F.conv2d_forward`. Where is the best step now, and why does it move?
# * Rewrite `softmax_cross_entropy` without subtracting the row maximum and feed it scores of 1000. What happens?

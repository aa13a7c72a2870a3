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
# # Lesson 05 — The multi-task loss
#
# **The claim (paper Sec. 2.3, "Multi-task loss").** A Fast R-CNN has two sibling outputs per RoI: a probability
# distribution `p` over K + 1 classes (background is class 0), and for every class `k` a box correction
# `t^k = (t_x, t_y, t_w, t_h)`. One loss trains both at once:
#
# $$ L(p, u, t^u, v) = -\log p_u \;+\; \lambda\,[u \ge 1]
#    \sum_{i \in \{x, y, w, h\}} \operatorname{smooth}_{L_1}(t^u_i - v_i), \qquad
#    \operatorname{smooth}_{L_1}(d) = \begin{cases} 0.5\, d^2 & |d| < 1 \\ |d| - 0.5 & \text{otherwise,} \end{cases} $$
#
# where `u` is the RoI's true class and `v` its regression target. `[u ≥ 1]` switches the box term off for background
# RoIs (there is no box to regress to), and only the true class's four outputs are trained. The paper uses `λ = 1`
# and makes that choice sensible by normalising the targets `v` to zero mean and unit variance. It prefers smooth L1
# to R-CNN's L2 loss because it is less sensitive to outliers: its gradient never exceeds 1 in size.
#
# This lesson: the loss as a loop and as the package computes it, L1 vs L2 on outliers, and what target
# normalisation does to the size of the box term — measured on the built-in dataset.
#
# docs/reference.md §3 (losses), §5 (targets), §14.7–14.8. Code: `minircnn/functional/losses.py`,
# `minircnn/data/roidb.py`. Tests: `tests/functional/test_losses.py`, `tests/data/test_roidb.py`.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minircnn.functional as F
from minircnn.functional import naive
from minircnn.boxes import decode
from minircnn.data import (SamplerConfig, VOCDataset, append_flipped, compute_targets, ensure_shapes_dataset,
                           generate_shapes_dataset, roidb_from_dataset, sample_rois, unnormalize_deltas)
from minircnn.gradcheck import check_loss_gradient
from minircnn.lab import DEVICE  # noqa: F401  (MINIRCNN_DEVICE=gpu without a GPU stops the lesson here)

FAST = os.environ.get("MINIRCNN_FAST", "0") not in ("", "0")   # CI sets MINIRCNN_FAST=1: smaller sizes
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The loss of a mini-batch, as a loop
#
# For a mini-batch of R RoIs the original code averages the classification term over the RoIs and divides the
# summed box term by R as well — by the number of *all* RoIs, not of the foreground ones (docs/reference.md §3, §14.8).
# Loop version, **teaching code**:

# %%
def smooth_l1(d):
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def multi_task_loss_loops(scores, bbox_pred, labels, targets, lam=1.0):
    """scores (R, K+1), bbox_pred (R, 4(K+1)), labels (R,), targets (R, 4): the true class's targets."""
    r_count = len(labels)
    l_cls = l_loc = 0.0
    for r in range(r_count):
        s = scores[r] - scores[r].max()                     # shift for a stable softmax (p is unchanged)
        log_p = s - np.log(np.exp(s).sum())
        l_cls += -log_p[labels[r]]
        u = labels[r]
        if u >= 1:                                          # [u >= 1]: background RoIs have no box term
            l_loc += sum(smooth_l1(bbox_pred[r, 4 * u + i] - targets[r, i]) for i in range(4))
    return l_cls / r_count, lam * l_loc / r_count


# %% [markdown]
# The package splits it into the two losses of the original layers. The box loss sees the whole `(R, 4(K+1))`
# output and a 0/1 weight array that selects the true class's four columns of foreground RoIs — that is how `[u ≥ 1]`
# and "only `t^u`" are written without a loop:

# %%
r_count, n_classes = 16, 6
scores = rng.standard_normal((r_count, n_classes))
bbox_pred = rng.standard_normal((r_count, 4 * n_classes))
labels = rng.integers(0, n_classes, r_count)
labels[:8] = 0                                              # half background
targets = rng.standard_normal((r_count, 4))

wide_targets = np.zeros_like(bbox_pred)
weights = np.zeros_like(bbox_pred)
for r in np.flatnonzero(labels > 0):
    wide_targets[r, 4 * labels[r]:4 * labels[r] + 4] = targets[r]
    weights[r, 4 * labels[r]:4 * labels[r] + 4] = 1.0

l_cls, d_scores = F.softmax_cross_entropy(scores, labels)
l_loc, d_pred = F.smooth_l1_loss(bbox_pred, wide_targets, weights)
loop_cls, loop_loc = multi_task_loss_loops(scores, bbox_pred, labels, targets)
print(f"package: L_cls {l_cls:.6f}  L_loc {l_loc:.6f}")
print(f"loops:   L_cls {loop_cls:.6f}  L_loc {loop_loc:.6f}")
print(f"largest difference {max(abs(l_cls - loop_cls), abs(l_loc - loop_loc)):.1e}")

# %% [markdown]
# Each term of the loop above, on the package's arguments and with its gradient, is also kept in the package as a
# loop: `softmax_cross_entropy_naive` and `smooth_l1_loss_naive` in `minircnn/functional/naive.py`, the readable
# reference versions of the two fast losses (`tests/functional/test_naive.py` checks that they agree). They give the
# loop's numbers:

# %%
naive_cls, _ = naive.softmax_cross_entropy_naive(scores, labels)
naive_loc, _ = naive.smooth_l1_loss_naive(bbox_pred, wide_targets, weights)
print(f"naive:   L_cls {naive_cls:.6f}  L_loc {naive_loc:.6f}")
assert np.isclose(naive_cls, loop_cls, rtol=1e-12) and np.isclose(naive_loc, loop_loc, rtol=1e-12)

# %% [markdown]
# The gradient of the box loss, checked numerically. Where the two pieces of smooth L1 meet, at `|d| = 1`, its
# second derivative jumps, so a centred difference straddling that point is off by about the step size; we keep
# every residual away from ±1:

# %%
safe = np.where(np.abs(np.abs(bbox_pred - wide_targets) - 1) < 0.05, bbox_pred + 0.2, bbox_pred)
err = check_loss_gradient(F.smooth_l1_loss, [safe, wide_targets, weights])
print(f"smooth L1 gradient: relative error {err:.1e}; entries with a nonzero gradient: "
      f"{int((F.smooth_l1_loss(safe, wide_targets, weights)[1] != 0).sum())} of {safe.size}")

# %% [markdown]
# ## 2. L1 vs L2 on outliers
#
# R-CNN trained its box regressors with an L2 loss, `0.5 d²`, whose gradient `d` grows with the error. Smooth L1
# is the L2 loss near zero and the L1 loss `|d|` further out, so its gradient is capped at 1:

# %%
d = np.linspace(-3, 3, 601)
losses = {"L2: 0.5 d²": (0.5 * d ** 2, d), "L1: |d|": (np.abs(d), np.sign(d)),
          "smooth L1": (np.where(np.abs(d) < 1, 0.5 * d ** 2, np.abs(d) - 0.5),
                        np.where(np.abs(d) < 1, d, np.sign(d)))}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, (value, grad) in losses.items():
    axes[0].plot(d, value, label=name)
    axes[1].plot(d, grad, label=name)
axes[0].set_title("loss")
axes[1].set_title("gradient")
for ax in axes:
    ax.set_xlabel("residual d = t - v")
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()

# %% [markdown]
# Why that matters: a mini-batch in which a few RoIs have huge residuals (a target computed against a badly matched
# box, or an unnormalised width change). Under L2 those few dominate the update; under smooth L1 they count like any
# other wrong RoI. Measured on 128 residuals, three of them outliers at 20:

# %%
residuals = rng.standard_normal(128)
residuals[:3] = 20.0
outlier = np.zeros(128, bool)
outlier[:3] = True
for name in ("L2: 0.5 d²", "smooth L1"):
    grad = residuals if name.startswith("L2") else np.where(np.abs(residuals) < 1, residuals, np.sign(residuals))
    share = (grad[outlier] ** 2).sum() / (grad ** 2).sum()
    print(f"{name:11s} largest |gradient| {np.abs(grad).max():5.1f}; share of the squared gradient norm from the "
          f"3 outliers: {share:.0%}")

# %% [markdown]
# ## 3. Why targets are normalised
#
# The regression targets move a proposal `P` onto its ground-truth box `G` (`minircnn.boxes.encode`):
# `v_x = (G_x − P_x) / P_w`, `v_y` likewise, `v_w = log(G_w / P_w)`, `v_h = log(G_h / P_h)`. For proposals that
# already overlap their object (IoU ≥ 0.5, the only ones that get targets) these numbers are small. The paper
# normalises them per class to zero mean and unit variance over the whole training set
# (`minircnn.data.roidb.compute_targets`). Let us look at them on the built-in dataset, with proposals made by
# jittering the ground-truth boxes (lesson 06 uses selective search):

# %%
if FAST:
    scratch = tempfile.TemporaryDirectory(prefix="minircnn_lesson05_")   # removed when the kernel exits
    data_root = Path(scratch.name) / "shapes"
    generate_shapes_dataset(data_root, seed=0, trainval=12, test=1, progress=False)
else:
    data_root = ensure_shapes_dataset()                     # data/shapes, generated on first use
dataset = VOCDataset(data_root, "trainval")
print(dataset, "classes:", dataset.class_names)


def jittered_proposals(boxes, height, width, per_box, rng):
    """Boxes around each ground-truth box: centre shifted by ~15% of the size, sides scaled by ~exp(N(0, 0.25))."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    cx, cy = (boxes[:, 0] + 0.5 * w), (boxes[:, 1] + 0.5 * h)
    n = (len(boxes), per_box)
    cx = cx[:, None] + rng.normal(0, 0.15, n) * w[:, None]
    cy = cy[:, None] + rng.normal(0, 0.15, n) * h[:, None]
    w = w[:, None] * np.exp(rng.normal(0, 0.25, n))
    h = h[:, None] * np.exp(rng.normal(0, 0.25, n))
    out = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w - 1, cy + 0.5 * h - 1], axis=-1).reshape(-1, 4)
    return np.round(out).astype(np.float32)                 # roidb_from_dataset clips them to the image


notes = [dataset.annotation(i) for i in range(len(dataset))]
proposals = [jittered_proposals(a.boxes, a.height, a.width, 30, rng) for a in notes]
roidb = append_flipped(roidb_from_dataset(dataset, proposals))     # statistics include the flipped copies
roidb, means, stds = compute_targets(roidb, dataset.num_classes)
print(f"{len(roidb)} roidb entries (originals + flipped), "
      f"{sum(int((e.target_classes > 0).sum()) for e in roidb)} RoIs with targets")
print("per-class statistics of the raw (dx, dy, dw, dh):")
for k, name in enumerate(dataset.class_names, start=1):
    print(f"  {name:10s} mean", " ".join(f"{v:+.3f}" for v in means[k]), "  std", " ".join(f"{v:.3f}" for v in stds[k]))

# %%
# Raw targets back from the normalised ones: t * std_c + mean_c for the class c of each row.
rows = [(e.bbox_targets[e.target_classes > 0], e.target_classes[e.target_classes > 0]) for e in roidb]
normalised = np.concatenate([t for t, _ in rows])
classes = np.concatenate([c for _, c in rows])
raw = normalised * stds[classes] + means[classes]

names = ("dx", "dy", "dw", "dh")
bins = np.linspace(-3.5, 3.5, 141)                          # the same bins for both, to compare their spread
fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
for j, name in enumerate(names):
    axes[j].hist(raw[:, j], bins=bins, color="tab:orange", alpha=0.7, label="raw")
    axes[j].hist(normalised[:, j], bins=bins, color="tab:blue", alpha=0.7, label="normalised")
    axes[j].set_title(name)
    axes[j].legend()
plt.tight_layout()
plt.show()
for j, name in enumerate(names):
    print(f"{name}: raw mean {raw[:, j].mean():+.3f} std {raw[:, j].std():.3f}   "
          f"normalised mean {normalised[:, j].mean():+.3f} std {normalised[:, j].std():.3f}")

# %% [markdown]
# (The spike at 0 is the ground-truth boxes themselves: they are RoIs too, with IoU 1, and regress onto
# themselves.) The raw targets' standard deviations (printed above) are well below 1 — far inside smooth L1's
# quadratic zone `|d| < 1`. What that does to the loss: take mini-batches the way training does (64 RoIs per image, at
# most 25% foreground, `minircnn.data.sample_rois`) and evaluate both losses for a freshly initialised network, whose
# box outputs are about 0 (the paper initialises `bbox_pred` with standard deviation 0.001) and whose class scores are
# about equal:

# %%
config = SamplerConfig()
loss_rows = {"normalised": [], "raw": [], "cls": []}
for entry in roidb[:min(len(roidb), 40)]:
    keep, lab = sample_rois(entry, config, rng)
    t_norm = entry.bbox_targets[keep]
    t_raw = t_norm * stds[lab] + means[lab]
    w_loc = np.zeros((len(keep), 4 * dataset.num_classes))
    for kind, t in (("normalised", t_norm), ("raw", t_raw)):
        wide = np.zeros_like(w_loc)
        for r in np.flatnonzero(lab > 0):
            wide[r, 4 * lab[r]:4 * lab[r] + 4] = t[r]
            w_loc[r, 4 * lab[r]:4 * lab[r] + 4] = 1.0
        loss_rows[kind].append(F.smooth_l1_loss(np.zeros_like(wide), wide, w_loc)[0])
    loss_rows["cls"].append(F.softmax_cross_entropy(np.zeros((len(keep), dataset.num_classes)), lab)[0])

l_norm, l_raw, l_cls0 = (float(np.mean(loss_rows[k])) for k in ("normalised", "raw", "cls"))
print(f"at initialisation: L_cls = {l_cls0:.3f} (log {dataset.num_classes} = {np.log(dataset.num_classes):.3f}); "
      f"L_loc = {l_norm:.3f} with normalised targets, {l_raw:.4f} with raw targets")
print(f"without normalisation the box term is {l_norm / l_raw:.0f}x smaller: like training with lambda = "
      f"{l_raw / l_norm:.3f} instead of 1, and its gradients are smaller in proportion to the targets")

# %% [markdown]
# So with raw targets the classification loss swamps the box loss, and `dx`, `dy` (the narrower raw spread above)
# would get weaker gradients than `dw`, `dh` even though each matters as much to the final box. Normalising puts all
# four on the same scale and makes `λ = 1` a reasonable balance.
#
# The statistics must be kept with the trained weights: at test time the network's outputs are un-normalised before
# decoding (`unnormalize_deltas`, docs/reference.md §14.7). A round trip — normalised targets → un-normalise → decode —
# must land on the ground-truth boxes (up to the float32 rounding of the stored targets):

# %%
entry = roidb[0]
fg = np.flatnonzero(entry.target_classes > 0)
wide = np.zeros((len(fg), 4 * dataset.num_classes))
for i, r in enumerate(fg):
    wide[i, 4 * entry.target_classes[r]:4 * entry.target_classes[r] + 4] = entry.bbox_targets[r]
deltas = unnormalize_deltas(wide, means, stds)
decoded = decode(entry.boxes[fg].astype(np.float64), deltas).reshape(len(fg), dataset.num_classes, 4)
decoded = decoded[np.arange(len(fg)), entry.target_classes[fg]]
gt = entry.boxes[entry.gt_assignment[fg]]
print(f"{len(fg)} RoIs: largest distance from the decoded box to its ground truth {np.abs(decoded - gt).max():.1e} px")

# %% [markdown]
# ## Try this next
#
# * Make the jitter wider (0.3 instead of 0.15). How do the raw standard deviations change, and the gap between
#   the two `L_loc` values?
# * Replace smooth L1 with L2 in `multi_task_loss_loops` and recompute the outlier example's gradient share with
#   normalised targets. Does normalisation alone tame the outliers?
# * `smooth_l1_loss` has a `sigma` argument (Faster R-CNN uses 3 for one of its losses). Plot the loss and gradient
#   for sigma = 3: where is the kink now?
# * Divide the box loss by the number of *foreground* RoIs instead of all RoIs. By what factor does the box term
#   grow with 25% foreground?

"""A two-minute tour of the layers: ``python -m minircnn.demo``.

Runs a miniature Fast R-CNN forward and backward pass by hand -- conv, ReLU, max pool, RoI pool, fc, the two
losses -- on random data, prints what flows through it, and gradient-checks the RoI pooling layer in float64.
(The train command replaces this as the main job once the detector can be trained.)
"""
from __future__ import annotations

import time

import numpy as np

from . import functional as F
from .gradcheck import check_backward, tie_free


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    image = rng.standard_normal((1, 3, 64, 96)).astype(f32)
    rois = np.array([[0, 4, 4, 40, 50], [0, 30, 10, 90, 60], [0, 0, 0, 95, 63]], dtype=f32)
    labels = np.array([1, 2, 0])
    num_classes = 3  # background + 2

    w1, b1 = (0.1 * rng.standard_normal((8, 3, 3, 3))).astype(f32), np.zeros(8, f32)
    w_fc, b_fc = (0.01 * rng.standard_normal((16, 8 * 4 * 4))).astype(f32), np.zeros(16, f32)
    w_cls, b_cls = (0.01 * rng.standard_normal((num_classes, 16))).astype(f32), np.zeros(num_classes, f32)
    w_box = (0.001 * rng.standard_normal((4 * num_classes, 16))).astype(f32)
    b_box = np.zeros(4 * num_classes, f32)

    start = time.perf_counter()
    conv, c1 = F.conv2d_forward(image, w1, b1, stride=1, pad=1)
    relu, c2 = F.relu_forward(conv)
    pooled, c3 = F.max_pool2d_forward(relu, kernel_size=2, stride=2)
    roi_feats, c4 = F.roi_pool_forward(pooled, rois, output_size=(4, 4), spatial_scale=1 / 2)
    fc, c5 = F.linear_forward(roi_feats, w_fc, b_fc)
    scores, c6 = F.linear_forward(fc, w_cls, b_cls)
    deltas, c7 = F.linear_forward(fc, w_box, b_box)
    targets = np.zeros_like(deltas)
    weights = np.zeros_like(deltas)
    for r, u in enumerate(labels):
        if u > 0:
            targets[r, 4 * u:4 * u + 4] = rng.standard_normal(4)
            weights[r, 4 * u:4 * u + 4] = 1  # [u >= 1]: only foreground RoIs regress, only their class's 4 outputs
    loss_cls, d_scores = F.softmax_cross_entropy(scores, labels)
    loss_loc, d_deltas = F.smooth_l1_loss(deltas, targets, weights)

    d_fc = F.linear_backward(d_scores, c6)[0] + F.linear_backward(d_deltas, c7)[0]
    d_roi, dw_fc, _ = F.linear_backward(d_fc, c5)
    d_pooled = F.roi_pool_backward(d_roi, c4)
    d_relu = F.max_pool2d_backward(d_pooled, c3)
    d_conv = F.relu_backward(d_relu, c2)
    _, dw1, _ = F.conv2d_backward(d_conv, c1, need_dx=False)
    elapsed = time.perf_counter() - start

    print("A miniature Fast R-CNN step, every layer's forward and backward written by hand:")
    for name, a in [("image", image), ("conv 3x3 + ReLU", relu), ("max pool 2x2", pooled),
                    ("RoI pool 4x4 at 1/2", roi_feats), ("fc", fc), ("class scores", scores),
                    ("box deltas", deltas)]:
        print(f"  {name:<22} {str(a.shape):<18} {a.dtype}")
    print(f"  loss = L_cls + L_loc = {loss_cls:.4f} + {loss_loc:.4f}   (forward + backward in {elapsed * 1e3:.1f} ms)")
    print(f"  |dL/dW| conv1 = {np.linalg.norm(dw1):.3g}, fc = {np.linalg.norm(dw_fc):.3g}")

    x = tie_free((1, 2, 6, 6), rng)
    errors = check_backward(F.roi_pool_forward, F.roi_pool_backward, [x, rois.astype(np.float64)], [0],
                            dict(output_size=(2, 2), spatial_scale=1 / 16))
    print(f"Gradient check of RoI pooling (float64, centred differences): relative error {errors[0]:.1e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Time the VGG16 conv stack built from minircnn's conv2d/relu/max_pool2d, and the same in PyTorch when installed.

What is measured (issue 2, item 8): the VGG16 conv stack (conv1_1 .. conv5_3, ReLU after every conv, 2x2/2 max pools
with Caffe's ceil rule after conv1_2, conv2_2, conv3_3 and conv4_3): forward, and forward + backward as Fast R-CNN
trains it -- conv3_1 and up trainable, so the backward stops at conv3_1 (its weight and bias gradients, no input
gradient) and the frozen conv1_x / conv2_x layers get no backward at all. A random gradient stands in for the loss
gradient at relu5_3. Input sizes 1x3x224x224 and 1x3x600x800 (a typical training image; conv5_3 is then 38x50).
PyTorch does the same with F.conv2d, F.relu (not in place) and F.max_pool2d(ceil_mode=True), autograd enabled only
on conv3_1+ weights.

Both libraries run on the same number of threads, interleaved, with a pause before every timed call
(benchmarks/README.md, "Why the benchmark sleeps"; benchmarks/_bench_harness.py). The "check" column is
||ours - torch|| / ||torch|| on the forward output, or for forward+backward the worst weight or bias gradient of
conv3_1..conv5_3 (named when above 1e-4). Float32 rounding gives ~1e-6. A ReLU whose input is within rounding of
zero, or a max-pool window with a near-tie, can decide differently in the two libraries; one such element shows up as
~1e-3 in the gradients of the layers below it (seen at 224x224 with seed 0: one relu4_1 flip). A wrong layer gives ~1.

Usage::

    python benchmarks/bench_conv_stack.py                  # 224x224 and 600x800 (a few minutes on a 2-core machine)
    python benchmarks/bench_conv_stack.py --quick          # smoke run: 224x224 only, one timed repeat
    python benchmarks/bench_conv_stack.py --device gpu     # ours on CuPy, PyTorch on CUDA
    python benchmarks/bench_conv_stack.py --impl my_layers.py   # time a learner's own layers (exercise mode)

PyTorch is optional; without it only our times are printed. The RoI pooling and fc6/fc7 benchmarks are
bench_roi_pool.py and bench_fc.py.
"""
from __future__ import annotations

import inspect
import sys

import numpy as np

import _bench_common as common
from _bench_harness import Case

# VGG16's conv stack (docs/reference.md section 2): (name, in, out) for a 3x3 pad-1 conv + ReLU, or "pool" for max pool
# k2 s2 (ceil).
VGG16 = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), "pool",
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), "pool",
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
FIRST_TRAINABLE = "conv3_1"          # conv1_x and conv2_x are frozen in Fast R-CNN's VGG16
IMAGE_HW = (600, 800)                # a typical training image
NEEDED = ("conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward", "relu_forward",
          "relu_backward")
TARGETS = (  # issue 2's targets, ours / PyTorch-CPU
    ("conv stack fwd", "1x3x224x224", 1.25),
    ("conv stack fwd+bwd (conv3_1+)", "1x3x224x224", 1.5),
)


def conv_backward_caller(F):
    """A function (dy, cache, need_dx) -> (dx, dw, db) that asks for what it needs when the layer supports it.

    The contract's conv2d_backward takes ``need_dx``/``need_dw``; an implementation without them (e.g. a learner's)
    is called plainly and its dx for conv3_1 is simply thrown away (the note under the table says so).
    """
    fn = getattr(F, "conv2d_backward", None)
    if fn is None:
        return None, False
    try:
        params = inspect.signature(fn).parameters
        supports = "need_dx" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        supports = False
    if supports:
        return (lambda dy, cache, need_dx: fn(dy, cache, need_dx=need_dx, need_dw=True)), True
    return (lambda dy, cache, need_dx: fn(dy, cache)), False


def vgg16_params(rng):
    """He-initialised float32 weights (keeps activations O(1): no denormals to slow anyone down)."""
    params = {}
    for layer in VGG16:
        if layer == "pool":
            continue
        name, cin, cout = layer
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2.0 / (cin * 9)))
        b = rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
        params[name] = (w, b)
    return params


def conv_stack_output_hw(h, w):
    for layer in VGG16:
        if layer == "pool":
            h, w = -(-h // 2), -(-w // 2)   # Caffe ceil rule for k2 s2
    return h, w


def ours_conv_forward(F, params, x):
    for layer in VGG16:
        if layer == "pool":
            x, _ = F.max_pool2d_forward(x, kernel_size=2, stride=2, pad=0)
        else:
            w, b = params[layer[0]]
            x, _ = F.conv2d_forward(x, w, b, stride=1, pad=1)
            x, _ = F.relu_forward(x)
    return x


def ours_conv_forward_backward(F, conv_bwd, params, x, dy, clock):
    t0 = clock()
    tape, trainable = [], False
    for layer in VGG16:
        if layer == "pool":
            x, cache = F.max_pool2d_forward(x, kernel_size=2, stride=2, pad=0)
            if trainable:
                tape.append(("pool", None, cache))
            continue
        name = layer[0]
        trainable = trainable or name == FIRST_TRAINABLE
        w, b = params[name]
        x, conv_cache = F.conv2d_forward(x, w, b, stride=1, pad=1)
        x, relu_cache = F.relu_forward(x)
        if trainable:                       # frozen layers keep no cache: they get no backward
            tape.append(("conv", name, conv_cache))
            tape.append(("relu", None, relu_cache))
    t1 = clock()
    grads, d = {}, dy
    for kind, name, cache in reversed(tape):
        if kind == "relu":
            d = F.relu_backward(d, cache)
        elif kind == "pool":
            d = F.max_pool2d_backward(d, cache)
        else:
            d, dw, db = conv_bwd(d, cache, name != FIRST_TRAINABLE)
            grads["dw_" + name], grads["db_" + name] = dw, db
    del tape, d
    t2 = clock()
    return grads, {"fwd": t1 - t0, "bwd": t2 - t1}


def torch_conv_forward(TF, tparams, x):
    for layer in VGG16:
        if layer == "pool":
            x = TF.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        else:
            w, b = tparams[layer[0]]
            x = TF.relu(TF.conv2d(x, w, b, stride=1, padding=1))
    return x


def conv_cases(env, sizes):
    F, xp, torch_mod, TF, tdev, rng = env.F, env.xp, env.torch, env.TF, env.tdev, env.rng
    params = vgg16_params(rng)
    conv_bwd, has_need = conv_backward_caller(F)
    if conv_bwd is not None and not has_need:
        env.notes.append("conv2d_backward takes no need_dx/need_dw: ours also computes conv3_1's unused input gradient")
    ours_params = {k: (xp.asarray(w), xp.asarray(b)) for k, (w, b) in params.items()}
    tparams = trainable = None
    if torch_mod is not None:
        tparams, trainable, on = {}, [], False
        for layer in VGG16:
            if layer == "pool":
                continue
            on = on or layer[0] == FIRST_TRAINABLE
            w, b = (torch_mod.from_numpy(a).to(tdev).requires_grad_(on) for a in params[layer[0]])
            tparams[layer[0]] = (w, b)
            if on:
                trainable += [(layer[0], w, b)]
    cases = []
    for (h, w) in sizes:
        x_np = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        oh, ow = conv_stack_output_hw(h, w)
        dy_np = rng.standard_normal((1, 512, oh, ow), dtype=np.float32)
        x, dy = xp.asarray(x_np), xp.asarray(dy_np)
        tx = tdy = None
        if torch_mod is not None:
            tx, tdy = torch_mod.from_numpy(x_np).to(tdev), torch_mod.from_numpy(dy_np).to(tdev)
        size = f"1x3x{h}x{w}"

        def ours_fwd(impl, x=x):
            t0 = impl.clock()
            y = ours_conv_forward(F, ours_params, x)
            return {"y": y}, {"total": impl.clock() - t0}

        def torch_fwd(impl, tx=tx):
            with torch_mod.no_grad():
                t0 = impl.clock()
                y = torch_conv_forward(TF, tparams, tx)
                t1 = impl.clock()
            return {"y": y}, {"total": t1 - t0}

        def ours_fwd_bwd(impl, x=x, dy=dy):
            if conv_bwd is None:
                raise AttributeError("no conv2d_backward")
            return ours_conv_forward_backward(F, conv_bwd, ours_params, x, dy, impl.clock)

        def torch_fwd_bwd(impl, tx=tx, tdy=tdy):
            for _, tw, tb in trainable:
                tw.grad = tb.grad = None
            t0 = impl.clock()
            y = torch_conv_forward(TF, tparams, tx)
            t1 = impl.clock()
            y.backward(tdy)
            t2 = impl.clock()
            grads = {}
            for name, tw, tb in trainable:
                grads["dw_" + name], grads["db_" + name] = tw.grad, tb.grad
            return grads, {"fwd": t1 - t0, "bwd": t2 - t1}

        have_torch = torch_mod is not None
        cases.append(Case("conv stack fwd", size, ours_fwd, torch_fwd if have_torch else None))
        cases.append(Case("conv stack fwd+bwd (conv3_1+)", size, ours_fwd_bwd, torch_fwd_bwd if have_torch else None,
                          rows={"": ["fwd", "bwd"]}))
    return cases


def main(argv=None):
    p = common.make_parser(__doc__, "smoke run: 224x224 only, 1 timed repeat")
    args = common.parse_args(p, argv)
    sizes = [(224, 224)] if args.quick else [(224, 224), IMAGE_HW]
    return common.run(args, title="VGG16 conv stack", script="benchmarks/bench_conv_stack.py", needed=NEEDED,
                      make_cases=lambda env: conv_cases(env, sizes), targets=TARGETS)


if __name__ == "__main__":
    sys.exit(main())

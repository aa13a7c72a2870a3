"""Truncated-SVD compression of the fully connected layers (paper Sec. 3.1, docs/reference.md §11).

At test time a detector runs fc6 and fc7 on every one of ~2000 RoIs, and for VGG16 that is about half of the
forward time (paper Fig. 2). An fc layer ``y = W x + b`` with ``W`` of shape (u, v) is replaced by two layers with
no nonlinearity between them::

    W ~= U_t Sigma_t V_t^T          (the t largest singular values; U_t is u x t, V_t is v x t)
    fcX_L:  y1 = (Sigma_t V_t^T) x      t x v weights, no bias  (Caffe ``bias_term: false``)
    fcX_U:  y  = U_t y1 + b             u x t weights, the original bias

as in ``FR:tools/compress_net.py`` (``L = diag(s_l) @ Vt_l`` carries the singular values; ``U_l`` gets the bias) and
its ``compressed/test.prototxt`` (layers ``fc6_L``, ``fc6_U``, ...). The parameter count drops from ``uv`` to
``t(u + v)``; the paper's VGG16 ranks, fc6 1024 and fc7 256, cut 25088x4096 + 4096x4096 = 119.5M weights to 32.0M.
No fine-tuning follows (paper Sec. 4.4). Of all rank-t matrices, ``U_t Sigma_t V_t^T`` is the closest to ``W`` in
the Frobenius norm, and the squared error is the sum of the discarded ``sigma_i^2`` (Eckart-Young).

Use: ``compress(model, {"fc6": 1024, "fc7": 256})``, or ``--svd fc6=1024,fc7=256`` on ``python -m
minircnn.evaluate`` / ``python -m minircnn.detect``. A compressed model saves and loads like any other (its
:attr:`~minircnn.models.FastRCNN.config` records the ranks).
"""
from __future__ import annotations

import numbers

from ..backend import get_array_module
from ..nn import Linear, Network

COMPRESSIBLE = ("fc6", "fc7")          # the layers the paper compresses; the heads are small
PAPER_RANKS = {"fc6": 1024, "fc7": 256}


def truncated_svd(w, rank: int):
    """The two factors of the best rank-``rank`` approximation of ``w`` (``FR:compress_net.py::compress_weights``).

    Args:
        w: (out, in) float array (NumPy or CuPy), an fc layer's weight.
        rank: t, with 1 <= t <= min(out, in).

    Returns:
        L: (t, in) array ``Sigma_t V_t^T`` (row i has norm sigma_i).
        U: (out, t) array ``U_t`` (orthonormal columns); ``U @ L`` approximates ``w``.
    """
    xp = get_array_module(w)
    u, s, vt = xp.linalg.svd(w, full_matrices=False)
    return (s[:rank, None] * vt[:rank]).astype(w.dtype, copy=False), xp.ascontiguousarray(u[:, :rank], dtype=w.dtype)


def check_ranks(model, ranks) -> dict:
    """``ranks`` as ``{name: int}`` after checking it against ``model``; raises ValueError naming the problem."""
    checked = {}
    for name, rank in dict(ranks).items():
        if name in getattr(model, "svd_ranks", {}):
            raise ValueError(f"{name} is already compressed (layers {name}_L, {name}_U)")
        if name not in COMPRESSIBLE or not isinstance(getattr(model, name, None), Linear):
            raise ValueError(f"{name!r} is not an fc layer this model can compress; compressible: "
                             f"{', '.join(n for n in COMPRESSIBLE if isinstance(getattr(model, n, None), Linear))}")
        out_features, in_features = model[name].params["weight"].shape
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) \
                or not 1 <= rank <= min(out_features, in_features):
            raise ValueError(f"rank of {name} must be an integer in [1, {min(out_features, in_features)}] "
                             f"(its weight is {out_features} x {in_features}), got {rank!r}")
        checked[name] = int(rank)
    return checked


def factor_layers(model, ranks) -> dict:
    """Replace each named fc layer by an ``(X_L, X_U)`` pair of zero-filled layers of the right shapes.

    The structure of :func:`compress` without the values: :meth:`FastRCNN.from_config` uses it before loading a
    compressed checkpoint. The pair keeps the old layer's frozen flag; the old layer object is returned so that
    :func:`compress` can read its weights.

    Returns:
        ``{name: old Linear}``.
    """
    ranks = check_ranks(model, ranks)
    old_layers = {}
    for name, rank in ranks.items():
        old = model[name]
        w = old.params["weight"]
        xp = get_array_module(w)
        out_features, in_features = w.shape
        low = Linear(f"{name}_L", in_features, rank, w.dtype, bias=False)
        up = Linear(f"{name}_U", rank, out_features, w.dtype)
        for layer in (low, up):
            layer.params = {k: xp.asarray(v) for k, v in layer.params.items()}    # the model's device
            layer.frozen = old.frozen
        pos = model.trunk.index(old)
        model.trunk[pos:pos + 1] = [low, up]
        layers = list(model.layers)
        pos = layers.index(old)
        layers[pos:pos + 1] = [low, up]
        Network.__init__(model, layers)                # rebuild the name index
        delattr(model, name)                           # model.fc6 no longer exists: no silent use of the old layer
        setattr(model, low.name, low)
        setattr(model, up.name, up)
        model.svd_ranks[name] = rank
        old_layers[name] = old
    return old_layers


def compress(model, ranks=None):
    """Compress fc layers of a :class:`~minircnn.models.FastRCNN` in place by truncated SVD (module docstring).

    Args:
        model: the detector (NumPy or CuPy parameters; the SVD runs where they are, in their dtype).
        ranks: ``{layer name: t}``, e.g. ``{"fc6": 1024, "fc7": 256}`` (the default, the paper's VGG16 ranks).
            Names must be fc layers of the model not yet compressed (``fc6``, ``fc7``); ``1 <= t <= min(out, in)``.

    Returns:
        The model.

    Raises:
        ValueError: a bad name or rank; the model is left untouched (everything is checked before any change).
    """
    ranks = check_ranks(model, PAPER_RANKS if ranks is None else ranks)
    for name, old in factor_layers(model, ranks).items():
        low, up = model[f"{name}_L"], model[f"{name}_U"]
        low.params["weight"], up.params["weight"] = truncated_svd(old.params["weight"], ranks[name])
        up.params["bias"] = old.params["bias"].copy()
    return model

"""Numerical gradients and the checks that compare them with hand-written backward passes.

Used by the tests and the lessons alike, so the tolerances live here, in one place.

Why float64: the centred difference ``(f(x+h) - f(x-h)) / 2h`` has truncation error ~h^2 and round-off error
~eps/h. With float64 (eps ~ 1e-16) and h = 1e-6 both are ~1e-10 relative; in float32 (eps ~ 1e-7) the round-off alone
would be ~0.1. Max-type layers (max pool, RoI pool) and kinks (ReLU at 0, smooth L1 at |d| = 1) must be kept more than
h away from their switching points, or the numerical derivative straddles two pieces of the function.
"""
from __future__ import annotations

import numpy as np

from .backend import asnumpy, get_array_module

STEP = 1e-6           # finite-difference step h
GRAD_RTOL = 1e-6      # max |analytic - numerical| / max(|analytic|, |numerical|) accepted for float64 checks
EXACT_ATOL = 1e-12    # for known-value tests on hand-computed float64 numbers


def rel_error(a, b) -> float:
    """Normwise relative error ``max|a - b| / max(max|a|, max|b|)`` (0 when both are all zeros).

    Normwise rather than elementwise: an entry whose true gradient is 0 gets a numerical value of ~1e-11, which is
    a huge *elementwise* relative error but no sign of a bug.
    """
    a, b = asnumpy(a).astype(np.float64), asnumpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(a - b).max() / scale)


def numerical_gradient(f, x, h: float = STEP):
    """Centred-difference gradient of the scalar function ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored; ``f`` must read it.

    Args:
        f: callable with no arguments returning a float.
        x: float64 array (NumPy or CuPy).
        h: step.

    Returns:
        Array like x: ``(f(x + h e_i) - f(x - h e_i)) / (2h)`` for every element i.
    """
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)   # views: x must be contiguous so these alias it
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous x (it perturbs x through a flat view)")
    for i in range(flat.size):
        old = float(flat[i])
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def check_backward(forward, backward, args, wrt, kwargs=None, seed: int = 0, h: float = STEP,
                   rtol: float = GRAD_RTOL):
    """Compare a layer's backward with numerical derivatives of ``L = sum(forward(...) * dy)`` for a random dy.

    Args:
        forward: ``forward(*args, **kwargs) -> (y, cache)``.
        backward: ``backward(dy, cache) -> grads``; a single array or a tuple ordered like ``wrt``.
        args: positional inputs (float64 arrays for the differentiable ones; they are perturbed in place).
        wrt: indices into ``args`` of the inputs backward returns gradients for, in backward's order.
        kwargs: keyword arguments for forward (non-differentiable settings).
        seed: seed for dy.
        h: finite-difference step.
        rtol: largest accepted :func:`rel_error`.

    Returns:
        list of relative errors, one per input in ``wrt``.

    Raises:
        AssertionError: some gradient is off by more than ``rtol``; the message names it and the error.
    """
    kwargs = kwargs or {}
    y, cache = forward(*args, **kwargs)
    xp = get_array_module(y)
    rng = np.random.default_rng(seed)
    dy = xp.asarray(rng.standard_normal(y.shape))
    grads = backward(dy, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(wrt):
        raise ValueError(f"backward returned {len(grads)} gradients but wrt names {len(wrt)} inputs")

    def loss():
        return float((forward(*args, **kwargs)[0] * dy).sum())

    errors = []
    for index, grad in zip(wrt, grads):
        numeric = numerical_gradient(loss, args[index], h)
        err = rel_error(grad, numeric)
        assert err <= rtol, f"gradient of argument {index} is off: relative error {err:.3g} > {rtol:g}"
        errors.append(err)
    return errors


def check_loss_gradient(loss_fn, args, wrt: int = 0, kwargs=None, h: float = STEP, rtol: float = GRAD_RTOL):
    """Compare the gradient a loss returns, ``loss, grad = loss_fn(*args)``, with the numerical one.

    Args:
        loss_fn: ``loss_fn(*args, **kwargs) -> (float, gradient of args[wrt])``.
        args: inputs; ``args[wrt]`` is a float64 array perturbed in place.
        wrt: index of the differentiable input.

    Returns:
        The relative error. Raises AssertionError above ``rtol``.
    """
    kwargs = kwargs or {}
    _, grad = loss_fn(*args, **kwargs)
    numeric = numerical_gradient(lambda: float(loss_fn(*args, **kwargs)[0]), args[wrt], h)
    err = rel_error(grad, numeric)
    assert err <= rtol, f"loss gradient is off: relative error {err:.3g} > {rtol:g}"
    return err


def tie_free(shape, rng, low: float = -1.0, high: float = 1.0, xp=np):
    """A float64 array of distinct values, evenly spaced in [low, high] and shuffled.

    For max-type layers: neighbouring values differ by ``(high - low) / size``, far more than the finite-difference
    step, so perturbing one element never changes which element is the maximum.
    """
    n = int(np.prod(shape))
    return xp.asarray(rng.permutation(np.linspace(low, high, n)).reshape(shape))

"""Stochastic gradient descent as Caffe's solver does it for Fast R-CNN (docs/reference.md §3,
``FR:models/*/solver.prototxt``).

For every trainable parameter w with gradient g, learning-rate multiplier ``lr_mult`` and decay multiplier
``decay_mult`` (weights 1 and 1, biases 2 and 0: docs/reference.md §14.9), one step is::

    v = momentum * v + lr * lr_mult * (g + weight_decay * decay_mult * w)
    w = w - v

with ``lr = base_lr * gamma ** floor(iteration / stepsize)`` ("step" policy: 0.001, then 0.0001 from iteration
30000 in the paper). Frozen parameters are skipped entirely: no update, no velocity.
"""
from __future__ import annotations

import numpy as np

from ..backend import asnumpy, get_array_module


class SGD:
    """SGD with momentum, L2 weight decay, per-parameter multipliers and a step learning-rate schedule.

    Args:
        params: the model's parameters, ``model.parameters()`` (:class:`~minircnn.nn.module.Param` references;
            frozen flags and arrays are read at every step).
        base_lr: learning rate before the first step down (0.001).
        momentum: 0.9.
        weight_decay: 0.0005, scaled per parameter by its ``decay_mult``.
        gamma: factor applied to the learning rate at every step down (0.1).
        stepsize: iterations between steps down (30000); None for a constant rate.

    Attributes:
        iteration: number of steps taken (the next step uses ``lr_at(iteration)``).
        velocity: ``{parameter name: array}``, created at a parameter's first update.
    """

    def __init__(self, params, base_lr: float = 0.001, momentum: float = 0.9, weight_decay: float = 0.0005,
                 gamma: float = 0.1, stepsize: int | None = 30000):
        self.params = list(params)
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError("params contains a parameter name twice")
        if not base_lr > 0 or not 0 <= momentum < 1 or weight_decay < 0 or not gamma > 0:
            raise ValueError(f"need base_lr > 0, 0 <= momentum < 1, weight_decay >= 0, gamma > 0; got {base_lr}, "
                             f"{momentum}, {weight_decay}, {gamma}")
        if stepsize is not None and (int(stepsize) != stepsize or stepsize < 1):
            raise ValueError(f"stepsize must be a positive integer or None, got {stepsize!r}")
        self.base_lr, self.momentum, self.weight_decay = float(base_lr), float(momentum), float(weight_decay)
        self.gamma, self.stepsize = float(gamma), stepsize
        self.iteration = 0
        self.velocity: dict = {}
        self._scratch: dict = {}

    def lr_at(self, iteration: int) -> float:
        """The learning rate at ``iteration``: ``base_lr * gamma ** floor(iteration / stepsize)``."""
        if self.stepsize is None:
            return self.base_lr
        return self.base_lr * self.gamma ** (int(iteration) // int(self.stepsize))

    def step(self) -> float:
        """Update every trainable parameter in place from its gradient; returns the learning rate used.

        Raises:
            RuntimeError: a trainable parameter has no gradient (no backward since the model was built or moved).
        """
        lr = self.lr_at(self.iteration)
        for p in self.params:
            if p.frozen:
                continue
            w, g = p.value, p.grad
            if g is None:
                raise RuntimeError(f"parameter {p.name} is trainable but has no gradient: run the backward first")
            v = self.velocity.get(p.name)
            if v is None:
                v = self.velocity[p.name] = get_array_module(w).zeros_like(w)
            rate = lr * p.lr_mult
            decay = self.weight_decay * p.decay_mult
            term = self._scratch.get(p.name)        # one buffer per parameter: no fresh arrays every step
            if term is None or term.shape != w.shape or term.dtype != w.dtype:
                term = self._scratch[p.name] = get_array_module(w).empty_like(w)
            v *= self.momentum
            v += get_array_module(w).multiply(g, rate, out=term)              # rate * g
            if decay:
                v += get_array_module(w).multiply(w, rate * decay, out=term)  # (rate * decay) * w
            w -= v
        self.iteration += 1
        return lr

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """``{"iteration": int64 array, "velocity.<parameter name>": array, ...}``, host (NumPy) copies."""
        state = {"iteration": np.asarray(self.iteration, dtype=np.int64)}
        for name, v in self.velocity.items():
            state[f"velocity.{name}"] = np.array(asnumpy(v), copy=True)
        return state

    def load_state_dict(self, state, source: str = "state_dict") -> None:
        """Restore the iteration and the velocities (placed on each parameter's device, in its dtype).

        Raises:
            ValueError: a velocity names no trainable parameter or has the wrong shape, or the iteration is missing.
        """
        if "iteration" not in state:
            raise ValueError(f"{source} has no solver 'iteration'")
        params = {p.name: p for p in self.params if not p.frozen}
        velocity = {}
        for key in state:
            if key == "iteration":
                continue
            name = key[len("velocity."):] if key.startswith("velocity.") else None
            if name not in params:
                raise ValueError(f"{source}: solver entry {key!r} names no trainable parameter of the model")
            w, value = params[name].value, state[key]
            if tuple(value.shape) != tuple(w.shape):
                raise ValueError(f"{source}: layer {params[name].module.name}: the velocity of {name} has shape "
                                 f"{tuple(value.shape)}, the parameter {tuple(w.shape)}")
            velocity[name] = get_array_module(w).asarray(value).astype(w.dtype, copy=True)
        self.iteration = int(state["iteration"])
        self.velocity = velocity

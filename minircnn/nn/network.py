"""Containers of layers: :class:`Sequential` (a chain, e.g. a conv backbone) and :class:`Network` (a whole model).

A network knows its layers in forward order and gives the rest of the package what it needs from a model:
dotted parameter names (``conv3_1.weight``), references for the solver (:meth:`Network.parameters`), checkpoints as
flat ``{name: array}`` dicts (:meth:`Network.state_dict` / :meth:`Network.load_state_dict`), frozen flags, and a
move to the GPU and back.
"""
from __future__ import annotations

import copy
import os

import numpy as np

from ..backend import asnumpy, get_array_module, to_device
from .layers import Dropout
from .module import Module, Param


class StateDictError(ValueError):
    """A checkpoint or weight file does not fit the model (names or shapes); the message names the file and layer."""


def plan_backward(layers, upstream_trainable: bool = False) -> bool:
    """Decide which layers of a chain need the gradient of their input.

    A layer needs ``dx`` only if some trainable layer lies *before* it (it is on the way back to that layer).
    The first trainable layer therefore computes only its parameter gradients (the network's first conv never
    computes the image gradient; VGG16's conv3_1 computes no ``dx`` for the frozen conv2_2), and the layers before
    it run no backward at all and keep no cache.

    Args:
        layers: the chain's modules in forward order; their ``need_dx`` is set.
        upstream_trainable: whether a trainable layer lies before the chain.

    Returns:
        Whether a trainable layer lies in or before the chain (i.e. whether the chain's output needs a gradient).
    """
    for layer in layers:
        layer.need_dx = upstream_trainable
        upstream_trainable = upstream_trainable or layer.trainable
    return upstream_trainable


class Sequential:
    """A chain of single-input layers, run in order forward and in reverse backward.

    A batch can go through the chain in slices along N, each slice in its own thread (:meth:`forward`'s ``slices``):
    NumPy releases the GIL inside BLAS and in most element-wise loops, so the slices of a training step use the
    cores a single BLAS thread leaves idle. Each slice runs through its own shallow copy of the layers (same
    parameter arrays, own caches and gradients; a layer's ``cache`` holds its slices' caches until the backward, which
    consumes them); the backward adds the slices' parameter gradients in slice order.
    The result depends on the number of slices (by float32 rounding: a sum over N becomes a sum of partial sums),
    never on the number of threads or on which finishes first.

    Args:
        layers: modules in forward order.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self._replicas = None                 # the slices' layer copies between a sliced forward and its backward

    def forward(self, x, train: bool = True, slices: int = 1):
        """x -> the last layer's output (every layer keeps its cache if ``train`` and it will run a backward).

        Args:
            x: (N, ...) input.
            train: training mode.
            slices: run the batch in this many slices along N (at most N), in parallel threads; 1: as one batch.
        """
        self._replicas = None
        slices = min(int(slices), x.shape[0])
        if slices <= 1:
            return _chain_forward(self.layers, x, train)
        xp = get_array_module(x)
        bounds = np.linspace(0, x.shape[0], slices + 1).astype(int)
        replicas = [[copy.copy(layer) for layer in self.layers] for _ in range(slices)]
        for chain in replicas:
            for layer in chain:
                layer.grads, layer.cache = {}, None
        outputs = list(_pool().map(_chain_forward, replicas, [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
                                   [train] * slices))
        for i, layer in enumerate(self.layers):       # a layer's cache: its slices' caches (None if none kept)
            caches = tuple(chain[i].cache for chain in replicas)
            layer.cache = None if all(c is None for c in caches) else caches
        if train:
            self._replicas = (replicas, bounds)
        return xp.concatenate(outputs, axis=0)

    def backward(self, dy):
        """The chain's backward: from the gradient of its output to that of its input (None when not needed).

        Stops as soon as no gradient flows further back (before the first trainable layer). After a sliced
        forward, each slice runs its own backward (in parallel) and each layer's gradients are the slices' sums.
        """
        if self._replicas is not None:
            return self._sliced_backward(dy)
        return _chain_backward(self.layers, dy)

    def _sliced_backward(self, dy):
        (replicas, bounds), self._replicas = self._replicas, None
        if dy is None:
            for layer in self.layers:
                layer.cache = None
            return None
        xp = get_array_module(dy)
        dxs = list(_pool().map(_chain_backward, replicas, [dy[a:b] for a, b in zip(bounds[:-1], bounds[1:])]))
        for i, layer in enumerate(self.layers):
            grads = [chain[i].grads for chain in replicas]
            layer.grads = {key: _sum([g[key] for g in grads]) for key in grads[0]}
            layer.cache = None
        return None if dxs[0] is None else xp.concatenate(dxs, axis=0)

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for an input of ``input_shape``, e.g. VGG16's conv5_3 for a 600x800 image: 38x50."""
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return tuple(input_shape)

    @property
    def stride(self) -> int:
        """Total stride: input pixels per output cell, the product of the conv and pool strides (16 for every
        backbone here: VGG16's four stride-2 pools, CaffeNet's stride-4 conv1 and two pools, VGG_CNN_M's stride-2
        conv1, conv2 and two pools)."""
        s = 1
        for layer in self.layers:
            s *= getattr(layer, "stride", 1)
        return s


def _chain_forward(layers, x, train):
    """x through ``layers`` in order."""
    for layer in layers:
        x = layer.forward(x, train=train)
    return x


def _chain_backward(layers, dy):
    """dy back through ``layers`` in reverse, stopping where no gradient flows further (None)."""
    for layer in reversed(layers):
        if dy is None:
            break
        dy = layer.backward(dy)
    return dy


def _sum(arrays):
    """arrays[0] + arrays[1] + ..., left to right (the slices' order), into the first."""
    total = arrays[0]
    for a in arrays[1:]:
        total += a
    return total


_POOL = None


def _pool():
    """The threads that run a sliced batch: one per core (created on first use, shared, kept for the process)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="minircnn-slice")
    return _POOL


class Network:
    """A model as a list of named layers in forward order (subclasses write forward and backward).

    Args:
        layers: every module of the model, in forward order; names must be unique.
    """

    def __init__(self, layers):
        self.layers, self._by_name = [], {}
        self.add_layers(layers)

    def add_layers(self, layers) -> None:
        """Append layers to the network (after the existing ones in forward order); names must stay unique."""
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"expected Module instances, got {type(layer).__name__}")
            if layer.name in self._by_name:
                raise ValueError(f"two layers are named {layer.name!r}")
            self._by_name[layer.name] = layer
            self.layers.append(layer)

    def __getitem__(self, name: str) -> Module:
        """The layer called ``name`` (``model["conv3_1"]``)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r}; layers: {', '.join(self._by_name)}") from None

    # ------------------------------------------------------------------------------------------- parameters
    def parameters(self) -> list:
        """Every parameter as a :class:`~minircnn.nn.module.Param` (frozen ones included), in forward order."""
        return [Param(f"{m.name}.{key}", m, key) for m in self.layers for key in m.params]

    def gradients(self) -> dict:
        """``{name: gradient}`` of the last backward (trainable parameters only)."""
        return {p.name: p.grad for p in self.parameters() if p.grad is not None}

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(int(p.value.size) for p in self.parameters() if not (trainable_only and p.frozen))

    def freeze(self, names, frozen: bool = True) -> None:
        """Set the frozen flag of the named layers (e.g. ``["conv1_1", "conv1_2"]``)."""
        for name in names:
            self[name].frozen = frozen

    def set_dropout_rng(self, rng) -> None:
        """Make every dropout layer draw its masks from the ``numpy.random.Generator`` ``rng``."""
        self.dropout_rng = rng
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    @property
    def dtype(self):
        return self.parameters()[0].value.dtype

    @property
    def xp(self):
        """The array module the parameters live in (numpy or cupy)."""
        return get_array_module(self.parameters()[0].value)

    def to(self, device: str):
        """Move every parameter to ``"cpu"`` or ``"gpu"`` (gradients and caches are dropped). Returns self.

        Move the model before building its solver: the solver's velocities live where the parameters were.
        """
        for layer in self.layers:
            layer.params = {k: to_device(v, device) for k, v in layer.params.items()}
            layer.grads, layer.cache = {}, None
        return self

    def astype(self, dtype):
        """Cast every parameter to ``dtype`` (float64 for gradient checks). Returns self."""
        for layer in self.layers:
            layer.params = {k: v.astype(dtype, copy=False) for k, v in layer.params.items()}
            layer.grads, layer.cache = {}, None
        return self

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """``{"conv3_1.weight": array, ...}``: host (NumPy) copies of every parameter, frozen ones included."""
        return {p.name: np.array(asnumpy(p.value), copy=True) for p in self.parameters()}

    def load_state_dict(self, state, strict: bool = True, source: str = "state_dict"):
        """Copy parameters from a flat ``{name: array}`` dict into the model, in place (dtype cast, device kept).

        Args:
            state: mapping from dotted parameter names to arrays (e.g. an ``np.load``-ed ``.npz``).
            strict: require exactly the model's names. With False, names the model lacks are ignored and
                parameters the state lacks keep their values (e.g. loading a backbone into a detector).
            source: what ``state`` came from (a file name), used in error messages.

        Returns:
            (missing, unexpected): sorted lists of names in the model but not in ``state`` and vice versa.

        Raises:
            StateDictError: a shape differs (every mismatch is listed, by layer), or, when strict, names differ.
        """
        params = {p.name: p for p in self.parameters()}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"lacks {len(missing)} parameter(s) of this model: {', '.join(missing)}")
            if unexpected:
                parts.append(f"has {len(unexpected)} parameter(s) this model does not: {', '.join(unexpected)}")
            raise StateDictError(f"{source} does not fit the model: it " + "; it ".join(parts))
        mismatched = []
        for name in sorted(set(params) & set(state)):
            p, value = params[name], state[name]
            if tuple(value.shape) != tuple(p.value.shape):
                mismatched.append(f"layer {p.module.name}: {name} has shape {tuple(value.shape)} in {source} but "
                                  f"{tuple(p.value.shape)} in the model")
            elif not np.issubdtype(np.dtype(value.dtype), np.floating):
                mismatched.append(f"layer {p.module.name}: {name} has dtype {value.dtype} in {source}, not floating")
        if mismatched:
            raise StateDictError(f"{source} does not fit the model: " + "; ".join(mismatched))
        for name in set(params) & set(state):
            target = params[name].value
            target[...] = get_array_module(target).asarray(state[name]).astype(target.dtype, copy=False)
        return missing, unexpected

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        lines += [f"  {layer!r}" for layer in self.layers]
        lines.append(f")  {self.num_parameters():,} parameters, {self.num_parameters(True):,} trainable")
        return "\n".join(lines)

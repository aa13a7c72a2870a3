"""The base of every layer: parameters with their gradients and solver multipliers, a frozen flag, and the cache.

A :class:`Module` wraps one forward/backward pair of :mod:`minircnn.functional`. It owns

* ``params``: ``{"weight": array, "bias": array}`` (empty for ReLU, pooling, dropout);
* ``grads``: the same keys, written by the last :meth:`Module.backward` (overwritten, not accumulated);
* ``lr_mult`` / ``decay_mult``: per-parameter multipliers of the learning rate and of the weight decay. Caffe's
  convention for every trainable layer of the paper's models (docs/reference.md §2): weights 1 / 1, biases 2 / 0 --
  biases learn twice as fast and are not decayed (docs/reference.md §14.9);
* ``frozen``: a frozen layer's parameters get no gradient and the solver never touches them (VGG16's conv1_x and
  conv2_x, docs/reference.md §2);
* ``cache``: what the backward needs from the last training forward; the backward consumes it.

Which layers run a backward at all is decided by the network that holds them
(:func:`minircnn.nn.network.plan_backward`): a layer needs the gradient of its input (``need_dx``) only if some
trainable layer lies before it. A layer that is neither trainable nor needs ``dx`` keeps no cache and its backward
does nothing -- for VGG16 the backward stops at conv3_1, which computes ``dw`` but no ``dx``.
"""
from __future__ import annotations

from typing import NamedTuple


class Module:
    """A layer. Subclasses implement :meth:`_forward` and :meth:`_backward`; this class handles the bookkeeping.

    Attributes:
        name: the layer's name, as in the paper's prototxt (``"conv3_1"``, ``"fc6"``, ``"cls_score"``). Parameter
            names are ``f"{name}.{key}"``.
        params: ``{key: array}``, the parameters (NumPy or CuPy, one floating dtype).
        grads: ``{key: array}``, the gradients from the last backward (empty for a frozen layer).
        lr_mult, decay_mult: ``{key: float}``, multipliers the solver applies to each parameter.
        frozen: True: no parameter gradient is computed and the solver skips this layer.
        need_dx: whether :meth:`backward` returns the gradient of the input (set by the network).
        cache: the last training forward's cache, or None.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"a layer name must be a non-empty string without dots, got {name!r}")
        self.name = name
        self.params: dict = {}
        self.grads: dict = {}
        self.lr_mult: dict = {}
        self.decay_mult: dict = {}
        self.frozen = False
        self.need_dx = True
        self.cache = None

    # ----------------------------------------------------------------------------------------- parameters
    def add_param(self, key: str, value, lr_mult: float, decay_mult: float) -> None:
        """Register a parameter array under ``key`` with its solver multipliers."""
        self.params[key] = value
        self.lr_mult[key] = float(lr_mult)
        self.decay_mult[key] = float(decay_mult)

    @property
    def trainable(self) -> bool:
        """True when the layer has parameters and is not frozen."""
        return bool(self.params) and not self.frozen

    @property
    def needs_backward(self) -> bool:
        """True when the backward has something to compute: parameter gradients or the input's gradient."""
        return self.trainable or self.need_dx

    # ------------------------------------------------------------------------------------ forward/backward
    def forward(self, *inputs, train: bool = True):
        """Run the layer; keep the cache only when a training backward will need it.

        Args:
            *inputs: the layer's inputs (one array; RoIPool takes the feature map and the RoIs).
            train: training mode (dropout active, cache kept); False for inference, which keeps nothing.

        Returns:
            The output array.
        """
        y, cache = self._forward(*inputs, train=train)
        self.cache = cache if (train and self.needs_backward) else None
        return y

    def backward(self, dy):
        """Backpropagate ``dy`` through the layer, store parameter gradients in ``grads``, consume the cache.

        Args:
            dy: gradient of the loss with respect to the layer's output, or None (no gradient flows here: nothing
                trainable lies below this layer in the backward).

        Returns:
            The gradient with respect to the (first) input, or None when ``need_dx`` is False or ``dy`` is None.

        Raises:
            RuntimeError: there is no cache, i.e. no ``forward(..., train=True)`` since the last backward.
        """
        if dy is None or not self.needs_backward:
            self.cache = None
            return None
        cache, self.cache = self.cache, None
        if cache is None:
            raise RuntimeError(f"layer {self.name}: backward() needs the cache of a forward(..., train=True) "
                               "(each backward consumes it)")
        return self._backward(dy, cache)

    def _forward(self, *inputs, train: bool):
        """Return ``(y, cache)``; implemented by each layer."""
        raise NotImplementedError

    def _backward(self, dy, cache):
        """Return dx (or None when ``need_dx`` is False) and fill ``self.grads``; implemented by each layer."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for an input of ``input_shape`` (no computation; shape-preserving by default)."""
        return tuple(input_shape)

    def __repr__(self):
        state = "frozen" if self.frozen else ("trainable" if self.params else "")
        return f"{type(self).__name__}({self.name}{self._describe()}{', ' + state if state else ''})"

    def _describe(self) -> str:
        return ""


class Param(NamedTuple):
    """A reference to one parameter of a layer, as the solver and the checkpoints see it.

    It reads the layer live, so it stays valid when the layer's arrays are replaced (moved to another device,
    reloaded) and when the layer is frozen or unfrozen.

    Attributes:
        name: dotted name, ``"conv3_1.weight"``.
        module: the layer that owns it.
        key: ``"weight"`` or ``"bias"``.
    """
    name: str
    module: Module
    key: str

    @property
    def value(self):
        """The parameter array (updated in place by the solver)."""
        return self.module.params[self.key]

    @property
    def grad(self):
        """Its gradient from the last backward, or None."""
        return self.module.grads.get(self.key)

    @property
    def lr_mult(self) -> float:
        return self.module.lr_mult[self.key]

    @property
    def decay_mult(self) -> float:
        return self.module.decay_mult[self.key]

    @property
    def frozen(self) -> bool:
        return self.module.frozen

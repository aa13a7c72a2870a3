"""Modules: layers that hold their parameters, gradients, solver multipliers, frozen flag and forward cache.

No autograd: every model writes its backward out, layer by layer, in the reverse order of its forward.
"""
from .init import gaussian_, he_normal_
from .layers import LRN, Conv2d, Dropout, Linear, MaxPool2d, ReLU, RoIPool
from .module import Module, Param
from .network import Network, Sequential, StateDictError, plan_backward

__all__ = ["Module", "Param", "Conv2d", "Linear", "ReLU", "LRN", "MaxPool2d", "Dropout", "RoIPool",
           "Sequential", "Network", "StateDictError", "plan_backward", "gaussian_", "he_normal_"]

"""Input validation shared by the layers: bad input gets a ValueError naming the argument, never a crash in NumPy."""
from __future__ import annotations

from ..backend import get_array_module


class NonFiniteError(ValueError):
    """An input holds NaN or infinite values: in training, the sign that the weights have overflowed."""


def check_array(name: str, a, ndim: int | None = None, shape_doc: str = "", floating: bool = True,
                finite: bool = False):
    """Check an array argument and return it unchanged.

    Args:
        name: the argument's name, used in the error message.
        a: the argument.
        ndim: required number of dimensions (None: any).
        shape_doc: the expected shape in words, e.g. ``"(N, C, H, W)"``.
        floating: require a floating dtype.
        finite: require every element to be finite (one extra pass over the data).

    Raises:
        ValueError: not an array, wrong ndim or non-floating dtype; :class:`NonFiniteError` (a ValueError):
            non-finite values.
    """
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise ValueError(f"{name} must be a NumPy or CuPy array of shape {shape_doc}, got {type(a).__name__}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(a.shape)}")
    xp = get_array_module(a)
    if floating and not xp.issubdtype(a.dtype, xp.floating):
        raise ValueError(f"{name} must have a floating dtype (float32 or float64), got {a.dtype}")
    if finite and a.size and not bool(xp.isfinite(a).all()):
        raise NonFiniteError(f"{name} contains NaN or infinite values")
    return a


def check_same_shape(name: str, a, ref_name: str, ref_shape):
    """Raise ValueError unless ``a.shape == ref_shape``."""
    if tuple(a.shape) != tuple(ref_shape):
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref_shape)}, got {tuple(a.shape)}")
    return a


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ValueError unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as a validated ``(h, w)`` tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return check_positive_int(name, value[0], minimum), check_positive_int(name, value[1], minimum)
    v = check_positive_int(name, value, minimum)
    return v, v

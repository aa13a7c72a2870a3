"""Array backend: NumPy on the CPU, CuPy on the GPU.

This is the only module in minircnn that imports CuPy, and it does so lazily: a CPU-only install (or a GPU install
running with ``MINIRCNN_DEVICE=cpu``) never imports it. Every piece of math in the package is written once against
``xp = get_array_module(x)`` and therefore runs on whichever library owns its inputs.

Device selection:
    ``MINIRCNN_DEVICE=cpu`` (default) or ``MINIRCNN_DEVICE=gpu``. Asking for the GPU when CuPy or a CUDA device is
    missing raises :class:`DeviceUnavailableError` with the reason; there is no silent fallback to the CPU.
"""
from __future__ import annotations

import os
import sys

import numpy as np

DEVICES = ("cpu", "gpu")
ENV_VAR = "MINIRCNN_DEVICE"


class DeviceUnavailableError(RuntimeError):
    """The GPU was requested but CuPy or a CUDA device is not available."""


def _cupy_if_imported():
    """CuPy if some code already imported it (then arrays may be CuPy arrays), else None. Never imports it."""
    return sys.modules.get("cupy")


def _import_cupy():
    """Import CuPy and check that a CUDA device answers; raise DeviceUnavailableError saying why not."""
    try:
        import cupy  # noqa: the one place in the package that imports CuPy
    except ImportError as e:
        raise DeviceUnavailableError(
            "the GPU was requested but CuPy is not installed (pip install -e '.[gpu]'): " + str(e)) from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise DeviceUnavailableError(f"the GPU was requested but CUDA is not usable: {e}") from e
    if n < 1:
        raise DeviceUnavailableError("the GPU was requested but no CUDA device is visible")
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device. Imports CuPy only if it is installed."""
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        _import_cupy()
    except DeviceUnavailableError:
        return False
    return True


def get_device(device: str | None = None) -> str:
    """The device to compute on: ``device`` if given, else ``$MINIRCNN_DEVICE``, else ``"cpu"``.

    Raises:
        ValueError: the name is not ``cpu`` or ``gpu``.
        DeviceUnavailableError: ``gpu`` was asked for and is not there.
    """
    name = device if device is not None else os.environ.get(ENV_VAR, "cpu")
    name = name.strip().lower()
    if name not in DEVICES:
        source = "device" if device is not None else f"${ENV_VAR}"
        raise ValueError(f"{source} must be one of {DEVICES}, got {name!r}")
    if name == "gpu":
        _import_cupy()
    return name


def get_xp(device: str | None = None):
    """The array module (``numpy`` or ``cupy``) for a device name (see :func:`get_device`)."""
    return _import_cupy() if get_device(device) == "gpu" else np


def get_array_module(*arrays):
    """The array module owning the arrays: ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Non-array arguments (None, scalars) are ignored. Does not import CuPy: a CuPy array can only exist if CuPy was
    imported already.
    """
    cupy = _cupy_if_imported()
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def is_gpu_array(a) -> bool:
    """True for a CuPy array."""
    return get_array_module(a) is not np


def asnumpy(a) -> np.ndarray:
    """Copy a CuPy array to the host; NumPy arrays and array-likes are returned as NumPy arrays (no copy if possible)."""
    cupy = _cupy_if_imported()
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, device: str | None = None):
    """Move an array to a device (``cpu``/``gpu``, default: :func:`get_device`)."""
    if get_device(device) == "cpu":
        return asnumpy(a)
    return _import_cupy().asarray(a)


def scatter_add(a, indices, values) -> None:
    """In place ``a[indices] += values``, accumulating where an index repeats (``np.add.at`` on the CPU,
    ``cupyx.scatter_add`` — atomic adds — on the GPU)."""
    if is_gpu_array(a):
        import cupyx
        cupyx.scatter_add(a, indices, values)
    else:
        np.add.at(a, indices, values)

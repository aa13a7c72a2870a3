"""The array backend: NumPy by default, CuPy only when asked for, and a clear error when the GPU is missing."""
import subprocess
import sys

import numpy as np
import pytest

from minircnn import backend


def test_cpu_install_never_imports_cupy():
    """Importing the package and running layers on the CPU leaves cupy unimported (even where it is installed)."""
    code = ("import sys, numpy as np, minircnn, minircnn.functional as F, minircnn.gradcheck\n"
            "F.roi_pool_forward(np.ones((1, 1, 4, 4), np.float32), np.array([[0, 0, 0, 3, 3]], np.float32))\n"
            "assert 'cupy' not in sys.modules, 'cupy was imported'\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != backend.ENV_VAR}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_default_device_is_cpu(monkeypatch):
    """Without MINIRCNN_DEVICE the device is the CPU and the array module is NumPy."""
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.get_device() == "cpu"
    assert backend.get_xp() is np


def test_unknown_device_is_named(monkeypatch):
    """A device name other than cpu/gpu is a ValueError naming where it came from."""
    with pytest.raises(ValueError, match="device must be one of"):
        backend.get_device("tpu")
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"\$MINIRCNN_DEVICE must be one of"):
        backend.get_device()


def test_missing_gpu_is_an_error_not_a_fallback(monkeypatch):
    """With CuPy not importable, asking for the GPU raises DeviceUnavailableError saying CuPy is missing."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    monkeypatch.setenv(backend.ENV_VAR, "gpu")
    with pytest.raises(backend.DeviceUnavailableError, match="CuPy is not installed"):
        backend.get_device()
    with pytest.raises(backend.DeviceUnavailableError):
        backend.to_device(np.zeros(3), "gpu")


def test_array_module_and_asnumpy():
    """NumPy arrays and scalars belong to NumPy; asnumpy turns lists into arrays and leaves arrays alone."""
    a = np.arange(3)
    assert backend.get_array_module(a, None, 1.0) is np
    assert backend.asnumpy(a) is a
    np.testing.assert_array_equal(backend.asnumpy([1, 2]), [1, 2])
    assert backend.to_device([1.0], "cpu").dtype == np.float64


def test_scatter_add_accumulates_repeated_indices(xp):
    """a[i] += v adds every value whose index repeats (a plain fancy-index += would keep only one)."""
    a = xp.zeros(4)
    backend.scatter_add(a, xp.asarray([1, 1, 3, 1]), xp.asarray([1.0, 2.0, 5.0, 4.0]))
    np.testing.assert_array_equal(backend.asnumpy(a), [0, 7, 0, 5])


@pytest.mark.gpu
def test_gpu_round_trip(cupy):
    """Arrays move to the GPU and back unchanged, and the GPU array's module is CuPy."""
    a = np.arange(6.0).reshape(2, 3)
    g = backend.to_device(a, "gpu")
    assert backend.get_array_module(g) is cupy
    np.testing.assert_array_equal(backend.asnumpy(g), a)

"""The CUDA RoI-pool kernel (minircnn/kernels/roi_pool.py) against its NumPy twin and the readable loop: identical
values and argmaxes, the same gradients up to the order of atomic adds. GPU tests run with ``pytest -m gpu``."""
import subprocess
import sys

import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.functional import roi_pool_backward, roi_pool_forward
from minircnn.functional.naive import roi_pool_forward_naive


def random_rois(rng, count, n_images, image_hw):
    """RoIs of many sizes, some leaving the image (so some bins lie off the map)."""
    ih, iw = image_hw
    x1, y1 = rng.uniform(-0.3 * iw, iw, count), rng.uniform(-0.3 * ih, ih, count)
    x2, y2 = x1 + rng.uniform(0, iw, count), y1 + rng.uniform(0, ih, count)
    return np.stack([rng.integers(0, n_images, count), x1, y1, x2, y2], axis=1)


def test_importing_the_kernels_does_not_import_cupy():
    """The kernel module is importable on a CPU-only install and imports CuPy only when a kernel runs."""
    code = "import sys, minircnn.kernels.roi_pool, minircnn.functional; print('cupy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.gpu
def test_gpu_kernel_equals_cpu_twin(cupy):
    """The CUDA kernel and the NumPy implementation give identical values, argmaxes and gradients on VGG16-sized
    inputs (2000 RoIs on a 512x38x50 map)."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((2, 512, 38, 50)), 0).astype(np.float32)
    rois = random_rois(rng, 2000, 2, (600, 800)).astype(np.float32)
    y_cpu, c_cpu = roi_pool_forward(x, rois)
    y_gpu, c_gpu = roi_pool_forward(cupy.asarray(x), cupy.asarray(rois))
    np.testing.assert_array_equal(asnumpy(y_gpu), y_cpu)
    np.testing.assert_array_equal(asnumpy(c_gpu.argmax), c_cpu.argmax)
    dy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    np.testing.assert_allclose(asnumpy(roi_pool_backward(cupy.asarray(dy), c_gpu)), roi_pool_backward(dy, c_cpu),
                               rtol=1e-5, atol=1e-5)  # atomic adds sum in another order


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_kernel_equals_the_loop_on_edge_cases(cupy, dtype):
    """Against the readable loop (minircnn.functional.naive): RoIs leaving the map (empty bins: 0 and argmax -1),
    malformed RoIs (x2 < x1: 1x1), the float32 overshoot heights 57 and 114 pooled into 7 rows, ties (a constant
    map: the first cell of each bin wins), in float32 and float64."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 20, 24)).astype(dtype)
    x[0, 2] = 1.0                                                        # ties everywhere in channel 2
    rois = np.array([[0, 0, 0, 23, 19], [0, 300, 300, 400, 400], [0, 10, 10, 5, 5], [0, -50, -50, 8, 8],
                     [0, 0, 0, 6, 56], [0, 0, 0, 12, 113]], dtype=dtype)
    for scale in (1.0, 1 / 16, 1 / 4):
        y_loop, c_loop = roi_pool_forward_naive(x, rois, (7, 7), scale)
        y_gpu, c_gpu = roi_pool_forward(cupy.asarray(x), cupy.asarray(rois), output_size=(7, 7), spatial_scale=scale)
        np.testing.assert_array_equal(asnumpy(y_gpu), y_loop)
        np.testing.assert_array_equal(asnumpy(c_gpu.argmax), c_loop.argmax)

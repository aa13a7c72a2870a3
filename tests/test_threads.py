"""Thread control (minircnn.threads): BLAS threads are set through threadpoolctl, and NumPy's OpenBLAS is found in
one place."""
import pytest
from threadpoolctl import threadpool_info

from minircnn import threads


def blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_set_blas_threads_sets_what_threadpoolctl_reports():
    """After set_blas_threads(n) every BLAS library NumPy loaded runs n threads; 0 means one per core."""
    try:
        assert threads.set_blas_threads(1) == 1 and blas_threads() == {1}
        assert threads.set_blas_threads(0) == threads.cpu_count()
        assert blas_threads() == {threads.cpu_count()}
    finally:
        threads.set_blas_threads(1)


def test_negative_threads_are_refused():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        threads.set_blas_threads(-1)


def test_openblas_path_is_the_library_numpy_calls():
    path = threads.openblas_path()
    openblas = [pool["filepath"] for pool in threadpool_info() if pool.get("internal_api") == "openblas"]
    assert path == (openblas[0] if openblas else None)

"""CuPy kernels, compiled lazily on first use. Imported only on the GPU path (never on a CPU-only install)."""

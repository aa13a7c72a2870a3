"""minircnn: Fast R-CNN (Girshick, 2015) rebuilt from scratch in NumPy and CuPy.

Start with :mod:`minircnn.functional` (layers as forward/backward pairs) and :mod:`minircnn.gradcheck`.
"""
__version__ = "0.1.0"

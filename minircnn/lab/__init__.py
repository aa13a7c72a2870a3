"""Code only the lessons use: cached experiment runs (:mod:`.experiments`), the R-CNN SVMs of lesson 15
(:mod:`.svm`), and a timing helper (:mod:`.timing`). The detector itself never imports it.

Every lesson imports this package, so the device rule holds in the lessons as in the commands: :data:`DEVICE` is
``$MINIRCNN_DEVICE`` (default ``cpu``), and asking for the GPU where there is none stops the lesson here with
:class:`~minircnn.backend.DeviceUnavailableError`, never a silent run on the CPU.
"""
from ..backend import get_device

DEVICE = get_device()

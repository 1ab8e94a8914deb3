"""Arrays of other libraries that speak only DLPack, for the input tests.

``HostTensor`` stands for a PyTorch CPU tensor or a JAX CPU array: host memory, exported
through ``__dlpack__`` (it has no ``__array__``, so nothing reads it but DLPack).
``CudaTensor`` stands for a CUDA PyTorch tensor: it shares the memory of one of the
counting CuPy double's device arrays, which the double's ``cupy.from_dlpack`` reads in place.
"""

from __future__ import annotations

import numpy as np


class HostTensor:
    def __init__(self, a):
        self._a = np.asarray(a)
        self.shape = self._a.shape

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


class CudaTensor:
    def __init__(self, device_array):
        self._device_array = device_array
        self.shape = device_array.shape

    def __dlpack__(self, **kwargs):
        raise BufferError("a CUDA tensor cannot be exported to the host")

    def __dlpack_device__(self):
        return (2, self._device_array.device.id)  # kDLCUDA

    def _shared_memory(self):
        return self._device_array


HostTensor.__module__ = CudaTensor.__module__ = "tensorlib"

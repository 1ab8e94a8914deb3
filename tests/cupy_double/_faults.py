"""The exceptions a workstation missing a CUDA library raises, as the real stack raises them.

cuBLAS is loaded by CuPy's ``cupy_backends`` on first use and fails with an ``ImportError``;
NVRTC is found by ``cuda-pathfinder``, whose error class is not from a ``cupy`` module.
"""


class DynamicLibNotFoundError(RuntimeError):
    pass


DynamicLibNotFoundError.__module__ = "cuda.pathfinder._dynamic_libs.load_dl_common"


def missing_nvrtc() -> Exception:
    return DynamicLibNotFoundError(
        'Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file: libnvrtc.so.13 or '
        "libnvrtc.so.12, No such file: libnvrtc.so.13 or libnvrtc.so.12"
    )


def missing_cublas() -> Exception:
    return ImportError("libcublas.so.12: cannot open shared object file: No such file or directory")

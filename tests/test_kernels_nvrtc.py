"""Every fused kernel of every recipe, traced by real CuPy's fusion and compiled by the real
NVRTC for sm_80 and sm_90, with no GPU (marker ``cupy_wheel``: ``.ci/run`` runs it in a venv
of its own holding the CuPy wheel and NVIDIA's NVRTC and runtime-header wheels).

How the kernels are found: each recipe -- every activation, dropout on and off, every
optimizer, every augmentation, the weights' average on and off, float32 and float64 --
trains for one epoch with ``gpu_step="fast"`` on the counting CuPy double, and the module
the fused kernels are built with is a :class:`Switchable` stand-in that records every kernel
``fuse`` makes and the layout of every argument each kernel is called with. Then the
stand-in is switched to real CuPy, and each kernel is traced again, from the same Python
body, on arguments of the same layouts (:mod:`tests.cupy_wheel`). A kernel the recipes
never call, or a ``fuse`` anywhere in the package whose kernel was not compiled, fails.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mlp_xp import MLP, TrainConfig, Trainer
from mlp_xp.backends import get_backend
from mlp_xp.constraints import ACTIVATIONS, AUGMENTATIONS, DTYPES, OPTIMIZERS
from mlp_xp.devices import probe_gpu
from mlp_xp.gpu.kernels import Kernels

from . import cupy_wheel
from .cupy_double import installed
from .cupy_wheel import real_cupy

pytestmark = pytest.mark.cupy_wheel

PACKAGE = Path(__file__).resolve().parent.parent / "mlp_xp"
#: CuPy's other ways to make a kernel; this check compiles fused ones only
OTHER_KERNELS = ("ElementwiseKernel", "ReductionKernel", "RawKernel", "RawModule")


class Recorded:
    """A fused kernel made through a :class:`Switchable`: its Python body, its name and the
    layout of the arguments of every call (each new layout is another compiled kernel)."""

    def __init__(self, module, func, name):
        self.module, self.func, self.name = module, func, name
        self.layouts: dict = {}
        self._fused: dict = {}

    def __call__(self, *args):
        self.layouts.setdefault(tuple(cupy_wheel.layout(a) for a in args), None)
        target = self.module.target
        if id(target) not in self._fused:
            self._fused[id(target)] = target.fuse(kernel_name=self.name)(self.func)
        return self._fused[id(target)](*args)


class Switchable:
    """The module the kernels are written against: the double while the recipes run, real
    CuPy once ``target`` is switched; ``fuse`` records each kernel it makes."""

    def __init__(self, target):
        self.target = target
        self.kernels: list[Recorded] = []

    def __getattr__(self, name):
        return getattr(self.target, name)

    def fuse(self, *args, **kwargs):
        def make(func):
            kernel = Recorded(self, func, kwargs.get("kernel_name") or func.__name__)
            self.kernels.append(kernel)
            return kernel

        if len(args) == 1 and callable(args[0]) and not kwargs:
            return make(args[0])
        return make


def recipes():
    """Every activation (one hidden layer each), dropout on and off with every optimizer,
    the augmentations and the average taken in turn, in each data type."""
    augments = [a for a in AUGMENTATIONS if a != "auto"]
    for dtype in DTYPES:
        pairs = itertools.product((0.0, 0.25), OPTIMIZERS)
        for i, (dropout, optimizer) in enumerate(pairs):
            yield (
                dtype,
                {
                    "optimizer": optimizer,
                    "dropout": dropout,
                    "augment": augments[i % len(augments)],
                    "ema": 0.99 if i % 2 else 0.0,
                    "lr": 1e-3 if optimizer == "adam" else 0.05,
                },
            )


def record_recipes():
    """Run every recipe on the double; the :class:`Switchable` of each kernel set made, with
    the arguments it was made with, and the probe's."""
    from mlp_xp.data import load_digits

    digits = load_digits()
    X = (digits.images[:160] / 255.0).reshape(-1, 784).astype(np.float32)
    y = digits.labels[:160]
    made = []
    original = Kernels.__init__

    def init(self, cp, *args, **kwargs):
        module = Switchable(cp)
        made.append((module, inspect.signature(original).bind(self, cp, *args, **kwargs)))
        original(self, module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, installed() as double:
        patch.setattr(Kernels, "__init__", init)
        for dtype, recipe in recipes():
            gpu = get_backend("gpu")
            model = MLP(784, (8,) * len(ACTIVATIONS), 10, activation=list(ACTIVATIONS),
                        backend=gpu, dtype=dtype, l2=1e-4, seed=0)  # fmt: skip
            cfg = TrainConfig(epochs=1, batch_size=64, gpu_step="fast", **recipe)
            Trainer(model, X, y, config=cfg).run()
        probe = Switchable(double)
        assert probe_gpu(probe).ok
    return made, probe


@pytest.fixture(scope="module")
def recorded():
    return record_recipes()


@pytest.fixture(scope="module")
def sources(recorded):
    """Each distinct kernel real CuPy writes, (source, compile options) -> its names."""
    cupy = real_cupy()
    made, probe = recorded
    found: dict = {}
    called: dict = {}  # each kernel body (its code) -> whether some recipe called it
    for module in [m for m, _ in made] + [probe]:
        module.target = cupy
        for kernel in module.kernels:
            code = kernel.func.__code__
            key = (kernel.name, code.co_filename, code.co_firstlineno)
            called[key] = called.get(key, False) or bool(kernel.layouts)
            for spec in kernel.layouts:
                found.setdefault(trace(cupy, kernel, spec), set()).add(kernel.name)
    never = [key for key, was in called.items() if not was]
    assert not never, f"kernels no recipe calls, so unchecked: {never}"
    return found


def trace(cupy, kernel: Recorded, spec: tuple) -> tuple[str, tuple]:
    """Real CuPy's fusion of ``kernel`` on arguments of layout ``spec``: the source and the
    compile options of the kernel it makes."""
    fused = cupy.fuse(kernel_name=kernel.name)(kernel.func)
    cupy_wheel.LAUNCHES.clear()
    try:
        fused(*(cupy_wheel.stand_in(cupy, s) for s in spec))
    except Exception as exc:
        raise AssertionError(f"{kernel.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        # CuPy's fusion hands a body it cannot trace to its newer fusion
        # (cupy/_core/new_fusion.pyx), whose trace asks for a device
        assert fused.new_fusion is None, f"{kernel.name}: CuPy's fusion could not trace it"
    assert len(cupy_wheel.LAUNCHES) == 1, f"{kernel.name}: {len(cupy_wheel.LAUNCHES)} launches"
    (elementwise, args) = cupy_wheel.LAUNCHES[0]
    options = tuple(elementwise.kwargs.get("options", ()))
    return cupy_wheel.kernel_source(cupy, elementwise, args), options


def fuse_sites() -> dict:
    """Every ``fuse(kernel_name=...)`` call in the package: a pattern for its kernel names
    (an f-string's fields match any name part) -> where it is."""
    sites, unnamed = {}, []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            assert name not in OTHER_KERNELS, f"{where}: a {name}, which is not compiled here"
            if name != "fuse":
                continue
            named = [k.value for k in node.keywords if k.arg == "kernel_name"]
            if not named:
                unnamed.append(where)
                continue
            parts = named[0].values if isinstance(named[0], ast.JoinedStr) else [named[0]]
            pattern = "".join(
                re.escape(p.value) if isinstance(p, ast.Constant) else r"\w+" for p in parts
            )
            sites[pattern] = where
    assert not unnamed, f"fused kernels without a kernel_name: {unnamed}"
    return sites


def test_the_recipes_make_every_activation_optimizer_dropout_and_dtype(recorded):
    made, _ = recorded
    seen = set()
    for _, bound in made:
        model, optimizer = bound.arguments["model"], bound.arguments["optimizer"]
        dropout = bool(bound.arguments.get("dropout"))
        for act in model.activations:
            seen.add(("activation", act, dropout, model.dtype))
        seen.add(("optimizer", type(optimizer).__name__, tuple(optimizer.slots), model.dtype))
        seen.add(("augment", bound.arguments.get("image_shape") is not None, model.dtype))
    for dtype in DTYPES:
        for act, dropout in itertools.product(ACTIVATIONS, (False, True)):
            assert ("activation", act, dropout, dtype) in seen
        assert ("augment", True, dtype) in seen
    optimizers = {k for k in seen if k[0] == "optimizer"}
    assert len(optimizers) == len(OPTIMIZERS) * len(DTYPES)  # sgd, momentum, adam: 3 kinds


def test_every_fuse_in_the_package_is_compiled(sources):
    names = set().union(*sources.values())
    sites = fuse_sites()
    missing = {
        where: pattern
        for pattern, where in sites.items()
        if not any(re.fullmatch(pattern, n) for n in names)
    }
    assert not missing, f"fused kernels made nowhere in the recipes: {missing}"
    assert len(names) >= len(sites)


@pytest.mark.parametrize("arch", cupy_wheel.ARCHS)
def test_every_fused_kernel_compiles_with_nvrtc(sources, arch):
    failed = []
    # NVRTC compiles without holding the GIL (cupy_backends/cuda/libs/nvrtc.pyx), so the
    # kernels are compiled side by side, one per core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = {
            pool.submit(cupy_wheel.compile_cubin, source, arch, options): names
            for (source, options), names in sources.items()
        }
        for job, names in jobs.items():
            try:
                cubin = job.result()
            except AssertionError as exc:
                failed.append(f"{sorted(names)}: {exc}")
                continue
            assert cubin[:4] == b"\x7fELF", sorted(names)
    assert not failed, "\n\n".join(failed)
    print(f"sm_{arch}: {len(sources)} kernel sources compiled")


def test_a_kernel_nvrtc_rejects_fails_with_its_log():
    real_cupy()
    broken = 'extern "C" __global__ void mlp_xp_broken(float *x) { x[0] = not_declared; }'
    with pytest.raises(AssertionError, match="not_declared"):
        cupy_wheel.compile_cubin(broken, cupy_wheel.ARCHS[0])


def test_a_body_cupys_fusion_cannot_trace_fails():
    cupy = real_cupy()

    def first_row(x, y):
        y[...] = x[0]  # CuPy's fusion takes no index but [...] and [:]

    kernel = Recorded(Switchable(cupy), first_row, "mlp_xp_first_row")
    spec = (("array", "<f4", (3, 3), (12, 4)), ("array", "<f4", (3,), (4,)))
    with pytest.raises(AssertionError, match="mlp_xp_first_row: CuPy's fusion could not trace"):
        trace(cupy, kernel, spec)

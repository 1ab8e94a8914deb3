"""How CuPy 14's fusion types an operation that has a Python scalar among its operands.

Inside ``cupy.fuse`` a scalar -- a constant of the body, or a scalar argument of the
kernel -- becomes a variable of its own type's dtype (``float`` -> float64, ``int`` ->
int64) marked *weak* (cupy/_core/fusion.pyx, ``_FusionHistory._get_fusion_var`` and
``_gen_abstracted_args``: ``is_weak = type(arg) if [bool, int, float, complex] else
False``, a non-empty list, so every scalar, NumPy's included, is marked with its type).
Each ufunc then takes the *first* loop of its table for which every operand either casts
safely to the loop's type or is weak and NumPy's ``result_type(weak_type(0), loop type)``
is the loop's type (``_FusionHistory.call_ufunc`` -> cupy/_core/_kernel.pyx,
``_Ops._guess_routine_from_in_types``). Unlike a ufunc called outside fusion
(``_Ops.guess_routine``), fusion skips ``_check_should_use_weak_scalar``. Loop tables list
the small types first, so ``where(hit, 1.0, 0.0)`` runs in float16 and ``int8 * 0.5`` too,
where NumPy gives float64. Array operands only: the first loop that takes them is the one
NumPy's promotion picks, so the double leaves those to NumPy.

:func:`typed` runs one such operation CuPy's way and notes in ``STATE.retyped`` every
operation whose loop differs from the one NumPy would have used: a kernel whose numbers
depend on which rule applies.
"""

from __future__ import annotations

import numpy as np

from ._state import STATE

#: The dtype characters of CuPy's loops (no long double, object or date types).
_CUPY_CHARS = frozenset("?bBhHiIlLqQefdFD")

#: Loop tables CuPy writes differently from NumPy's ``ufunc.types``; every other table
#: follows NumPy's order over CuPy's types (cupy/_core/_routines_math.pyx,
#: ``create_arithmetic``: ``??``, ``bb`` ... ``QQ``, ``ee``, ``ff``, ``dd``, ``FF``, ``DD``).
_TABLES = {
    # cupy/_sorting/search.py, ``_where_ufunc`` (``where`` is no ufunc in NumPy)
    "where": ("???->?", "?bb->b", "?BB->B", "?hh->h", "?HH->H", "?ii->i", "?II->I", "?ll->l",
              "?LL->L", "?qq->q", "?QQ->Q", "?ee->e", "?ff->f", "?dd->d", "?FF->F", "?DD->D"),
    # cupy/_core/_routines_math.pyx, ``_true_divide``: integers divide in float64
    "divide": ("qq->d", "qQ->d", "Qq->d", "QQ->d", "ee->e", "ff->f", "dd->d", "FF->F",
               "DD->D"),
}  # fmt: skip
#: cupy/_core/_routines_logic.pyx, ``create_comparison``: one table for every comparison,
#: with ``promote_weak_int``: a Python int beside an integer array is not weak there
_COMPARISONS = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
for _name in _COMPARISONS:
    _TABLES[_name] = ("??->?", "qq->?", "QQ->?", "qQ->?", "Qq->?", "ee->?", "ff->?", "dd->?",
                      "FF->?", "DD->?")  # fmt: skip


def _scalar(x) -> bool:
    return isinstance(x, (bool, int, float, complex, np.generic))


def _loops(fn) -> list[str] | None:
    name = getattr(fn, "__name__", "")
    if name in _TABLES:
        return list(_TABLES[name])
    types = getattr(fn, "types", None)
    if types is None:
        return None
    return [t for t in types if set(t.replace("->", "")) <= _CUPY_CHARS]


def _takes(operand, char: str, weak: bool = True) -> bool:
    """``_guess_routine_from_in_types``'s test of one operand against one loop type."""
    loop = np.dtype(char)
    if not _scalar(operand):
        return bool(np.can_cast(operand.dtype, loop))
    if np.can_cast(np.dtype(type(operand)), loop):
        return True
    if not weak:
        return False
    try:
        return np.result_type(type(operand)(0), loop) == loop
    except TypeError:
        return False


def _numpy_loop(fn, args) -> str:
    """The loop NumPy's own promotion gives ``fn(*args)`` (NEP 50: Python scalars weak)."""
    values = [a if _scalar(a) else a._a for a in args]
    if getattr(fn, "__name__", "") == "where":
        out = np.result_type(*values[1:]).char
        return f"?{out}{out}->{out}"
    given = tuple(type(v) if type(v) in (int, float, complex) else np.asarray(v).dtype
                  for v in values)  # fmt: skip
    dtypes = fn.resolve_dtypes(given + (None,) * fn.nout)
    return (
        "".join(d.char for d in dtypes[: fn.nin]) + "->" + "".join(d.char for d in dtypes[fn.nin :])
    )


def _same(args, loop: str, numpy_loop: str) -> bool:
    """Whether the two loops compute the same: the same result types, and every scalar
    reaching the kernel as the same value (``2`` as int64 or as float64 is the same)."""
    (ins, outs), (np_ins, np_outs) = loop.split("->"), numpy_loop.split("->")
    if [np.dtype(c) for c in outs] != [np.dtype(c) for c in np_outs]:
        return False
    for a, c, d in zip(args, ins, np_ins, strict=False):
        if _scalar(a):
            mine, theirs = (np.asarray(a, dtype=np.dtype(type(a))).astype(t) for t in (c, d))
            if mine.item() != theirs.item():
                return False
    return True


def choose(fn, args) -> str:
    """The loop (``"ff->f"``) CuPy's fusion takes for ``fn`` over ``args`` (arrays: anything
    with a ``dtype``; scalars: Python or NumPy scalars)."""
    loops = _loops(fn) or []
    weak = [True] * len(args)
    if getattr(fn, "__name__", "") in _COMPARISONS and len(args) == 2:  # promote_weak_int
        for i, (a, b) in enumerate((args, args[::-1])):
            if type(a) is int and not _scalar(b) and b.dtype.kind in "iu":
                weak[i] = False
    loop = next((t for t in loops if all(map(_takes, args, t.split("->")[0], weak))), None)
    if loop is None:
        kinds = [np.dtype(type(a)) if _scalar(a) else a.dtype for a in args]
        raise TypeError(f"Invalid type cast in 'cupy_{fn.__name__}': {kinds} -> []")
    return loop


def typed(fn, args, out=None):
    """``fn(*args)`` (into ``out``'s data) as CuPy's fusion types it; None when no scalar is
    among ``args`` (NumPy's choice is then CuPy's: the caller runs ``fn`` as it is)."""
    if _loops(fn) is None or not any(_scalar(a) for a in args):
        return None
    name = getattr(fn, "__name__", "?")
    loop = choose(fn, args)
    ins, outs = loop.split("->")
    with np.errstate(all="ignore"):  # a constant narrowed to the loop's type wraps, as in C
        cast = [
            np.asarray(a, dtype=np.dtype(type(a))).astype(c) if _scalar(a) else a._a.astype(c)
            for a, c in zip(args, ins, strict=False)
        ]
        result = np.asarray(fn(*cast)).astype(outs[0], copy=False)
    try:
        numpy_loop = _numpy_loop(fn, args)
    except (TypeError, ValueError):
        numpy_loop = loop
    with np.errstate(all="ignore"):
        same = _same(args, loop, numpy_loop)
    if not same:
        STATE.retyped.append((STATE.fused_kernel, name, loop, numpy_loop))
    if out is None:
        return result
    if not np.can_cast(result.dtype, out.dtype, "same_kind"):
        # cupy/_core/fusion.pyx, ``call_ufunc``: _raise_if_invalid_cast(..., 'same_kind')
        raise TypeError(f"Cannot cast output 0 of cupy_{name} from {result.dtype} to {out.dtype}")
    out._a[...] = result
    return out._a

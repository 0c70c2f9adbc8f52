"""Software prefetch for the compiled loops: an LLVM ``prefetch`` intrinsic and helpers.

A hint only (no effect on results).  The helpers are ``inline="always"``: they are
compiled into their callers (:mod:`dcf.kernels.rows`, :mod:`dcf.kernels.topn`).  numba's on-disk cache of a
caller is keyed on the caller's own file only, so after editing this module clear
``src/dcf/kernels/__pycache__/rows.*`` (or touch ``rows.py``) before measuring.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch", "prefetch_lines", "prefetch_row"]


@intrinsic
def prefetch(typingctx, arr, idx):  # pragma: no cover - compiled
    """Hint the CPU to fetch ``arr[idx]`` into cache (LLVM ``prefetch``; no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(1), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_PREFETCH = "llvm.prefetch.p0" if llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@numba.njit(cache=True, nogil=True, inline="always")
def prefetch_lines(arr, a, b):  # pragma: no cover - compiled
    """Prefetch every 64-byte cache line of ``arr[a:b]``."""
    for w in range(a, b, max(64 // arr.itemsize, 1)):
        prefetch(arr, w)


@numba.njit(cache=True, nogil=True, inline="always")
def prefetch_row(q_ptr, q_idx, q_val, u):  # pragma: no cover - compiled
    """Prefetch every cache line of row ``u`` (its columns and values)."""
    prefetch_lines(q_idx, q_ptr[u], q_ptr[u + 1])
    prefetch_lines(q_val, q_ptr[u], q_ptr[u + 1])

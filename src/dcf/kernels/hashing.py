"""pandas' hash of an integer id's decimal text, without making the text: SipHash-2-4 of
the digits' bytes (what ``pandas.util.hash_array`` runs on text objects) and pandas' final
mix, in one compiled loop.

The random split hashes each distinct id as the text a file would hold, so that ``7`` and
``"7"`` go the same way (:func:`dcf.split.pair_uniform`).  Making a Python string per
distinct id and hashing it took most of a split task's time (a 2.5M-rating part of the 20M
set: 0.1-0.3 s; benchmarks/RESULTS.md, issue 21); the same hashes come from the digits.
"""

from __future__ import annotations

import numba
import numpy as np

from .sparse import owned

__all__ = ["int_text_hashes"]


def int_text_hashes(values, hash_key: str) -> np.ndarray:
    """``pandas.util.hash_array`` of ``[str(v) for v in values]`` (``categorize=False``,
    ``hash_key`` 16 characters of UTF-8, as pandas requires), for int64 ``values``."""
    key = hash_key.encode("utf8")
    if len(key) != 16:
        raise ValueError(f"hash_key must be 16 bytes of UTF-8, not {len(key)}")
    k0, k1 = (np.uint64(int.from_bytes(key[i:i + 8], "little")) for i in (0, 8))
    values = owned(values, np.int64)
    out = np.empty(len(values), np.uint64)
    _hashes(values, k0, k1, out)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(x, b):  # pragma: no cover - compiled
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@numba.njit(cache=True, nogil=True, inline="always")
def _round(v0, v1, v2, v3):  # pragma: no cover - compiled
    v0 += v1
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16) ^ v2
    v0 += v3
    v3 = _rotl(v3, 21) ^ v0
    v2 += v1
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@numba.njit(cache=True, nogil=True)
def _hashes(values, k0, k1, out):  # pragma: no cover - compiled
    """:func:`int_text_hashes`' loop: each value's decimal text (a '-' first where
    negative) as SipHash-2-4's message, then pandas' redistribution of the 64 bits."""
    text = np.empty(24, np.uint8)
    for i in range(len(values)):
        v = values[i]
        n = 0
        if v < 0:
            text[0] = 45  # '-'
            n = 1
            mag = np.uint64(-(v + 1)) + np.uint64(1)  # also for the smallest int64
        else:
            mag = np.uint64(v)
        digits = 1
        rest = mag // np.uint64(10)
        while rest > 0:
            digits += 1
            rest //= np.uint64(10)
        for d in range(digits - 1, -1, -1):
            text[n + d] = np.uint8(48 + mag % np.uint64(10))
            mag //= np.uint64(10)
        n += digits
        v0 = k0 ^ np.uint64(0x736F6D6570736575)
        v1 = k1 ^ np.uint64(0x646F72616E646F6D)
        v2 = k0 ^ np.uint64(0x6C7967656E657261)
        v3 = k1 ^ np.uint64(0x7465646279746573)
        full = n - n % 8
        for w in range(0, full, 8):
            m = np.uint64(0)
            for t in range(8):
                m |= np.uint64(text[w + t]) << np.uint64(8 * t)
            v3 ^= m
            v0, v1, v2, v3 = _round(v0, v1, v2, v3)
            v0, v1, v2, v3 = _round(v0, v1, v2, v3)
            v0 ^= m
        b = np.uint64(n) << np.uint64(56)
        for t in range(n - full):
            b |= np.uint64(text[full + t]) << np.uint64(8 * t)
        v3 ^= b
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= b
        v2 ^= np.uint64(0xFF)
        for _ in range(4):
            v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        h = v0 ^ v1 ^ v2 ^ v3
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        out[i] = h

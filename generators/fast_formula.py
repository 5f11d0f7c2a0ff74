"""Fast canonical formulas for batches of integer count vectors (millions of generated samples).

:func:`alcore.composition.canonical_formula` goes through pymatgen's ``Composition`` (~100 µs per
formula). Generators produce integer count vectors over a fixed element list, so the pymatgen
reduction can be replayed with precomputed electronegativities: reduce by the gcd, order by
(electronegativity, symbol), apply pymatgen's polyanion bracket rule and its "special formulas"
(``O2``, ``Li2O2``, ...). Rows are deduplicated with ``np.unique`` before any Python runs, and every
row seen is cached, so a million samples cost a few seconds. ``tests/generators/test_matgan.py``
proves the result equals :func:`alcore.composition.canonical_formula` on every MP formula that fits
the encoding and on random count vectors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Element

#: pymatgen's polyanion rule threshold (``reduce_formula``): the last two elements form a bracketed
#: group if their electronegativity difference is below this.
_POLY_X_GAP = 1.65


@lru_cache(maxsize=16)
def _element_table(symbols: tuple[str, ...]) -> tuple[np.ndarray, list[float]]:
    """Sort rank of each element under pymatgen's (X, symbol) order and the X values (NaN kept)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs = [float(Element(s).X) for s in symbols]
    keys = [(math.inf if math.isnan(x) else x, s) for x, s in zip(xs, symbols, strict=True)]
    order = sorted(range(len(symbols)), key=lambda i: keys[i])
    rank = np.empty(len(symbols), dtype=np.int64)
    rank[np.asarray(order)] = np.arange(len(symbols))
    return rank, xs


def _fmt(sym: str, n: int) -> str:
    return sym if n == 1 else f"{sym}{n}"


class FastFormula:
    """Canonical formulas for ``(N, E)`` integer count arrays over a fixed element list ``symbols``.

    ``formulas(counts)`` returns a list of N strings (``None`` for an all-zero row); results are
    identical to :func:`alcore.composition.canonical_formula` of the same composition.
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self.rank, self.x = _element_table(self.symbols)
        self.special = dict(Composition.special_formulas)
        self._cache: dict[bytes, str | None] = {}

    def one(self, counts: np.ndarray) -> str | None:
        """Canonical formula of one ``(E,)`` non-negative integer count vector (``None`` if empty)."""
        nz = np.flatnonzero(counts)
        if nz.size == 0:
            return None
        amounts = [int(counts[i]) for i in nz]
        g = math.gcd(*amounts)
        idx = sorted(nz.tolist(), key=lambda i: self.rank[i])
        amt = {i: int(counts[i]) // g for i in idx}
        tail = ""
        if len(idx) >= 3:
            a, b = idx[-2], idx[-1]
            if self.x[b] - self.x[a] < _POLY_X_GAP:  # NaN compares False, as in pymatgen
                pf = math.gcd(amt[a], amt[b])
                if pf != 1:
                    tail = f"({_fmt(self.symbols[a], amt[a] // pf)}{_fmt(self.symbols[b], amt[b] // pf)}){pf}"
                    idx = idx[:-2]
        formula = "".join(_fmt(self.symbols[i], amt[i]) for i in idx) + tail
        return self.special.get(formula, formula)

    def formulas(self, counts: np.ndarray) -> list[str | None]:
        """Canonical formulas of an ``(N, E)`` integer count array (counts 0..65535); list of N strings.

        Duplicate rows are handled once (``np.unique`` on the raw bytes) and cached across calls.
        """
        c = np.asarray(counts)
        if c.size and (c.min() < 0 or c.max() > 65535):
            raise ValueError("counts must be integers in 0..65535")
        dtype = np.uint8 if c.size == 0 or c.max() <= 255 else np.uint16
        c = np.ascontiguousarray(c, dtype=dtype)
        if c.ndim != 2 or c.shape[1] != len(self.symbols):
            raise ValueError(f"expected counts of shape (N, {len(self.symbols)}), got {c.shape}")
        if len(c) == 0:
            return []
        keys = c.view(np.dtype((np.void, c.shape[1] * c.itemsize))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        cache = self._cache
        if len(cache) > 2_000_000:
            cache.clear()
        out_u: list[str | None] = []
        for u in uniq:
            k = u.tobytes() + (b"" if dtype is np.uint8 else b"\x01")
            f = cache.get(k, ...)
            if f is ...:
                f = self.one(np.frombuffer(u.tobytes(), dtype=dtype))
                cache[k] = f
            out_u.append(f)
        arr = np.empty(len(out_u), dtype=object)
        arr[:] = out_u
        return arr[inverse.ravel()].tolist()

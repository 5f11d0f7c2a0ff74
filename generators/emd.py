"""Element Mover's Distance (ElMD, mod_petti scale), vectorised.

On a 1-D scale the earth mover's distance between two compositions (fractions placed at the
mod_petti position of each element) is the L1 distance between their cumulative distributions:
``EMD(a, b) = sum_k |F_a(k) - F_b(k)|`` over the positions k = 0..102. This equals
``ElMD(a, metric="mod_petti").elmd(b)`` of the ElMD package (Hargreaves et al., Chem. Mater. 32,
10610, 2020) to floating-point precision (tests/generators/test_emd.py checks 1e-9 on thousands of
random pairs).

Two ways to compute many distances:

* :func:`cumulative_vectors` + :func:`emd_dense`: dense (N, 103) cumulative vectors, L1 distance.
* :class:`EMDIndex`: an exact sparse method for one/many queries against a large fixed library.
  A library composition ``t`` with sorted positions ``p_1 < ... < p_n`` and cumulative fractions
  ``c_j`` is a step function, so ``EMD(q, t) = sum_j [A_q(p_{j+1}, c_j) - A_q(p_j, c_j)]`` with
  ``A_q(k, c) = sum_{i<k} |F_q(i) - c| = c (2m - k) + S_q(k) - 2 S_q(m)``, ``m = min(k, b_q(c))``,
  ``S_q`` the prefix sum of ``F_q`` and ``b_q(c)`` the number of positions with ``F_q < c``.
  ``A_q`` is evaluated once per query on the library's U distinct ``(k, c)`` pairs and a sparse
  (U x N) matrix of +-1 sums it per library entry: the work per query is O(U + nnz) instead of
  O(103 N). See benchmarks/bench_structures.py for the speed against ElMD and scipy's cdist.

The mod_petti scale (:data:`MOD_PETTI`) is a table of numbers (the modified Pettifor ordering of
Glawe et al., New J. Phys. 18, 093011, 2016, as tabulated in ElMD 0.5.15's
``el_lookup/mod_petti.json``); it was copied at development time and is shipped here as data. ElMD
itself (GPL-3.0) is never imported by product code, only by tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from alcore.composition import reduced_counts

# Modified Pettifor scale (position of each element on the 1-D axis, 0..102); D/T share H's 102.
# Source: ElMD 0.5.15 el_lookup/mod_petti.json (values of Glawe et al. 2016's modified Pettifor
# ordering). Elements beyond Lr map to 0 in ElMD; they are omitted here (such formulas are invalid).
MOD_PETTI: dict[str, int] = {
    "He": 0,
    "Ne": 1,
    "Ar": 2,
    "Kr": 3,
    "Xe": 4,
    "Rn": 5,
    "Fr": 6,
    "Cs": 7,
    "Rb": 8,
    "K": 9,
    "Na": 10,
    "Li": 11,
    "Ra": 12,
    "Ba": 13,
    "Sr": 14,
    "Ca": 15,
    "Eu": 16,
    "Yb": 17,
    "Lu": 18,
    "Tm": 19,
    "Y": 20,
    "Er": 21,
    "Ho": 22,
    "Dy": 23,
    "Tb": 24,
    "Gd": 25,
    "Sm": 26,
    "Pm": 27,
    "Nd": 28,
    "Pr": 29,
    "Ce": 30,
    "La": 31,
    "Ac": 32,
    "Th": 33,
    "Pa": 34,
    "U": 35,
    "Np": 36,
    "Pu": 37,
    "Am": 38,
    "Cm": 39,
    "Bk": 40,
    "Cf": 41,
    "Es": 42,
    "Fm": 43,
    "Md": 44,
    "No": 45,
    "Lr": 46,
    "Sc": 47,
    "Zr": 48,
    "Hf": 49,
    "Ti": 50,
    "Ta": 51,
    "Nb": 52,
    "V": 53,
    "Cr": 54,
    "Mo": 55,
    "W": 56,
    "Re": 57,
    "Tc": 58,
    "Os": 59,
    "Ru": 60,
    "Ir": 61,
    "Rh": 62,
    "Pt": 63,
    "Pd": 64,
    "Au": 65,
    "Ag": 66,
    "Cu": 67,
    "Ni": 68,
    "Co": 69,
    "Fe": 70,
    "Mn": 71,
    "Mg": 72,
    "Zn": 73,
    "Cd": 74,
    "Hg": 75,
    "Be": 76,
    "Al": 77,
    "Ga": 78,
    "In": 79,
    "Tl": 80,
    "Pb": 81,
    "Sn": 82,
    "Ge": 83,
    "Si": 84,
    "B": 85,
    "C": 86,
    "N": 87,
    "P": 88,
    "As": 89,
    "Sb": 90,
    "Bi": 91,
    "Po": 92,
    "Te": 93,
    "Se": 94,
    "S": 95,
    "At": 97,
    "O": 96,
    "I": 98,
    "Br": 99,
    "Cl": 100,
    "F": 101,
    "H": 102,
    "D": 102,
    "T": 102,
}

#: Number of positions on the scale (0..102).
N_POS = 103


def _position(symbol: str) -> int:
    try:
        return MOD_PETTI[symbol]
    except KeyError:
        raise ValueError(f"element {symbol!r} has no mod_petti position; use elements H..Lr") from None


def fractions(formula: str) -> dict[str, float]:
    """Atomic fractions of a formula, ``{"Na": 0.5, "Cl": 0.5}`` (sums to 1).

    Takes any formula :func:`alcore.composition.reduced_counts` parses; raises
    :class:`~alcore.errors.InvalidFormulaError` otherwise.
    """
    counts = dict(reduced_counts(formula))
    total = float(sum(counts.values()))
    return {s: c / total for s, c in counts.items()}


def sparse_profile(formula: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted mod_petti positions (n,) int64 and cumulative fractions (n,) float64 of a formula.

    The last cumulative fraction is exactly 1.0.
    """
    fr = fractions(formula)
    pos = np.zeros(N_POS)
    for s, f in fr.items():
        pos[_position(s)] += f
    idx = np.flatnonzero(pos)
    cum = np.cumsum(pos[idx])
    cum[-1] = 1.0
    return idx.astype(np.int64), cum


def ratio_vector(formula: str) -> np.ndarray:
    """(103,) float64 atomic fractions placed at each element's mod_petti position."""
    fr = fractions(formula)
    vec = np.zeros(N_POS)
    for s, f in fr.items():
        vec[_position(s)] += f
    return vec


def cumulative_vectors(formulas: Iterable[str]) -> np.ndarray:
    """(N, 103) float64 cumulative distributions on the mod_petti scale, one row per formula."""
    rows = [ratio_vector(f) for f in formulas]
    if not rows:
        return np.zeros((0, N_POS))
    return np.cumsum(np.vstack(rows), axis=1)


def emd(a: str, b: str) -> float:
    """EMD (mod_petti) between two formulas; equals ElMD's ``elmd`` value. Unitless (position units)."""
    return float(np.abs(np.cumsum(ratio_vector(a) - ratio_vector(b))).sum())


def emd_dense(queries: np.ndarray, library: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(Q, N) EMD between cumulative vectors ``queries`` (Q, 103) and ``library`` (N, 103).

    A plain L1 distance, computed in row chunks to bound memory; float64.
    """
    queries = np.atleast_2d(queries)
    out = np.empty((queries.shape[0], library.shape[0]))
    for i in range(0, queries.shape[0], max(1, chunk // 64)):
        q = queries[i : i + max(1, chunk // 64)]
        out[i : i + len(q)] = np.abs(q[:, None, :] - library[None, :, :]).sum(-1)
    return out


class EMDIndex:
    """Exact, fast EMD from query formulas to a fixed library of compositions.

    Build with :meth:`from_formulas` (or :meth:`from_profiles` with padded arrays, e.g. loaded from
    an ``.npz`` cache). ``distances(queries)`` returns (Q, N) float64; ``nearest(query, k)`` the k
    nearest library rows.
    """

    def __init__(self, positions: np.ndarray, cumfrac: np.ndarray) -> None:
        """``positions`` (N, K) int, padded with -1; ``cumfrac`` (N, K) float64 cumulative fractions."""
        positions = np.asarray(positions, dtype=np.int64)
        cumfrac = np.asarray(cumfrac, dtype=np.float64)
        if positions.shape != cumfrac.shape or positions.ndim != 2:
            raise ValueError("positions and cumfrac must be 2-D arrays of the same shape (N, K)")
        self.positions = positions
        self.cumfrac = cumfrac
        n, kmax = positions.shape
        self.n = n
        valid = positions >= 0
        nel = valid.sum(1)
        # Segments j = 0..n_t of each row: value c_j on [p_j, p_{j+1}), p_0 = 0, p_{n+1} = N_POS, c_0 = 0.
        lo = np.concatenate([np.zeros((n, 1), np.int64), np.where(valid, positions, N_POS)], axis=1)
        cval = np.concatenate([np.zeros((n, 1)), np.where(valid, cumfrac, 1.0)], axis=1)
        # Segment j has hi = p_{j+1}; shift so that seg j = [lo_j, hi_j) with value cval_j.
        seg_lo = lo  # p_j (p_0 = 0)
        seg_hi = np.concatenate([np.where(valid, positions, N_POS), np.full((n, 1), N_POS, np.int64)], axis=1)
        seg_mask = np.arange(kmax + 1)[None, :] <= nel[:, None]
        rows = np.repeat(np.arange(n), kmax + 1).reshape(n, kmax + 1)[seg_mask]
        c = cval[seg_mask]
        klo = seg_lo[seg_mask]
        khi = seg_hi[seg_mask]
        # Distinct cumulative values (exact floats) and distinct (k, c) pairs.
        self.cvals, cidx = np.unique(c, return_inverse=True)
        keys = np.concatenate([khi * len(self.cvals) + cidx, klo * len(self.cvals) + cidx])
        signs = np.concatenate([np.ones(len(c)), -np.ones(len(c))])
        keep = keys >= len(self.cvals)  # k = 0 pairs contribute A(0, c) = 0: drop them
        keys, signs = keys[keep], signs[keep]
        rr = np.concatenate([rows, rows])[keep]
        uniq, kinv = np.unique(keys, return_inverse=True)
        self.pair_k = (uniq // len(self.cvals)).astype(np.int64)
        self.pair_c = (uniq % len(self.cvals)).astype(np.int64)
        self._pair_cv = self.cvals[self.pair_c]
        mat = sp.csr_matrix((signs, (kinv, rr)), shape=(len(uniq), n))
        mat.sum_duplicates()
        mat.eliminate_zeros()
        self.matrix = mat  # (U, N)

    @classmethod
    def from_formulas(cls, formulas: Sequence[str]) -> EMDIndex:
        """Index a list of formulas (library order is kept)."""
        pos, cum = padded_profiles(formulas)
        return cls(pos, cum)

    def _pair_values(self, qcum: np.ndarray) -> np.ndarray:
        """(Q, U) values of A_q(k, c) for the library's distinct pairs, from (Q, 103) cumulative rows."""
        qn = qcum.shape[0]
        s = np.zeros((qn, N_POS + 1))
        s[:, 1:] = np.cumsum(qcum, axis=1)
        # b_q(c) = number of positions with F_q < c (F_q is non-decreasing).
        b = np.empty((qn, len(self.cvals)), dtype=np.int64)
        for i in range(qn):
            b[i] = np.searchsorted(qcum[i], self.cvals, side="left")
        k = self.pair_k
        m = b[:, self.pair_c]
        np.minimum(m, k[None, :], out=m)
        out = np.take_along_axis(s, m, axis=1)  # S(m)
        out *= -2.0
        out += s[:, k]  # + S(k)
        m *= 2
        m -= k[None, :]
        out += self._pair_cv[None, :] * m  # + c (2m - k)
        return out

    def distances_cum(self, qcum: np.ndarray, batch: int = 32) -> np.ndarray:
        """(Q, N) EMD from cumulative query rows ``qcum`` (Q, 103) to every library entry."""
        qcum = np.atleast_2d(np.asarray(qcum, dtype=np.float64))
        out = np.empty((qcum.shape[0], self.n))
        mt = self.matrix.T.tocsr()  # (N, U)
        for i in range(0, qcum.shape[0], batch):
            vals = self._pair_values(qcum[i : i + batch])  # (q, U)
            out[i : i + batch] = (mt @ vals.T).T
        np.maximum(out, 0.0, out=out)  # round-off can give -1e-16 for identical compositions
        return out

    def distances(self, formulas: Sequence[str] | str) -> np.ndarray:
        """(Q, N) EMD from query formulas to every library entry (a single string gives (1, N))."""
        if isinstance(formulas, str):
            formulas = [formulas]
        return self.distances_cum(cumulative_vectors(formulas))

    def nearest(self, formula: str, k: int = 10, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices (k,) and EMDs (k,) of the k nearest library entries to ``formula``, nearest first.

        ``mask`` (N,) bool restricts the search to rows where it is True.
        """
        d = self.distances(formula)[0]
        if mask is not None:
            d = np.where(mask, d, np.inf)
        k = min(k, int(np.isfinite(d).sum()))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        idx = np.argpartition(d, k - 1)[:k] if k < len(d) else np.arange(len(d))
        idx = idx[np.lexsort((idx, d[idx]))]
        return idx, d[idx]


def padded_profiles(formulas: Sequence[str], kmax: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Padded sparse profiles: positions (N, K) int64 (-1 = padding) and cumulative fractions (N, K)."""
    profs = [sparse_profile(f) for f in formulas]
    k = kmax or max((len(p[0]) for p in profs), default=1)
    pos = np.full((len(profs), k), -1, np.int64)
    cum = np.ones((len(profs), k))
    for i, (p, c) in enumerate(profs):
        if len(p) > k:
            raise ValueError(f"{formulas[i]!r} has {len(p)} elements, more than kmax={k}")
        pos[i, : len(p)] = p
        cum[i, : len(c)] = c
    return pos, cum

"""Formula tokenisation of the composition language model: one token per (element, count) pair.

A formula is written as ``[gap-bin token] [E_form token] pair_1 ... pair_k EOS`` where the pairs
are the reduced formula's ``(element, count)`` in a fixed canonical element order (pymatgen's
electronegativity order, the order of canonical formulas), so every composition has exactly one
token sequence and a sampler can forbid repeated elements by only allowing elements later in the
order than the last one. With ``k <= 8`` elements a sequence is at most 11 tokens.

Token ids: ``PAD`` 0, ``EOS`` 1, gap-bin tokens 2..7 (``GAP_NULL`` then the five bins of
:data:`GAP_BINS`), E_form tokens 8..10 (``EF_NULL``, ``EF_NEG``, ``EF_POS``), then the pair tokens
``PAIR0 + order_index * max_count + (count - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from alcore.composition import element_list, reduced_counts
from alcore.errors import InvalidFormulaError
from generators.fast_formula import FastFormula, _element_table

PAD, EOS = 0, 1
GAP_NULL = 2
#: Band-gap bins (eV, MP PBE gaps): name, lower bound (inclusive), upper bound (exclusive).
GAP_BINS: tuple[tuple[str, float, float], ...] = (
    ("metal", -np.inf, 1e-3),
    ("0-1.6", 1e-3, 1.6),
    ("1.6-3", 1.6, 3.0),
    ("3-5", 3.0, 5.0),
    (">5", 5.0, np.inf),
)
EF_NULL, EF_NEG, EF_POS = 8, 9, 10
PAIR0 = 11
#: Condition names accepted by :func:`condition_tokens` (``None``/"any" = unconditioned).
EF_NAMES = {"any": EF_NULL, "neg": EF_NEG, "pos": EF_POS}


def gap_token(gap_ev: float | None) -> int:
    """The gap-bin token of a band gap in eV (``GAP_NULL`` for None/NaN)."""
    if gap_ev is None or not np.isfinite(gap_ev):
        return GAP_NULL
    for i, (_, lo, hi) in enumerate(GAP_BINS):
        if lo <= gap_ev < hi:
            return GAP_NULL + 1 + i
    return GAP_NULL + len(GAP_BINS)


def gap_bin_names() -> list[str]:
    """The names of the gap bins, in token order (``metal``, ``0-1.6``, ``1.6-3``, ``3-5``, ``>5``)."""
    return [b[0] for b in GAP_BINS]


def condition_tokens(gap_bin: str | None = None, eform: str | None = None) -> tuple[int, int]:
    """``(gap token, E_form token)`` for a gap-bin name (see :func:`gap_bin_names`; None or "any" =
    unconditioned) and an E_form condition (``"neg"`` = E_form < 0, ``"pos"``, None/"any").

    Raises ``ValueError`` with the accepted names for anything else."""
    names = gap_bin_names()
    if gap_bin is None or gap_bin == "any":
        g = GAP_NULL
    elif gap_bin in names:
        g = GAP_NULL + 1 + names.index(gap_bin)
    else:
        raise ValueError(f"unknown gap bin {gap_bin!r}; choose one of {['any', *names]}")
    key = "any" if eform is None else eform
    if key not in EF_NAMES:
        raise ValueError(f"unknown E_form condition {eform!r}; choose one of {sorted(EF_NAMES)}")
    return g, EF_NAMES[key]


@dataclass(frozen=True)
class FormulaTokenizer:
    """Pair tokeniser over an element list (a name of :data:`alcore.composition.ELEMENT_LISTS` or
    symbols) with counts ``1..max_count`` and at most ``max_elements`` elements per formula."""

    elements: str | tuple[str, ...] = "matgan85"
    max_count: int = 8
    max_elements: int = 8
    symbols: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", element_list(self.elements))

    # -------------------------------------------------------------------------------- tables
    @property
    def order(self) -> np.ndarray:
        """(E,) int64: ``order[r]`` = index (into :attr:`symbols`) of the element of rank ``r``."""
        return _tables(self.symbols)[0]

    @property
    def rank(self) -> np.ndarray:
        """(E,) int64: rank of each element of :attr:`symbols` in the canonical (X, symbol) order."""
        return _tables(self.symbols)[1]

    @property
    def vocab_size(self) -> int:
        """Number of token ids (specials, conditions and ``E * max_count`` pairs)."""
        return PAIR0 + len(self.symbols) * self.max_count

    @property
    def seq_len(self) -> int:
        """Longest token sequence: two condition tokens, ``max_elements`` pairs, EOS."""
        return 3 + self.max_elements

    def token_rank_count(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token id: the element rank (-1 for non-pair tokens) and the count (0 for non-pairs);
        two (V,) int64 arrays (the sampler's masks are built from them)."""
        v = self.vocab_size
        rk = np.full(v, -1, dtype=np.int64)
        ct = np.zeros(v, dtype=np.int64)
        ids = np.arange(PAIR0, v)
        rk[PAIR0:] = (ids - PAIR0) // self.max_count
        ct[PAIR0:] = (ids - PAIR0) % self.max_count + 1
        return rk, ct

    # -------------------------------------------------------------------------------- encode / decode
    def pairs(self, formula: str) -> list[int]:
        """Pair token ids of a formula's reduced composition in canonical order.

        Raises :class:`InvalidFormulaError` for an element outside the list, a count above
        ``max_count`` or too many elements."""
        rc = reduced_counts(formula)
        idx = _index(self.symbols)
        ranks = self.rank
        out = []
        for s, c in rc:
            if s not in idx:
                raise InvalidFormulaError(formula, f"element {s} not in the {len(self.symbols)}-element list")
            if c > self.max_count:
                raise InvalidFormulaError(formula, f"count {c} of {s} above the tokeniser maximum {self.max_count}")
            out.append((int(ranks[idx[s]]), c))
        if len(out) > self.max_elements:
            raise InvalidFormulaError(formula, f"{len(out)} elements, more than {self.max_elements}")
        return [PAIR0 + r * self.max_count + (c - 1) for r, c in sorted(out)]

    def encode(self, formula: str, gap: int = GAP_NULL, eform: int = EF_NULL) -> list[int]:
        """Token ids ``[gap, eform, pairs..., EOS]`` of one formula (unpadded)."""
        return [gap, eform, *self.pairs(formula), EOS]

    def encode_batch(
        self, formulas: Sequence[str], gaps: Sequence[int] | None = None, eforms: Sequence[int] | None = None
    ) -> np.ndarray:
        """(N, seq_len) int64 token matrix, PAD-filled; condition tokens default to the null ones."""
        out = np.full((len(formulas), self.seq_len), PAD, dtype=np.int64)
        for i, f in enumerate(formulas):
            t = self.encode(f, GAP_NULL if gaps is None else gaps[i], EF_NULL if eforms is None else eforms[i])
            out[i, : len(t)] = t
        return out

    def counts(self, tokens: np.ndarray) -> np.ndarray:
        """(N, E) int64 element counts over :attr:`symbols` of token rows (N, L): pair tokens up to
        the first EOS/PAD after the condition tokens are summed; anything else is ignored."""
        tokens = np.asarray(tokens)
        n = tokens.shape[0]
        out = np.zeros((n, len(self.symbols)), dtype=np.int64)
        pair = tokens >= PAIR0
        alive = np.cumprod(np.where(np.arange(tokens.shape[1]) < 2, True, pair), axis=1).astype(bool)
        rows, cols = np.nonzero(pair & alive)
        t = tokens[rows, cols] - PAIR0
        elem = self.order[t // self.max_count]
        np.add.at(out, (rows, elem), t % self.max_count + 1)
        return out

    def decode(self, tokens: np.ndarray) -> list[str | None]:
        """Canonical formulas of token rows (N, L) (``None`` for a row without pairs)."""
        return _fast(self.symbols).formulas(self.counts(tokens))


@lru_cache(maxsize=8)
def _tables(symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    rank, _ = _element_table(symbols)
    order = np.argsort(rank)
    return order.astype(np.int64), rank.astype(np.int64)


@lru_cache(maxsize=8)
def _index(symbols: tuple[str, ...]) -> dict[str, int]:
    return {s: i for i, s in enumerate(symbols)}


@lru_cache(maxsize=8)
def _fast(symbols: tuple[str, ...]) -> FastFormula:
    return FastFormula(symbols)


__all__ = [
    "EF_NAMES",
    "EF_NEG",
    "EF_NULL",
    "EF_POS",
    "EOS",
    "GAP_BINS",
    "GAP_NULL",
    "PAD",
    "PAIR0",
    "FormulaTokenizer",
    "condition_tokens",
    "gap_bin_names",
    "gap_token",
]

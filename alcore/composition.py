"""Composition parsing, canonical formulas and the one-hot element x count matrix.

The encoding of MatGAN and AGD: a matrix with one row per element of a fixed list and one column per
count 1..``max_count``; an element with count ``k`` has a single 1 in column ``k - 1``; an absent
element has an all-zero row. Formulas are reduced (pymatgen) before encoding, and fractional
stoichiometry is scaled to the smallest integers that represent it exactly (within 1e-6); anything
that still cannot be represented raises :class:`~alcore.errors.InvalidFormulaError` naming the
formula and the reason. Nothing is ever silently truncated.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Element

from alcore.errors import InvalidFormulaError

#: Every element from H (Z=1) to Lr (Z=103), in atomic-number order.
Z103: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, 104))

#: The 89 elements that occur in the Materials Project band-gap data (H..Pu without Po, At, Rn, Fr, Ra).
MP89: tuple[str, ...] = tuple(s for s in Z103[:94] if s not in {"Po", "At", "Rn", "Fr", "Ra"})

#: AGD's 87-row matrix (periodic-table order). The paper gives the count, not the list; this is our
#: reconstruction: the MP band-gap elements without He and Ne, which form no compounds.
AGD87: tuple[str, ...] = tuple(s for s in MP89 if s not in {"He", "Ne"})

#: MatGAN's 85-row matrix. The paper gives the count, not the list; our reconstruction: AGD87 without
#: Tc and Pm (no stable isotope, rare in ICSD-derived sets).
MATGAN85: tuple[str, ...] = tuple(s for s in AGD87 if s not in {"Tc", "Pm"})

ELEMENT_LISTS: dict[str, tuple[str, ...]] = {"matgan85": MATGAN85, "agd87": AGD87, "mp89": MP89, "z103": Z103}

_SIMPLE_FORMULA = re.compile(r"^(?:[A-Z][a-z]?\d*(?:\.\d+)?)+$")
_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*(?:\.\d+)?)")


def element_list(name_or_symbols: str | Sequence[str]) -> tuple[str, ...]:
    """Resolve an element list by name (``matgan85``, ``agd87``, ``mp89``, ``z103``) or pass one through.

    Takes a list name or a sequence of element symbols; returns the symbols as a tuple.
    Raises ``ValueError`` for an unknown name or a symbol that is not an element.
    """
    if isinstance(name_or_symbols, str):
        try:
            return ELEMENT_LISTS[name_or_symbols]
        except KeyError:
            raise ValueError(
                f"unknown element list {name_or_symbols!r}; choose one of {sorted(ELEMENT_LISTS)}"
            ) from None
    symbols = tuple(name_or_symbols)
    for s in symbols:
        if not Element.is_valid_symbol(s):
            raise ValueError(f"{s!r} in the element list is not an element symbol")
    return symbols


def parse_amounts(formula: str) -> dict[str, float]:
    """Parse a formula into ``{symbol: amount}`` (fast regex path for flat formulas, pymatgen otherwise).

    Raises :class:`InvalidFormulaError` for non-strings, empty or malformed text, unknown elements
    and negative amounts; zero amounts are dropped.
    """
    if not isinstance(formula, str):
        raise InvalidFormulaError(formula, f"expected a string, got {type(formula).__name__}")
    text = formula.strip()
    if not text:
        raise InvalidFormulaError(formula, "empty formula")
    if _SIMPLE_FORMULA.match(text):
        amounts: dict[str, float] = {}
        for symbol, number in _TOKEN.findall(text):
            if not Element.is_valid_symbol(symbol):
                raise InvalidFormulaError(formula, f"unknown element {symbol!r}")
            amounts[symbol] = amounts.get(symbol, 0.0) + (float(number) if number else 1.0)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = Composition(text, strict=True)
        except Exception as exc:  # pymatgen raises ValueError/KeyError/CompositionError variously
            raise InvalidFormulaError(formula, f"cannot parse: {exc}") from None
        amounts = {el.symbol: float(amt) for el, amt in comp.items()}
    if any(a < 0 for a in amounts.values()):
        raise InvalidFormulaError(formula, "negative amount")
    amounts = {s: a for s, a in amounts.items() if a > 1e-9}
    if not amounts:
        raise InvalidFormulaError(formula, "no atoms")
    return amounts


def _integer_counts(formula: str, amounts: dict[str, float], max_denominator: int = 24) -> dict[str, int]:
    """Scale amounts to the smallest integers (reduced by their gcd); raise if not exactly possible."""
    fracs = {}
    for s, a in amounts.items():
        f = Fraction(a).limit_denominator(max_denominator)
        if abs(float(f) - a) > 1e-6 * max(1.0, a):
            raise InvalidFormulaError(
                formula, f"amount {a:g} of {s} is not a ratio of small integers; round the stoichiometry"
            )
        fracs[s] = f
    lcm = 1
    for f in fracs.values():
        lcm = lcm * f.denominator // np.gcd(lcm, f.denominator)
    ints = {s: int(f * lcm) for s, f in fracs.items()}
    g = 0
    for v in ints.values():
        g = int(np.gcd(g, v))
    return {s: v // g for s, v in ints.items()}


@lru_cache(maxsize=500_000)
def reduced_counts(formula: str) -> tuple[tuple[str, int], ...]:
    """Reduced integer stoichiometry of a formula, elements in atomic-number order.

    Takes a formula string (``"Mg2O2"``, ``"Fe0.5O0.75"``, ``"Ca(OH)2"``); returns
    ``(("Mg", 1), ("O", 1))``-style pairs. Raises :class:`InvalidFormulaError` for malformed
    strings, unknown elements and non-rational stoichiometry.
    """
    counts = _integer_counts(formula, parse_amounts(formula))
    return tuple(sorted(counts.items(), key=lambda kv: Element(kv[0]).Z))


@lru_cache(maxsize=500_000)
def canonical_formula(formula: str) -> str:
    """The canonical (pymatgen reduced, electronegativity-ordered) formula, e.g. ``"Mg2O2" -> "MgO"``.

    Takes any formula pymatgen can parse; returns the string used as the key everywhere in the store.
    Raises :class:`InvalidFormulaError` if the formula cannot be parsed.
    """
    counts = dict(reduced_counts(formula))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Composition(counts).reduced_formula


@lru_cache(maxsize=1)
def element_formulas() -> frozenset[str]:
    """Canonical formulas of every element pymatgen knows (``"O2"``, ``"Fe"``, ...): each one's solid
    is a known material, although formula lists of compounds (e.g. ``data/known``) omit them."""
    from pymatgen.core.periodic_table import Element

    return frozenset(canonical_set(element.symbol for element in Element))


def canonical_set(formulas: Iterable[object]) -> set[str]:
    """The distinct canonical formulas of ``formulas`` (each read as ``str``); those that cannot be
    parsed (:class:`InvalidFormulaError`) are skipped."""
    out = set()
    for f in formulas:
        try:
            out.add(canonical_formula(str(f)))
        except InvalidFormulaError:
            continue
    return out


def canonical_formulas(formulas: Iterable[str]) -> list[str]:
    """Canonicalise many formulas; raises on the first invalid one (see :func:`canonical_formula`)."""
    return [canonical_formula(f) for f in formulas]


@dataclass(frozen=True)
class EncodeResult:
    """Batch encoding output: ``matrices`` (N, E, C) float32, ``valid`` (N,) bool, ``reasons`` per row."""

    matrices: np.ndarray
    valid: np.ndarray
    reasons: list[str | None]


@dataclass(frozen=True)
class CompositionEncoder:
    """One-hot element x count encoder.

    ``elements``: a list name (see :data:`ELEMENT_LISTS`) or symbols; ``max_count``: number of count
    columns (8 in MatGAN/AGD); ``max_elements``: most distinct elements a formula may have.
    """

    elements: str | tuple[str, ...] = "agd87"
    max_count: int = 8
    max_elements: int = 8
    symbols: tuple[str, ...] = field(init=False)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        symbols = element_list(self.elements)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "index", {s: i for i, s in enumerate(symbols)})
        if self.max_count < 1 or self.max_elements < 1:
            raise ValueError("max_count and max_elements must be >= 1")

    @property
    def shape(self) -> tuple[int, int]:
        """Matrix shape ``(n_elements, max_count)``."""
        return (len(self.symbols), self.max_count)

    def counts(self, formula: str) -> dict[str, int]:
        """Reduced integer counts of ``formula`` after checking it fits this encoding.

        Raises :class:`InvalidFormulaError` for an element outside the list, a count above
        ``max_count`` or more than ``max_elements`` elements.
        """
        counts = dict(reduced_counts(formula))
        unknown = [s for s in counts if s not in self.index]
        if unknown:
            raise InvalidFormulaError(
                formula, f"element(s) {', '.join(unknown)} not in the {len(self.symbols)}-element list"
            )
        if len(counts) > self.max_elements:
            raise InvalidFormulaError(formula, f"{len(counts)} elements, more than the maximum of {self.max_elements}")
        too_many = {s: c for s, c in counts.items() if c > self.max_count}
        if too_many:
            raise InvalidFormulaError(
                formula,
                f"count(s) {too_many} above the encoding maximum of {self.max_count} (reduced formula)",
            )
        return counts

    def encode(self, formula: str) -> np.ndarray:
        """Encode one formula; returns a float32 array of shape ``(n_elements, max_count)``."""
        out = np.zeros(self.shape, dtype=np.float32)
        for s, c in self.counts(formula).items():
            out[self.index[s], c - 1] = 1.0
        return out

    def encode_batch(self, formulas: Sequence[str], errors: str = "raise") -> EncodeResult:
        """Encode many formulas at once.

        ``errors="raise"`` raises on the first bad formula; ``errors="mask"`` leaves its matrix zero,
        sets ``valid[i] = False`` and puts the reason in ``reasons[i]``. Returns an :class:`EncodeResult`
        with matrices of shape ``(N, n_elements, max_count)``.
        """
        if errors not in {"raise", "mask"}:
            raise ValueError("errors must be 'raise' or 'mask'")
        n = len(formulas)
        rows: list[int] = []
        cols: list[int] = []
        ids: list[int] = []
        valid = np.zeros(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        for i, f in enumerate(formulas):
            try:
                counts = self.counts(f)
            except InvalidFormulaError as exc:
                if errors == "raise":
                    raise
                reasons[i] = exc.reason
                continue
            valid[i] = True
            for s, c in counts.items():
                ids.append(i)
                rows.append(self.index[s])
                cols.append(c - 1)
        mats = np.zeros((n, *self.shape), dtype=np.float32)
        mats[np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = 1.0
        return EncodeResult(mats, valid, reasons)

    def decode_counts(self, matrices: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Integer counts from (probability) matrices.

        Takes ``(N, E, C)`` or ``(E, C)`` values in [0, 1]; an element is present if its largest
        column value exceeds ``threshold`` and its count is that column's index + 1. Returns int
        counts of shape ``(N, E)`` (or ``(E,)``).
        """
        m = np.asarray(matrices)
        best = m.argmax(axis=-1)
        present = m.max(axis=-1) > threshold
        return np.where(present, best + 1, 0).astype(np.int64)

    def formula_from_counts(self, counts: np.ndarray) -> str | None:
        """Canonical formula for an ``(E,)`` count vector, or ``None`` if it has no atoms."""
        nz = np.flatnonzero(counts)
        if nz.size == 0:
            return None
        return canonical_formula("".join(f"{self.symbols[i]}{int(counts[i])}" for i in nz))

    def decode(self, matrices: np.ndarray, threshold: float = 0.5) -> list[str | None]:
        """Decode ``(N, E, C)`` matrices to canonical formulas (``None`` for an empty decode)."""
        counts = self.decode_counts(np.asarray(matrices).reshape(-1, *self.shape), threshold)
        return [self.formula_from_counts(c) for c in counts]

    def representable(self, formula: str) -> tuple[bool, str | None]:
        """``(True, None)`` if the formula fits this encoding, else ``(False, reason)``."""
        try:
            self.counts(formula)
        except InvalidFormulaError as exc:
            return False, exc.reason
        return True, None

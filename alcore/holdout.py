"""Hold-out splits for the rediscovery benchmark: hide whole chemical systems (or random formulas).

A chemical system is the set of elements of a formula (``"Mg-O"`` for MgO and MgO2). The default
protocol hides a seeded ``fraction`` of the chemical systems of a formula universe; every formula
of a hidden system goes to the hidden set, so the pipeline never sees a compound of that element
set (the GNoME / Matbench Discovery style of "unseen chemistry"). The easier second protocol hides
a seeded ``fraction`` of the formulas themselves. :func:`assert_no_leak` checks that a table the
pipeline learns from or compares against holds no hidden formula.

The split is shared with the structure-recovery part of the benchmark: both compute it with exactly
these functions, so the same (protocol, seed, fraction) hides the same formulas everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from alcore.composition import canonical_formula, canonical_set
from alcore.errors import HoldoutLeakError, InvalidFormulaError

PROTOCOLS = ("system", "random")


@dataclass(frozen=True)
class HoldoutSplit:
    """A split of canonical formulas into ``visible`` and ``hidden`` (disjoint). ``hidden_systems``:
    the hidden chemical systems (protocol ``"system"``; for ``"random"`` the systems of the hidden
    formulas, which may also hold visible formulas). ``protocol``, ``seed`` and ``fraction`` say how
    it was drawn; ``outer``: the split whose visible part this one splits (:func:`nested_split`),
    whose hidden formulas this one hides as well."""

    visible: frozenset[str]
    hidden: frozenset[str]
    hidden_systems: frozenset[str]
    protocol: str
    seed: int
    fraction: float
    outer: HoldoutSplit | None = None

    def is_hidden(self, formula: str) -> bool:
        """Whether ``formula`` (any spelling pymatgen parses) is hidden: in ``hidden``, or (protocol
        ``"system"``) in a hidden chemical system even if the split's universe did not list it (e.g.
        MgO2 of a template library when Mg-O is hidden). Unparsable -> False."""
        try:
            return self._hidden_canonical(canonical_formula(formula))
        except InvalidFormulaError:
            return False

    def _hidden_canonical(self, formula: str) -> bool:
        if formula in self.hidden:
            return True
        if self.protocol == "system" and chemical_system(formula) in self.hidden_systems:
            return True
        return self.outer is not None and self.outer._hidden_canonical(formula)


@lru_cache(maxsize=500_000)
def chemical_system(formula: str) -> str:
    """The chemical system of ``formula``: its element symbols, sorted alphabetically, joined by
    ``"-"`` (``"MgO"`` -> ``"Mg-O"``; the pymatgen :class:`Composition`'s elements). Raises
    :class:`InvalidFormulaError` if pymatgen cannot parse it."""
    import warnings

    from pymatgen.core import Composition

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elements = Composition(formula).elements
    except Exception as exc:  # noqa: BLE001 - pymatgen raises several types for bad strings
        raise InvalidFormulaError(formula, f"pymatgen cannot parse it ({exc})") from None
    if not elements:
        raise InvalidFormulaError(formula, "no elements")
    return "-".join(sorted(e.symbol for e in elements))


def _canonical(formulas: Iterable[str]) -> list[str]:
    """Sorted distinct canonical formulas; those that fail to parse are skipped."""
    return sorted(canonical_set(formulas))


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1], got {fraction}")


def split_by_chemical_system(formulas: Iterable[str], fraction: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """Hide ``round(fraction * n_systems)`` chemical systems drawn with ``numpy.random.default_rng(seed)``
    from the sorted systems of the canonical ``formulas`` (unparsable ones skipped); every formula of
    a hidden system is hidden. Deterministic for equal inputs."""
    _check_fraction(fraction)
    canon = _canonical(formulas)
    system_of = {f: chemical_system(f) for f in canon}
    systems = sorted(set(system_of.values()))
    rng = np.random.default_rng(seed)
    size = round(fraction * len(systems))
    hidden_systems = set(rng.choice(systems, size=size, replace=False).tolist()) if size else set()
    hidden = frozenset(f for f in canon if system_of[f] in hidden_systems)
    return HoldoutSplit(
        visible=frozenset(canon) - hidden,
        hidden=hidden,
        hidden_systems=frozenset(hidden_systems),
        protocol="system",
        seed=int(seed),
        fraction=float(fraction),
    )


def split_random_formulas(formulas: Iterable[str], fraction: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """Hide ``round(fraction * n)`` of the sorted canonical ``formulas`` drawn with
    ``numpy.random.default_rng(seed)`` (the easier protocol: a hidden formula's chemical system
    usually has visible members)."""
    _check_fraction(fraction)
    canon = _canonical(formulas)
    rng = np.random.default_rng(seed)
    size = round(fraction * len(canon))
    hidden = frozenset(rng.choice(canon, size=size, replace=False).tolist()) if size else frozenset()
    return HoldoutSplit(
        visible=frozenset(canon) - hidden,
        hidden=hidden,
        hidden_systems=frozenset(chemical_system(f) for f in hidden),
        protocol="random",
        seed=int(seed),
        fraction=float(fraction),
    )


def make_split(formulas: Iterable[str], protocol: str = "system", fraction: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """The split of ``protocol`` (``"system"`` or ``"random"``); raises ``ValueError`` for another name."""
    if protocol == "system":
        return split_by_chemical_system(formulas, fraction, seed)
    if protocol == "random":
        return split_random_formulas(formulas, fraction, seed)
    raise ValueError(f"unknown hold-out protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def nested_split(outer: HoldoutSplit, seed: int) -> HoldoutSplit:
    """A split of ``outer``'s visible formulas (same protocol and fraction, ``seed``) for choosing
    among methods without touching ``outer``'s answer key: its hidden set is the inner answer key,
    and ``outer``'s hidden formulas stay hidden too (:meth:`HoldoutSplit.is_hidden`,
    :func:`assert_no_leak`) while belonging to neither side."""
    inner = make_split(outer.visible, outer.protocol, outer.fraction, seed)
    return replace(inner, outer=outer)


def leaked(formulas: Iterable[str], split: HoldoutSplit) -> list[str]:
    """The distinct hidden formulas among ``formulas`` (canonicalised; unparsable ones ignored), in
    first-seen order."""
    out: dict[str, None] = {}
    for f in formulas:
        try:
            c = canonical_formula(str(f))
        except InvalidFormulaError:
            continue
        if split._hidden_canonical(c):
            out[c] = None
    return list(out)


def assert_no_leak(name: str, formulas: Iterable[str], split: HoldoutSplit) -> None:
    """Raise :class:`HoldoutLeakError` naming table ``name`` and its first leaked formulas if any of
    ``formulas`` is hidden by ``split``; return None otherwise."""
    bad = leaked(formulas, split)
    if bad:
        shown = ", ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        raise HoldoutLeakError(
            f"hold-out leak: table {name!r} contains {len(bad)} hidden formula(s) of the "
            f"{split.protocol} split (seed {split.seed}, fraction {split.fraction}): {shown}; "
            "rebuild it from the visible formulas only"
        )

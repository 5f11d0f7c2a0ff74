"""Hold-out splits of formulas by chemical system, and the leak check every benchmark table passes.

A chemical system is the set of elements of a formula (``"MgO"`` and ``"MgO2"`` are both ``"Mg-O"``).
:func:`split_by_chemical_system` hides a seeded random ``fraction`` of the systems present in a
formula universe: every formula whose system is hidden goes to ``hidden``, all others to
``visible``. Hiding whole systems (rather than single formulas) keeps the polymorphs and sibling
stoichiometries of a hidden compound out of everything the pipeline learns from, which is what
makes rediscovering it meaningful (GNoME / Matbench Discovery style hold-outs).

:func:`assert_no_leak` checks that a table (seed labels, a template library, a known-formula
list, ...) holds no hidden formula and raises :class:`~alcore.errors.LeakError` naming the table
and the first leaked formulas otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from alcore.composition import canonical_formula, reduced_counts
from alcore.errors import InvalidFormulaError, LeakError

PROTOCOL_CHEMICAL_SYSTEM = "chemical_system"


def chemical_system(formula: str) -> str:
    """The chemical system of a formula: its element symbols sorted and joined by ``-``, e.g. ``"Mg-O"``.

    Raises :class:`~alcore.errors.InvalidFormulaError` if the formula cannot be parsed.
    """
    return "-".join(sorted(e for e, _ in reduced_counts(formula)))


@dataclass(frozen=True)
class HoldoutSplit:
    """A split of canonical formulas into ``visible`` and ``hidden`` sets.

    ``hidden_systems`` are the chemical systems hidden (empty for a plain formula split);
    ``protocol`` names how the split was made, ``seed`` and ``fraction`` its parameters.
    """

    visible: frozenset[str]
    hidden: frozenset[str]
    hidden_systems: frozenset[str]
    protocol: str
    seed: int
    fraction: float

    def is_hidden(self, formula: str) -> bool:
        """True if ``formula`` (any spelling) is hidden: in ``hidden`` or in a hidden chemical system."""
        try:
            f = canonical_formula(formula)
        except InvalidFormulaError:
            return False
        return f in self.hidden or (bool(self.hidden_systems) and chemical_system(f) in self.hidden_systems)


def _canonical_set(formulas: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for f in formulas:
        try:
            out.add(canonical_formula(str(f)))
        except InvalidFormulaError:
            continue
    return out


def split_by_chemical_system(formulas: Iterable[str], fraction: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """Hide a seeded random ``fraction`` of the chemical systems of ``formulas``.

    Formulas are canonicalised first (those that fail are skipped). With ``systems`` the sorted
    distinct chemical systems, ``numpy.random.default_rng(seed).choice(systems,
    size=round(fraction * len(systems)), replace=False)`` are hidden; ``hidden`` holds every formula
    of a hidden system, ``visible`` the rest. Deterministic in ``(formulas as a set, fraction, seed)``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    canon = _canonical_set(formulas)
    system_of = {f: chemical_system(f) for f in canon}
    systems = sorted(set(system_of.values()))
    rng = np.random.default_rng(seed)
    n_hidden = int(round(fraction * len(systems)))
    hidden_systems = {str(s) for s in rng.choice(systems, size=n_hidden, replace=False)} if n_hidden else set()
    hidden = frozenset(f for f, s in system_of.items() if s in hidden_systems)
    return HoldoutSplit(
        visible=frozenset(canon - hidden),
        hidden=hidden,
        hidden_systems=frozenset(hidden_systems),
        protocol=PROTOCOL_CHEMICAL_SYSTEM,
        seed=int(seed),
        fraction=float(fraction),
    )


def leaked_formulas(formulas: Iterable[str], split: HoldoutSplit) -> list[str]:
    """Sorted distinct canonical formulas of ``formulas`` that are hidden by ``split`` (see ``is_hidden``)."""
    return sorted({canonical_formula(f) for f in _canonical_set(formulas) if split.is_hidden(f)})


def assert_no_leak(name: str, formulas: Iterable[str], split: HoldoutSplit) -> None:
    """Raise :class:`~alcore.errors.LeakError` if the table ``name`` holds a formula hidden by ``split``.

    A formula is hidden if it is in ``split.hidden`` or belongs to one of ``split.hidden_systems``
    (so a hidden-system formula absent from the universe is caught too). The message names the table,
    the number of leaked formulas and the first 10.
    """
    leaked = leaked_formulas(formulas, split)
    if leaked:
        shown = ", ".join(leaked[:10])
        more = f" (and {len(leaked) - 10} more)" if len(leaked) > 10 else ""
        raise LeakError(
            f"{name}: {len(leaked)} hidden formula(s) of the {split.protocol} split (seed {split.seed}) "
            f"leaked into it: {shown}{more}"
        )

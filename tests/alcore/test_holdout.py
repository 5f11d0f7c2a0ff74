"""Hold-out splits (alcore.holdout): determinism, whole chemical systems hidden, leak checks."""

from __future__ import annotations

import contextlib

import pytest

from alcore.errors import HoldoutLeakError
from alcore.holdout import (
    assert_no_leak,
    chemical_system,
    leaked,
    make_split,
    split_by_chemical_system,
    split_random_formulas,
)

FORMULAS = [
    "MgO", "Mg2O2", "MgO2", "NaCl", "Na2O", "Na2O2", "LiF", "Li2O", "Li3N", "AlN", "GaN", "Al2O3",
    "SiO2", "Si3N4", "TiO2", "Ti2O3", "ZnO", "ZnS", "CdS", "CdTe", "KCl", "KBr", "CsI", "BaTiO3",
    "SrTiO3", "CaTiO3", "LiCoO2", "LiFePO4", "Fe2O3", "Fe3O4", "not a formula", "Xx2O",
]  # fmt: skip


def test_chemical_system_sorts_element_symbols() -> None:
    assert chemical_system("MgO") == "Mg-O"
    assert chemical_system("BaTiO3") == "Ba-O-Ti"
    assert chemical_system("Mg2O2") == chemical_system("MgO2") == "Mg-O"


def test_system_split_is_deterministic_and_hides_whole_systems() -> None:
    a = split_by_chemical_system(FORMULAS, fraction=0.3, seed=4)
    b = split_by_chemical_system(list(reversed(FORMULAS)), fraction=0.3, seed=4)
    assert a == b  # same inputs in any order -> same split
    systems = sorted({chemical_system(f) for f in a.visible | a.hidden})
    assert len(a.hidden_systems) == round(0.3 * len(systems))
    assert a.visible.isdisjoint(a.hidden)
    assert "Mg2O2" not in a.visible | a.hidden  # canonical formulas only ("MgO")
    assert len(a.visible | a.hidden) == 29  # 32 entries: two unparsable skipped, Mg2O2 == MgO
    for f in a.hidden:
        assert chemical_system(f) in a.hidden_systems
    for f in a.visible:
        assert chemical_system(f) not in a.hidden_systems
    assert a.protocol == "system" and a.seed == 4 and a.fraction == 0.3
    other = split_by_chemical_system(FORMULAS, fraction=0.3, seed=5)
    assert other.hidden_systems != a.hidden_systems


def test_system_split_matches_the_shared_recipe() -> None:
    """The recipe agreed with the structure-recovery benchmark, spelled out with numpy."""
    import numpy as np

    from alcore.composition import canonical_formula

    canon = set()
    for f in FORMULAS:
        with contextlib.suppress(ValueError):
            canon.add(canonical_formula(f))
    systems = sorted({chemical_system(f) for f in canon})
    rng = np.random.default_rng(7)
    hidden_systems = set(rng.choice(systems, size=round(0.2 * len(systems)), replace=False))
    split = split_by_chemical_system(FORMULAS, 0.2, 7)
    assert split.hidden_systems == hidden_systems
    assert split.hidden == {f for f in canon if chemical_system(f) in hidden_systems}


def test_random_split_hides_a_fraction_of_formulas() -> None:
    a = split_random_formulas(FORMULAS, fraction=0.25, seed=1)
    assert a == split_random_formulas(FORMULAS, fraction=0.25, seed=1)
    assert len(a.hidden) == round(0.25 * 29)
    assert a.protocol == "random"
    assert make_split(FORMULAS, "random", 0.25, 1) == a
    with pytest.raises(ValueError, match="unknown hold-out protocol"):
        make_split(FORMULAS, "by-colour", 0.25, 1)
    with pytest.raises(ValueError, match="fraction"):
        split_random_formulas(FORMULAS, fraction=1.5)


def test_leak_check_catches_a_hidden_formula_planted_in_a_visible_table() -> None:
    split = split_by_chemical_system(FORMULAS, fraction=0.3, seed=4)
    visible_table = sorted(split.visible)
    assert_no_leak("seed labels", visible_table, split)  # clean: no error
    planted = sorted(split.hidden)[0]
    # a different spelling of the hidden formula is caught too (canonicalised first)
    from pymatgen.core import Composition

    spelled = Composition(planted).formula.replace(" ", "")
    with pytest.raises(HoldoutLeakError) as err:
        assert_no_leak("seed labels", [*visible_table[:3], spelled, *visible_table[3:]], split)
    msg = str(err.value)
    assert "'seed labels'" in msg and planted in msg and "1 hidden formula" in msg
    assert leaked([spelled, "garbage!", visible_table[0]], split) == [planted]
    assert split.is_hidden(spelled) and not split.is_hidden(visible_table[0])


def test_nested_split_splits_the_visible_part_and_keeps_the_outer_hidden_hidden() -> None:
    from alcore.holdout import nested_split

    outer = split_by_chemical_system(FORMULAS, fraction=0.3, seed=4)
    inner = nested_split(outer, seed=1004)
    assert inner == nested_split(outer, seed=1004)  # deterministic
    assert inner.visible | inner.hidden == outer.visible  # it splits the visible part only
    assert inner.hidden and inner.visible.isdisjoint(inner.hidden)
    assert inner.hidden_systems.isdisjoint(outer.hidden_systems)
    assert (inner.protocol, inner.fraction) == (outer.protocol, outer.fraction)
    # the outer answer key stays hidden: a table holding an outer-hidden formula is caught
    outer_hidden = sorted(outer.hidden)[0]
    assert inner.is_hidden(outer_hidden) and not inner.is_hidden(sorted(inner.visible)[0])
    with pytest.raises(HoldoutLeakError, match="hold-out leak"):
        assert_no_leak("seed labels", [sorted(inner.visible)[0], outer_hidden], inner)
    # ... and so is one of the inner hidden set
    assert leaked([sorted(inner.hidden)[0]], inner) == [sorted(inner.hidden)[0]]

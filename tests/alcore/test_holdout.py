"""Hold-out split by chemical system: determinism, partition, and the leak check."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.errors import LeakError
from alcore.holdout import assert_no_leak, chemical_system, leaked_formulas, split_by_chemical_system

UNIVERSE = ["NaCl", "Na2Cl2", "KCl", "MgO", "MgO2", "CaO", "SrTiO3", "BaTiO3", "Fe2O3", "FeO", "Xx3", "LiF", "SiO2"]


def test_chemical_system() -> None:
    assert chemical_system("MgO") == "Mg-O"
    assert chemical_system("SrTiO3") == "O-Sr-Ti"
    assert chemical_system("Mg2O2") == chemical_system("MgO2") == "Mg-O"


def test_split_is_deterministic_and_partitions_by_system() -> None:
    a = split_by_chemical_system(UNIVERSE, fraction=0.4, seed=3)
    b = split_by_chemical_system(list(reversed(UNIVERSE)), fraction=0.4, seed=3)
    assert a == b
    systems = sorted({chemical_system(f) for f in a.visible | a.hidden})
    assert len(systems) == 9  # "Xx3" is skipped; NaCl/Na2Cl2, MgO/MgO2 and Fe2O3/FeO share systems
    assert len(a.hidden_systems) == round(0.4 * 9) == 4
    assert not a.visible & a.hidden
    assert a.visible | a.hidden == {
        "NaCl",
        "KCl",
        "MgO",
        "MgO2",
        "CaO",
        "SrTiO3",
        "BaTiO3",
        "Fe2O3",
        "FeO",
        "LiF",
        "SiO2",
    }
    for f in a.hidden:
        assert chemical_system(f) in a.hidden_systems
    for f in a.visible:
        assert chemical_system(f) not in a.hidden_systems
    # the documented recipe, by hand
    rng = np.random.default_rng(3)
    assert a.hidden_systems == set(rng.choice(systems, size=4, replace=False))
    assert a.protocol == "chemical_system" and a.seed == 3 and a.fraction == 0.4
    # another seed hides other systems
    assert split_by_chemical_system(UNIVERSE, fraction=0.4, seed=4).hidden_systems != a.hidden_systems


def test_leak_check_catches_a_planted_hidden_formula() -> None:
    split = split_by_chemical_system(UNIVERSE, fraction=0.4, seed=3)
    visible = sorted(split.visible)
    assert_no_leak("visible table", visible, split)  # passes
    planted = sorted(split.hidden)[0]
    with pytest.raises(LeakError) as err:
        assert_no_leak("seed labels", visible + [planted], split)
    assert "seed labels" in str(err.value) and planted in str(err.value)
    # another spelling of a hidden formula, and an unseen formula of a hidden system, leak too
    system = sorted(split.hidden_systems)[0]
    els = system.split("-")
    unseen = "".join(f"{e}{i + 3}" for i, e in enumerate(els))
    assert leaked_formulas([unseen], split) != []
    with pytest.raises(LeakError):
        assert_no_leak("template library", visible + [unseen], split)

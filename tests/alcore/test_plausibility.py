"""Plausibility helpers: organic rule, P(feasible), chemical systems, anion families, caps."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.errors import ConfigError
from alcore.plausibility import anion_family, chemical_system, count_groups, group_cap, is_organic, p_feasible


def test_is_organic_needs_both_carbon_and_hydrogen():
    assert is_organic("H8CF6") and is_organic("BH3CNF3") and is_organic("CH4")
    assert not is_organic("CaC2") and not is_organic("LiH") and not is_organic("Li2BH3OF4")


def test_p_feasible_is_monotone_in_mean_and_std():
    mean = np.linspace(-3, 3, 61)
    p = p_feasible(mean, np.full_like(mean, 0.3))
    assert np.all(np.diff(p) <= 0) and p[0] > 0.999 and p[-1] < 0.001
    std = np.linspace(0.01, 2, 50)
    below = p_feasible(np.full_like(std, -0.5), std)
    above = p_feasible(np.full_like(std, 0.5), std)
    assert np.all(np.diff(below) <= 0) and np.all(np.diff(above) >= 0)
    assert np.all(below > 0.5) and np.all(above < 0.5)
    assert p_feasible(np.array([0.0]), np.array([0.1]))[0] == pytest.approx(0.5)
    assert p_feasible(np.array([np.nan]), np.array([0.1]))[0] == 0.0
    assert p_feasible(np.array([-1.0]), np.array([0.1]), threshold=-2.0)[0] < 1e-6
    with pytest.raises(ConfigError, match="same shape"):
        p_feasible(np.zeros(2), np.zeros(3))


def test_groups_and_caps():
    assert chemical_system("LiBF4") == "B-F-Li" and chemical_system("FLi") == "F-Li"
    assert anion_family("LiBF4") == "F" and anion_family("MgAl2O4") == "O" and anion_family("NaCl") == "Cl"
    assert count_groups(["LiF", "Li2F", "NaCl", "MgO"]) == {"n_systems": 3, "n_anions": 3}
    assert group_cap(0.25, 20) == 5 and group_cap(0.25, 4) == 1 and group_cap(0.1, 4) == 1 and group_cap(1.0, 7) == 7
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        group_cap(0.0, 4)

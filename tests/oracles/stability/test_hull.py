"""Hull over every known phase: hand-made diagrams and the MP formation energies of a real system."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition

from oracles.stability.hull import MPFormationEnergies, e_above_hull


def test_hull_arithmetic_and_counts_on_a_hand_made_diagram() -> None:
    # NaCl at -2.0 on the Na-Cl line; Na2Cl 0.1 eV/atom above the Na-NaCl tie line
    r = e_above_hull("NaCl", -2.0, {"NaCl": -2.0})
    assert r.e_hull == pytest.approx(0.0, abs=1e-9) and r.n_phases == 1 and r.n_model_phases == 1
    tie = 2 / 3 * -2.0
    r = e_above_hull("Na2Cl", tie + 0.1, {"Na2Cl2": -2.0})  # formulas are reduced
    assert r.e_hull == pytest.approx(0.1, abs=1e-9)
    assert r.decomposition == ["Na", "NaCl"]


def test_dft_phases_fill_in_only_formulas_the_model_lacks() -> None:
    model = {"NaCl": -2.0}
    dft = {"NaCl": -5.0, "NaCl3": -1.6}  # the DFT NaCl is ignored (the model has NaCl)
    r = e_above_hull("NaCl", -2.0, model, dft)
    assert r.n_model_phases == 1 and r.n_dft_phases == 1 and r.n_phases == 2
    assert r.e_hull == pytest.approx(0.0, abs=1e-9)
    # a DFT phase below the model's tie line raises the candidate's E_hull
    r = e_above_hull("NaCl3", -1.0, model, dft)
    assert r.e_hull == pytest.approx(0.6, abs=1e-9) and r.decomposition == ["NaCl3"]


def test_mp_formation_energies_cover_every_subsystem() -> None:
    mp = MPFormationEnergies()
    nacl = mp.phases(["Na", "Cl"])
    assert nacl["NaCl"] == pytest.approx(-2.105, abs=0.01)  # lowest NaCl polymorph in matbench_mp_e_form
    assert len(nacl) >= 5  # NaCl3, Na3Cl, ... (one value per reduced formula)
    ternary = mp.phases(["Sr", "Ti", "O"])
    assert {"SrO", "TiO2", "SrTiO3"} <= set(ternary)
    assert all(len(k) > 2 for k in ternary)  # no elements


def test_hull_energies_agree_with_e_above_hull_on_mp_data() -> None:
    from oracles.stability.hull import hull_energies

    mp = MPFormationEnergies()
    formulas = ["NaCl", "Na2Cl", "SrTi2O5", "Sr2TiO4", "LiF"]
    hull = hull_energies(formulas, mp)
    assert hull[0] == pytest.approx(mp.phases(["Na", "Cl"])["NaCl"], abs=1e-9)  # NaCl is on the hull
    for formula, h in zip(formulas, hull, strict=True):
        elements = {el.symbol for el in Composition(formula).elements}
        phases = mp.phases(elements)
        # a candidate 0.05 eV/atom above the hull energy sits 0.05 above the hull (the reference route)
        assert e_above_hull(formula, h + 0.05, {}, phases).e_hull == pytest.approx(0.05, abs=1e-6)
        assert e_above_hull(formula, h - 0.05, {}, phases).e_hull == pytest.approx(0.0, abs=1e-9)


def test_hull_energy_is_zero_with_only_the_elements_known() -> None:
    from oracles.stability.hull import hull_energies

    nothing = MPFormationEnergies(exclude=lambda formula: True)
    assert hull_energies(["NaCl", "SrTiO3"], nothing) == [0.0, 0.0]


def test_candidates_compete_with_each_other_but_not_with_themselves() -> None:
    from oracles.stability.hull import hull_energies

    nothing = MPFormationEnergies(exclude=lambda formula: True)  # only the elements are known
    pool = {"NaCl": -2.0, "Na3Cl": -0.5, "NaCl3": -1.9}
    hull = dict(zip(pool, hull_energies(list(pool), nothing, candidates=pool), strict=True))
    # NaCl left out: Na3Cl (x(Cl) = 1/4, -0.5) lies above the Na-NaCl3 line (-0.63 there), so NaCl's
    # hull is that line at x = 1/2: -1.9 * (1/2) / (3/4)
    assert hull["NaCl"] == pytest.approx(-1.9 * 2 / 3, abs=1e-9)
    # Na3Cl (x = 1/4) against Na and NaCl: halfway to NaCl -> -1.0; NaCl3 (x = 3/4) against NaCl and Cl -> -1.0
    assert hull["Na3Cl"] == pytest.approx(-1.0, abs=1e-9)
    assert hull["NaCl3"] == pytest.approx(-1.0, abs=1e-9)
    # without candidates: only the elements
    assert hull_energies(list(pool), nothing) == [0.0, 0.0, 0.0]

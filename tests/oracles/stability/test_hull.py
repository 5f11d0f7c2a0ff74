"""Hull over every known phase: hand-made diagrams and the MP formation energies of a real system."""

from __future__ import annotations

import pytest

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

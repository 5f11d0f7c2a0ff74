"""Applicability domain of a composition oracle (issue 19, finding 10)."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.domain import Domain

TRAIN = ["NaCl", "KCl", "MgO", "CaO", "Li2O", "NaBr", "KBr", "Al2O3", "SiO2", "MgAl2O4", "H2O", "CH2O"]
HELD_OUT = ["LiCl", "CaCl2", "Na2O", "K2O", "MgCl2"]


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.from_formulas(TRAIN, source="toy").calibrate(HELD_OUT, [0.1, 0.2, 0.15, 0.12, 0.3], quantile=0.99)


def test_training_formulas_are_inside(domain):
    for f in TRAIN:
        assert domain.check(f, std=0.1) == [], f
    assert domain.max_atoms == 7 and domain.max_elements == 3 and domain.n_train == len(TRAIN)


def test_unseen_element(domain):
    (reason, *_) = domain.check("CsCl")
    assert reason == "element(s) Cs not in the training data"


def test_counts_beyond_the_training_range(domain):
    reasons = domain.check("H999")
    assert any("H999 as written (max 2)" in r for r in reasons), reasons
    assert any("999 atoms as written" in r for r in reasons), reasons
    assert domain.check("Na4Cl") == ["count above the training range: Na4 (max 1), Na4 as written (max 1)"]
    assert any("8 atoms in the reduced formula" in r for r in domain.check("Mg3Al2O3"))


def test_too_many_elements_and_far_composition(domain):
    reasons = domain.check("NaKMgCaO4")
    assert "5 elements, training max 3" in reasons, reasons
    tight = Domain.from_formulas(TRAIN)
    tight.distance_bound = 0.3
    far = tight.check("KMgO2")  # counts within range, 0.35 from MgO
    assert len(far) == 1 and far[0].startswith("composition far from the training data (distance 0.3"), far
    assert tight.check("NaBr") == [] and tight.check("MgO") == []


def test_std_bound_is_the_held_out_quantile(domain):
    assert domain.std_bound == pytest.approx(np.quantile([0.1, 0.2, 0.15, 0.12, 0.3], 0.99))
    assert any("ensemble std 0.50" in r for r in domain.check("NaCl", std=0.5))
    assert domain.check("NaCl", std=0.05) == []


def test_nearest_distance_is_zero_on_training_compositions(domain):
    d = domain.nearest_distance(["NaCl", "Na2Cl2", "Mg2O2", "NaCl)"])
    assert d[:3] == pytest.approx([0, 0, 0], abs=1e-6) and np.isnan(d[3])


def test_unparseable_formula_reason(domain):
    assert domain.check("NaCl)") and domain.check_many(["NaCl", "NaCl)"])[0] == []


def test_round_trip(domain, tmp_path):
    np.savez_compressed(tmp_path / "d.npz", **domain.to_arrays())
    with np.load(tmp_path / "d.npz") as z:
        back = Domain.from_arrays(dict(z))
    for f in ["H999", "CsCl", "NaKMgCaO4", "NaCl"]:
        assert back.check(f, std=0.2) == domain.check(f, std=0.2)

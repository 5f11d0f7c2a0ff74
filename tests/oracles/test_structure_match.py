"""StructureMatcher judging of proposed structures and the recovery scores, on hand-made structures."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from oracles.structure_match import (
    DEFAULT_TOLERANCES,
    breakdown,
    energy_gap,
    energy_order,
    first_match_rank,
    match_all,
    match_structure,
    recovery_summary,
)


def rocksalt(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl_type(a: float = 3.3, species=("Na", "Cl")) -> Structure:
    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("F-43m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_default_tolerances_are_pymatgens() -> None:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher()
    assert (sm.ltol, sm.stol, sm.angle_tol) == (DEFAULT_TOLERANCES["ltol"], DEFAULT_TOLERANCES["stol"], 5.0)


def test_rattled_and_strained_copy_matches() -> None:
    ref = rocksalt()
    copy = ref.copy()
    copy.make_supercell([2, 1, 1])  # another cell of the same crystal
    rng = np.random.default_rng(0)
    copy.perturb(0.05, min_distance=0.02)  # rattle every site by 0.02-0.05 Å
    copy.apply_strain([0.03, -0.02, 0.01])  # strained cell
    copy.scale_lattice(copy.volume * 1.12)  # a potential's different lattice constant
    copy.translate_sites(list(range(len(copy))), rng.normal(0, 0.01, 3), frac_coords=True)
    res = match_structure(copy, ref)
    assert res.match and res.rms is not None and res.rms < 0.1 and res.reason is None


def test_different_prototype_does_not_match() -> None:
    ref = rocksalt()
    for other in (cscl_type(), zincblende()):
        res = match_structure(other, ref)
        assert not res.match and res.rms is None
    # same prototype, other composition: no match, with a reason
    res = match_structure(rocksalt(species=("K", "Cl")), ref)
    assert not res.match and "composition" in res.reason
    assert match_structure(None, ref).reason == "no structure"


def test_ranks_energy_order_and_gap() -> None:
    ref = rocksalt()
    cands = [cscl_type(), None, rocksalt(5.9)]
    matched = [m.match for m in match_all(cands, ref)]
    assert matched == [False, False, True]
    assert first_match_rank(matched) == 3
    energies = [-3.1, None, -3.3]  # eV/atom; the failed trial has none
    order = energy_order(energies)
    assert order == [2, 0, 1]
    assert first_match_rank(matched, order) == 1
    assert first_match_rank([False, False]) is None
    assert energy_gap(energies, -3.35) == pytest.approx(0.05)
    assert energy_gap([None, float("nan")], -3.0) is None
    assert energy_gap([-1.0], None) is None


def test_recovery_summary_by_hand() -> None:
    ranks = [1, 3, None, 2, None]
    gaps = [0.0, 0.02, 0.3, None, -0.05]
    s = recovery_summary(ranks, gaps, ks=(1, 3))
    assert s.n == 5
    assert s.n_matched_at == {1: 1, 3: 3}
    assert s.match_at[1] == pytest.approx(0.2) and s.match_at[3] == pytest.approx(0.6)
    g = s.energy_gap
    assert g["n"] == 4 and g["median"] == pytest.approx(0.01) and g["mean"] == pytest.approx(0.0675)
    assert (
        g["le_0"] == pytest.approx(0.5) and g["le_0.05"] == pytest.approx(0.75) and g["le_0.1"] == pytest.approx(0.75)
    )
    recs = [{"nel": n, "rank_energy": r, "energy_gap": x} for n, r, x in zip([2, 2, 3, 3, 3], ranks, gaps, strict=True)]
    b = breakdown(recs, "nel")
    assert b["2"]["n"] == 2 and b["2"]["match_at"][1] == pytest.approx(0.5) and b["2"]["match_at"][3] == 1.0
    assert b["3"]["n_matched_at"] == {1: 0, 3: 1}

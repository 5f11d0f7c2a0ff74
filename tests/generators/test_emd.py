"""EMD (mod_petti) of generators.emd equals the ElMD package's value (ElMD is used here only)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from generators.emd import MOD_PETTI, EMDIndex, cumulative_vectors, emd, emd_dense

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from ElMD import ElMD

# Elements H..Pu that occur in real compounds (noble gases kept: ElMD places them too).
ELEMENTS = [s for s in MOD_PETTI if s not in {"D", "T"}][:94]


def _random_formulas(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        els = rng.choice(ELEMENTS, size=k, replace=False)
        counts = rng.integers(1, 9, size=k)
        out.append("".join(f"{e}{c}" for e, c in zip(els, counts, strict=True)))
    return out


def test_mod_petti_table_matches_elmd() -> None:
    el = ElMD("H", metric="mod_petti")
    for s, v in MOD_PETTI.items():
        assert el.petti_lookup[s] == v


def test_pairwise_equals_elmd_on_thousands_of_pairs() -> None:
    a = _random_formulas(3000, seed=1)
    b = _random_formulas(3000, seed=2)
    ref = np.array([ElMD(x, metric="mod_petti").elmd(ElMD(y, metric="mod_petti")) for x, y in zip(a, b, strict=True)])
    ours = np.array([emd(x, y) for x, y in zip(a, b, strict=True)])
    assert np.abs(ours - ref).max() < 1e-9
    assert ref.max() > 10  # the pairs are not trivially close


def test_index_and_dense_equal_elmd_matrix() -> None:
    lib = _random_formulas(1500, seed=3) + ["NaCl", "Na2Cl2", "SrTiO3"]
    queries = _random_formulas(6, seed=4) + ["NaCl"]
    index = EMDIndex.from_formulas(lib)
    fast = index.distances(queries)
    dense = emd_dense(cumulative_vectors(queries), cumulative_vectors(lib))
    lib_e = [ElMD(x, metric="mod_petti") for x in lib]
    ref = np.array([[ElMD(q, metric="mod_petti").elmd(y) for y in lib_e] for q in queries])
    assert fast.shape == (len(queries), len(lib))
    assert np.abs(fast - ref).max() < 1e-9
    assert np.abs(dense - ref).max() < 1e-9
    # NaCl is at distance 0 from itself and from its non-reduced form
    assert fast[-1, -3] == pytest.approx(0.0, abs=1e-12)
    assert fast[-1, -2] == pytest.approx(0.0, abs=1e-12)


def test_nearest_returns_sorted_neighbours() -> None:
    lib = ["NaCl", "KCl", "MgO", "SrTiO3", "CaTiO3", "LiF"]
    idx, d = EMDIndex.from_formulas(lib).nearest("BaTiO3", k=3)
    assert [lib[i] for i in idx[:2]] == ["SrTiO3", "CaTiO3"]
    assert np.all(np.diff(d) >= 0)
    mask = np.array([True, True, True, False, False, True])
    idx2, _ = EMDIndex.from_formulas(lib).nearest("BaTiO3", k=10, mask=mask)
    assert set(idx2) == {0, 1, 2, 5}


def test_unknown_element_is_rejected() -> None:
    with pytest.raises(ValueError):
        emd("NaCl", "Og2")

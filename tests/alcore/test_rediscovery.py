"""Rediscovery scores (alcore.rediscovery) on a hand-made example, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alcore.rediscovery import (
    CRITERIA,
    GapCriterion,
    base_rate,
    count_members,
    filter_scores,
    has_c_and_h,
    mean_sd,
    rediscovery_curve,
    score_list,
)

#: The hidden set: formula -> DFT gap (eV); None = hidden but no gap known.
HIDDEN = {
    "LiF": 8.7,  # >= 4, >= 3
    "MgF2": 6.8,  # >= 4, >= 3
    "AlN": 4.2,  # >= 4, >= 3
    "ZnO": 3.4,  # >= 3 only
    "GaAs": 1.6,  # window (lower edge inclusive)
    "CdTe": 1.5,  # none
    "H4CF": 7.0,  # >= 4, C and H
    "FeNi": None,  # real, no gap
}


def test_gap_criteria_edges() -> None:
    ge4, ge3, window = CRITERIA
    assert ge4.meets(4.0) and not ge4.meets(3.99) and not ge4.meets(None) and not ge4.meets(math.nan)
    assert window.meets(1.6) and window.meets(3.0) and not window.meets(3.01) and not window.meets(1.59)
    assert ge3.meets(3.4)


def test_score_list_by_hand() -> None:
    # ranked list; "LiF" repeated at rank 4 is dropped (each formula ranked once)
    proposals = ["LiF", "NaCl2", "ZnO", "LiF", "H4CF", "FeNi", "GaAs", "AlN", "KXe", "H2C"]
    rows = score_list(proposals, HIDDEN, ks=(2, 4, 8, 20), ceiling=5, rate=0.05)
    by_k = {r["k"]: r for r in rows}
    # top 2: LiF, NaCl2 -> 1 rediscovery >= 4 eV; precision 1/2; recall 1/5; DAF 0.5 / 0.05 = 10
    assert by_k[2]["rediscoveries"] == {"ge4": 1, "ge3": 1, "window": 0}
    assert by_k[2]["precision"] == pytest.approx(0.5)
    assert by_k[2]["recall"] == pytest.approx(0.2)
    assert by_k[2]["daf"] == pytest.approx(10.0)
    assert by_k[2]["real"] == 1 and by_k[2]["n_systems"] == 2 and by_k[2]["ch_share"] == 0.0
    # top 4: LiF, NaCl2, ZnO, H4CF -> >=4: LiF, H4CF (2); >=3: +ZnO (3); real 3; one C+H of 4
    assert by_k[4]["rediscoveries"] == {"ge4": 2, "ge3": 3, "window": 0}
    assert by_k[4]["precision"] == pytest.approx(0.5)
    assert by_k[4]["real"] == 3
    assert by_k[4]["ch_share"] == pytest.approx(0.25)
    # top 8: + FeNi (real, no gap), GaAs (window), AlN (>= 4), KXe
    assert by_k[8]["rediscoveries"] == {"ge4": 3, "ge3": 4, "window": 1}
    assert by_k[8]["precision"] == pytest.approx(3 / 8)
    assert by_k[8]["recall"] == pytest.approx(3 / 5)
    assert by_k[8]["daf"] == pytest.approx((3 / 8) / 0.05)
    assert by_k[8]["real"] == 6
    # K beyond the list: 9 distinct proposals; precision still divides by K
    assert by_k[20]["n_proposed"] == 9
    assert by_k[20]["precision"] == pytest.approx(3 / 20)
    assert by_k[20]["ch_share"] == pytest.approx(2 / 9)  # H4CF and H2C
    # no ceiling / no base rate -> NaN, never a made-up number
    bare = score_list(proposals, HIDDEN, ks=(4,))[0]
    assert math.isnan(bare["recall"]) and math.isnan(bare["daf"])
    with pytest.raises(ValueError, match="primary"):
        score_list(proposals, HIDDEN, primary="ge5")


def test_base_rate_count_members_and_curve() -> None:
    pool = ["LiF", "MgF2", "ZnO", "NaCl2", "KXe", "LiF", "CdTe", "AlN", "BN2", "SiC3"]
    ge4 = CRITERIA[0]
    # 9 distinct, 3 hidden with >= 4 eV (LiF, MgF2, AlN)
    assert count_members(pool, HIDDEN, ge4) == 3
    assert base_rate(pool, HIDDEN, ge4) == pytest.approx(3 / 9)
    assert math.isnan(base_rate([], HIDDEN, ge4))
    curve = rediscovery_curve(["KXe", "LiF", "LiF", "ZnO", "AlN"], HIDDEN, ge4, k_max=10)
    assert curve.tolist() == [0, 1, 1, 2]
    assert count_members(["GaAs", "CdTe", "ZnO"], HIDDEN, GapCriterion("w", 1.5, 1.6)) == 2


def test_helpers() -> None:
    assert has_c_and_h("H4CF") and has_c_and_h("CH4") and not has_c_and_h("CF4") and not has_c_and_h("??")
    m, s = mean_sd([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and s == pytest.approx(1.0)
    assert mean_sd([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_sd([float("nan")]))
    assert np.isfinite(mean_sd([1.0, float("nan"), 3.0])[1])


def test_filter_scores_by_hand() -> None:
    gaps = {"MgO": 7.0, "NaCl": 5.0, "CaO": None, "GaAs": 1.4}
    top = ["MgO", "Li3N", "NaCl", "CaO", "GaAs", "ZnO2", "MgO"]  # repeats count once
    kept = ["MgO", "CaO", "ZnO2"]
    s = filter_scores(top, kept, gaps)
    assert (s["n_top"], s["n_kept"]) == (6, 3)
    assert (s["real_top"], s["real_kept"]) == (4, 2)  # MgO, NaCl, CaO, GaAs; kept: MgO, CaO
    assert (s["red_top"], s["red_kept"]) == (2, 1)  # >= 4 eV: MgO, NaCl; kept: MgO
    assert s["real_share_top"] == pytest.approx(4 / 6) and s["real_share_kept"] == pytest.approx(2 / 3)
    assert s["real_retained"] == 0.5 and s["other_retained"] == 0.5  # ZnO2 of Li3N, ZnO2
    empty = filter_scores(["Li3N"], [], gaps)
    assert empty["n_kept"] == 0 and math.isnan(empty["real_share_kept"]) and math.isnan(empty["real_retained"])
    with pytest.raises(ValueError, match="not in the judged top"):
        filter_scores(["MgO"], ["NaCl"], gaps)

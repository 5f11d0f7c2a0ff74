"""Screening by the judges (alcore.judged_screening): probabilities by hand, ranking and ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from alcore.errors import ConfigError
from alcore.judged_screening import RULES, SOFT_STD, judged_scores, p_at_least, rank_by


def test_p_at_least_is_the_gaussian_tail_and_nan_gives_zero() -> None:
    p = p_at_least(np.array([5.0, 4.0, 3.0, np.nan]), np.array([0.5, 1.0, 0.5, np.nan]), 4.0)
    assert p == pytest.approx([norm.sf(-2.0), 0.5, norm.sf(2.0), 0.0])


def test_judged_scores_by_hand() -> None:
    gap_mean, gap_std = np.array([6.0, 6.0, 6.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0])
    eform_mean, eform_std = np.array([-2.0, -2.0, 0.5, -2.0]), np.array([0.1, 0.1, 0.1, 0.1])
    hull = np.array([-2.25, -1.5, 0.0, -2.0])  # hull formation energy at each composition (eV/atom)
    hull_pool = hull - np.array([0.0, 0.8, 0.0, 0.0])  # a rival candidate lowers the second's hull
    s = judged_scores(gap_mean, gap_std, eform_mean, eform_std, hull, hull_pool, target=4.0, e_hull_max=0.1)
    assert set(s) == set(RULES)
    p_wide = norm.sf((4.0 - gap_mean) / gap_std)
    assert s["p-wide"] == pytest.approx(p_wide)
    assert s["p-wide-eform"] == pytest.approx(p_wide * norm.cdf((0.0 - eform_mean) / eform_std))
    # P(E_form <= hull + 0.1): the first sits 0.25 above its hull (0.15 over the threshold), the second below
    p_hull = norm.cdf((hull + 0.1 - eform_mean) / eform_std)
    assert s["p-wide-hull"] == pytest.approx(p_wide * p_hull)
    assert s["p-wide-hull"][1] > 0.9 * p_wide[1] and s["p-wide-hull"][0] < 0.5 * p_wide[0]
    assert s["p-wide-onhull"] == pytest.approx(p_wide * norm.cdf((hull - eform_mean) / eform_std))
    assert s["p-wide-hull-pool"] == pytest.approx(p_wide * norm.cdf((hull_pool + 0.1 - eform_mean) / eform_std))
    assert s["p-wide-hull-pool"][1] < 0.05 * s["p-wide-hull"][1]  # -2.0 is 0.2 above the lowered hull + 0.1
    soft = np.sqrt(eform_std**2 + SOFT_STD**2)
    assert s["p-wide-hull-soft"] == pytest.approx(p_wide * norm.cdf((hull + 0.1 - eform_mean) / soft))
    assert s["p-wide-hull"][0] < s["p-wide-hull-soft"][0] < p_wide[0]  # more spread, less certainty
    # the third is unstable against its elements: no rule but p-wide keeps it
    assert s["p-wide-eform"][2] < 1e-3 * p_wide[2] and s["p-wide-hull"][2] < 1e-3 * p_wide[2]


def test_judged_scores_reject_mismatched_shapes() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        judged_scores(np.zeros(3), np.ones(3), np.zeros(3), np.ones(2), np.zeros(3), np.zeros(3))


def test_rank_by_breaks_ties_by_the_second_key_then_formula() -> None:
    formulas = ["C", "A", "B", "D"]
    order = rank_by(np.array([1.0, 1.0, 1.0, np.nan]), np.array([5.0, 7.0, 7.0, 9.0]), formulas)
    assert [formulas[i] for i in order] == ["A", "B", "C", "D"]

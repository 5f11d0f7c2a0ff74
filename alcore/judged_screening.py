"""Screening a pool by the project's judges: band-gap oracle and composition-level stability.

Plain screening ranks a pool by the band-gap oracle's mean alone. The rules here weigh the
probability that a formula meets the band-gap target by the probability that it is a stable
compound, both from composition only (no structure), so that they can rank a whole pool:

* ``p-wide``: P(gap >= ``target``) under the oracle ensemble's Gaussian (mean, std in eV);
* ``p-wide-eform``: ``p-wide`` * P(E_form < 0) under the formation-energy ensemble (eV/atom);
* ``p-wide-hull``: ``p-wide`` * P(E_hull <= ``e_hull_max``): the predicted E_form against the
  convex hull of the known competing phases at the formula's composition (``hull`` eV/atom, 0 when
  only the elements are known), i.e. P(E_form <= hull + ``e_hull_max``).

Ties (e.g. many formulas at P = 1) are broken by the oracle's mean gap, then by formula. Pure:
predictions come in as arrays. Unit tests: ``tests/alcore/test_judged_screening.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcore.errors import ConfigError
from alcore.plausibility import p_feasible

#: The rules, in the order they were registered (docs/rediscovery.md, "Screening by the judges").
RULES: tuple[str, ...] = ("p-wide", "p-wide-eform", "p-wide-hull")


def p_at_least(mean: np.ndarray, std: np.ndarray, threshold: float) -> np.ndarray:
    """P(X >= ``threshold``) for Gaussian predictions ``mean``, ``std`` (n,); NaN means give 0."""
    mean = np.asarray(mean, dtype=np.float64)
    p_below = p_feasible(mean, std, threshold)
    return np.where(np.isfinite(mean), 1.0 - p_below, 0.0)


def judged_scores(
    gap_mean: np.ndarray,
    gap_std: np.ndarray,
    eform_mean: np.ndarray,
    eform_std: np.ndarray,
    hull: np.ndarray,
    target: float = 4.0,
    e_hull_max: float = 0.1,
) -> dict[str, np.ndarray]:
    """Each rule of :data:`RULES` -> (n,) scores in [0, 1] for n formulas: band gaps in eV, formation
    energies and ``hull`` (the hull's formation energy at each composition) in eV/atom."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (gap_mean, gap_std, eform_mean, eform_std, hull)]
    if len({a.shape for a in arrays}) != 1:
        raise ConfigError(f"judged_scores: every input must have one shape, got {[a.shape for a in arrays]}")
    gm, gs, em, es, h = arrays
    p_wide = p_at_least(gm, gs, target)
    p_form = p_feasible(em, es, 0.0)
    p_hull = np.where(np.isfinite(h), p_feasible(em, es, np.nan_to_num(h) + e_hull_max), 0.0)
    return {"p-wide": p_wide, "p-wide-eform": p_wide * p_form, "p-wide-hull": p_wide * p_hull}


def rank_by(scores: np.ndarray, tiebreak: np.ndarray, formulas: Sequence[str]) -> list[int]:
    """Indices best first: by ``scores`` descending, then ``tiebreak`` descending (NaN last in both),
    then formula."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    t = np.where(np.isfinite(tiebreak), tiebreak, -np.inf)
    return sorted(range(len(formulas)), key=lambda i: (-s[i], -t[i], formulas[i]))

"""Screening a pool by the project's judges: band-gap oracle and composition-level stability.

Plain screening ranks a pool by the band-gap oracle's mean alone. The rules here weigh the
probability that a formula meets the band-gap target by the probability that it is a stable
compound, both from composition only (no structure), so that they can rank a whole pool:

* ``p-wide``: P(gap >= ``target``) under the oracle ensemble's Gaussian (mean, std in eV);
* ``p-wide-eform``: ``p-wide`` * P(E_form < 0) under the formation-energy ensemble (eV/atom);
* ``p-wide-hull``: ``p-wide`` * P(E_hull <= ``e_hull_max``): the predicted E_form against the
  convex hull of the known competing phases at the formula's composition (``hull`` eV/atom, 0 when
  only the elements are known), i.e. P(E_form <= hull + ``e_hull_max``).

Second round (registered after the first was measured; chosen the same way, docs/rediscovery.md):

* ``p-wide-onhull``: as ``p-wide-hull`` with ``e_hull_max`` 0 (on the hull);
* ``p-wide-hull-pool``: as ``p-wide-hull``, the hull also built from the *other* pool members'
  predicted E_form (``hull_pool``): candidates of one chemical system compete with each other;
* ``p-wide-hull-soft``: as ``p-wide-hull`` with :data:`SOFT_STD`, the typical error of a
  composition-only formation-energy model, added in quadrature to the E_form std (an ensemble's
  spread underestimates the error).

Ties (e.g. many formulas at P = 1) are broken by the oracle's mean gap, then by formula. Pure:
predictions come in as arrays. Unit tests: ``tests/alcore/test_judged_screening.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcore.errors import ConfigError
from alcore.plausibility import p_feasible

#: The rules, in the order they were registered (docs/rediscovery.md, "Screening by the judges").
RULES: tuple[str, ...] = (
    "p-wide",
    "p-wide-eform",
    "p-wide-hull",
    "p-wide-onhull",
    "p-wide-hull-pool",
    "p-wide-hull-soft",
)
#: E_form error (eV/atom) added in quadrature by ``p-wide-hull-soft`` (fixed before any measurement of it).
SOFT_STD = 0.1


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
    hull_pool: np.ndarray,
    target: float = 4.0,
    e_hull_max: float = 0.1,
) -> dict[str, np.ndarray]:
    """Each rule of :data:`RULES` -> (n,) scores in [0, 1] for n formulas: band gaps in eV, formation
    energies, ``hull`` (the known phases' hull formation energy at each composition) and
    ``hull_pool`` (the same with the other pool members' predicted E_form) in eV/atom."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (gap_mean, gap_std, eform_mean, eform_std, hull, hull_pool)]
    if len({a.shape for a in arrays}) != 1:
        raise ConfigError(f"judged_scores: every input must have one shape, got {[a.shape for a in arrays]}")
    gm, gs, em, es, h, hp = arrays

    def below(ceiling: np.ndarray, std: np.ndarray) -> np.ndarray:
        """P(E_form <= ceiling); 0 where the ceiling is unknown."""
        return np.where(np.isfinite(ceiling), p_feasible(em, std, np.nan_to_num(ceiling)), 0.0)

    p_wide = p_at_least(gm, gs, target)
    soft = np.sqrt(np.nan_to_num(es) ** 2 + SOFT_STD**2)
    return {
        "p-wide": p_wide,
        "p-wide-eform": p_wide * p_feasible(em, es, 0.0),
        "p-wide-hull": p_wide * below(h + e_hull_max, es),
        "p-wide-onhull": p_wide * below(h, es),
        "p-wide-hull-pool": p_wide * below(hp + e_hull_max, es),
        "p-wide-hull-soft": p_wide * below(h + e_hull_max, soft),
    }


def rank_by(scores: np.ndarray, tiebreak: np.ndarray, formulas: Sequence[str]) -> list[int]:
    """Indices best first: by ``scores`` descending, then ``tiebreak`` descending (NaN last in both),
    then formula."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    t = np.where(np.isfinite(tiebreak), tiebreak, -np.inf)
    return sorted(range(len(formulas)), key=lambda i: (-s[i], -t[i], formulas[i]))

"""Is a composition a plausible inorganic solid, and how do we spread a batch over chemistries?

Pure helpers of the continuous loop's decode-then-select step (issue 20):

* :func:`is_organic` / :data:`ORGANIC`: both C and H present, a molecular/organic composition
  (H8CF6, BH3CNF3), not an inorganic solid; the validity rule ``reject_organic`` uses it;
* :func:`p_feasible`: the probability that the formation energy is below a threshold (default
  0 eV/atom) under a Gaussian with the E_form ensemble's mean and std;
* :func:`chemical_system` and :func:`anion_family`: the groups the batch diversity cap counts;
* :func:`group_cap`: how many picks of a batch of ``q`` one group may take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.stats import norm

from alcore.composition import reduced_counts
from alcore.errors import ConfigError

#: Rejection reason of the organic/molecular rule.
ORGANIC = "organic/molecular composition (contains both C and H)"

#: Smallest std used by :func:`p_feasible` (eV/atom): a zero-spread ensemble gives a step function.
MIN_STD = 1e-6


def is_organic(formula: str) -> bool:
    """True when the composition holds both carbon and hydrogen (an organic or molecular compound)."""
    elements = {el for el, _ in reduced_counts(formula)}
    return "C" in elements and "H" in elements


def p_feasible(mean: np.ndarray, std: np.ndarray, threshold: float | np.ndarray = 0.0) -> np.ndarray:
    """P(E_form < ``threshold``) for Gaussian predictions: Phi((threshold - mean) / std) (``threshold``
    a number or one per prediction).

    ``mean`` and ``std`` (n,) in eV/atom (std floored at :data:`MIN_STD`); returns (n,) in [0, 1].
    Decreasing in ``mean``; in ``std`` it decreases when ``mean < threshold`` and increases when
    ``mean > threshold`` (more spread, less certainty either way). NaN predictions give 0.
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != std.shape:
        raise ConfigError(f"p_feasible: mean {mean.shape} and std {std.shape} must have the same shape")
    p = norm.cdf((threshold - mean) / np.maximum(np.nan_to_num(std, nan=MIN_STD), MIN_STD))
    return np.where(np.isfinite(mean), p, 0.0)


@lru_cache(maxsize=200_000)
def chemical_system(formula: str) -> str:
    """The chemical system of a formula: its elements sorted and joined by ``-`` (``F-Li``)."""
    return "-".join(sorted(el for el, _ in reduced_counts(formula)))


@lru_cache(maxsize=200_000)
def anion_family(formula: str) -> str:
    """The anion family: the most electronegative element of the composition (Pauling scale; an
    element without a Pauling value counts as 0), e.g. ``F`` for LiBF4, ``O`` for MgAl2O4."""
    from pymatgen.core import Element

    def chi(symbol: str) -> float:
        x = Element(symbol).X
        return 0.0 if x is None or not math.isfinite(x) else float(x)

    return max((el for el, _ in reduced_counts(formula)), key=lambda el: (chi(el), el))


def group_cap(share: float, q: int) -> int:
    """Picks one group may take in a batch of ``q``: ``max(1, floor(share * q))`` (``share`` in (0, 1];
    1 means no cap)."""
    if not 0 < share <= 1:
        raise ConfigError(f"a diversity share must be in (0, 1], got {share}")
    return max(1, int(math.floor(share * q + 1e-9)))


def count_groups(formulas: Sequence[str]) -> dict[str, int]:
    """Distinct chemical systems and anion families among ``formulas``: ``{"n_systems", "n_anions"}``."""
    return {
        "n_systems": len({chemical_system(f) for f in formulas}),
        "n_anions": len({anion_family(f) for f in formulas}),
    }

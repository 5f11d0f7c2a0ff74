"""Scores of the hold-out rediscovery benchmark: how many hidden real materials a ranked list finds.

A route of the pipeline yields a ranked list of novel proposals (formulas, best first). The hidden
set H (formulas of the hidden chemical systems, :mod:`alcore.holdout`) comes with DFT band gaps
where known (eV; max over polymorphs). Per cut-off K of the list:

* ``rediscoveries[c]``: proposals among the top K that are in H with a gap meeting criterion ``c``
  (default ``ge4`` = gap >= 4 eV, ``ge3`` >= 3 eV, ``window`` 1.6-3.0 eV inclusive);
* ``precision = rediscoveries[primary] / K`` (K, not the list length: a list shorter than K is
  not rewarded for stopping early);
* ``recall = rediscoveries[primary] / ceiling`` where ``ceiling`` is the number of H's members
  meeting the primary criterion that the route's candidate set (the pool) can express at all;
* ``real``: top-K proposals in H whatever their gap (is the proposal a known real compound?);
* ``daf = precision / base_rate``: the discovery acceleration factor over random proposals, whose
  expected precision is ``base_rate`` (e.g. the share of H's wide-gap members in the pool);
* ``ch_share``: share of the top K that contain both C and H (molecular/organic compositions);
* ``n_systems``: distinct chemical systems among the top K.

Everything here is pure: lists in, numbers out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alcore.composition import reduced_counts
from alcore.errors import InvalidFormulaError
from alcore.holdout import chemical_system

KS: tuple[int, ...] = (50, 100, 500)


@dataclass(frozen=True)
class GapCriterion:
    """A band-gap class of hidden materials: ``lo <= gap`` and, if ``hi`` is set, ``gap <= hi`` (eV)."""

    name: str
    lo: float
    hi: float | None = None

    def meets(self, gap: float | None) -> bool:
        """Whether a DFT gap (eV; None or NaN = unknown) falls in this class."""
        if gap is None or not np.isfinite(gap):
            return False
        return gap >= self.lo and (self.hi is None or gap <= self.hi)


CRITERIA: tuple[GapCriterion, ...] = (
    GapCriterion("ge4", 4.0),
    GapCriterion("ge3", 3.0),
    GapCriterion("window", 1.6, 3.0),
)


def distinct(proposals: Iterable[str]) -> list[str]:
    """The proposals with repeats removed, first occurrence kept (a ranked list ranks each formula once)."""
    return list(dict.fromkeys(proposals))


def has_c_and_h(formula: str) -> bool:
    """Whether the formula contains both carbon and hydrogen (a molecular/organic composition);
    False for an unparsable formula."""
    try:
        elements = {s for s, _ in reduced_counts(formula)}
    except InvalidFormulaError:
        return False
    return {"C", "H"} <= elements


def _system(formula: str) -> str:
    try:
        return chemical_system(formula)
    except InvalidFormulaError:
        return formula


def count_members(formulas: Iterable[str], hidden_gaps: Mapping[str, float | None], criterion: GapCriterion) -> int:
    """How many distinct ``formulas`` are hidden (keys of ``hidden_gaps``) with a gap meeting ``criterion``."""
    return sum(1 for f in set(formulas) if f in hidden_gaps and criterion.meets(hidden_gaps[f]))


def base_rate(population: Sequence[str], hidden_gaps: Mapping[str, float | None], criterion: GapCriterion) -> float:
    """Expected precision of a uniformly random proposal from ``population`` (distinct formulas):
    the share that is hidden and meets ``criterion``; NaN for an empty population."""
    pop = set(population)
    return count_members(pop, hidden_gaps, criterion) / len(pop) if pop else float("nan")


def score_list(
    proposals: Sequence[str],
    hidden_gaps: Mapping[str, float | None],
    ks: Sequence[int] = KS,
    criteria: Sequence[GapCriterion] = CRITERIA,
    primary: str = "ge4",
    ceiling: int | None = None,
    rate: float | None = None,
) -> list[dict[str, Any]]:
    """Score a ranked list of proposals (best first; repeats removed) at each K in ``ks``.

    ``hidden_gaps`` maps every hidden formula to its DFT gap in eV (None/NaN where unknown: still
    "real", never a rediscovery); ``ceiling`` is the number of primary-criterion hidden members the
    route could propose (recall's denominator; None -> recall NaN); ``rate`` the base rate of random
    proposals (DAF's denominator; None or 0 -> DAF NaN). Returns one dict per K with ``k``,
    ``n_proposed`` (<= K), ``rediscoveries`` ({criterion: count}), ``precision``, ``recall``,
    ``real``, ``daf``, ``ch_share``, ``n_systems``. Raises ``ValueError`` for an unknown ``primary``.
    """
    names = [c.name for c in criteria]
    if primary not in names:
        raise ValueError(f"primary criterion {primary!r} is not one of {names}")
    ranked = distinct(proposals)
    out = []
    for k in ks:
        top = ranked[:k]
        red = {c.name: count_members(top, hidden_gaps, c) for c in criteria}
        precision = red[primary] / k
        out.append(
            {
                "k": int(k),
                "n_proposed": len(top),
                "rediscoveries": red,
                "precision": precision,
                "recall": red[primary] / ceiling if ceiling else float("nan"),
                "real": sum(1 for f in top if f in hidden_gaps),
                "daf": precision / rate if rate else float("nan"),
                "ch_share": float(np.mean([has_c_and_h(f) for f in top])) if top else float("nan"),
                "n_systems": len({_system(f) for f in top}),
            }
        )
    return out


def rediscovery_curve(
    proposals: Sequence[str], hidden_gaps: Mapping[str, float | None], criterion: GapCriterion, k_max: int
) -> np.ndarray:
    """(min(k_max, n),) int array: rediscoveries@K for K = 1..k_max of a ranked list (for plots)."""
    top = distinct(proposals)[:k_max]
    return np.cumsum([1 if f in hidden_gaps and criterion.meets(hidden_gaps[f]) else 0 for f in top], dtype=np.int64)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite ``values``;
    (NaN, NaN) if none is finite."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def filter_scores(
    top: Sequence[str],
    kept: Iterable[str],
    hidden_gaps: Mapping[str, float | None],
    criterion: GapCriterion = CRITERIA[0],
) -> dict[str, Any]:
    """What a filter (e.g. the stability judge) does to the top of a ranked list: ``top`` (the
    judged proposals, best first) and ``kept`` (those that passed; must be a subset of ``top``).

    Returns ``n_top``/``n_kept``, ``real_top``/``real_kept`` (proposals in H at all),
    ``red_top``/``red_kept`` (in H and meeting ``criterion``), the real share before and after
    (``real_share_top``/``real_share_kept``; NaN for an empty list), ``real_retained`` (share of the
    real ones the filter keeps) and ``other_retained`` (share of the rest it keeps; a filter that
    knows real materials keeps more of the first than of the second). Raises ``ValueError`` if a
    kept formula is not in ``top``.
    """
    ranked = distinct(top)
    keep = set(kept)
    if not keep <= set(ranked):
        raise ValueError(f"kept formulas not in the judged top: {sorted(keep - set(ranked))[:5]}")
    real = [f for f in ranked if f in hidden_gaps]
    other = [f for f in ranked if f not in hidden_gaps]

    def share(num: int, den: int) -> float:
        return num / den if den else float("nan")

    n_kept = sum(f in keep for f in ranked)
    real_kept = sum(f in keep for f in real)
    return {
        "n_top": len(ranked),
        "n_kept": n_kept,
        "real_top": len(real),
        "real_kept": real_kept,
        "red_top": count_members(ranked, hidden_gaps, criterion),
        "red_kept": count_members([f for f in ranked if f in keep], hidden_gaps, criterion),
        "real_share_top": share(len(real), len(ranked)),
        "real_share_kept": share(real_kept, n_kept),
        "real_retained": share(real_kept, len(real)),
        "other_retained": share(n_kept - real_kept, len(other)),
    }

"""Chemical validity of compositions: SMACT charge neutrality + electronegativity, and size limits.

A verdict carries every reason a formula failed, so a candidate stored in MongoDB says why it was
rejected. SMACT's own screening function (``smact.screening.smact_validity``) is the reference
implementation; results are cached per canonical formula because pools repeat formulas.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from alcore.composition import InvalidFormulaError, canonical_formula, reduced_counts
from alcore.plausibility import ORGANIC

#: fewest distinct elements of a band-gap candidate: a compound, not a pure element (issue 19)
BAND_GAP_MIN_ELEMENTS = 2


@dataclass(frozen=True)
class ValidityRules:
    """Limits applied on top of SMACT: ``max_elements`` distinct elements, ``max_atoms`` in the reduced cell.

    ``include_alloys`` follows SMACT (pure-metal compositions count as valid); it is off by default
    because the band-gap search looks for charge-balanced compounds. SMACT calls every pure element
    valid (Ca, Xe, O2) even with ``include_alloys`` off, so a band-gap search sets ``min_elements=2``
    (:data:`BAND_GAP_MIN_ELEMENTS`; the campaign config's default, ``validity.min_elements``). The
    default here stays 1 so that generator metrics (MatGAN's SMACT validity) keep their meaning.
    ``reject_organic`` rejects compositions holding both C and H (organic/molecular, not an inorganic
    solid: :data:`alcore.plausibility.ORGANIC`); off here, on by default in campaign configs (issue 20).
    """

    max_elements: int = 8
    max_atoms: int = 64
    min_elements: int = 1
    include_alloys: bool = False
    use_pauling_test: bool = True
    reject_organic: bool = False


@dataclass(frozen=True)
class Verdict:
    """Validity of one formula: ``valid`` and the list of ``reasons`` it failed (empty if valid)."""

    formula: str
    canonical: str | None
    valid: bool
    reasons: list[str] = field(default_factory=list)


@lru_cache(maxsize=1_000_000)
def _smact_ok(canonical: str, use_pauling_test: bool, include_alloys: bool) -> bool:
    from smact.screening import smact_validity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(smact_validity(canonical, use_pauling_test=use_pauling_test, include_alloys=include_alloys))


def check_validity(formula: str, rules: ValidityRules | None = None) -> Verdict:
    """Check one formula against SMACT charge neutrality/electronegativity and the size limits.

    Takes a formula string and optional :class:`ValidityRules`; returns a :class:`Verdict`. Never
    raises for a bad formula: parse errors become a reason.
    """
    rules = rules or ValidityRules()
    try:
        counts = dict(reduced_counts(formula))
        canonical = canonical_formula(formula)
    except InvalidFormulaError as exc:
        return Verdict(str(formula), None, False, [exc.reason])
    reasons: list[str] = []
    n_el, n_atoms = len(counts), sum(counts.values())
    if n_el > rules.max_elements:
        reasons.append(f"{n_el} elements > max_elements {rules.max_elements}")
    if n_el < rules.min_elements:
        reasons.append(f"{n_el} elements < min_elements {rules.min_elements}")
    if n_atoms > rules.max_atoms:
        reasons.append(f"{n_atoms} atoms > max_atoms {rules.max_atoms}")
    if rules.reject_organic and "C" in counts and "H" in counts:
        reasons.append(ORGANIC)
    if not reasons and not _smact_ok(canonical, rules.use_pauling_test, rules.include_alloys):
        reasons.append(
            "fails SMACT charge neutrality" + (" / electronegativity balance" if rules.use_pauling_test else "")
        )
    return Verdict(formula, canonical, not reasons, reasons)


def check_validity_batch(formulas: Sequence[str], rules: ValidityRules | None = None) -> list[Verdict]:
    """Validity verdicts for many formulas (same order); see :func:`check_validity`."""
    rules = rules or ValidityRules()
    return [check_validity(f, rules) for f in formulas]

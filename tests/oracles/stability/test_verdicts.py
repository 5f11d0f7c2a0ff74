"""Verdict rules on hand-made inputs: each verdict says only what was established."""

from __future__ import annotations

import math

from oracles.stability.verdicts import HULL_TOL, StabilityVerdict, judge


def test_verdicts_are_a_str_enum_stored_as_their_value() -> None:
    assert StabilityVerdict.STABLE == "stable" and str(StabilityVerdict.E_FORM_ONLY) == "e_form_only"
    assert {v.value for v in StabilityVerdict} == {
        "stable",
        "near_hull",
        "unstable",
        "unconverged",
        "e_form_only",
        "failed",
    }


def test_on_the_hull_is_stable_near_it_is_not() -> None:
    assert judge(-1.0, 0.0, True, True, 0.1) == (StabilityVerdict.STABLE, None)
    assert judge(-1.0, HULL_TOL / 2, True, True, 0.1)[0] == StabilityVerdict.STABLE
    v, reason = judge(-1.0, 0.09, True, True, 0.1)
    assert v == StabilityVerdict.NEAR_HULL and "0.090" in reason
    v, reason = judge(-1.0, 0.11, True, True, 0.1)
    assert v == StabilityVerdict.UNSTABLE and "> 0.1" in reason


def test_unconverged_relaxation_gets_no_stability_verdict() -> None:
    # the demo's BH3CNF3: E_hull 0.0898 < 0.1 after 101 unconverged steps was called "stable"
    v, reason = judge(-1.289, 0.0898, False, True, 0.1, steps=101)
    assert v == StabilityVerdict.UNCONVERGED and "101 steps" in reason
    assert judge(-1.0, 0.0, False, True)[0] == StabilityVerdict.UNCONVERGED
    assert judge(0.5, 0.6, False, True)[0] == StabilityVerdict.UNCONVERGED  # no claim either way


def test_no_hull_means_no_stability_verdict() -> None:
    v, reason = judge(-2.1, None, True, False)
    assert v == StabilityVerdict.E_FORM_ONLY and "no hull" in reason
    assert judge(-2.1, 0.0, True, False)[0] == StabilityVerdict.E_FORM_ONLY  # a stray E_hull is ignored
    assert judge(0.2, None, True, False)[0] == StabilityVerdict.UNSTABLE  # above the elements: established


def test_missing_energies_fail() -> None:
    assert judge(math.nan, 0.0, True, True)[0] == StabilityVerdict.FAILED
    assert judge(-1.0, math.nan, True, True)[0] == StabilityVerdict.FAILED
    assert judge(-1.0, None, True, True)[0] == StabilityVerdict.FAILED


def test_an_unphysical_formation_energy_is_a_failed_relaxation() -> None:
    """SevenNet collapsed a pyxtal trial of Li2BH3OF4 to E_form -25.8 eV/atom (demo, issue 21): failed,
    converged or not; the most negative MP formation energy is -4.61 eV/atom, which still passes."""
    for converged in (False, True):
        v, reason = judge(-25.758, 0.0, converged, True, 0.1, steps=100)
        assert v == StabilityVerdict.FAILED and "blew up" in reason
    assert judge(-4.612, 0.0, True, True)[0] == StabilityVerdict.STABLE
    assert judge(-4.612, 0.0, False, True)[0] == StabilityVerdict.UNCONVERGED

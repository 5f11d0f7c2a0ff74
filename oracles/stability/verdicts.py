"""Stability verdicts that say what was established, and the rule that assigns them.

A verdict is only as strong as its evidence:

* ``stable``: the relaxation converged, E_form < 0 and the structure is on the convex hull of every
  competing phase the project knows (E_hull <= :data:`HULL_TOL`).
* ``near_hull``: converged, E_form < 0, 0 < E_hull <= ``e_hull_max`` (metastable by the model;
  what a materials scientist calls "near the hull", not "stable").
* ``unstable``: converged and E_form >= 0 (above the elements) or E_hull > ``e_hull_max``.
* ``unconverged``: the relaxation stopped at its step bound with forces above the tolerance; its
  energies are those of an unfinished relaxation, so no stability claim is made either way.
* ``e_form_only``: converged, E_form < 0, but no hull was computed (``--no-hull``): formation from
  the elements is established, stability against competing phases is not.
* ``failed``: no structure, overlapping atoms, elements the model lacks, a relaxation that raised or
  blew up (including an E_form below :data:`E_FORM_MIN`: no compound is that stable, the potential
  collapsed the structure), or references that could not be computed (the reason says which).
"""

from __future__ import annotations

import math
from enum import StrEnum

#: E_hull (eV/atom) at or below which a structure counts as on the hull (numerical tolerance)
HULL_TOL = 1e-3
#: E_form (eV/atom) below which a relaxation is taken to have blown up: 1.4 eV/atom below the most
#: negative of the 132,752 matbench_mp_e_form formation energies (-4.61, La2Th8O19). Seen with
#: SevenNet on a pyxtal trial with nearly overlapping atoms (E_form -25.8 eV/atom, demo, issue 21).
E_FORM_MIN = -6.0


class StabilityVerdict(StrEnum):
    """The verdict of one relaxed trial structure (see module doc); a ``str``, stored as its value."""

    STABLE = "stable"
    NEAR_HULL = "near_hull"
    UNSTABLE = "unstable"
    UNCONVERGED = "unconverged"
    E_FORM_ONLY = "e_form_only"
    FAILED = "failed"


def judge(
    e_form: float,
    e_hull: float | None,
    converged: bool,
    hull_computed: bool,
    e_hull_max: float = 0.1,
    steps: int | None = None,
) -> tuple[StabilityVerdict, str | None]:
    """The verdict and its reason for a relaxation's results (energies in eV/atom).

    ``e_hull`` is ignored unless ``hull_computed``; ``steps`` only enters the reason of an
    unconverged relaxation. Order of the rules: unphysical E_form (below :data:`E_FORM_MIN`),
    unconverged, no E_form, E_form >= 0, no hull, E_hull on / near / above the hull.
    """
    if e_form is not None and math.isfinite(e_form) and e_form < E_FORM_MIN:
        return StabilityVerdict.FAILED, (
            f"E_form {e_form:.2f} eV/atom is below any known compound (< {E_FORM_MIN}): the relaxation blew up"
        )
    if not converged:
        where = f" in {steps} steps" if steps is not None else ""
        return StabilityVerdict.UNCONVERGED, f"relaxation not converged{where}: no stability verdict"
    if e_form is None or not math.isfinite(e_form):
        return StabilityVerdict.FAILED, "no formation energy"
    if e_form >= 0:
        return StabilityVerdict.UNSTABLE, f"E_form {e_form:+.3f} eV/atom >= 0"
    if not hull_computed:
        return StabilityVerdict.E_FORM_ONLY, "no hull computed: only E_form < 0 is established"
    if e_hull is None or not math.isfinite(e_hull):
        return StabilityVerdict.FAILED, "no E_hull"
    if e_hull <= HULL_TOL:
        return StabilityVerdict.STABLE, None
    if e_hull <= e_hull_max:
        return StabilityVerdict.NEAR_HULL, f"E_hull {e_hull:.3f} eV/atom above the hull (<= {e_hull_max})"
    return StabilityVerdict.UNSTABLE, f"E_hull {e_hull:.3f} eV/atom > {e_hull_max}"

"""Two-tier stability judge: a fast potential relaxes and pre-screens, a stronger one re-relaxes and judges.

:class:`FunnelChecker` has the interface of :class:`oracles.stability.checker.StabilityChecker`
(``evaluate(trial)``, ``evaluate_structure(structure, formula, template_id)``) and returns the same
:class:`~oracles.stability.checker.Verdict`. Tier 1 (CHGNet) relaxes every trial; a trial goes on to tier 2
(SevenNet, starting from the tier-1 structure) unless tier 1 failed it or found it clearly unstable:
E_form >= ``margin`` or E_hull > ``e_hull_max + margin`` (eV/atom). ``margin`` (0.1 eV/atom by
default, fixed before the benchmark) covers the tier-1 model's error. Rejected trials keep the tier-1
verdict (``model`` says which potential judged); survivors carry ``extra["prescreen"]`` with the
tier-1 numbers, and their ``seconds`` are the two relaxations together.
"""

from __future__ import annotations

import math

from pymatgen.core import Structure

from alcore.composition import canonical_formula
from oracles.stability.verdicts import StabilityVerdict

#: eV/atom of tier-1 error tolerated before a trial is rejected without tier 2
FUNNEL_MARGIN = 0.1


class FunnelChecker:
    """``screen`` (fast) then ``judge`` (strong) StabilityCheckers; see module doc."""

    def __init__(self, screen, judge, margin: float = FUNNEL_MARGIN) -> None:
        self.screen = screen
        self.judge = judge
        self.margin = margin
        self.e_hull_max = judge.e_hull_max
        self.model_name = f"funnel:{screen.model_name}->{judge.model_name}"

    def survives(self, v) -> bool:
        """Whether a tier-1 verdict goes on to tier 2 (not failed, not clearly unstable)."""
        if v.verdict == StabilityVerdict.FAILED or v.structure is None:
            return False
        if math.isfinite(v.e_form) and v.e_form >= self.margin:
            return False
        return not (math.isfinite(v.e_hull) and v.e_hull > self.e_hull_max + self.margin)

    def evaluate(self, trial):
        """A Verdict for a :class:`~generators.templates.Trial` (structure may be None)."""
        if trial.structure is None:
            return self.screen.evaluate(trial)
        return self.evaluate_structure(trial.structure, trial.formula, trial.template_id)

    def evaluate_structure(self, structure: Structure, formula: str | None = None, template_id: str = ""):
        """Tier 1 on ``structure``; tier 2 on the tier-1 relaxed structure of a survivor."""
        formula = canonical_formula(formula or structure.composition.reduced_formula)
        first = self.screen.evaluate_structure(structure, formula, template_id)
        tier1 = {
            "model": first.model,
            "verdict": str(first.verdict),
            "e_form": first.e_form,
            "e_hull": first.e_hull,
            "steps": first.steps,
            "converged": first.converged,
            "seconds": first.seconds,
        }
        if not self.survives(first):
            first.extra["funnel"] = f"stopped at tier 1 ({first.model}); margin {self.margin} eV/atom"
            return first
        second = self.judge.evaluate_structure(first.structure, formula, template_id)
        second.seconds += first.seconds
        second.extra["prescreen"] = tier1
        second.extra["funnel"] = f"judged at tier 2 ({second.model}); margin {self.margin} eV/atom"
        return second

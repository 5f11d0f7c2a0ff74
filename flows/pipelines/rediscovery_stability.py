"""The stability filter of the hold-out rediscovery benchmark: the structure stage on the top of the
ranked lists, rebuilt from the visible side of the split.

For the ``top`` proposals of each judged list (:meth:`RediscoveryConfig.stability_lists`), the
structure stage runs as a user would run it, on visible data only (each table leak-checked with
:func:`alcore.holdout.assert_no_leak`):

1. trial structures from the template library without any hidden formula (EMD-nearest
   same-anonymised templates, substituted; pyxtal fallback in the space group of the nearest
   *visible* known composition; :func:`flows.pipelines.structure_recovery.visible_stage`);
2. relaxation and verdict by the configured judge (SevenNet by default);
3. the hull: the judge's formation energy against the MP DFT formation energies of the *visible*
   formulas (Matbench Discovery's protocol: model energies, DFT competing phases); hidden formulas
   never enter it.

A proposal is kept when its best trial (lowest E_hull) is ``stable`` or ``near_hull``. The lists
``<list>+stable`` (kept proposals in the list's order, their E_hull as score) are stored beside the
lists; every trial is a ``structures`` document of the campaign :func:`verdict_campaign` (shared by
every list, config and rerun of the split that judges with the same settings), so a killed run
judges only what is left and a larger ``top`` judges only the new proposals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import numpy as np

from alcore.holdout import HoldoutSplit, assert_no_leak
from alcore.rediscovery import distinct
from flows.logs import flow_logger
from flows.pipelines.rediscovery_config import StabilitySpec
from oracles.stability.hull import MPFormationEnergies

#: Verdicts that keep a proposal (on the hull or within ``e_hull_max`` of it).
KEPT_VERDICTS = ("stable", "near_hull")
STABLE_SUFFIX = "+stable"


def verdict_campaign(split_key: str, spec: StabilitySpec) -> str:
    """The ``structures`` campaign holding a split's verdicts under ``spec``'s judge settings."""
    return f"rediscovery-stability:{split_key}:{spec.judge}:{spec.judge_settings()}"


class VisibleJudge:
    """The structure stage of one split on visible data: template library, fallback index, hull
    phases and the judge (built on first use)."""

    def __init__(self, split: HoldoutSplit, spec: StabilitySpec) -> None:
        self.split = split
        self.spec = spec

    @cached_property
    def stage(self) -> Any:
        """:class:`flows.pipelines.structure_recovery.VisibleStage` (library and fallback index)."""
        from flows.pipelines.structure_recovery import visible_stage

        return visible_stage(self.split)

    @cached_property
    def checker(self) -> Any:
        """The judge, its hull built from the visible MP DFT formation energies only."""
        from oracles.stability.judges import make_checker

        spec = self.spec
        return make_checker(
            spec.judge,
            self.stage.library,
            e_hull_max=spec.e_hull_max,
            fmax=spec.fmax,
            steps=spec.steps,
            mp_phases=VisibleFormationEnergies(self.split),
            model_phases=False,
        )

    def judge(self, campaign: str, formula: str, seed: int) -> list[dict[str, Any]]:
        """Propose and judge ``formula``'s trial structures; their ``structures`` documents. Never
        raises for a bad structure: a failed trial is a ``failed`` verdict with its reason."""
        from flows.pipelines.structures import judge_trial, verdict_doc

        trials = self.stage.propose(formula, self.spec.k_templates, self.spec.fallback_trials, seed)
        return [verdict_doc(campaign, t, judge_trial(self.checker, t)) for t in trials]


class VisibleFormationEnergies(MPFormationEnergies):
    """MP DFT formation energies without ``split``'s hidden formulas; every answer is leak-checked
    (the hull of the stability filter)."""

    def __init__(self, split: HoldoutSplit) -> None:
        super().__init__(exclude=split.is_hidden)
        self.split = split

    def phases(self, elements: Iterable[str]) -> dict[str, float]:
        """``{reduced formula: lowest visible MP E_form (eV/atom)}`` of the phases within ``elements``."""
        out = super().phases(elements)
        assert_no_leak("hull competing phases", out, self.split)
        return out


def best_trials(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per formula, its best judged trial: the lowest finite E_hull among kept-or-not verdicts
    (a trial with no E_hull ranks last; ties by template id)."""
    best: dict[str, dict[str, Any]] = {}

    def key(d: dict[str, Any]) -> tuple[float, str]:
        e = d.get("e_hull")
        return (e if e is not None and np.isfinite(e) else np.inf, str(d.get("template_id")))

    for d in docs:
        f = d["formula"]
        if f not in best or key(d) < key(best[f]):
            best[f] = d
    return best


def stability_stage(run: Any) -> dict[str, Any]:
    """Judge the top of every judged list of ``run`` (a :class:`flows.pipelines.rediscovery.SplitRun`)
    and store the ``<list>+stable`` lists; returns per list the judged and kept counts and the
    verdict counts, and the number of formulas judged in this call."""
    from tqdm import tqdm

    spec: StabilitySpec = run.cfg.stability
    campaign = verdict_campaign(run.key, spec)
    tops = {}
    for name in run.cfg.stability_lists():
        stored = run.load_list(name)
        tops[name] = distinct(stored[0])[: spec.top] if stored is not None else []
    wanted = list(dict.fromkeys(f for top in tops.values() for f in top))
    done = {d["formula"] for d in run.store.structure_verdicts(campaign)}
    todo = [f for f in wanted if f not in done]
    judge = VisibleJudge(run.split, spec)
    for formula in tqdm(todo, desc="stability filter", unit="formula", leave=False):
        run.store.upsert_structures(judge.judge(campaign, formula, run.seed))
    best = best_trials(run.store.structure_verdicts(campaign))
    out = {"campaign": campaign, "judged_now": len(todo), "formulas": len(wanted), "lists": {}}
    for name, top in tops.items():
        kept = [f for f in top if best.get(f, {}).get("verdict") in KEPT_VERDICTS]
        run.save_list(name + STABLE_SUFFIX, kept, [best[f]["e_hull"] for f in kept])
        counts = Counter(best[f]["verdict"] for f in top if f in best)
        out["lists"][name] = {"top": len(top), "kept": len(kept), "verdicts": dict(sorted(counts.items()))}
        flow_logger().info("rediscovery %s stability: %s keeps %d of %d", run.key, name, len(kept), len(top))
    return out

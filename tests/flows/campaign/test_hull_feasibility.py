"""The learned P(E_hull) factor of P(feasible) through the real campaign path (issue 20): structure
verdicts stored for a campaign between two iterations change what the next acquisition records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alcore.plausibility import chemical_system
from flows.campaign import CampaignContext, run_campaign_in
from flows.campaign import faults as campaign_faults
from flows.campaign.context import composition_features
from tests.flows.conftest import pool_config

#: Inorganic compounds on the convex hull (Materials Project), the stable side of the toy verdicts.
STABLE = ["MgO", "Al2O3", "CaTiO3", "SiO2", "ZnS", "GaN", "BaSO4", "SrTiO3", "Y2O3", "KCl"]


def _verdict(campaign: str, formula: str, e_hull: float) -> dict:
    verdict = "stable" if e_hull <= 1e-3 else ("near_hull" if e_hull <= 0.1 else "unstable")
    return {
        "campaign": campaign,
        "formula": formula,
        "template_id": "toy-0",
        "e_form": -1.0,
        "e_hull": e_hull,
        "verdict": verdict,
        "reason": None,
    }


def test_structure_verdicts_give_later_candidates_a_learned_p_hull(store, tiny_ae: Path, prefect_harness, monkeypatch):
    fast = {"q": 2, "beta": 25.0, "num_restarts": 2, "raw_samples": 32, "maxiter": 10, "mc_samples": 32}
    cfg = pool_config(
        tiny_ae,
        "hullc",
        mode="continuous",
        iterations=2,
        oracle="resnet-agd",
        autoencoder="autoencoder_agd87",
        acquisition={**fast, "max_attempts": 15, "hull": {"min_verdicts": 6}},
    )
    unstable: list[str] = []

    def judge_iteration_one(stage: str, when: str, iteration: int) -> None:
        """Between the iterations, the structure stage 'judges' iteration 1's screened decodes unstable."""
        if (stage, when, iteration) != ("fit", "before", 2) or unstable:
            return
        screened = sorted({c["formula"] for c in store.candidates("hullc", 1) if c.get("p_feasible") is not None})
        unstable.extend(screened[:10])
        docs = [_verdict("hullc", f, 0.6) for f in unstable] + [_verdict("hullc", f, 0.0) for f in STABLE]
        docs.append({**_verdict("hullc", "LiF", 0.0), "verdict": "failed", "e_hull": None})  # no E_hull: left out
        store.upsert_structures(docs)

    monkeypatch.setattr(campaign_faults, "STAGE_HOOK", judge_iteration_one)
    result = run_campaign_in(store, cfg)
    assert result["status"] == "finished"
    assert len(unstable) >= 3

    first = store.stage_result("hullc", 1, "acquire")["hull"]
    assert first["kind"] == "off" and "no structure verdicts" in first["note"] and first["threshold"] == 0.1
    for c in store.candidates("hullc", 1):
        if c.get("p_feasible") is not None:  # no model yet: factor 1, and the candidate says why
            assert c["p_hull"] is None and c["p_hull_note"] == first["note"] and c["p_feasible"] == c["p_eform"]

    second = store.stage_result("hullc", 2, "acquire")["hull"]
    assert second["n_verdicts"] == len(unstable) + len(STABLE) and second["n_stable"] == len(STABLE)
    assert second["kind"] == ("logistic" if len(unstable) >= 3 else "knn")
    screened = [c for c in store.candidates("hullc", 2) if c.get("p_feasible") is not None]
    assert screened
    for c in screened:
        assert 0 <= c["p_hull"] <= 1 and c["p_feasible"] == pytest.approx(c["p_eform"] * c["p_hull"])
    # decodes of iteration 2 come from the neighbourhoods of the formulas judged unstable
    assert np.median([c["p_hull"] for c in screened]) < 0.5
    unstable_systems = {chemical_system(f) for f in unstable}
    near = [c for c in screened if c["chemsys"] in unstable_systems]
    assert near and all(c["p_hull"] < 0.5 for c in near), [(c["formula"], c["p_hull"]) for c in near]
    # the same model, rebuilt from the store: an oxide like the stable ones vs a fluoride like the unstable ones
    ctx = CampaignContext(store, cfg, "test")
    p = ctx.hull_model().predict(composition_features(["CaO", "SrThF6"]))
    assert p[0] > 0.5 > p[1], p

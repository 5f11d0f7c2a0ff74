"""The rediscovery benchmark's stability filter: a leak-free hull, the best trial per formula, and a
tiny run (real CHGNet relaxations) that stores the filtered lists and resumes without re-judging."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from alcore.holdout import make_split
from flows.pipelines.rediscovery_stability import VisibleFormationEnergies, best_trials
from tests.flows.pipelines.test_rediscovery import _split_run, write_tiny

UNIVERSE = ["MgO", "SiO2", "Mg2Si", "MgSiO3", "NaCl"]


def _split_hiding_mg_o():
    split = next(
        s
        for s in (make_split(UNIVERSE, "system", 0.2, seed) for seed in range(100))
        if s.is_hidden("MgO") and not s.is_hidden("SiO2")
    )
    return split


def test_the_hull_holds_only_visible_phases_and_checks_its_answers() -> None:
    from alcore.errors import HoldoutLeakError
    from oracles.stability.hull import MPFormationEnergies

    split = _split_hiding_mg_o()
    full = MPFormationEnergies().phases(["Mg", "O", "Si"])
    visible = VisibleFormationEnergies(split).phases(["Mg", "O", "Si"])
    assert "MgO" in full and "SiO2" in full
    assert "SiO2" in visible and "MgO" not in visible and "MgO2" not in visible  # Mg-O is hidden, all of it
    assert set(visible) == {f for f in full if not split.is_hidden(f)}

    leaky = VisibleFormationEnergies(split)
    leaky.exclude = None  # a filter that lets hidden phases through is caught
    with pytest.raises(HoldoutLeakError, match="hull competing phases"):
        leaky.phases(["Mg", "O"])


def test_best_trial_is_the_lowest_finite_e_hull() -> None:
    docs = [
        {"formula": "A", "template_id": "t2", "verdict": "unstable", "e_hull": 0.30},
        {"formula": "A", "template_id": "t1", "verdict": "near_hull", "e_hull": 0.05},
        {"formula": "B", "template_id": "t1", "verdict": "failed", "e_hull": None},
        {"formula": "B", "template_id": "t2", "verdict": "unconverged", "e_hull": float("nan")},
    ]
    best = best_trials(docs)
    assert best["A"]["template_id"] == "t1"
    assert best["B"]["template_id"] == "t1"  # neither has an E_hull: ties by template id


@pytest.fixture
def tiny_stability_config(tmp_path: Path) -> Path:
    """The tiny config with the stability filter (CHGNet, top 2) on plain screening and random order."""
    return write_tiny(
        tmp_path,
        "stab",
        name="rd-tiny-stab",
        routes=["screening", "random"],
        stability={"top": 2, "judge": "chgnet", "steps": 60, "fmax": 0.2},
    )


def test_tiny_stability_filter_stores_filtered_lists_and_resumes(
    mongo_uri: str, prefect_harness: None, tiny_stability_config: Path
) -> None:
    from alcore.holdout import leaked
    from flows.pipelines import rediscovery as rd
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.pipelines.rediscovery_stability import verdict_campaign
    from flows.store import Store

    cfg = load_rediscovery_config(tiny_stability_config)
    assert cfg.stability_lists() == ["screening/oracle", "random/pool"]
    store = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    try:
        run = _split_run(cfg, store)
        for stage in rd.stages_for(cfg):
            result = rd.run_stage(run, stage, rd.stage_body(run, stage))
        assert stage == "stability"
        campaign = verdict_campaign(run.key, cfg.stability)
        assert result["campaign"] == campaign and result["judged_now"] == result["formulas"] >= 2
        for name in cfg.stability_lists():
            top = run.load_list(name)[0][:2]
            kept = run.load_list(name + "+stable")[0]
            assert kept == [f for f in top if f in kept]  # a subset, in the list's order
            assert result["lists"][name]["top"] == 2 and sum(result["lists"][name]["verdicts"].values()) == 2

        docs = store.structures_of(campaign)
        assert {d["formula"] for d in docs} == {f for n in cfg.stability_lists() for f in run.load_list(n)[0][:2]}
        assert all(d["verdict"] for d in docs)
        assert any(d["energy_per_atom"] is not None and np.isfinite(d["energy_per_atom"]) for d in docs)
        assert leaked([d["template"]["formula"] or "" for d in docs], run.split) == []

        # judged once: the stage redone (e.g. a larger top) judges only what is new
        again = rd.stability_stage(run)
        assert again["judged_now"] == 0 and again["lists"] == result["lists"]
        scores = rd.stability_scores(run)
        assert [s["list"] for s in scores] == cfg.stability_lists() and all(s["n_top"] == 2 for s in scores)
    finally:
        store.client.drop_database(store.db.name)
        store.close()

"""End-to-end campaign tests on a real wire-protocol server: resume, lease, external labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alcore.errors import CampaignLockedError, ConfigError
from flows.campaign import CampaignContext, run_campaign_in
from flows.campaign import faults as campaign_faults
from flows.campaign import stages as campaign_stages
from flows.datasets import band_gap_table
from tests.flows.conftest import pool_config


def _config(tiny_ae: Path, name: str, **overrides) -> object:
    return pool_config(tiny_ae, name, **overrides)


def _continuous(tiny_ae: Path, name: str, **acquisition: object) -> object:
    """A 1-iteration continuous-mode campaign on the committed autoencoder with a cheap optimiser."""
    fast = {"q": 2, "beta": 25.0, "num_restarts": 2, "raw_samples": 32, "maxiter": 10, "mc_samples": 32}
    return _config(
        tiny_ae,
        name,
        mode="continuous",
        iterations=1,
        oracle="resnet-agd",
        autoencoder="autoencoder_agd87",
        acquisition={**fast, **acquisition},
    )


def _state(store, name: str) -> dict:
    labels = sorted((d["formula"], round(d["value"], 9), d["source"], d.get("iteration")) for d in store.labels(name))
    cands = sorted((d["iteration"], d["formula"], d["status"]) for d in store.candidates(name))
    metrics = [{k: v for k, v in (it.get("metrics") or {}).items()} for it in store.iterations(name)]
    return {"labels": labels, "candidates": cands, "metrics": metrics}


def test_pool_campaign_resumes_after_crash_to_identical_state(store, tiny_ae, prefect_harness, monkeypatch):
    reference = run_campaign_in(store, _config(tiny_ae, "ref"))
    assert reference["status"] == "finished"
    ref_state = _state(store, "ref")
    assert len([c for c in ref_state["candidates"] if c[2] == "labelled"]) == 9
    assert len(ref_state["labels"]) == 40 + 9

    crashes = iter([("label", 1), ("acquire", 2), ("retrain", 3)])
    target = next(crashes)

    def hook(stage: str, when: str, iteration: int) -> None:
        nonlocal target
        if target and (stage, iteration) == target and when == "after":
            target = next(crashes, None)
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(campaign_faults, "STAGE_HOOK", hook)
    runs = 0
    while True:
        runs += 1
        try:
            result = run_campaign_in(store, _config(tiny_ae, "crashy"))
            break
        except KeyboardInterrupt:
            continue
    assert runs == 4
    assert result["status"] == "finished"
    assert _state(store, "crashy") == ref_state
    # no duplicates, no orphaned running stages
    assert store.db.labels.count_documents({"campaign": "crashy"}) == len(ref_state["labels"])
    for it in store.iterations("crashy"):
        assert all(s["status"] == "done" for s in it["stages"].values()), it["stages"]


def test_second_runner_is_refused(store, tiny_ae, prefect_harness):
    cfg = _config(tiny_ae, "locked", iterations=1)
    store.create_campaign(cfg.name, cfg.resolved())
    store.acquire_lease(cfg.name, "other-host:123", ttl_s=300)
    with pytest.raises(CampaignLockedError, match="other-host:123"):
        run_campaign_in(store, cfg, owner="me:1")


def test_changed_config_for_existing_campaign_is_refused(store, tiny_ae, prefect_harness):
    cfg = _config(tiny_ae, "cfg", iterations=1)
    run_campaign_in(store, cfg)
    with pytest.raises(ConfigError, match="different config"):
        run_campaign_in(store, _config(tiny_ae, "cfg", iterations=1, seed=99))


def test_external_oracle_pauses_and_resumes_after_import(store, tiny_ae, prefect_harness):
    cfg = _config(tiny_ae, "ext", iterations=1, oracle="external")
    first = run_campaign_in(store, cfg)
    assert first["status"] == "awaiting_labels"
    waiting = store.candidates("ext", status="awaiting_label")
    assert len(waiting) == 3
    table = band_gap_table("agd_exp1_42k").set_index("formula")["value"]
    store.upsert_labels(
        "ext",
        [
            {"formula": c["formula"], "value": float(table[c["formula"]]), "source": "external", "iteration": 1}
            for c in waiting
        ],
    )
    second = run_campaign_in(store, cfg)
    assert second["status"] == "finished"
    assert {c["status"] for c in store.candidates("ext")} == {"labelled"}
    assert second["iterations"][0]["n_labels"] == 43


def test_continuous_campaign_decodes_only_valid_formulas(store, tiny_ae, prefect_harness):
    # the committed autoencoder: a 3-epoch toy decodes most latent points to nothing
    cfg = _continuous(tiny_ae, "cont", max_attempts=15)
    result = run_campaign_in(store, cfg)
    assert result["status"] == "finished"
    cands = store.candidates("cont")
    accepted = [c for c in cands if c["valid"]]
    assert 1 <= len(accepted) <= 2
    from alcore.validity import check_validity

    for c in accepted:
        assert check_validity(c["formula"]).valid
        assert c["status"] == "labelled"
    for c in cands:
        if not c["valid"]:
            assert c["reasons"], c
    # decode-then-select (the default): every judged candidate carries its E_form and P(feasible)
    result = store.stage_result("cont", 1, "acquire")
    assert result["strategy"] == "decode_select" and result["n_survivors"] >= len(accepted)
    assert result["n_systems"] == len({c["chemsys"] for c in accepted})
    for c in accepted:
        assert 0 <= c["p_feasible"] <= 1 and np.isfinite(c["eform_mean"]) and c["region"] >= 0
        assert not {"C", "H"} <= set(c["chemsys"].split("-"))


def test_trust_region_widens_after_an_attempt_that_only_decodes_known_formulas(
    store, tiny_ae, prefect_harness, monkeypatch
):
    """An exhausted neighbourhood (every decode already labelled) doubles the search box for the next
    attempt instead of failing the iteration after max_attempts (agd-exp3 got stuck at iteration 27)."""
    cfg = _continuous(tiny_ae, "widen", max_attempts=6, trust_region=0.2, strategy="optimise_decode")
    real_decode = campaign_stages.decode_latents
    calls = {"n": 0}

    def decode_first_two_attempts_to_a_seed(model, encoder, z):
        calls["n"] += 1
        if calls["n"] <= 2:
            seed = store.labels("widen")[0]["formula"]
            return [seed] * len(z)
        return real_decode(model, encoder, z)

    monkeypatch.setattr(campaign_stages, "decode_latents", decode_first_two_attempts_to_a_seed)
    assert run_campaign_in(store, cfg)["status"] == "finished"
    result = store.stage_result("widen", 1, "acquire")
    assert result["trust_region_sides"][:3] == [0.2, 0.4, 0.8]
    assert result["n_accepted"] >= 1


def test_a_formula_decoded_twice_keeps_its_accepted_candidate(store, tiny_ae, prefect_harness, monkeypatch):
    """Issue 19 finding 1: the duplicate-decode rejection was written under the accepted candidate's
    key and replaced it, so an accepted formula was never labelled."""
    cfg = _continuous(tiny_ae, "dupes", q=3, strategy="optimise_decode")
    real_decode = campaign_stages.decode_latents
    calls = {"n": 0}

    def first_attempt_decodes_one_formula_twice(model, encoder, z):
        calls["n"] += 1
        formulas = real_decode(model, encoder, z)
        return ["KBr", "KBr", *formulas[2:]] if calls["n"] == 1 else formulas

    monkeypatch.setattr(campaign_stages, "decode_latents", first_attempt_decodes_one_formula_twice)
    assert run_campaign_in(store, cfg)["status"] == "finished"
    result = store.stage_result("dupes", 1, "acquire")
    kbr = store.candidates("dupes", iteration=1)
    kbr = [c for c in kbr if c["formula"] == "KBr"]
    assert len(kbr) == 1 and kbr[0]["valid"] and kbr[0]["duplicates"] == 1 and kbr[0]["status"] == "labelled"
    labelled = {d["formula"] for d in store.labels("dupes") if d["source"] != "seed"}
    assert "KBr" in labelled and len(labelled) == result["n_accepted"] == 3
    assert result["n_duplicates"] >= 1 and result["n_decodes"] >= result["n_accepted"] + result["n_duplicates"]
    stored = store.candidates("dupes", iteration=1)
    assert len(stored) == result["n_accepted"] + result["n_rejected"] == result["n_decodes"] - result["n_duplicates"]


def test_elements_count_as_known_for_the_novelty_flag(tiny_ae):
    """The committed MP list holds compounds only; an elemental decode (Ba) must not be called novel."""
    ctx = CampaignContext(None, _config(tiny_ae, "novelty"), owner="test")
    assert {"Ba", "Ca", "O2", "Si"} <= ctx.known
    assert "NaCl" in ctx.known and "Li2BH3OF4" not in ctx.known


def test_pool_mode_chooses_among_a_generated_mongodb_pool(store, tiny_ae, prefect_harness):
    """``pool_collection``: the candidates are the generated pool's members within the size limits
    that pass SMACT (here LiF, MgO, KF, Al2O3), and only they are acquired."""
    from flows.campaign import CampaignContext
    from flows.pipelines.pool import formula_sizes, pool_member_docs

    members = ["LiF", "MgO", "KF", "Al2O3", "NaCl2", "Ba2YCu3O7", "LiBF4"]  # NaCl2 invalid, the last two too big
    atoms, elements = formula_sizes(members)
    store.bulk_insert_new(
        "pools", pool_member_docs("gen", members, atoms, elements, {"generator": "test", "seed": 0, "batch": 0})
    )
    cfg = _config(
        tiny_ae,
        "genpool",
        pool_collection="gen",
        pool_size=None,
        iterations=1,
        validity={"max_atoms": 5, "max_elements": 2},
        acquisition={"q": 2},
    )
    formulas, latents = CampaignContext(store, cfg, owner="test").pool
    assert formulas == ["Al2O3", "KF", "LiF", "MgO"] and latents.shape[0] == 4
    assert run_campaign_in(store, cfg)["status"] == "finished"
    acquired = {d["formula"] for d in store.labels("genpool") if d["source"] != "seed"}
    assert len(acquired) == 2 and acquired <= set(formulas)


@pytest.mark.parametrize("label_noise", ["auto", "learned"])
def test_the_gp_takes_the_oracle_sigma_as_label_noise(store, tiny_ae, prefect_harness, label_noise):
    """``gp.label_noise``: with ``auto`` the fit of iteration 2 uses the calibrated oracle std of the
    labels of iteration 1 as their noise (seed labels have std 0: iteration 1 learns one noise);
    ``learned`` ignores the stds. The acquire stage rebuilds the same GP from the stored fit."""
    name = f"noise-{label_noise}"
    cfg = _config(
        tiny_ae,
        name,
        oracle="resnet-mp-union",
        iterations=2,
        pool_size=300,
        acquisition={"q": 2},
        gp={"maxiter": 15, "label_noise": label_noise},
    )
    assert run_campaign_in(store, cfg)["status"] == "finished"
    modes = [store.stage_result(name, it, "fit")["hyperparameters"]["label_noise"] for it in (1, 2)]
    assert modes == (["learned", "oracle"] if label_noise == "auto" else ["learned", "learned"])
    formulas, y, yvar = CampaignContext(store, cfg, owner="test").gp_labels()
    docs = {d["formula"]: d for d in store.labels(name)}
    oracle_rows = [i for i, f in enumerate(formulas) if docs[f]["source"] != "seed"]
    assert len(oracle_rows) == 4 and len(formulas) == 44  # 40 seeds + 2 x q
    if label_noise == "auto":
        assert all(yvar[i] == pytest.approx(docs[formulas[i]]["std"] ** 2) and yvar[i] > 0 for i in oracle_rows)
        assert sum(yvar > 0) == 4
    else:
        assert yvar is None

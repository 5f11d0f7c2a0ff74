"""The hold-out rediscovery benchmark end to end: a tiny run that is SIGKILLed inside the pool
route's campaign, resumed through the CLI sub-app, and scored; leak checks on what it stored."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.flows.campaign.fault_harness import REPO, HarnessEnv

TINY = REPO / "deploy" / "benchmarks" / "rediscovery_tiny.yaml"
CHILD = (
    "import sys; from flows.pipelines.rediscovery import rediscovery_flow; "
    "rediscovery_flow(sys.argv[1], mongodb_uri=sys.argv[2], database=sys.argv[3])"
)


def write_tiny(tmp_path: Path, stem: str, **update: object) -> Path:
    """The committed tiny config with ``update`` applied and its model files and caches under
    ``tmp_path``, written to ``tmp_path/<stem>.yaml``."""
    data = {**yaml.safe_load(TINY.read_text()), "out_dir": str(tmp_path / "out"), **update}
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """The committed tiny config with its model files and caches under ``tmp_path``."""
    return write_tiny(tmp_path, "tiny")


def test_tiny_benchmark_resumes_after_a_kill_and_scores(
    mongo_uri: str, prefect_harness: None, tiny_config: Path, tmp_path: Path
) -> None:
    import prefect.settings

    from alcore.holdout import leaked, make_split
    from flows.cli.bench import app as bench_app
    from flows.pipelines.rediscovery import benchmark_universe, split_key
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.store import Store

    database = f"t_{uuid.uuid4().hex[:10]}"
    henv = HarnessEnv(mongo_uri, database, prefect.settings.PREFECT_API_URL.value(), tmp_path)
    env = henv.environ()
    # killed inside the pool route's campaign: iteration 2, between the two candidate writes
    env.update({"ALFLOW_FAULT_POINT": "acquire:2:mid-candidates", "ALFLOW_FAULT_MARKER": str(tmp_path / "fired")})
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_config), mongo_uri, database],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -9, child.stderr[-3000:]
    assert (tmp_path / "fired").read_text() == "acquire:2:mid-candidates"

    cfg = load_rediscovery_config(tiny_config)
    key = split_key(cfg, 0)
    store = Store.from_uri(mongo_uri, database)
    try:
        done_before = {d["stage"]: d["finished_at"] for d in store.bench_stages(split=key)}
        assert {"split", "data", "oracle", "autoencoder", "matgan", "pool", "screening"} <= set(done_before)
        assert "pool-al" not in done_before

        out = tmp_path / "results"
        res = CliRunner().invoke(
            bench_app,
            [
                "rediscovery",
                str(tiny_config),
                "--mongodb-uri",
                mongo_uri,
                "--database",
                database,
                "--json",
                str(out / "rd.json"),
                "--proposals",
                str(out / "rd_proposals.json.gz"),
                "--png",
                str(out / "rd.png"),
            ],
            env={"ALFLOW_FAULT_POINT": ""},
        )
        assert res.exit_code == 0, res.output
        assert "rediscoveries of hidden materials" in res.output and "screen: oracle" in res.output

        # resumed, not redone: stages finished before the kill kept their result; one model per kind
        after = {d["stage"]: d["finished_at"] for d in store.bench_stages(split=key)}
        assert all(after[s] == t for s, t in done_before.items())
        for kind in ("rediscovery_oracle", "rediscovery_autoencoder", "rediscovery_matgan"):
            assert store.db["models.files"].count_documents({"metadata.kind": kind}) == 1
        campaign = next(d for d in store.bench_stages(split=key, stage="pool-al"))["result"]["campaign"]
        assert campaign.startswith(f"{cfg.name}-{key}-pool-")
        labels = store.labels(campaign)
        acquired = [d for d in labels if d["source"] != "seed"]
        assert len(acquired) == cfg.acquisitions == len({d["formula"] for d in acquired})
        assert all(d["source"].startswith("holdout-oracle:") for d in acquired)

        # nothing the pipeline learned from holds a hidden formula
        split = make_split(benchmark_universe(cfg), cfg.protocol, cfg.fraction, 0)
        data = next(d for d in store.bench_stages(split=key, stage="data"))["result"]
        assert leaked(data["seeds"]["formula"] + data["validation"]["formula"], split) == []
        assert leaked([d["formula"] for d in labels if d["source"] == "seed"], split) == []

        # the oracle learned something: on the seed labels it beats the constant mean predictor
        from flows.pipelines.rediscovery import SplitRun

        run = SplitRun(cfg, store, 0, split, key)
        y = np.array(data["seeds"]["value"])
        pred = run.oracle.predict(data["seeds"]["formula"]).mean
        assert np.mean(np.abs(pred - y)) < np.mean(np.abs(y - y.mean()))
    finally:
        store.client.drop_database(database)
        store.close()

    result = json.loads((out / "rd.json").read_text())
    lists = {lst["list"]: lst for lst in result["splits"][0]["score"]["lists"]}
    assert set(lists) == {
        "screening/oracle",
        "pool-AL/acquired",
        "pool-AL/screen",
        "random-pool-labels/acquired",
        "random-pool-labels/screen",
        "random-MP-labels/screen",
        "random/pool",
        "random/SMACT",
    }
    for lst in lists.values():
        assert [s["k"] for s in lst["scores"]] == [5, 10]
        top = lst["scores"][-1]
        assert 0 <= top["rediscoveries"]["ge4"] <= min(10, top["n_proposed"])
        assert top["precision"] == pytest.approx(top["rediscoveries"]["ge4"] / 10)
    assert lists["pool-AL/acquired"]["n"] <= cfg.acquisitions
    assert {r["list"] for r in result["summary"]} == set(lists)
    proposals = json.loads(gzip.decompress((out / "rd_proposals.json.gz").read_bytes()))["lists"]
    screen = next(p for p in proposals if p["list"] == "screening/oracle")
    assert screen["seed"] == 0 and screen["route"] == "screening"
    assert screen["scores"] == sorted(screen["scores"], reverse=True)  # ranked best first
    assert (out / "rd.png").stat().st_size > 1000
    assert os.environ.get("ALFLOW_FAULT_POINT") in (None, "")


def test_bad_configs_get_one_line_errors(tmp_path: Path) -> None:
    from flows.cli.bench import app as bench_app

    missing = CliRunner().invoke(bench_app, ["rediscovery", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output and "Traceback" not in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nroutes: [screening, magic]\nacquisitions: 10\npool_q: 3\n")
    res = CliRunner().invoke(bench_app, ["rediscovery", str(bad)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "unknown route" in res.output and "magic" in res.output
    bad.write_text("name: x\nacquisitions: 10\npool_q: 3\n")
    res = CliRunner().invoke(bench_app, ["rediscovery", str(bad)])
    assert res.exit_code == 2 and "multiple of pool_q" in res.output
    bad.write_text("name: x\njudged: {rules: [p-wide, p-magic]}\n")
    res = CliRunner().invoke(bench_app, ["rediscovery", str(bad)])
    assert res.exit_code == 2 and "judged.rules must name some of" in res.output and "p-magic" in res.output


@pytest.fixture
def tiny_complm_config(tmp_path: Path) -> Path:
    """The tiny config with a composition-LM pool beside MatGAN's (plain screening and random order
    only) and a tiny LM (40 steps of 64, width 32)."""
    return write_tiny(
        tmp_path,
        "tiny_lm",
        name="rd-tiny-lm",
        generators=["matgan", "complm"],
        routes=["screening", "random"],
        complm={
            "steps": 40,
            "eval_every": 20,
            "eval_samples": 200,
            "batch_size": 64,
            "d": 32,
            "layers": 1,
            "heads": 2,
            "ff": 64,
        },
    )


def _split_run(cfg, store, seed: int = 0):
    from flows.pipelines.rediscovery import SplitRun, benchmark_split, split_key

    return SplitRun(cfg, store, seed, benchmark_split(cfg, seed), split_key(cfg, seed))


def test_complm_pool_is_leak_checked_resumes_and_matches_the_matgan_pool_size(
    mongo_uri: str, prefect_harness: None, tiny_complm_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from alcore.errors import HoldoutLeakError
    from alcore.holdout import leaked
    from alcore.validity import check_validity_batch
    from flows.pipelines import rediscovery as rd
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.pipelines.rediscovery_report import format_tables, generator_comparison
    from flows.store import Store
    from generators.complm import FormulaTokenizer, train_complm

    cfg = load_rediscovery_config(tiny_complm_config)
    assert rd.stages_for(cfg) == [
        "split",
        "data",
        "oracle",
        "matgan",
        "pool",
        "screening",
        "complm",
        "pool@complm",
        "screening@complm",
        "random",
        "random@complm",
    ]  # no campaign route: no autoencoder
    store = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    straight = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    try:
        run = _split_run(cfg, store)

        # a hidden formula planted in the LM's corpus is caught before any training
        tok = FormulaTokenizer()
        hidden = next(f for f in sorted(run.split.hidden) if len(tok.pairs(f)) >= 2)
        clean = rd.generator_corpus
        monkeypatch.setattr(rd, "generator_corpus", lambda r, m: [*clean(r, m), hidden])
        with pytest.raises(HoldoutLeakError, match="complm training formulas"):
            rd.run_stage(run, "complm", rd.stage_body(run, "complm"))
        monkeypatch.setattr(rd, "generator_corpus", clean)
        assert store.bench_stage_result(run.stage_id("complm")) is None
        assert store.latest_model("rediscovery_complm") is None
        corpus = rd.complm_corpus(run)
        assert leaked(corpus, run.split) == [] and len(corpus) > 500

        # a training run stopped after its first step (as by a kill) leaves a checkpoint the stage resumes
        stem, ckpt = rd.complm_paths(run)
        stopped = dataclasses.replace(rd.complm_train_config(run), time_budget_s=0.0)
        torch.set_num_threads(1)  # as the stage trains (float sums depend on the thread count)
        assert train_complm(stem, stopped, ckpt, formulas=corpus)["steps"] == 1
        lm = rd.run_stage(run, "complm", rd.stage_body(run, "complm"))
        assert lm["runs"] == 2 and lm["steps"] == cfg.complm.steps and not lm["cached"]
        # ... and gives the weights of an uninterrupted run (other database and folder)
        other = load_rediscovery_config(tiny_complm_config, out_dir=str(Path(cfg.out_dir).parent / "straight"))
        srun = _split_run(other, straight)
        assert rd.run_stage(srun, "complm", rd.stage_body(srun, "complm"))["sha256"] == lm["sha256"]
        # a rerun finds the model in GridFS
        assert rd.complm_stage(run) == {"sha256": lm["sha256"], "cached": True}

        result = rd.run_split(cfg, store, 0)
        stages = result["stages"]
        pool = run.pool_of("complm")
        assert stages["pool@complm"]["size"] == stages["pool"]["size"] == len(pool) == len(run.pool)
        assert set(pool).isdisjoint(run.known) and len(set(pool)) == len(pool)
        assert all(v.valid for v in check_validity_batch(pool, run.rules))
        assert set(pool) != set(run.pool)
        # the pool is deterministic: the stage body again draws the same members into the same pool
        again = rd.complm_pool_stage(run)
        assert again["pool"] == stages["pool@complm"]["pool"] and sorted(store.pool_formulas(again["pool"])) == pool
        # a pool conditioned on gap bins reuses the same LM and is a pool of its own, of the same size
        conditioned = cfg.complm.model_copy(update={"conditions": [">5", "3-5"]})
        crun = _split_run(cfg.model_copy(update={"complm": conditioned}), store)
        assert rd.run_stage(crun, "complm", rd.stage_body(crun, "complm"))["sha256"] == lm["sha256"]
        cpool = rd.complm_pool_stage(crun)
        assert cpool["pool"] == stages["pool@complm"]["pool"] + "-cond->5+3-5" and cpool["size"] == len(pool)
        assert sorted(store.pool_formulas(cpool["pool"])) != pool
        score = result["score"]
        assert score["pools"]["complm"]["size"] == score["pools"]["matgan"]["size"]
        ceiling = score["pools"]["complm"]["ceiling"]["ge4"]
        assert ceiling == sum((run.hidden_gaps.get(f) or 0) >= 4 for f in pool)
        lists = {lst["list"]: lst for lst in score["lists"]}
        assert set(lists) == {
            "screening/oracle",
            "random/pool",
            "random/SMACT",
            "screening/oracle@complm",
            "random/pool@complm",
        }
        for name in ("screening/oracle@complm", "random/pool@complm"):
            assert lists[name]["generator"] == "complm" and lists[name]["ceiling"] == ceiling
            assert sorted(run.load_list(name)[0]) == pool
        assert lists["screening/oracle@complm"]["route"] == "screening@complm"

        report = {"config": cfg.resolved(), "splits": [result], "summary": rd.summarise([result], cfg.ks)}
        text = format_tables(report)
        assert "LM screen: oracle" in text and "complm pool" in text
        assert "Ef<0" in text and max(len(line) for line in text.splitlines() if "Ef<0" in line) <= 80
        comp = generator_comparison(report, k=10)["complm"]
        red = comp["lists"]["screening/oracle"]["per_split"][0]
        assert red["complm"] == lists["screening/oracle@complm"]["scores"][-1]["rediscoveries"]["ge4"]
        assert comp["goal_met"] == (red["complm"] > red["matgan"])
    finally:
        for s in (store, straight):
            s.client.drop_database(s.db.name)
            s.close()


@pytest.mark.parametrize(
    ("generators", "error"), [("[complm]", "must include matgan"), ("[matgan, gpt]", "generators")]
)
def test_bad_generators_are_refused(tmp_path: Path, generators: str, error: str) -> None:
    from alcore.errors import ConfigError
    from flows.pipelines.rediscovery_config import load_rediscovery_config

    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\ngenerators: {generators}\n")
    with pytest.raises(ConfigError, match=error):
        load_rediscovery_config(path)


def test_a_stage_stored_with_other_settings_or_none_is_redone(mongo_uri: str, tiny_config: Path) -> None:
    from flows.pipelines import rediscovery as rd
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.pipelines.rediscovery_stages import stage_settings
    from flows.store import Store

    cfg = load_rediscovery_config(tiny_config)
    store = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    calls: list[int] = []

    def body() -> dict:
        calls.append(len(calls))
        return {"call": len(calls)}

    try:
        run = _split_run(cfg, store)
        assert rd.run_stage(run, "data", body)["call"] == 1
        assert rd.run_stage(run, "data", body)["call"] == 1  # stored, same settings: not redone
        assert store.bench_stage(run.stage_id("data"))["settings"] == stage_settings(cfg, "data")

        edited = cfg.model_copy(update={"seeds": cfg.seeds + 1})
        assert rd.run_stage(_split_run(edited, store), "data", body)["call"] == 2  # other settings: redone
        assert store.bench_stage(run.stage_id("data"))["settings"] == stage_settings(edited, "data")
        assert rd.run_stage(_split_run(edited, store), "data", body)["call"] == 2

        # a document written before stages recorded their settings cannot vouch for them: redone
        store.db["rediscovery"].update_one({"_id": run.stage_id("data")}, {"$unset": {"settings": ""}})
        assert rd.run_stage(_split_run(edited, store), "data", body)["call"] == 3
        assert len(calls) == 3
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def test_generators_config_orders_the_stages(tmp_path: Path) -> None:
    from flows.pipelines.rediscovery import stages_for
    from flows.pipelines.rediscovery_config import load_rediscovery_config

    path = tmp_path / "c.yaml"
    path.write_text("name: x\ngenerators: [matgan, complm]\nroutes: [screening, pool-al, continuous-al]\n")
    stages = stages_for(load_rediscovery_config(path))
    assert "autoencoder" in stages and stages[-3:] == ["pool-al", "pool-al@complm", "continuous-al"]


@pytest.fixture
def tiny_loop_config(tmp_path: Path) -> Path:
    """The tiny config with the continuous route on decode-then-select and its plausibility terms."""
    return write_tiny(
        tmp_path,
        "tiny_loop",
        name="rd-tiny-loop",
        routes=["screening", "continuous-al"],
        continuous={"acquisitions": 8, "q": 4, "strategy": "decode_select", "plausibility": True},
        eform={"hidden": 16, "layers": 2, "members": 2, "epochs": 6},
    )


def test_continuous_route_plausibility_terms_are_rebuilt_from_the_visible_data(
    mongo_uri: str, tiny_loop_config: Path
) -> None:
    import pandas as pd

    from alcore.errors import HoldoutLeakError
    from alcore.holdout import leaked
    from flows.pipelines import rediscovery as rd
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.store import Store

    cfg = load_rediscovery_config(tiny_loop_config)
    assert rd.stages_for(cfg)[:5] == ["split", "data", "oracle", "eform", "autoencoder"]
    store = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    try:
        run = _split_run(cfg, store)
        for stage in ("split", "data", "oracle"):
            rd.run_stage(run, stage, rd.stage_body(run, stage))

        # a hidden formula planted in the E_form table is caught before any training
        clean = run.visible_eforms
        assert leaked(clean["formula"], run.split) == [] and len(clean) > 1000
        hidden = next(f for f in sorted(run.split.hidden) if f in run.tables["eform"])
        run.__dict__["visible_eforms"] = pd.concat([clean, pd.DataFrame({"formula": [hidden], "value": [-1.0]})])
        with pytest.raises(HoldoutLeakError, match="eform training set"):
            rd.run_stage(run, "eform", rd.stage_body(run, "eform"))
        assert store.latest_model("rediscovery_eform") is None
        run.__dict__["visible_eforms"] = clean
        eform = rd.run_stage(run, "eform", rd.stage_body(run, "eform"))
        assert not eform["cached"] and eform["n_train"] == len(clean)
        assert rd.eform_stage(run) == {"sha256": eform["sha256"], "cached": True}
        # it learnt something: better than predicting the mean on what it saw
        pred = np.asarray(run.eform.predict(list(clean["formula"])).mean)
        truth = clean["value"].to_numpy()
        assert np.nanmean(np.abs(pred - truth)) < 0.8 * np.mean(np.abs(truth - truth.mean()))

        # the oracle's domain: every visible gap, calibrated on visible formulas the oracle never saw
        domain = run.oracle_domain
        assert domain.n_train == len(run.visible_gaps)
        assert domain.distance_bound is not None and domain.distance_bound > 0 and domain.std_bound is not None

        rd.run_stage(run, "autoencoder", rd.stage_body(run, "autoencoder"))
        config = rd.campaign_config(run, "continuous")
        acq, validity = config.acquisition, config.validity
        assert acq.strategy == "decode_select" and acq.feasibility
        assert validity.reject_organic and validity.applicability_domain
        ctx = rd.HoldoutCampaignContext(store, config, "test", run=run)
        forms = list(clean["formula"][:25])
        judged = ctx.screen(forms)
        np.testing.assert_allclose(judged.eform_mean, run.eform.predict(forms).mean)
        assert ctx.oracle_domain is domain
        absent = next(e for e in ("Tc", "Pm", "Ac", "Pa", "Np", "Pu", "Kr", "Xe") if e not in domain.elements)
        assert any("outside the oracle's domain" in r for r in ctx.screen([f"{absent}O2"]).reasons[0])
        assert ctx.screen(list(run.visible_gaps["formula"][:1])).reasons == [[]]  # a training formula is inside

        # the ablation: decode-then-select without the terms (no domain, no C+H rule, no P(E_form))
        ablation = load_rediscovery_config(
            tiny_loop_config, continuous={**cfg.continuous.model_dump(), "plausibility": False}
        )
        off = rd.campaign_config(_split_run(ablation, store), "continuous")
        assert off.acquisition.strategy == "decode_select" and not off.acquisition.feasibility
        assert not off.validity.reject_organic and not off.validity.applicability_domain
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def test_plausibility_needs_decode_then_select(tmp_path: Path) -> None:
    from alcore.errors import ConfigError
    from flows.pipelines.rediscovery_config import load_rediscovery_config

    path = tmp_path / "c.yaml"
    path.write_text("name: x\ncontinuous: {plausibility: true}\n")
    with pytest.raises(ConfigError, match="needs continuous.strategy: decode_select"):
        load_rediscovery_config(path)


def test_the_eform_share_is_summarised_only_where_every_split_has_it() -> None:
    from flows.pipelines.rediscovery import summarise

    def split(neg: float | None) -> dict:
        score = {"k": 10, "rediscoveries": {"ge4": 2, "ge3": 3, "window": 1}, "precision": 0.2, "recall": 0.1}
        score |= {"real": 5, "daf": 20.0, "daf_smact": 30.0, "ch_share": 0.0, "n_systems": 8}
        if neg is not None:
            score["eform_neg_share"] = neg
        return {
            "score": {
                "lists": [{"list": "continuous-AL/acquired", "route": "continuous-al", "ceiling": 9, "scores": [score]}]
            }
        }

    both = summarise([split(0.9), split(1.0)], (10,))[0]
    assert both["eform_neg_share"] == pytest.approx((0.95, np.std([0.9, 1.0], ddof=1)))
    assert "eform_neg_share" not in summarise([split(0.9), split(None)], (10,))[0]


def test_nested_split_screens_by_the_judges_without_the_outer_answer_key(mongo_uri: str, tmp_path: Path) -> None:
    from alcore.holdout import leaked
    from alcore.judged_screening import RULES
    from flows.pipelines import rediscovery as rd
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.pipelines.rediscovery_stability import VisibleFormationEnergies
    from flows.store import Store
    from oracles.stability.hull import hull_energies

    path = write_tiny(
        tmp_path,
        "tiny_nested",
        name="rd-tiny-nested",
        nested=True,
        routes=["screening", "judged-screening", "random"],
        eform={"hidden": 16, "layers": 2, "members": 2, "epochs": 3},
    )
    cfg = load_rediscovery_config(path)
    assert rd.stages_for(cfg) == [
        "split", "data", "oracle", "eform", "matgan", "pool", "screening", "judged-screening", "random"
    ]  # fmt: skip
    store = Store.from_uri(mongo_uri, f"t_{uuid.uuid4().hex[:10]}")
    try:
        run = _split_run(cfg, store)
        outer = run.split.outer
        assert run.key.endswith("-in1000") and outer is not None and outer.seed == 0
        assert run.split.visible | run.split.hidden == outer.visible
        for stage in rd.stages_for(cfg):
            rd.run_stage(run, stage, rd.stage_body(run, stage))
        # nothing the inner pipeline learnt from holds an outer- or inner-hidden formula
        for table in (run.visible_gaps["formula"], run.visible_eforms["formula"], run.known):
            assert leaked(table, run.split) == [] and leaked(table, outer) == []
        pool = run.pool
        ranked = {rule: run.load_list(f"judged-screening/{rule}") for rule in RULES}
        for formulas, scores in ranked.values():
            assert sorted(formulas) == pool  # every rule ranks the whole pool, best first
            assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))
        # the hull factor only lowers P(wide); the hull is the visible MP one (leak-checked phases)
        wide = dict(zip(*ranked["p-wide"], strict=True))
        hull = dict(zip(*ranked["p-wide-hull"], strict=True))
        assert all(hull[f] <= wide[f] + 1e-12 for f in pool)
        energies = hull_energies(pool, VisibleFormationEnergies(run.split))
        assert sum(e < -0.5 for e in energies) > len(pool) // 4  # most pool systems have known phases
        # scoring counts only the inner answer key: an outer-hidden formula is never a rediscovery
        assert set(run.hidden_gaps) == set(run.split.hidden) and set(run.hidden_gaps).isdisjoint(outer.hidden)
        names = {lst["list"] for lst in rd.score_split(run)["lists"]}
        assert {f"judged-screening/{rule}" for rule in RULES} <= names
    finally:
        store.client.drop_database(store.db.name)
        store.close()

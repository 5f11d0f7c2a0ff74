"""The AGD recovery experiment end to end on a tiny campaign and a hand-made generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from alcore.errors import ConfigError
from flows.campaign import CampaignContext, seed_table
from flows.config import load_config
from flows.pipelines.agd_recovery import RecoverySetup, agd_recovery_flow, labelled_pool, random_decodes, store_pool
from generators.base import register_generator
from oracles.registry import get_oracle
from tests.flows.conftest import pool_config, run_cli

# small formulas, wide-gap fluorides/oxides among them, plus ones the pool filters must drop
SMALL = [
    "LiF",
    "NaF",
    "MgF2",
    "CaF2",
    "KF",
    "LiCl",
    "NaCl",
    "MgO",
    "CaO",
    "BN",
    "AlN",
    "GaN",
    "ZnO",
    "ZnS",
    "SrF2",
    "BaF2",
    "Li2O",
    "Al2O3",
    "SiO2",
    "BeO",
    "KCl",
    "CsI",
    "GaAs",
    "InP",
    "CdTe",
    "TiO2",
    "SnO2",
    "LiBF4",
    "NaMgF3",
    "KMgF3",
]
DROPPED = ["Fe", "NaCl2", "Ba2YCu3O7", "Li2B4O7"]  # one element / not charge balanced / too many atoms or elements


class FixedGenerator:
    name = "fixed"

    def sample(self, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        formulas = SMALL + DROPPED
        return [formulas[i] for i in rng.integers(0, len(formulas), n)]


register_generator("fixed", lambda: FixedGenerator())


ARMS = ["seeds", "seeds + AL", "seeds + random pool", "seeds + random MP"]


def test_experiment_scores_four_arms_and_resumes(
    tmp_path, store, mongo_uri, prefect_harness, tiny_ae, monkeypatch, capsys
) -> None:
    """The pool route: the experiment's pool goes to MongoDB and the campaign chooses among it."""
    monkeypatch.setenv("ALFLOW_MONGODB_URI", mongo_uri)
    monkeypatch.setenv("ALFLOW_DATABASE", store.db.name)
    config = pool_config(
        tiny_ae,
        "recovery",
        oracle="resnet-agd",
        iterations=2,
        pool_size=None,
        pool_collection="recovery-pool",
        validity={"max_elements": 3, "max_atoms": 7},
    )
    path = tmp_path / "recovery.yaml"
    path.write_text(yaml.safe_dump(config.resolved()))
    setup = RecoverySetup(draws=2000, generator="fixed", model_seeds=(0, 1), screening={"epochs": 15})

    result = agd_recovery_flow(str(path), setup, out_dir=str(tmp_path / "out"))

    pool, oracle = labelled_pool(setup, "resnet-agd", tmp_path / "out")  # from the cache file now
    assert set(pool) <= set(SMALL) and not set(pool) & set(DROPPED)
    assert "LiBF4" in pool  # 6 atoms, 3 elements, charge balanced
    assert result["pool"] == {"size": len(pool), "reference": int((oracle > 6.0).sum())}
    assert result["pool"]["reference"] >= 3  # fluorides are wide-gap for the oracle
    np.testing.assert_allclose(oracle, get_oracle("resnet-agd").predict(pool).mean, rtol=1e-6)

    assert store.pool_formulas("recovery-pool") == pool  # the campaign's pool, in MongoDB
    n_seeds = len(seed_table(load_config(path), None if config.seeds.n is None else _encoder(config)))
    acquired = [d["formula"] for d in store.labels("recovery") if d["source"] != "seed"]
    assert len(acquired) == 2 * config.acquisition.q and set(acquired) <= set(pool)
    labels = {s["arm"]: s["labels"] for s in result["summary"]}
    assert list(labels) == ARMS
    assert labels == {
        "seeds": n_seeds,
        "seeds + AL": n_seeds + len(acquired),
        "seeds + random pool": n_seeds + len(acquired),
        "seeds + random MP": n_seeds + len(acquired),
    }
    assert len(result["rows"]) == 4 * 2
    assert [e["formula"] for e in result["reference"]] == sorted(
        (f for f, v in zip(pool, oracle, strict=True) if v > 6.0), key=lambda f: -oracle[pool.index(f)]
    )
    for entry in result["reference"]:
        assert set(entry["found_by"]) == set(ARMS) and all(v in (0.0, 0.5, 1.0) for v in entry["found_by"].values())
    for summary in result["summary"]:  # the per-formula table agrees with the per-arm recall
        found = [e["found_by"][summary["arm"]] for e in result["reference"]]
        assert np.mean(found) == pytest.approx(summary["recall"])
    for row in result["rows"]:
        assert 0.0 <= row["recall"] <= 1.0
        assert row["n_recovered"] <= min(row["n_reference"], row["n_predicted"])
    assert len(list((tmp_path / "out").glob("pool-fixed-2000-*.json.gz"))) == 1

    again = agd_recovery_flow(str(path), setup, out_dir=str(tmp_path / "out"))  # campaign finished: resumes
    assert store.db.labels.count_documents({"campaign": "recovery", "source": {"$ne": "seed"}}) == len(acquired)
    assert store.db.pools.count_documents({"pool": "recovery-pool"}) == len(pool)
    assert json.dumps(again["summary"]) == json.dumps(result["summary"])  # NaN-safe equality

    # the CLI command (through the real entry point) with another campaign seed: a second campaign
    # beside the first; prints both tables, writes the JSON and the plot
    out = tmp_path / "cli.json"
    code, stdout, err = run_cli(
        [
            "pools",
            "agd-recovery",
            str(path),
            "--draws",
            "2000",
            "--generator",
            "fixed",
            "--model-seeds",
            "1",
            "--out-dir",
            str(tmp_path / "out"),
            "--json",
            str(out),
            "--campaign-seed",
            "5",
        ],
        store,
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert store.get_campaign("recovery-s5")["config"]["seed"] == 5
    assert store.db.labels.count_documents({"campaign": "recovery", "source": {"$ne": "seed"}}) == len(acquired)
    assert "seeds + AL" in stdout and "LiF" in stdout
    saved = json.loads(out.read_text())
    assert saved["pool"] == result["pool"] and len(saved["rows"]) == 4
    assert (tmp_path / "out" / "recovery-recovery-s5.png").stat().st_size > 10_000


def test_store_pool_refuses_a_pool_of_other_formulas(store) -> None:
    setup = RecoverySetup(draws=10, generator="fixed")
    assert store_pool(store, "p", ["LiF", "NaF"], setup) == 2
    assert store_pool(store, "p", ["LiF", "NaF", "KF"], setup) == 1  # an interrupted write is completed
    with pytest.raises(ConfigError, match="new pool_collection name"):
        store_pool(store, "p", ["LiF"], setup)
    assert store.pool_formulas("p") == ["KF", "LiF", "NaF"]


def test_random_decodes_are_new_valid_formulas_of_the_latent_box(store, tiny_ae) -> None:
    """The continuous mode's in-space random arm: valid decodes of random latent points, none excluded."""
    config = pool_config(tiny_ae, "decodes", mode="continuous", autoencoder="autoencoder_agd87")
    ctx = CampaignContext(store, config, owner="test")
    exclude = {"LiF", "NaCl"}
    formulas = random_decodes(ctx, 30, exclude, seed=4)
    assert len(formulas) == len(set(formulas)) == 30 and not set(formulas) & exclude
    assert formulas == random_decodes(ctx, 30, exclude, seed=4)
    from alcore.validity import check_validity_batch

    assert all(v.valid for v in check_validity_batch(formulas, ctx.validity_rules))


def _encoder(config):
    from alcore.composition import CompositionEncoder

    return CompositionEncoder(config.element_list)

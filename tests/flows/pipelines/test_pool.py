"""Pool generation (resume without duplicates) and pool screening (filter semantics, Dask runner)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from alcore.errors import ConfigError, EmptyPoolError
from flows.pipelines.pool import _check_header, batch_plan, batch_seed, generate_pool_flow
from flows.pipelines.screening import ScreenFilters, screen_formulas, screen_pool_flow, top_members
from generators.base import register_generator
from oracles.base import Prediction

TOY_FORMULAS = [
    "NaCl",
    "MgO",
    "Al2O3",
    "SiO2",
    "LiFePO4",
    "BaTiO3",
    "GaN",
    "ZnO",
    "CaF2",
    "KBr",
    "Li2O",
    "TiO2",
    "SrTiO3",
    "Cs2O",
    "BN",
    "AlN",
    "Ba2YCu3O7",
    "Fe3O4",
    "NaAlSiO4",
    "Mg2SiO4",
]


class ToyGenerator:
    """Deterministic generator: ``n`` draws (with repeats) from a fixed formula list."""

    name = "toy"

    def sample(self, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [TOY_FORMULAS[i] for i in rng.integers(0, len(TOY_FORMULAS), n)]


class AtomCountOracle:
    """Deterministic screening model: predicts len(formula string) / 2 eV, std 0.1."""

    name = "letters"
    property = "band_gap"

    def predict(self, formulas: Sequence[str]) -> Prediction:
        mean = np.array([len(f) / 2 for f in formulas], dtype=float)
        return Prediction(mean, np.full(len(formulas), 0.1))


register_generator("toy", lambda: ToyGenerator())


def _pool_docs(store, pool: str) -> list[dict]:
    return list(store.db.pools.find({"pool": pool}, {"_id": 0, "formula": 1, "batch": 1, "generator": 1}))


def test_batch_plan_and_seeds_are_deterministic() -> None:
    assert batch_plan(250, 100) == [100, 100, 50]
    assert batch_seed(3, 1) == batch_seed(3, 1) != batch_seed(3, 2)
    with pytest.raises(ConfigError):
        batch_plan(0, 10)


def test_generate_pool_resumes_without_duplicates(store, mongo_uri, prefect_harness) -> None:
    common = dict(n=60, generator="toy", seed=7, batch_size=10, mongodb_uri=mongo_uri, database=store.db.name)
    # interrupted run: only the first two batches, then the full flow resumes
    first = generate_pool_flow(pool="resumed", max_batches=2, **common)
    assert first["batches_run"] == 2 and first["batches_remaining"] == 4
    seen: list[tuple[int, int]] = []
    second = generate_pool_flow(pool="resumed", progress=lambda done, total: seen.append((done, total)), **common)
    assert seen == [(3, 6), (4, 6), (5, 6), (6, 6)]
    assert second["batches_skipped"] == 2 and second["batches_run"] == 4 and second["batches_remaining"] == 0
    # a third call has nothing left to do
    third = generate_pool_flow(pool="resumed", **common)
    assert third["batches_run"] == 0 and third["inserted"] == 0
    # the same pool generated in one go
    generate_pool_flow(pool="straight", **common)
    resumed = sorted((d["formula"], d["batch"]) for d in _pool_docs(store, "resumed"))
    straight = sorted((d["formula"], d["batch"]) for d in _pool_docs(store, "straight"))
    assert resumed == straight
    formulas = [f for f, _ in resumed]
    assert len(formulas) == len(set(formulas)) > 5
    expected = {f for k in range(6) for f in ToyGenerator().sample(10, batch_seed(7, k))}
    assert set(formulas) == expected
    assert store.db.pool_batches.count_documents({"pool": "resumed", "batch": {"$gte": 0}}) == 6
    doc = store.db.pools.find_one({"pool": "resumed", "formula": formulas[0]})
    assert doc["generator"] == "toy" and doc["seed"] == 7 and doc["n_atoms"] >= 2
    # resuming with another seed would mix two pools: refused
    with pytest.raises(ConfigError):
        generate_pool_flow(pool="resumed", **{**common, "seed": 8})


class WeightedToy(ToyGenerator):
    """The toy generator with a weights identity, as the trained generators expose it."""

    def __init__(self, sha: str) -> None:
        self.metadata = {"weights_sha256": sha}


def test_a_pool_refuses_to_resume_with_other_weights(store, mongo_uri, prefect_harness) -> None:
    common = dict(n=30, seed=1, batch_size=10, mongodb_uri=mongo_uri, database=store.db.name)
    register_generator("toy-w", lambda sha="a" * 64: WeightedToy(sha))
    first = generate_pool_flow(pool="weighted", generator="toy-w", max_batches=1, **common)
    assert first["batches_run"] == 1
    assert store.pool_header("weighted")["weights_sha256"] == "a" * 64
    with pytest.raises(ConfigError, match="weights_sha256"):
        generate_pool_flow(pool="weighted", generator="toy-w", generator_kwargs={"sha": "b" * 64}, **common)
    # a pool whose header predates the weights identity resumes (the key is not compared)
    generate_pool_flow(pool="older", generator="toy", max_batches=1, **common)
    assert "weights_sha256" not in store.pool_header("older")
    header = {"generator": "toy", "seed": 1, "batch_size": 10, "generator_kwargs": {}, "weights_sha256": "c" * 64}
    _check_header(store, "older", header)
    with pytest.raises(ConfigError, match="seed"):
        _check_header(store, "older", {**header, "seed": 2})


def test_latent_random_generator_fills_a_pool_through_the_same_path(store, mongo_uri, prefect_harness) -> None:
    """The autoencoder's random latent decodes are a second pool source, via the same flow."""
    from generators.latent_sampler import LatentSampler

    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    summary = generate_pool_flow(pool="latent", n=200, generator="latent-random", seed=4, batch_size=100, **db)
    docs = _pool_docs(store, "latent")
    expected = set(LatentSampler.pretrained().sample(100, seed=batch_seed(4, 0)))
    expected |= set(LatentSampler.pretrained().sample(100, seed=batch_seed(4, 1)))
    assert summary["pool_size"] == len(docs) == len(expected)
    assert {d["formula"] for d in docs} == expected
    assert {d["generator"] for d in docs} == {"latent-random"}


def test_screen_filter_semantics() -> None:
    forms = ["NaCl", "LiFePO4", "Al2O3", "Ba2YCu3O7", "GaN"]
    model = AtomCountOracle()  # len/2: NaCl 2.0, Al2O3 2.5, GaN 1.5
    v = screen_formulas(forms, model, ScreenFilters(gap_min=1.8, gap_max=3.0, max_atoms=7, max_elements=3))
    assert v.passed.tolist() == [True, False, True, False, False]
    assert v.reasons[1] == ["4 elements > 3"]  # LiFePO4: 7 atoms (ok), 4 elements
    assert v.reasons[3] == ["13 atoms > 7", "4 elements > 3"]
    assert v.reasons[4] == ["predicted 1.500 < 1.8"]
    assert np.isnan(v.mean[1]) and np.isnan(v.mean[3])  # model not run on composition failures
    v_all = screen_formulas(forms, model, ScreenFilters(gap_min=1.8, gap_max=3.0), predict_all=True)
    assert np.isfinite(v_all.mean).all() and v_all.passed.tolist() == v.passed.tolist()
    # open window: only the composition filters apply; no limits: everything passes
    assert screen_formulas(forms, model, ScreenFilters()).passed.tolist() == [True, False, True, False, True]
    nolim = ScreenFilters(max_atoms=None, max_elements=None)
    assert screen_formulas(forms, model, nolim).passed.all()
    # upper bound of the window
    assert screen_formulas(["NaCl"], model, ScreenFilters(gap_max=1.9)).reasons[0] == ["predicted 2.000 > 1.9"]


def _verdicts(store, pool: str, key: str) -> dict[str, dict]:
    return {d["formula"]: d for d in store.db.screenings.find({"pool": pool, "key": key}, {"_id": 0})}


def _strip_times(verdicts: dict[str, dict], also: tuple[str, ...] = ()) -> dict[str, dict]:
    return {
        f: {k: v for k, v in d.items() if k not in ("created_at", "updated_at", *also)} for f, d in verdicts.items()
    }


def test_screen_pool_writes_verdicts_and_resumes(store, mongo_uri, prefect_harness) -> None:
    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    with pytest.raises(EmptyPoolError):
        screen_pool_flow("nothing", AtomCountOracle(), **db)
    generate_pool_flow(pool="p", n=80, generator="toy", seed=1, batch_size=20, **db)
    assert top_members(store, "p") == [] and store.screen_counts("p") == {}  # not screened yet
    summary = screen_pool_flow("p", AtomCountOracle(), gap_min=1.8, gap_max=3.0, **db)
    members = {d["formula"]: d for d in store.db.pools.find({"pool": "p"})}
    verdicts = _verdicts(store, "p", summary["screen_key"])
    assert summary["screened"] == len(members) == len(verdicts)
    for f, d in members.items():
        v = verdicts[f]
        assert v["batch"] == d["batch"]
        if d["n_atoms"] <= 7 and d["n_elements"] <= 3:
            assert v["pred_mean"] == pytest.approx(len(f) / 2) and v["pred_std"] == pytest.approx(0.1)
            assert v["verdict"] == ("pass" if 1.8 <= v["pred_mean"] <= 3.0 else "fail")
        else:
            assert v["verdict"] == "fail" and v["pred_mean"] is None and v["reasons"]
        assert "verdict" not in d  # the pool documents are not rewritten
    n_pass = sum(v["verdict"] == "pass" for v in verdicts.values())
    assert summary["passed_total"] == n_pass > 0
    assert store.screen_counts("p") == {"pass": n_pass, "fail": len(members) - n_pass}
    # same setup again: nothing left to screen; a new window is a second screening beside the first
    assert screen_pool_flow("p", AtomCountOracle(), gap_min=1.8, gap_max=3.0, **db)["screened"] == 0
    again = screen_pool_flow("p", AtomCountOracle(), gap_min=0.0, gap_max=10.0, **db)
    assert again["screened"] == len(members) and again["screen_key"] != summary["screen_key"]
    assert len(_verdicts(store, "p", summary["screen_key"])) == len(members)
    top = top_members(store, "p", k=3)  # the latest screening
    assert len(top) == 3 and top[0]["pred_mean"] >= top[1]["pred_mean"] >= top[2]["pred_mean"]
    assert {t["formula"] for t in top} <= {
        f for f, v in _verdicts(store, "p", again["screen_key"]).items() if v["verdict"] == "pass"
    }
    # a re-screen deletes and rewrites this setup's verdicts only
    redo = screen_pool_flow("p", AtomCountOracle(), gap_min=1.8, gap_max=3.0, rescreen=True, **db)
    assert redo["screened"] == len(members)
    assert _strip_times(_verdicts(store, "p", summary["screen_key"])) == _strip_times(verdicts)


def test_pools_top_cli_lists_the_latest_screening_and_writes_csv(
    store, mongo_uri, prefect_harness, tmp_path, monkeypatch
) -> None:
    import csv

    from typer.testing import CliRunner

    import flows.pipelines.pool as pf
    from flows.cli import pools as cli_pools

    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    generate_pool_flow(pool="cli", n=60, generator="toy", seed=6, batch_size=30, **db)
    summary = screen_pool_flow("cli", AtomCountOracle(), gap_min=1.8, **db)
    monkeypatch.setattr(pf, "open_store", lambda *a, **k: store)
    res = CliRunner().invoke(cli_pools.app, ["top", "--pool", "cli", "-k", "4", "--csv", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert summary["screen_key"] in res.output and "letters" in res.output
    with open(tmp_path / "t.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["formula"] for r in rows] == [d["formula"] for d in top_members(store, "cli", 4)]
    assert {r["key"] for r in rows} == {summary["screen_key"]} and {r["verdict"] for r in rows} == {"pass"}


def test_an_interrupted_screening_resumes_to_the_same_verdicts(store, mongo_uri, prefect_harness) -> None:
    """Half of a batch stored and no batch counts (a kill mid-batch): the next run inserts only the
    missing verdicts, and counts and top-k equal a straight run's."""
    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    for pool in ("cut", "whole"):
        generate_pool_flow(pool=pool, n=80, generator="toy", seed=4, batch_size=40, **db)
    whole = screen_pool_flow("whole", AtomCountOracle(), gap_min=1.8, **db)
    first = screen_pool_flow("cut", AtomCountOracle(), gap_min=1.8, **db)
    key = first["screen_key"]
    kept = store.db.screenings.find_one({"pool": "cut", "key": key, "batch": 0})["formula"]
    store.db.screenings.delete_many({"pool": "cut", "key": key, "batch": 0, "formula": {"$ne": kept}})
    store.db.summaries.delete_many({"kind": "screen", "pool": "cut"})
    resumed = screen_pool_flow("cut", AtomCountOracle(), gap_min=1.8, **db)
    n0 = store.db.pools.count_documents({"pool": "cut", "batch": 0})
    assert resumed["screened"] == n0 - 1  # batch 1 lost its counts only: its verdicts are all there
    assert _strip_times(_verdicts(store, "cut", key), ("pool",)) == _strip_times(
        _verdicts(store, "whole", key), ("pool",)
    )
    assert (
        store.screen_counts("cut")
        == store.screen_counts("whole")
        == {
            k: store.db.screenings.count_documents({"pool": "whole", "key": key, "verdict": k})
            for k in ("fail", "pass")
        }
    )
    assert [d["formula"] for d in top_members(store, "cut", 5)] == [
        d["formula"] for d in top_members(store, "whole", 5)
    ]
    assert whole["screened"] == first["screened"]


def test_screen_pool_on_dask_local_cluster(store, mongo_uri, prefect_harness) -> None:
    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    generate_pool_flow(pool="d", n=60, generator="toy", seed=2, batch_size=20, **db)
    summary = screen_pool_flow(
        "d", AtomCountOracle(), gap_min=1.8, dask_local=True, dask_workers=2, dask_processes=False, **db
    )
    assert summary["batches"] == 3
    assert summary["screened"] == store.db.screenings.count_documents({"pool": "d", "key": summary["screen_key"]})
    assert summary["screened"] == store.db.pools.count_documents({"pool": "d"})


def test_matgan_pool_resume_equals_straight_run_and_sizes_come_from_counts(store, mongo_uri, prefect_harness) -> None:
    """The MatGAN path (parts written by the writer thread, already-stored formulas skipped within a run)
    stores the same documents as the plain write of ``sample()``, also across an interrupted run."""
    from flows.pipelines.pool import formula_sizes
    from generators.matgan import MatGANSampler

    def write_pool_batch(pool: str, formulas: list[str], meta: dict) -> None:
        """The reference: the distinct formulas, sizes parsed from the strings, inserted if new."""
        uniq = sorted(set(formulas))
        atoms, elems = formula_sizes(uniq)
        store.bulk_insert_new(
            "pools",
            [
                {"pool": pool, "formula": f, **meta, "n_atoms": int(a), "n_elements": int(e)}
                for f, a, e in zip(uniq, atoms, elems, strict=True)
            ],
        )

    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    common = dict(n=3000, generator="matgan", seed=5, batch_size=1000, **db)
    generate_pool_flow(pool="m-resumed", max_batches=1, **common)
    generate_pool_flow(pool="m-resumed", **common)
    straight = generate_pool_flow(pool="m-straight", **common)
    sampler = MatGANSampler.pretrained(with_autoencoder=False)
    for k in range(3):  # the reference: the former write of each batch's sample(), in batch order
        write_pool_batch(
            "m-ref", sampler.sample(1000, batch_seed(5, k)), {"generator": "matgan", "seed": 5, "batch": k}
        )

    def docs(pool: str) -> list[tuple]:
        return sorted(
            (d["formula"], d["batch"], d["n_atoms"], d["n_elements"], d["generator"], d["seed"])
            for d in store.db.pools.find({"pool": pool})
        )

    assert docs("m-resumed") == docs("m-straight") == docs("m-ref")
    assert straight["pool_size"] == len(docs("m-ref")) > 500
    assert straight["inserted"] == len(docs("m-ref"))
    forms = [d[0] for d in docs("m-ref")]
    atoms, elems = formula_sizes(forms)
    assert [d[2] for d in docs("m-ref")] == atoms.tolist() and [d[3] for d in docs("m-ref")] == elems.tolist()


def test_pool_batches_equal_distinct_batches(store, mongo_uri, prefect_harness) -> None:

    db = dict(mongodb_uri=mongo_uri, database=store.db.name)
    generate_pool_flow(pool="pb", n=60, generator="toy", seed=3, batch_size=10, **db)
    distinct = sorted(store.db.pools.distinct("batch", {"pool": "pb"}))
    assert store.pool_batches("pb") == distinct  # batches that added nothing new are left out
    store.upsert_pool("pb", [{"formula": "ZnS", "batch": 40}, {"formula": "CdS", "batch": -3}])  # not from markers
    assert store.pool_batches("pb") == sorted([*distinct, 40, -3])
    assert store.pool_batches("none") == []
    summary = screen_pool_flow("pb", AtomCountOracle(), gap_min=1.8, **db)
    assert summary["screened"] == store.db.pools.count_documents({"pool": "pb"})
    setup = store.screen_setup("pb", summary["screen_key"])
    assert setup["model"] == "letters" and setup["filters"]["gap_min"] == 1.8 and setup["predict_all"] is False

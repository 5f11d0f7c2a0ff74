"""Status and top-k summaries (flows/store/, flows/pipelines/screening.py): always equal to the full queries.

Seeded small stores; the write patterns mimic the campaign stages (two-half bulk writes, a stage reset
that deletes and rewrites, a re-run of the metrics stage, a late label import) and the screening flow
(an interrupted batch, a new screening key, ``--rescreen``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from pymongo import DESCENDING, MongoClient, monitoring

from alcore.errors import EmptyPoolError
from flows.pipelines.screening import (
    ScreenFilters,
    screen_batch_task,
    screen_key,
    top_members,
)
from flows.store import HINT_SIZE, SUMMARIES, Store
from oracles.base import Prediction

ORDER = [("value", DESCENDING), ("formula", 1)]


def _full_top_labels(store: Store, campaign: str, k: int) -> list[dict[str, Any]]:
    return list(store.db.labels.find({"campaign": campaign, "property": "band_gap"}, {"_id": 0}).sort(ORDER).limit(k))


def _full_counts(store: Store, campaign: str) -> dict[str, dict[Any, int]]:
    out = {}
    for coll, field in (("candidates", "status"), ("labels", "source")):
        c = Counter(d.get(field) for d in store.db[coll].find({"campaign": campaign}, {field: 1}))
        out[coll] = dict(c)
    return out


def _labels(rng: np.random.Generator, lo: int, hi: int, iteration: int | None, source: str) -> list[dict]:
    vals = np.round(rng.gamma(2.0, 1.0, hi - lo), 1)  # rounded: ties at the top-k boundary
    return [
        {
            "formula": f"X{i}",
            "value": float(v),
            "source": source,
            **({} if iteration is None else {"iteration": iteration}),
        }
        for i, v in zip(range(lo, hi), vals, strict=True)
    ]


class _Finds(monitoring.CommandListener):
    """Records the filters of the ``find`` commands on ``labels``/``pools``."""

    def __init__(self) -> None:
        self.filters: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] in ("labels", "pools"):
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_top_labels_equal_the_full_query_through_deletes_and_lowered_values(store: Store, mongo_uri: str) -> None:
    rng = np.random.default_rng(0)
    for s in range(0, 600, 150):  # several write calls, like the label stages
        store.upsert_labels("c", _labels(rng, s, s + 150, 1 + s // 150, "lookup"))
    for k in (1, 5, 10, 37, HINT_SIZE, 400):
        assert store.top_labels("c", k) == _full_top_labels(store, "c", k), k

    # with a fresh hint the answer is a range query above the hint's k-th value, never the full query
    listener = _Finds()
    client: MongoClient = MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener])
    try:
        watched = Store(client[store.db.name])
        assert watched.top_labels("c", 10) == _full_top_labels(store, "c", 10)
        assert len(listener.filters) == 1 and listener.filters[0]["value"]["$gte"] > 0
    finally:
        client.close()

    # a stage reset deletes the best labels behind the store's back: the hint overshoots, the answer
    # falls back to the full query and stays exact, and the hint is rebuilt from what was read
    best = [d["formula"] for d in _full_top_labels(store, "c", 15)]
    store.db.labels.delete_many({"campaign": "c", "formula": {"$in": best}})
    assert store.top_labels("c", 10) == _full_top_labels(store, "c", 10)
    hint = store.db[SUMMARIES].find_one({"kind": "top", "collection": "labels"})
    assert [e[1] for e in hint["entries"][:10]] == [d["formula"] for d in _full_top_labels(store, "c", 10)]
    # a re-import lowers a top value, another raises one; the same labels written again do not duplicate
    top = _full_top_labels(store, "c", 3)
    store.upsert_labels(
        "c",
        [
            {"formula": top[0]["formula"], "value": 0.01, "source": "external"},
            {"formula": "X599", "value": 99.0, "source": "external"},
        ],
    )
    store.upsert_labels("c", [{"formula": "X599", "value": 99.0, "source": "external"}])
    for k in (1, 3, 10):
        assert store.top_labels("c", k) == _full_top_labels(store, "c", k)
    assert store.top_labels("c", 1)[0]["formula"] == "X599"
    assert store.top_labels("nobody", 5) == [] and store.top_labels("c", 0) == []


def test_campaign_counts_equal_the_full_aggregate_through_resumed_stages(store: Store) -> None:
    rng = np.random.default_rng(1)
    statuses = ["labelled", "rejected", "label_failed"]

    def check() -> None:
        got = store.campaign_counts("c")
        assert got == _full_counts(store, "c")

    store.upsert_labels("c", _labels(rng, 0, 40, 0, "seed"))
    check()
    for it in range(1, 6):
        cands = [{"formula": f"C{it}_{j}", "rank": j, "status": "acquired"} for j in range(30)]
        store.upsert_candidates("c", it, cands[:15])  # acquire, first half
        if it == 3:  # killed mid-write: the stage's reset deletes, the re-run writes everything again
            check()
            store.db.candidates.delete_many({"campaign": "c", "iteration": it})
        store.upsert_candidates("c", it, cands[15:] if it != 3 else cands)
        for j, st in enumerate(rng.choice(statuses, 30)):  # label stage: status updates in place
            store.db.candidates.update_one(
                {"campaign": "c", "iteration": it, "formula": f"C{it}_{j}"}, {"$set": {"status": str(st)}}
            )
        labels = _labels(rng, 100 * it, 100 * it + 20, it, "lookup")
        store.upsert_labels("c", labels[:10])
        if it == 2:  # killed mid-labels: reset (delete the iteration's non-seed labels) and re-run
            store.db.labels.delete_many({"campaign": "c", "iteration": it, "source": {"$ne": "seed"}})
        store.upsert_labels("c", labels if it == 2 else labels[10:])
        check()  # not yet snapshotted: counted live
        if it == 5:
            break  # the last iteration stays in progress (no snapshot): the live tail
        store.record_iteration_summary("c", it)  # metrics stage
        if it == 2:
            store.record_iteration_summary("c", it)  # a re-run of the metrics stage: set, not added
        check()
    snapped = [d["iteration"] for d in store.iterations("c") if d.get("counts")]
    assert snapped == [1, 2, 3, 4]
    # late writes into a snapshotted iteration refresh its snapshot
    store.upsert_labels("c", [{"formula": "C1_0", "value": 2.5, "source": "external", "iteration": 1}])
    store.upsert_candidates("c", 2, [{"formula": "C2_extra", "rank": 99, "status": "awaiting_label"}])
    check()
    # a label without an iteration (import with --allow-new) is counted live
    store.upsert_labels("c", [{"formula": "Y1", "value": 1.0, "source": "external"}])
    check()
    # a gap (iteration 3 has no snapshot, e.g. written before this version) is counted live
    store.db.iterations.update_one({"campaign": "c", "iteration": 3}, {"$unset": {"counts": ""}})
    check()
    assert sum(store.campaign_counts("c")["candidates"].values()) == 5 * 30 + 1


class _HashOracle:
    """Deterministic model: a value in [0, 4) eV from the formula's hash, on a 0.1 grid (ties)."""

    property = "band_gap"

    def __init__(self, name: str = "hash") -> None:
        self.name = name

    def predict(self, formulas: Sequence[str]) -> Prediction:
        mean = np.array([int(hashlib.sha256(f.encode()).hexdigest()[:6], 16) % 40 / 10 for f in formulas])
        return Prediction(mean, np.full(len(formulas), 0.1))


def _full_top_pool(store: Store, pool: str, key: str, k: int, verdicts: list[str]) -> list[dict[str, Any]]:
    return list(
        store.db.screenings.find(
            {"pool": pool, "key": key, "verdict": {"$in": verdicts}, "pred_mean": {"$ne": None}}, {"_id": 0}
        )
        .sort([("pred_mean", DESCENDING), ("formula", 1)])
        .limit(k)
    )


def _full_screen_counts(store: Store, pool: str, key: str) -> dict[Any, int]:
    docs = store.db.screenings.find({"pool": pool, "key": key}, {"verdict": 1})
    return dict(sorted(Counter(d["verdict"] for d in docs).items()))


def _screen(store: Store, pool: str, model: _HashOracle, filters: ScreenFilters, rescreen: bool = False) -> str:
    """What ``screen_pool_flow`` does, without Prefect: record the setup, screen every batch."""
    key = screen_key(model.name, filters, False)
    if rescreen:
        store.forget_screening(pool, key)
    store.record_screen_setup(pool, key, {"model": model.name, "filters": asdict(filters), "predict_all": False})
    for b in range(4):
        screen_batch_task.fn(pool, b, model, filters, key, False, None, None)
    return key


def test_screen_summaries_equal_the_full_queries(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.pipelines.screening as sf

    monkeypatch.setattr(sf, "open_store", lambda *a, **k: store)
    rng = np.random.default_rng(2)
    with pytest.raises(EmptyPoolError):
        top_members(store, "p")
    docs = [
        {
            "formula": f"Z{i}",
            "batch": i // 60,
            "generator": "t",
            "seed": 0,
            "n_atoms": int(rng.integers(2, 10)),
            "n_elements": 2,
        }
        for i in range(240)
    ]
    assert store.bulk_insert_new("pools", [{**d, "pool": "p"} for d in docs]) == 240
    assert store.bulk_insert_new("pools", [{**d, "pool": "p"} for d in docs]) == 0  # idempotent

    def check(key: str) -> None:
        assert store.screen_counts("p", key) == _full_screen_counts(store, "p", key)
        for k in (1, 7, 25):
            assert top_members(store, "p", k, key=key) == _full_top_pool(store, "p", key, k, ["pass"]), k
            assert top_members(store, "p", k, passed_only=False, key=key) == _full_top_pool(
                store, "p", key, k, ["pass", "fail"]
            )

    assert top_members(store, "p") == [] and store.screen_counts("p") == {}  # nothing screened yet
    model, window = _HashOracle(), ScreenFilters(gap_min=1.5, max_atoms=7)
    key = _screen(store, "p", model, window)
    check(key)
    assert store.screen_counts("p") == store.screen_counts("p", key)  # the latest screening by default
    assert store.db[SUMMARIES].count_documents({"kind": "screen", "pool": "p"}) == 4
    assert sum(store.screen_counts("p", key).values()) == 240
    # an interrupted batch: no counts yet, half its verdicts stored
    store.db[SUMMARIES].delete_one({"kind": "screen", "pool": "p", "batch": 1})
    half = [d["_id"] for d in store.db.screenings.find({"pool": "p", "key": key, "batch": 1}, {"_id": 1})][:30]
    store.db.screenings.delete_many({"_id": {"$in": half}})
    check(key)
    key = _screen(store, "p", model, window)  # the resume finishes it
    check(key)
    assert sum(store.screen_counts("p", key).values()) == 240
    # another setup (new key) is stored beside the first; the first's answers are unchanged
    key2 = _screen(store, "p", _HashOracle("hash2"), ScreenFilters(gap_min=3.0, max_atoms=7))
    assert key2 != key and store.screen_counts("p") == store.screen_counts("p", key2)
    check(key2)
    check(key)
    # --rescreen with the first setup
    key = _screen(store, "p", model, window, rescreen=True)
    check(key)
    assert store.screen_counts("p") == store.screen_counts("p", key)
    # a member added to a screened batch drops that batch's counts (every key): counted live, then screened
    store.upsert_pool("p", [{"formula": "Z999", "batch": 0, "n_atoms": 2, "n_elements": 2}])
    assert store.db[SUMMARIES].count_documents({"kind": "screen", "pool": "p", "batch": 0}) == 0
    check(key)
    check(key2)
    key = _screen(store, "p", model, window)
    check(key)
    assert sum(store.screen_counts("p", key).values()) == 241
    # a verdict deleted behind the hints' back: top-k must not serve the stale entry
    best = top_members(store, "p", 1, key=key)[0]
    store.db.screenings.delete_one({"pool": "p", "key": key, "formula": best["formula"]})
    for k in (1, 7, 25):
        assert top_members(store, "p", k, key=key) == _full_top_pool(store, "p", key, k, ["pass"]), k

"""Prefect flow ``screen-pool``: run a screening model over a stored pool and write verdicts.

The pool is screened batch by batch (its generation batches, indexed by ``(pool, batch)``). For each
document the flow applies the AGD filters and writes into it:

* ``verdict``: ``"pass"`` if every filter holds, else ``"fail"``;
* ``screen_reasons``: the filters it failed (empty when it passed);
* ``pred_mean`` / ``pred_std``: the model's prediction (property unit, eV for band gaps); ``None``
  where the model was not run (composition filters failed and ``predict_all`` is off) or could not
  predict (then the reason is the model's);
* ``screen_key``: a hash of (model name, filters); a document already screened with the same key
  is skipped, so an interrupted screening resumes, and a changed model or window re-screens.

Filters (:class:`ScreenFilters`): property window ``[gap_min, gap_max]`` (None = open end), at
most ``max_atoms`` atoms in the reduced formula and ``max_elements`` elements (AGD: 7 and 3).
Composition filters are applied first; by default the model only runs on formulas that pass them.

Batches run as Prefect tasks; pass ``dask_address`` (an existing Dask scheduler) or
``dask_local=True`` (a ``LocalCluster``) to fan them out through ``prefect_dask.DaskTaskRunner``.

Summaries (so status and top-k stay fast on a 1 M pool; docs/reliability.md, "Load"): after writing
a batch, the task stores the batch's counts by ``(screen_key, verdict)`` in ``summaries``
(:func:`record_screen_batch`; removed before the batch is rewritten, so an interrupted batch is
counted live until it finishes) and merges its best predictions into the pool's top-k hints
(:meth:`~flows.store.Store.note_top`). :func:`screen_counts` and :func:`top_members` read them and
stay exactly equal to the full queries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from pymongo import UpdateMany, UpdateOne

from alcore.errors import EmptyPoolError
from flows.pool_flow import formula_sizes, open_store
from flows.store import HINT_SIZE, SUMMARIES, Store, group_rows, partitioned_counts, utcnow
from oracles.base import Oracle

WRITE_CHUNK = 5_000


@dataclass(frozen=True)
class ScreenFilters:
    """Screening filters: property window ``[gap_min, gap_max]`` (None = unbounded), ``max_atoms``
    in the reduced formula and ``max_elements`` distinct elements (None = no limit)."""

    gap_min: float | None = None
    gap_max: float | None = None
    max_atoms: int | None = 7
    max_elements: int | None = 3


@dataclass
class Verdicts:
    """Screening result of N formulas: ``passed`` (N,) bool, ``reasons`` per formula, ``mean``/``std``
    (N,) float64 with NaN where the model was not run or could not predict."""

    passed: np.ndarray
    reasons: list[list[str]]
    mean: np.ndarray
    std: np.ndarray


def composition_reasons(n_atoms: np.ndarray, n_elements: np.ndarray, filters: ScreenFilters) -> list[list[str]]:
    """Per formula, the composition filters it fails (``[]`` if none); inputs are (N,) int arrays."""
    out: list[list[str]] = [[] for _ in range(len(n_atoms))]
    if filters.max_atoms is not None:
        for i in np.flatnonzero(n_atoms > filters.max_atoms):
            out[i].append(f"{int(n_atoms[i])} atoms > {filters.max_atoms}")
    if filters.max_elements is not None:
        for i in np.flatnonzero(n_elements > filters.max_elements):
            out[i].append(f"{int(n_elements[i])} elements > {filters.max_elements}")
    return out


def screen_formulas(formulas: Sequence[str], model: Oracle, filters: ScreenFilters,
                    n_atoms: np.ndarray | None = None, n_elements: np.ndarray | None = None,
                    predict_all: bool = False) -> Verdicts:
    """Apply ``filters`` and ``model`` to ``formulas``; returns :class:`Verdicts`.

    ``n_atoms``/``n_elements`` (reduced formula) are computed if not given. The model runs on the
    formulas passing the composition filters (all formulas with ``predict_all``).
    """
    if n_atoms is None or n_elements is None:
        n_atoms, n_elements = formula_sizes(list(formulas))
    reasons = composition_reasons(np.asarray(n_atoms), np.asarray(n_elements), filters)
    run = np.ones(len(formulas), dtype=bool) if predict_all else np.array([not r for r in reasons], dtype=bool)
    mean = np.full(len(formulas), np.nan)
    std = np.full(len(formulas), np.nan)
    idx = np.flatnonzero(run)
    if idx.size:
        pred = model.predict([formulas[i] for i in idx])
        mean[idx], std[idx] = pred.mean, pred.std
        for j, i in enumerate(idx):
            if not np.isfinite(pred.mean[j]):
                reasons[i].append(f"no prediction: {pred.reasons[j] or 'model returned NaN'}")
            elif filters.gap_min is not None and pred.mean[j] < filters.gap_min:
                reasons[i].append(f"predicted {pred.mean[j]:.3f} < {filters.gap_min}")
            elif filters.gap_max is not None and pred.mean[j] > filters.gap_max:
                reasons[i].append(f"predicted {pred.mean[j]:.3f} > {filters.gap_max}")
    passed = np.array([not r for r in reasons], dtype=bool)
    return Verdicts(passed, reasons, mean, std)


def screen_key(model_name: str, filters: ScreenFilters, predict_all: bool) -> str:
    """Short hash identifying a screening setup (model name, filters, predict_all)."""
    blob = json.dumps({"model": model_name, "filters": asdict(filters), "predict_all": predict_all}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_model(model: str | Oracle) -> Oracle:
    if isinstance(model, str):
        from oracles.registry import get_oracle

        return get_oracle(model)
    return model


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@task(name="screen-pool-batch", retries=1, retry_delay_seconds=2)
def screen_batch_task(pool: str, batch: int, model: str | Oracle, filters: ScreenFilters, key: str,
                      predict_all: bool, mongodb_uri: str | None, database: str | None) -> dict[str, Any]:
    """Screen the not-yet-screened documents of generation batch ``batch``; returns counts and timings."""
    store = open_store(mongodb_uri, database)
    coll = store.db["pools"]
    t0 = time.perf_counter()
    docs = list(coll.find({"pool": pool, "batch": batch, "screen_key": {"$ne": key}},
                          {"_id": 1, "formula": 1, "n_atoms": 1, "n_elements": 1}))
    if not docs:
        if store.db[SUMMARIES].find_one({"_id": _batch_summary_id(pool, batch)}, {"_id": 1}) is None:
            record_screen_batch(store, pool, batch)
        return {"batch": batch, "screened": 0, "passed": 0, "seconds": 0.0}
    store.db[SUMMARIES].delete_one({"_id": _batch_summary_id(pool, batch)})  # counted live until rewritten
    formulas = [d["formula"] for d in docs]
    if all("n_atoms" in d and "n_elements" in d for d in docs):
        n_atoms = np.array([d["n_atoms"] for d in docs])
        n_elements = np.array([d["n_elements"] for d in docs])
    else:
        n_atoms, n_elements = formula_sizes(formulas)
    t1 = time.perf_counter()
    resolved = _resolve_model(model)
    v = screen_formulas(formulas, resolved, filters, n_atoms, n_elements, predict_all)
    t2 = time.perf_counter()
    now = utcnow()
    name = getattr(resolved, "name", type(resolved).__name__)
    common = {"screen_key": key, "screened_by": name, "screen_filters": asdict(filters), "screened_at": now,
              "updated_at": now}
    # documents rejected before the model ran share one update; the others get one each
    grouped: dict[str, list[Any]] = {}
    ops: list[Any] = []
    for d, ok, r, m, s in zip(docs, v.passed, v.reasons, v.mean, v.std, strict=True):
        if not np.isfinite(m) and not ok:
            grouped.setdefault(json.dumps(r), []).append(d["_id"])
        else:
            ops.append(UpdateOne({"_id": d["_id"]}, {"$set": {
                **common, "verdict": "pass" if ok else "fail", "screen_reasons": r,
                "pred_mean": _num(m), "pred_std": _num(s)}}))
    for r_json, ids in grouped.items():
        for s in range(0, len(ids), WRITE_CHUNK):
            ops.append(UpdateMany({"_id": {"$in": ids[s:s + WRITE_CHUNK]}}, {"$set": {
                **common, "verdict": "fail", "screen_reasons": json.loads(r_json),
                "pred_mean": None, "pred_std": None}}))
    for s in range(0, len(ops), WRITE_CHUNK):
        coll.bulk_write(ops[s:s + WRITE_CHUNK], ordered=False)
    note_screen_top(store, pool, formulas, v.passed, v.mean)
    record_screen_batch(store, pool, batch)
    return {"batch": batch, "screened": len(docs), "passed": int(v.passed.sum()),
            "predicted": int(np.isfinite(v.mean).sum()), "read_s": t1 - t0, "predict_s": t2 - t1,
            "write_s": time.perf_counter() - t2, "seconds": time.perf_counter() - t0}


def _batch_summary_id(pool: str, batch: int) -> str:
    return "screen:" + json.dumps([pool, batch])


def record_screen_batch(store: Store, pool: str, batch: int) -> list[dict[str, Any]]:
    """Store the counts of batch ``batch`` of ``pool`` by ``(screen_key, verdict)`` in ``summaries``; returns them.

    One indexed grouping over the batch's documents, ``$set`` (a repeat rewrites the same numbers).
    """
    rows = group_rows(store.db["pools"], {"pool": pool, "batch": batch}, ["screen_key", "verdict"])
    store.db[SUMMARIES].update_one({"_id": _batch_summary_id(pool, batch)},
                                   {"$set": {"kind": "screen", "pool": pool, "batch": batch, "rows": rows,
                                             "updated_at": utcnow()}}, upsert=True)
    return rows


def note_screen_top(store: Store, pool: str, formulas: Sequence[str], passed: np.ndarray, mean: np.ndarray) -> None:
    """Merge the predictions just written for ``formulas`` into the pool's top-k hints (pass and fail)."""
    for verdict, sel in (("pass", passed), ("fail", ~passed)):
        idx = np.flatnonzero(sel & np.isfinite(mean))
        best = idx[np.argsort(-mean[idx], kind="stable")][:HINT_SIZE]
        store.note_top("pools", {"pool": pool, "verdict": verdict}, "pred_mean",
                       [(float(mean[i]), formulas[i]) for i in best])


def screen_counts(store: Store, pool: str, key: str | None = None) -> dict[Any, int]:
    """Documents of ``pool`` by verdict (``None``: not screened), of screening ``key`` only if given.

    Equal to grouping every document of the pool; reads the per-batch summaries and counts live
    (indexed by ``(pool, batch)``) only the batches without one.
    """
    snaps = {int(d["batch"]): d["rows"] for d in store.db[SUMMARIES].find({"kind": "screen", "pool": pool})
             if isinstance(d.get("batch"), int)}
    totals = partitioned_counts(store.db["pools"], {"pool": pool}, "batch", ["screen_key", "verdict"], snaps)
    out: dict[Any, int] = {}
    for (k, verdict), n in totals.items():
        if key is None or k == key:
            out[verdict] = out.get(verdict, 0) + n
    return out


def _reset_summaries(store: Store, pool: str, key: str, rescreen: bool) -> None:
    """Drop the pool's top-k hints when its verdicts are about to be rewritten (a re-screen or another
    screening key; the hints would only overshoot, costing one full query); drop the batch counts on a
    re-screen (they no longer match the unset keys)."""
    marker = {"_id": "screen-key:" + json.dumps(pool)}
    last = store.db[SUMMARIES].find_one(marker)
    if rescreen or last is None or last.get("key") != key:
        store.forget_top("pools", pool=pool)
        store.db[SUMMARIES].update_one(marker, {"$set": {"kind": "screen-key", "pool": pool, "key": key}},
                                       upsert=True)
    if rescreen:
        store.db[SUMMARIES].delete_many({"kind": "screen", "pool": pool})


def _task_runner(dask_address: str | None, dask_local: bool, dask_workers: int, dask_processes: bool = True):
    if dask_address is None and not dask_local:
        return None
    from prefect_dask import DaskTaskRunner

    if dask_address is not None:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1,
                                          "processes": dask_processes, "dashboard_address": None})


@flow(name="screen-pool")
def _screen_pool(pool: str, model: str | Oracle, filters: ScreenFilters, predict_all: bool, rescreen: bool,
                 mongodb_uri: str | None, database: str | None, concurrent: bool,
                 progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    logger = get_run_logger()
    store = open_store(mongodb_uri, database)
    coll = store.db["pools"]
    batches = sorted(b for b in coll.distinct("batch", {"pool": pool}) if b is not None)
    if not batches:
        raise EmptyPoolError(f"pool {pool!r} has no documents; generate it first (alflow pools generate-pool)")
    model_name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    key = screen_key(model_name, filters, predict_all)
    _reset_summaries(store, pool, key, rescreen)
    if rescreen:
        coll.update_many({"pool": pool}, {"$unset": {"screen_key": ""}})
    t0 = time.perf_counter()
    results = []
    if concurrent:
        futures = [screen_batch_task.submit(pool, b, model, filters, key, predict_all, mongodb_uri, database)
                   for b in batches]
        for i, f in enumerate(futures):
            results.append(f.result())
            if progress:
                progress(i + 1, len(batches))
    else:
        for i, b in enumerate(batches):
            results.append(screen_batch_task(pool, b, model, filters, key, predict_all, mongodb_uri, database))
            r = results[-1]
            logger.info("pool %s batch %d: %d screened, %d passed (%.1f s)", pool, b, r["screened"], r["passed"],
                        r["seconds"])
            if progress:
                progress(i + 1, len(batches))
    summary = {
        "pool": pool, "model": model_name, "filters": asdict(filters), "screen_key": key,
        "batches": len(batches), "screened": sum(r["screened"] for r in results),
        "passed_now": sum(r["passed"] for r in results),
        "passed_total": screen_counts(store, pool, key).get("pass", 0),
        "predicted": sum(r.get("predicted", 0) for r in results),
        "predict_s": sum(r.get("predict_s", 0.0) for r in results),
        "write_s": sum(r.get("write_s", 0.0) for r in results),
        "seconds": time.perf_counter() - t0,
    }
    logger.info("screened pool %s: %s", pool, summary)
    return summary


def screen_pool_flow(
    pool: str,
    model: str | Oracle = "resnet-agd",
    gap_min: float | None = None,
    gap_max: float | None = None,
    max_atoms: int | None = 7,
    max_elements: int | None = 3,
    predict_all: bool = False,
    rescreen: bool = False,
    mongodb_uri: str | None = None,
    database: str | None = None,
    dask_address: str | None = None,
    dask_local: bool = False,
    dask_workers: int = 2,
    dask_processes: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Screen pool ``pool`` with ``model`` (an oracle name for ``oracles.registry.get_oracle`` or any
    object with ``.predict(formulas) -> Prediction``) and write verdicts into its documents.

    Runs the Prefect flow ``screen-pool``; with ``dask_address``/``dask_local`` its batch tasks run on
    a Dask cluster through ``prefect_dask.DaskTaskRunner`` (``dask_workers`` workers of one thread;
    ``dask_processes=False`` keeps the local workers in this process). Returns a summary dict (screened,
    passed, seconds). Raises :class:`EmptyPoolError` for an empty or unknown pool.
    """
    filters = ScreenFilters(gap_min, gap_max, max_atoms, max_elements)
    runner = _task_runner(dask_address, dask_local, dask_workers, dask_processes)
    fl = _screen_pool if runner is None else _screen_pool.with_options(task_runner=runner)
    return fl(pool, model, filters, predict_all, rescreen, mongodb_uri, database, runner is not None, progress)


def top_members(store: Store, pool: str, k: int = 20, passed_only: bool = True) -> list[dict[str, Any]]:
    """The ``k`` pool documents with the highest ``pred_mean``, ties by formula: those that passed
    screening, or (``passed_only=False``) all screened ones (verdict pass or fail) with a prediction.

    Exact, and fast on a 1 M pool (:meth:`~flows.store.Store.top_k` on the (pool, verdict, pred_mean)
    index). Raises :class:`EmptyPoolError` if the pool has no documents.
    """
    verdicts = ["pass"] if passed_only else ["pass", "fail"]
    rows = [d for v in verdicts for d in store.top_k("pools", {"pool": pool, "verdict": v}, "pred_mean", k)]
    rows = sorted(rows, key=lambda d: (-d["pred_mean"], d["formula"]))[:k]
    if not rows and not _pool_exists(store, pool):
        raise EmptyPoolError(f"pool {pool!r} has no documents; generate it first (alflow pools generate-pool)")
    return rows


def _pool_exists(store: Store, pool: str) -> bool:
    """Whether ``pool`` has documents: a generation marker that inserted some (cheap), else a lookup."""
    if store.db["pool_batches"].find_one({"pool": pool, "inserted": {"$gt": 0}}, {"_id": 1}) is not None:
        return True
    return store.db["pools"].find_one({"pool": pool}, {"_id": 1}) is not None

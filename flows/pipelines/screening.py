"""Prefect flow ``screen-pool``: run a screening model over a stored pool and store its verdicts.

Verdicts live in their own collection, ``screenings``, one document per pool member and screening
setup (unique on ``(pool, key, formula)``)::

    {pool, key, batch, formula, verdict, reasons, pred_mean, pred_std, created_at, updated_at}

* ``key``: a hash of (model name, filters, predict_all) (:func:`screen_key`); the setup behind it is
  stored once per pool and key in ``summaries`` (:meth:`~flows.store.Store.screen_setup`). Screenings with different
  models or windows live side by side; the pool documents are never rewritten.
* ``verdict``: ``"pass"`` if every filter holds, else ``"fail"``; ``reasons``: the filters it failed
  (empty when it passed);
* ``pred_mean`` / ``pred_std``: the model's prediction (property unit, eV for band gaps); ``None``
  where the model was not run (composition filters failed and ``predict_all`` is off) or could not
  predict (then the reason is the model's);
* ``batch``: the member's generation batch (the unit of work and of resumption).

Why a collection of its own (docs/matgan.md, "Pools"): new documents are written with unordered
``insert_many``, which the embedded SecantusDB stores ~8x faster than per-document updates of the
pool (measured 4,458 vs 561 docs/s), and a repeated insert is a no-op on the unique key, so an
interrupted batch resumes by inserting what is missing.

Filters (:class:`ScreenFilters`): property window ``[gap_min, gap_max]`` (None = open end), at
most ``max_atoms`` atoms in the reduced formula and ``max_elements`` elements (AGD: 7 and 3).
Composition filters are applied first; by default the model only runs on formulas that pass them.

Batches run as Prefect tasks; pass ``dask_address`` (an existing Dask scheduler) or
``dask_local=True`` (a ``LocalCluster``) to fan them out through ``prefect_dask.DaskTaskRunner``.
Within a batch, verdicts are computed in parts of :data:`SCREEN_PART` members and each part is
inserted on a background thread while the next is computed.

Summaries (so status and top-k stay fast on a 1 M pool; docs/reliability.md, "Load"): a finished
batch stores its counts by verdict in ``summaries`` (``_id`` ``"screen:[pool, key, batch]"``; its
presence also marks the batch as done) and merges its best predictions into the top-k hints of
``(pool, key, verdict)``. :meth:`~flows.store.Store.screen_counts` and :func:`top_members` read them and stay exactly
equal to the full queries. A pool member added to a screened batch later
(:meth:`~flows.store.Store.upsert_pool`) drops that batch's counts, so the next run screens it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prefect import flow, task

from alcore.errors import EmptyPoolError
from flows.logs import flow_logger
from flows.pipelines.pool import OrderedWriter, formula_sizes, open_store
from flows.store import SCREENINGS, Store
from oracles.base import Oracle
from oracles.defaults import DEFAULT_BANDGAP_ORACLE

#: Members computed per part (the writer thread stores one part while the next is computed).
SCREEN_PART = 10_000
#: Documents per ``insert_many`` call.
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


def screen_formulas(
    formulas: Sequence[str],
    model: Oracle,
    filters: ScreenFilters,
    n_atoms: np.ndarray | None = None,
    n_elements: np.ndarray | None = None,
    predict_all: bool = False,
) -> Verdicts:
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


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


def verdict_docs(pool: str, key: str, batch: int, formulas: Sequence[str], v: Verdicts) -> list[dict[str, Any]]:
    """The ``screenings`` documents of ``formulas`` (aligned with ``v``) under screening ``key``."""
    return [
        {
            "pool": pool,
            "key": key,
            "batch": batch,
            "formula": f,
            "verdict": "pass" if ok else "fail",
            "reasons": r,
            "pred_mean": _finite(m),
            "pred_std": _finite(s),
        }
        for f, ok, r, m, s in zip(formulas, v.passed.tolist(), v.reasons, v.mean.tolist(), v.std.tolist(), strict=True)
    ]


@task(name="screen-pool-batch", retries=1, retry_delay_seconds=2)
def screen_batch_task(
    pool: str,
    batch: int,
    model: str | Oracle,
    filters: ScreenFilters,
    key: str,
    predict_all: bool,
    mongodb_uri: str | None,
    database: str | None,
) -> dict[str, Any]:
    """Screen the members of generation batch ``batch`` that have no verdict under ``key`` yet.

    Skips a batch whose counts are stored (finished). Otherwise reads the batch's members and the
    formulas already screened (an interrupted run), computes verdicts part by part and inserts each
    part on a background thread while the next is computed; then stores the batch's counts and
    merges its best predictions into the top-k hints. Returns counts and timings (seconds).
    """
    store = open_store(mongodb_uri, database)
    t0 = time.perf_counter()
    if store.screen_batch_done(pool, key, batch):
        return {"batch": batch, "screened": 0, "passed": 0, "seconds": time.perf_counter() - t0}
    members = store.pool_batch_members(pool, batch)
    done = store.screened_formulas(pool, key, batch)
    todo = [d for d in members if d["formula"] not in done]
    t1 = time.perf_counter()
    resolved = _resolve_model(model)
    formulas = [d["formula"] for d in todo]
    passed = np.zeros(len(todo), dtype=bool)
    mean = np.full(len(todo), np.nan)
    predict_s = 0.0
    with OrderedWriter() as writer:
        for s0 in range(0, len(todo), SCREEN_PART):
            part = todo[s0 : s0 + SCREEN_PART]
            tp = time.perf_counter()
            if all("n_atoms" in d and "n_elements" in d for d in part):
                n_atoms = np.array([d["n_atoms"] for d in part])
                n_elements = np.array([d["n_elements"] for d in part])
            else:
                n_atoms, n_elements = formula_sizes(formulas[s0 : s0 + SCREEN_PART])
            v = screen_formulas(formulas[s0 : s0 + SCREEN_PART], resolved, filters, n_atoms, n_elements, predict_all)
            docs = verdict_docs(pool, key, batch, formulas[s0 : s0 + SCREEN_PART], v)
            predict_s += time.perf_counter() - tp
            passed[s0 : s0 + len(part)] = v.passed
            mean[s0 : s0 + len(part)] = v.mean
            writer.submit(store.bulk_insert_new, SCREENINGS, docs, WRITE_CHUNK)
        t2 = time.perf_counter()
        writer.results()
    store.note_screen_top(pool, key, formulas, passed, mean)
    # resumed: count what the earlier run stored too (live); else from what was just written
    store.record_screen_batch(
        pool, key, batch, None if done else Counter({"pass": int(passed.sum()), "fail": int((~passed).sum())})
    )
    return {
        "batch": batch,
        "screened": len(todo),
        "passed": int(passed.sum()),
        "predicted": int(np.isfinite(mean).sum()),
        "read_s": t1 - t0,
        "predict_s": predict_s,
        "write_s": writer.busy_s,
        "wait_s": time.perf_counter() - t2,
        "seconds": time.perf_counter() - t0,
    }


def _task_runner(dask_address: str | None, dask_local: bool, dask_workers: int, dask_processes: bool = True):
    if dask_address is None and not dask_local:
        return None
    from prefect_dask import DaskTaskRunner

    if dask_address is not None:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": dask_workers,
            "threads_per_worker": 1,
            "processes": dask_processes,
            "dashboard_address": None,
        },
    )


@flow(name="screen-pool")
def _screen_pool(
    pool: str,
    model: str | Oracle,
    filters: ScreenFilters,
    predict_all: bool,
    rescreen: bool,
    mongodb_uri: str | None,
    database: str | None,
    concurrent: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    logger = flow_logger()
    store = open_store(mongodb_uri, database)
    batches = store.pool_batches(pool)
    if not batches:
        raise EmptyPoolError(f"pool {pool!r} has no documents; generate it first (alflow pools generate-pool)")
    model_name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    key = screen_key(model_name, filters, predict_all)
    if rescreen:
        store.forget_screening(pool, key)
    store.record_screen_setup(pool, key, {"model": model_name, "filters": asdict(filters), "predict_all": predict_all})
    t0 = time.perf_counter()
    results = []
    if concurrent:
        futures = [
            screen_batch_task.submit(pool, b, model, filters, key, predict_all, mongodb_uri, database) for b in batches
        ]
        for i, f in enumerate(futures):
            results.append(f.result())
            if progress:
                progress(i + 1, len(batches))
    else:
        for i, b in enumerate(batches):
            results.append(screen_batch_task(pool, b, model, filters, key, predict_all, mongodb_uri, database))
            r = results[-1]
            logger.info(
                "pool %s batch %d: %d screened, %d passed (%.1f s)", pool, b, r["screened"], r["passed"], r["seconds"]
            )
            if progress:
                progress(i + 1, len(batches))
    summary = {
        "pool": pool,
        "model": model_name,
        "filters": asdict(filters),
        "screen_key": key,
        "batches": len(batches),
        "screened": sum(r["screened"] for r in results),
        "passed_now": sum(r["passed"] for r in results),
        "passed_total": store.screen_counts(pool, key).get("pass", 0),
        "predicted": sum(r.get("predicted", 0) for r in results),
        "predict_s": sum(r.get("predict_s", 0.0) for r in results),
        "write_s": sum(r.get("write_s", 0.0) for r in results),
        "seconds": time.perf_counter() - t0,
    }
    logger.info("screened pool %s: %s", pool, summary)
    return summary


def screen_pool_flow(
    pool: str,
    model: str | Oracle = DEFAULT_BANDGAP_ORACLE,
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
    object with ``.predict(formulas) -> Prediction``) and store verdicts in ``screenings``.

    Runs the Prefect flow ``screen-pool``; with ``dask_address``/``dask_local`` its batch tasks run on
    a Dask cluster through ``prefect_dask.DaskTaskRunner`` (``dask_workers`` workers of one thread;
    ``dask_processes=False`` keeps the local workers in this process). ``rescreen`` deletes this
    setup's verdicts first. Returns a summary dict (screen_key, screened, passed, seconds). Raises
    :class:`EmptyPoolError` for an empty or unknown pool.
    """
    filters = ScreenFilters(gap_min, gap_max, max_atoms, max_elements)
    runner = _task_runner(dask_address, dask_local, dask_workers, dask_processes)
    fl = _screen_pool if runner is None else _screen_pool.with_options(task_runner=runner)
    return fl(pool, model, filters, predict_all, rescreen, mongodb_uri, database, runner is not None, progress)


def top_members(
    store: Store, pool: str, k: int = 20, passed_only: bool = True, key: str | None = None
) -> list[dict[str, Any]]:
    """The ``k`` ``screenings`` documents of ``pool`` under ``key`` (default: the latest screening)
    with the highest ``pred_mean``, ties by formula: those that passed, or (``passed_only=False``)
    all with a prediction. Each is ``{formula, verdict, reasons, pred_mean, pred_std, batch, ...}``.

    Exact, and fast on a 1 M pool (:meth:`~flows.store.Store.top_k` on the (pool, key, verdict,
    pred_mean) index). Raises :class:`EmptyPoolError` if the pool has no documents; returns ``[]``
    for a pool that was never screened.
    """
    key = key or store.latest_screen_key(pool)
    if key is None:
        if not store.pool_exists(pool):
            raise EmptyPoolError(f"pool {pool!r} has no documents; generate it first (alflow pools generate-pool)")
        return []
    verdicts = ["pass"] if passed_only else ["pass", "fail"]
    rows = [
        d for v in verdicts for d in store.top_k(SCREENINGS, {"pool": pool, "key": key, "verdict": v}, "pred_mean", k)
    ]
    rows = sorted(rows, key=lambda d: (-d["pred_mean"], d["formula"]))[:k]
    if not rows and not store.pool_exists(pool):
        raise EmptyPoolError(f"pool {pool!r} has no documents; generate it first (alflow pools generate-pool)")
    return rows

"""Prefect flow ``generate-pool``: stream generated formulas into the MongoDB ``pools`` collection.

A pool of ``n`` samples is cut into ``ceil(n / batch_size)`` batches; batch ``k`` draws its samples
with the seed :func:`batch_seed` ``(seed, k)``, so every batch is reproducible on its own. After a
batch is written, a marker document ``{pool, batch: k, ...}`` goes into ``pool_batches``; a restarted
run skips every batch that has a marker, so an interrupted pool resumes where it stopped and never
duplicates (pool documents are unique on ``(pool, formula)`` anyway).

Pool documents: ``{pool, formula, generator, seed, batch, n_atoms, n_elements, created_at}`` where
``batch`` is the first batch that produced the formula (later duplicates are ignored: the write is
an unordered insert against the unique ``(pool, formula)`` index, so repeating a batch is a no-op),
``n_atoms``/``n_elements`` describe the reduced formula (used by screening filters). The header
document ``{pool, batch: -1}`` in ``pool_batches`` holds the generator, seed and batch size; resuming
with different ones raises :class:`~alcore.errors.ConfigError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from pymongo import ASCENDING, InsertOne
from pymongo.errors import BulkWriteError

from alcore.composition import reduced_counts
from alcore.errors import ConfigError
from flows.store import Store, utcnow
from generators.base import CompositionGenerator, get_generator

BATCHES = "pool_batches"
DEFAULT_BATCH = 50_000
WRITE_CHUNK = 5_000

_STORES: dict[tuple[str | None, str | None], Store] = {}
_GENERATORS: dict[tuple[str, tuple], CompositionGenerator] = {}


def open_store(mongodb_uri: str | None = None, database: str | None = None) -> Store:
    """A store for ``mongodb_uri``/``database`` (None: the configured/embedded one), cached per process.

    Tasks get the address, not a client, so they also run on Dask workers in other processes.
    """
    key = (mongodb_uri, database)
    if key not in _STORES:
        if mongodb_uri is None:
            from flows.settings import get_settings

            settings = get_settings()
            if database:
                settings = settings.model_copy(update={"database": database})
            _STORES[key] = Store.connect(settings)
        else:
            _STORES[key] = Store.from_uri(mongodb_uri, database or "alflow")
        _STORES[key].db[BATCHES].create_index([("pool", ASCENDING), ("batch", ASCENDING)], unique=True)
    return _STORES[key]


def batch_seed(seed: int, batch: int) -> int:
    """Deterministic 63-bit seed of batch ``batch`` of a pool generated with ``seed`` (int)."""
    return int(np.random.SeedSequence([int(seed), int(batch)]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def batch_plan(n: int, batch_size: int) -> list[int]:
    """Sizes of the batches of an ``n``-sample pool: ``batch_size`` each, the last one the remainder."""
    if n < 1 or batch_size < 1:
        raise ConfigError(f"pool size n={n} and batch_size={batch_size} must be >= 1")
    k = math.ceil(n / batch_size)
    return [batch_size] * (k - 1) + [n - batch_size * (k - 1)]


def formula_sizes(formulas: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(n_atoms, n_elements)`` int arrays of the reduced formulas (cached parse per formula)."""
    atoms = np.empty(len(formulas), dtype=np.int64)
    elems = np.empty(len(formulas), dtype=np.int64)
    for i, f in enumerate(formulas):
        rc = reduced_counts(f)
        atoms[i] = sum(c for _, c in rc)
        elems[i] = len(rc)
    return atoms, elems


def _generator(name: str, kwargs: dict[str, Any]) -> CompositionGenerator:
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _GENERATORS:
        _GENERATORS[key] = get_generator(name, **kwargs)
    return _GENERATORS[key]


def write_pool_batch(store: Store, pool: str, formulas: list[str], meta: dict[str, Any]) -> tuple[int, int]:
    """Insert the distinct ``formulas`` of one batch into ``pools`` (existing ones are left as they are).

    ``meta`` (generator, seed, batch) is stored on each new document. Returns ``(distinct, inserted)``.
    """
    uniq = sorted(set(formulas))
    atoms, elems = formula_sizes(uniq)
    now = utcnow()
    inserted = 0
    coll = store.db["pools"]
    for s in range(0, len(uniq), WRITE_CHUNK):
        ops = [InsertOne({"pool": pool, "formula": f, **meta, "n_atoms": int(a), "n_elements": int(e),
                          "created_at": now, "updated_at": now})
               for f, a, e in zip(uniq[s:s + WRITE_CHUNK], atoms[s:s + WRITE_CHUNK], elems[s:s + WRITE_CHUNK],
                                  strict=True)]
        try:
            inserted += coll.bulk_write(ops, ordered=False).inserted_count
        except BulkWriteError as exc:
            other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if other:
                raise
            inserted += exc.details.get("nInserted", 0)
    return len(uniq), inserted


@task(name="generate-pool-batch", retries=2, retry_delay_seconds=2)
def generate_batch_task(pool: str, generator: str, generator_kwargs: dict[str, Any], seed: int, batch: int,
                        size: int, mongodb_uri: str | None, database: str | None) -> dict[str, Any]:
    """Sample, canonicalise and store batch ``batch`` of a pool, then write its marker; returns the marker."""
    store = open_store(mongodb_uri, database)
    t0 = time.perf_counter()
    gen = _generator(generator, generator_kwargs)
    formulas = gen.sample(size, batch_seed(seed, batch))
    t1 = time.perf_counter()
    distinct, inserted = write_pool_batch(store, pool, formulas, {"generator": gen.name, "seed": seed, "batch": batch})
    marker = {"pool": pool, "batch": batch, "generator": gen.name, "seed": seed, "samples": size,
              "formulas": len(formulas), "distinct": distinct, "inserted": inserted,
              "sample_s": t1 - t0, "write_s": time.perf_counter() - t1, "finished_at": utcnow()}
    store.db[BATCHES].replace_one({"pool": pool, "batch": batch}, marker, upsert=True)
    return marker


def _check_header(store: Store, pool: str, header: dict[str, Any]) -> None:
    old = store.db[BATCHES].find_one({"pool": pool, "batch": -1}, {"_id": 0})
    if old is None:
        store.db[BATCHES].replace_one({"pool": pool, "batch": -1}, {"pool": pool, "batch": -1, **header},
                                      upsert=True)
        return
    diff = [k for k in header if old.get(k) != header[k]]
    if diff:
        raise ConfigError(
            f"pool {pool!r} was started with {({k: old.get(k) for k in diff})}, now {({k: header[k] for k in diff})}; "
            "resume with the original settings or use a new pool name"
        )


@flow(name="generate-pool")
def generate_pool_flow(
    pool: str,
    n: int = 1_000_000,
    generator: str = "matgan",
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    generator_kwargs: dict[str, Any] | None = None,
    max_batches: int | None = None,
    mongodb_uri: str | None = None,
    database: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate an ``n``-sample pool named ``pool`` with ``generator`` (a :mod:`generators.base` name).

    Resumable: batches with a marker in ``pool_batches`` are skipped. ``max_batches`` stops after
    that many new batches (chunked runs; tests use it to simulate an interruption). ``progress(done,
    total)`` is called after each batch (the CLI drives a progress bar with it). Returns a summary:
    batches done/skipped, samples, distinct formulas stored in the pool, seconds.
    """
    logger = get_run_logger()
    kwargs = dict(generator_kwargs or {})
    store = open_store(mongodb_uri, database)
    sizes = batch_plan(n, batch_size)
    _check_header(store, pool, {"generator": generator, "seed": seed, "batch_size": batch_size,
                                "generator_kwargs": kwargs})
    done = {d["batch"] for d in store.db[BATCHES].find({"pool": pool, "batch": {"$gte": 0}}, {"batch": 1})}
    todo = [k for k in range(len(sizes)) if k not in done]
    skipped = len(sizes) - len(todo)
    if skipped:
        logger.info("pool %s: %d of %d batches already stored, resuming", pool, skipped, len(sizes))
    if max_batches is not None:
        todo = todo[:max_batches]
    t0 = time.perf_counter()
    written = 0
    for i, k in enumerate(todo):
        marker = generate_batch_task(pool, generator, kwargs, seed, k, sizes[k], mongodb_uri, database)
        written += marker["inserted"]
        logger.info("pool %s batch %d/%d: %d samples -> %d formulas, %d new (%.1f s sample, %.1f s write)",
                    pool, k + 1, len(sizes), marker["samples"], marker["distinct"], marker["inserted"],
                    marker["sample_s"], marker["write_s"])
        if progress:
            progress(skipped + i + 1, len(sizes))
    remaining = len(sizes) - skipped - len(todo)
    summary = {"pool": pool, "batches_total": len(sizes), "batches_run": len(todo), "batches_skipped": skipped,
               "batches_remaining": remaining, "inserted": written,
               "pool_size": store.db["pools"].count_documents({"pool": pool}),
               "seconds": time.perf_counter() - t0}
    logger.info("pool %s: %s", pool, summary)
    return summary

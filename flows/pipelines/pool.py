"""Prefect flow ``generate-pool``: stream generated formulas into the MongoDB ``pools`` collection.

A pool of ``n`` samples is cut into ``ceil(n / batch_size)`` batches; batch ``k`` draws its samples
with the seed :func:`batch_seed` ``(seed, k)``, so every batch is reproducible on its own. After a
batch is written, a marker document ``{pool, batch: k, ...}`` goes into ``pool_batches``; a restarted
run skips every batch that has a marker, so an interrupted pool resumes where it stopped and never
duplicates (pool documents are unique on ``(pool, formula)`` anyway).

Pool documents: ``{pool, formula, generator, seed, batch, n_atoms, n_elements, created_at, updated_at}``
where ``batch`` is the first batch that produced the formula (later duplicates are ignored: the write
is an unordered insert against the unique ``(pool, formula)`` index, :meth:`Store.bulk_insert_new`,
so repeating a batch is a no-op), ``n_atoms``/``n_elements`` describe the reduced formula (used by
screening filters). The header document ``{pool, batch: -1}`` in ``pool_batches`` holds the
generator, seed and batch size; resuming with different ones raises :class:`~alcore.errors.ConfigError`.

Throughput (docs/matgan.md, "Pools"): a generator with ``sample_sized`` (MatGAN) hands its samples
over in parts with atom/element counts taken from its count matrix (no string parsing); each part's
new formulas are inserted by a background writer thread while the next part is sampled (the
embedded server and the sampler each keep one core busy), and batches are written strictly in
order, so the stored pool is the same as a sequential run's. Within one flow run, formulas already
stored by an earlier batch are skipped on the client (a set bounded by :data:`SEEN_LIMIT`) instead
of being sent to fail on the unique index.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
from prefect import flow, task

from alcore.composition import reduced_counts
from alcore.errors import ConfigError
from flows.logs import flow_logger
from flows.store import Store, utcnow
from generators.base import CompositionGenerator, get_generator

DEFAULT_BATCH = 50_000
WRITE_CHUNK = 5_000
#: Samples per part handed from the sampler to the writer thread (bounds the memory in flight).
SAMPLE_PART = 8192
#: Most formulas remembered per flow run as already stored (about 100 bytes each); beyond it the set
#: is cleared and the unique index alone deduplicates.
SEEN_LIMIT = 5_000_000

_STORES: dict[tuple[str | None, str | None], Store] = {}
_GENERATORS: dict[tuple[str, tuple], CompositionGenerator] = {}
#: Per flow run (token): formulas known to be stored in the run's pool (process-local; a task in
#: another process starts with an empty set, which only costs duplicate-key inserts).
_SEEN: dict[str, set[str]] = {}
_SEEN_LOCK = threading.Lock()


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


@lru_cache(maxsize=1_000_000)
def _formula_size(formula: str) -> tuple[int, int]:
    rc = reduced_counts(formula)
    return sum(c for _, c in rc), len(rc)


def formula_sizes(formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(n_atoms, n_elements)`` (N,) int64 arrays of the reduced formulas (cached parse per formula)."""
    atoms = np.empty(len(formulas), dtype=np.int64)
    elems = np.empty(len(formulas), dtype=np.int64)
    for i, f in enumerate(formulas):
        atoms[i], elems[i] = _formula_size(f)
    return atoms, elems


class OrderedWriter:
    """Runs write calls on one background thread, in submission order, while the caller computes.

    ``submit(fn, *args)`` queues ``fn(*args)``; at most ``max_pending`` calls are queued or running
    (``submit`` first waits for the oldest, which bounds the memory in flight and re-raises its
    error early). ``results()`` waits for all and returns their return values in order. Use as a
    context manager; leaving it (also on an error) waits for what is running and stops the thread.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self.max_pending = max(1, int(max_pending))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alflow-writer")
        self._pending: deque[Future] = deque()
        self._done: list[Any] = []
        self.busy_s = 0.0

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.busy_s += time.perf_counter() - t

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` behind the earlier calls (waits while ``max_pending`` are queued)."""
        while len(self._pending) >= self.max_pending:
            self._done.append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(self._timed, fn, *args))

    def results(self) -> list[Any]:
        """Wait for every queued call; returns all return values in submission order (raises the first error)."""
        while self._pending:
            self._done.append(self._pending.popleft().result())
        return self._done

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._pending:
            f.cancel()
        self._pool.shutdown(wait=True)


def _generator(name: str, kwargs: dict[str, Any]) -> CompositionGenerator:
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _GENERATORS:
        _GENERATORS[key] = get_generator(name, **kwargs)
    return _GENERATORS[key]


def pool_member_docs(
    pool: str, formulas: Sequence[str], atoms: np.ndarray, elems: np.ndarray, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """``pools`` documents of pool ``pool``: one per formula with ``meta`` (generator, seed, batch,
    ...) and its reduced formula's ``n_atoms`` / ``n_elements`` from the (N,) arrays ``atoms``/``elems``."""
    return [
        {"pool": pool, "formula": f, **meta, "n_atoms": int(a), "n_elements": int(e)}
        for f, a, e in zip(formulas, atoms.tolist(), elems.tolist(), strict=True)
    ]


def _sized_parts(
    gen: CompositionGenerator,
    size: int,
    seed: int,
) -> Iterator[tuple[list[str], np.ndarray | None, np.ndarray | None]]:
    """The generator's ``sample(size, seed)`` in parts ``(formulas, n_atoms, n_elements)``: from
    ``sample_sized`` when it has one (sizes from its count matrix), else one part without sizes."""
    sized = getattr(gen, "sample_sized", None)
    if callable(sized):
        yield from sized(size, seed, part=SAMPLE_PART)
    else:
        yield list(gen.sample(size, seed)), None, None


@task(name="generate-pool-batch", retries=2, retry_delay_seconds=2)
def generate_batch_task(
    pool: str,
    generator: str,
    generator_kwargs: dict[str, Any],
    seed: int,
    batch: int,
    size: int,
    mongodb_uri: str | None,
    database: str | None,
    run: str | None = None,
) -> dict[str, Any]:
    """Sample, canonicalise and store batch ``batch`` of a pool, then write its marker; returns the marker.

    The batch's new formulas are inserted part by part on a writer thread while the next part is
    sampled; the marker is written only after every insert succeeded. ``run`` names the flow run's
    set of formulas already stored (skipped here; updated once the batch is stored).
    """
    store = open_store(mongodb_uri, database)
    t0 = time.perf_counter()
    gen = _generator(generator, generator_kwargs)
    seen = _SEEN.get(run, set()) if run else set()
    meta = {"generator": gen.name, "seed": seed, "batch": batch}
    distinct: set[str] = set()
    n_formulas = 0
    with OrderedWriter() as writer:
        for formulas, atoms, elems in _sized_parts(gen, size, batch_seed(seed, batch)):
            n_formulas += len(formulas)
            idx = []
            for i, f in enumerate(formulas):
                if f not in distinct:
                    distinct.add(f)
                    if f not in seen:
                        idx.append(i)
            if not idx:
                continue
            new = [formulas[i] for i in idx]
            if atoms is None or elems is None:
                a, e = formula_sizes(new)
            else:
                a, e = atoms[idx], elems[idx]
            writer.submit(store.bulk_insert_new, "pools", pool_member_docs(pool, new, a, e, meta), WRITE_CHUNK)
        t1 = time.perf_counter()
        inserted = sum(writer.results())
    if run and run in _SEEN:
        with _SEEN_LOCK:
            if len(seen) + len(distinct) > SEEN_LIMIT:
                seen.clear()
            seen.update(distinct)
    marker = {
        "pool": pool,
        "batch": batch,
        "generator": gen.name,
        "seed": seed,
        "samples": size,
        "formulas": n_formulas,
        "distinct": len(distinct),
        "inserted": inserted,
        "sample_s": t1 - t0,
        "write_s": writer.busy_s,
        "wait_s": time.perf_counter() - t1,
        "finished_at": utcnow(),
    }
    store.mark_pool_batch(pool, batch, marker)
    return marker


def _check_header(store: Store, pool: str, header: dict[str, Any]) -> None:
    """Store the pool's settings on its first run; on a resume raise ConfigError for any setting
    that changed (a key the stored header lacks, e.g. ``weights_sha256`` of a pool started before
    it was recorded, is not compared)."""
    old = store.pool_header(pool)
    if old is None:
        store.set_pool_header(pool, header)
        return
    diff = [k for k in header if k in old and old[k] != header[k]]
    if diff:
        raise ConfigError(
            f"pool {pool!r} was started with { ({k: old.get(k) for k in diff}) }, "
            f"now { ({k: header[k] for k in diff}) }; "
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
    logger = flow_logger()
    kwargs = dict(generator_kwargs or {})
    store = open_store(mongodb_uri, database)
    sizes = batch_plan(n, batch_size)
    header = {"generator": generator, "seed": seed, "batch_size": batch_size, "generator_kwargs": kwargs}
    weights = getattr(_generator(generator, kwargs), "metadata", {}).get("weights_sha256")
    if weights:  # the model's identity: retrained or swapped weights must not extend this pool
        header["weights_sha256"] = weights
    _check_header(store, pool, header)
    done = store.generated_batches(pool)
    todo = [k for k in range(len(sizes)) if k not in done]
    skipped = len(sizes) - len(todo)
    if skipped:
        logger.info("pool %s: %d of %d batches already stored, resuming", pool, skipped, len(sizes))
    if max_batches is not None:
        todo = todo[:max_batches]
    t0 = time.perf_counter()
    written = 0
    run = uuid.uuid4().hex
    _SEEN[run] = set()
    try:
        for i, k in enumerate(todo):
            marker = generate_batch_task(pool, generator, kwargs, seed, k, sizes[k], mongodb_uri, database, run)
            written += marker["inserted"]
            logger.info(
                "pool %s batch %d/%d: %d samples -> %d formulas, %d new (%.1f s sampling, %.1f s writing "
                "of which %.1f s after sampling)",
                pool,
                k + 1,
                len(sizes),
                marker["samples"],
                marker["distinct"],
                marker["inserted"],
                marker["sample_s"],
                marker["write_s"],
                marker["wait_s"],
            )
            if progress:
                progress(skipped + i + 1, len(sizes))
    finally:
        _SEEN.pop(run, None)
    remaining = len(sizes) - skipped - len(todo)
    summary = {
        "pool": pool,
        "batches_total": len(sizes),
        "batches_run": len(todo),
        "batches_skipped": skipped,
        "batches_remaining": remaining,
        "inserted": written,
        "pool_size": store.pool_size(pool),
        "seconds": time.perf_counter() - t0,
    }
    logger.info("pool %s: %s", pool, summary)
    return summary

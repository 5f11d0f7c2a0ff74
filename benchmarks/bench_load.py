"""Store under load: a pool of up to 1 M formulas, 100k labels and 100k candidates, then the status and
top-k queries a user runs, answered from the summaries (docs/reliability.md, "Load"), and the same
questions as full queries (the "before").

Runs against ``secantusd-py --storage-path :memory:`` in its own process (the engine of the embedded
default, ephemeral storage), ``--in-process`` for the in-process test server, or ``--uri`` for a MongoDB
server. Synthetic formula strings. The fill is setup, written with the product's write paths where they
keep summaries (``Store.upsert_labels``, ``Store.bulk_upsert``, the screening flow's per-batch summary and
top-k hint, ``Store.record_iteration_summary``) and the fastest idempotent path for the pool
(``Store.bulk_insert_new``: unordered inserts, existing keys skipped).

Prints a table and writes ``benchmarks/results/load.json``: fill rates, and per query the median of
``--repeats`` runs; each summary answer is checked equal to its full query. Goal: every status and top-k
query < 1 s.

    python benchmarks/bench_load.py                      # 1,000,000 pool formulas, 100k labels, 100k candidates
    python benchmarks/bench_load.py --pool 100000 --labels 10000 --candidates 10000   # smaller
    python benchmarks/bench_load.py --baseline-repeats 0 # skip the full queries
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

torch.set_num_threads(1)

from benchmarks.common import median_time, report  # noqa: E402
from flows.campaign import campaign_summary  # noqa: E402
from flows.pipelines.screening import top_members  # noqa: E402
from flows.store import Store  # noqa: E402

ELEMENTS = [
    "H",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "K",
    "Ca",
    "Sc",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Ga",
    "Ge",
    "As",
    "Se",
    "Br",
    "Rb",
    "Sr",
    "Y",
    "Zr",
    "Nb",
    "Mo",
    "Ru",
    "Rh",
    "Pd",
    "Ag",
    "Cd",
    "In",
    "Sn",
    "Sb",
    "Te",
    "I",
    "Cs",
    "Ba",
    "La",
    "Ce",
    "Pr",
    "Nd",
    "Sm",
    "Eu",
    "Gd",
    "Tb",
    "Dy",
    "Ho",
    "Er",
    "Tm",
    "Yb",
    "Lu",
    "Hf",
    "Ta",
    "W",
    "Re",
    "Os",
    "Ir",
    "Pt",
    "Au",
    "Hg",
    "Tl",
    "Pb",
    "Bi",
]
CAMPAIGN = "bench"
POOL = "bench"
KEY = "bench-screen-key"
PER_ITERATION = 100


def synthetic_formula(i: int) -> str:
    """A unique formula-like string for integer ``i`` (three elements and a count, mixed radix)."""
    n = len(ELEMENTS)
    a, b, c, k = i % n, (i // n) % n, (i // n**2) % n, i // n**3
    return f"{ELEMENTS[a]}{ELEMENTS[b]}{k + 2}{ELEMENTS[c]}3"


def pool_arrays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Screening results of ``n`` members: ``pred_mean`` (eV; NaN where composition filters failed, 1 in 3)
    and ``passed`` (prediction in the window [2, 6] eV)."""
    mean = rng.gamma(2.0, 1.0, n)
    mean[np.arange(n) % 3 == 0] = np.nan
    passed = np.isfinite(mean) & (mean >= 2.0) & (mean <= 6.0)
    return mean, passed


def pool_docs(lo: int, hi: int, batch: int) -> Iterator[dict[str, Any]]:
    """Pool members ``lo..hi-1`` as the generation flow stores them."""
    for i in range(lo, hi):
        yield {
            "pool": POOL,
            "formula": synthetic_formula(i),
            "generator": "synthetic",
            "seed": 0,
            "batch": batch,
            "n_atoms": 6,
            "n_elements": 3,
        }


def screening_docs(lo: int, hi: int, mean: np.ndarray, passed: np.ndarray, batch: int) -> Iterator[dict[str, Any]]:
    """The verdicts of members ``lo..hi-1`` as the screening flow stores them (``screenings``)."""
    for i in range(lo, hi):
        m = float(mean[i]) if np.isfinite(mean[i]) else None
        yield {
            "pool": POOL,
            "key": KEY,
            "batch": batch,
            "formula": synthetic_formula(i),
            "verdict": "pass" if passed[i] else "fail",
            "reasons": [] if passed[i] else ["window"],
            "pred_mean": m,
            "pred_std": 0.1 if m else None,
        }


def iteration_of_label(i: int, n: int, n_iter: int) -> int:
    """300 seed labels in iteration 0, the rest spread evenly over iterations 1..n_iter."""
    return 0 if i < 300 else 1 + (i - 300) * n_iter // max(1, n - 300)


def label_records(lo: int, hi: int, n: int, n_iter: int, values: np.ndarray) -> list[dict[str, Any]]:
    """Label records ``lo..hi-1`` (values eV) for :meth:`Store.upsert_labels`."""
    return [
        {
            "formula": synthetic_formula(i),
            "value": float(values[i]),
            "std": 0.0,
            "source": "seed" if i < 300 else "lookup",
            "iteration": iteration_of_label(i, n, n_iter),
        }
        for i in range(lo, hi)
    ]


def candidate_docs(n: int, n_iter: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """``n`` candidates, :data:`PER_ITERATION` an iteration; finished iterations labelled/rejected/
    label_failed, the last one (in progress) awaiting labels or rejected."""
    u = rng.random(n)
    for i in range(n):
        it = 1 + i // PER_ITERATION
        if it < n_iter:
            status = "labelled" if u[i] < 0.6 else "rejected" if u[i] < 0.95 else "label_failed"
        else:
            status = "awaiting_label" if u[i] < 0.6 else "rejected"
        yield {
            "campaign": CAMPAIGN,
            "iteration": it,
            "formula": synthetic_formula(i),
            "rank": i % PER_ITERATION,
            "status": status,
            "valid": status != "rejected",
            "gp_mean": float(i % 97) / 10,
            "gp_std": 0.2,
            "acq_value": float(i % 89),
            "novel": bool(i % 2),
            "latent": [0.0] * 8,
        }


def iteration_docs(n: int) -> Iterator[dict[str, Any]]:
    """``n`` iteration documents with stage states and metrics; the last one is still running."""
    for it in range(1, n + 1):
        last = it == n
        yield {
            "campaign": CAMPAIGN,
            "iteration": it,
            "stages": {
                s: {"status": "running" if last and s == "label" else "done", "attempt": 1, "result": {"seconds": 1.0}}
                for s in (("fit", "acquire", "label") if last else ("fit", "acquire", "label", "retrain", "metrics"))
            },
            **(
                {}
                if last
                else {
                    "metrics": {
                        "n_labels": 300 + 100 * it,
                        "n_acquired_labels": 100 * it,
                        "best_value": 9.0,
                        "best_formula": "X",
                        "count_above_threshold": it,
                        "acquired_above_threshold": it,
                        "best_acquired": 8.0,
                        "val_mae": 0.5,
                    },
                    "timings": {"fit": 1.0, "acquire": 1.0},
                }
            ),
        }


def campaign_show(store: Store) -> dict[str, Any]:
    """What ``alflow campaign show`` reads: the campaign, its iterations, the counts and the summary."""
    doc = store.get_campaign(CAMPAIGN)
    its = store.iterations(CAMPAIGN)
    return {
        "status": doc["status"],
        "iterations": len(its),
        "counts": store.campaign_counts(CAMPAIGN, its),
        "summary": campaign_summary(store, CAMPAIGN),
    }


def full_counts(store: Store) -> dict[str, dict[Any, int]]:
    """The "before": candidates by status and labels by source, grouped over the whole campaign."""
    out = {}
    for coll, field in (("candidates", "status"), ("labels", "source")):
        rows = store.db[coll].aggregate(
            [{"$match": {"campaign": CAMPAIGN}}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
        )
        out[coll] = dict(sorted(((r["_id"], r["n"]) for r in rows), key=lambda kv: str(kv[0])))
    return out


def full_top(store: Store, coll: str, match: dict[str, Any], field: str, k: int) -> list[dict[str, Any]]:
    """The "before": a top-k as one sorted query over all matching documents."""
    return list(
        store.db[coll]
        .find({**match, field: {"$gte": -np.inf}}, {"_id": 0})
        .sort([(field, -1), ("formula", 1)])
        .limit(k)
    )


def full_screen_counts(store: Store) -> dict[Any, int]:
    """The "before": the pool's verdicts of this screening key, grouped over all of them."""
    rows = store.db.screenings.aggregate(
        [{"$match": {"pool": POOL, "key": KEY}}, {"$group": {"_id": "$verdict", "n": {"$sum": 1}}}]
    )
    return {r["_id"]: r["n"] for r in sorted(rows, key=lambda r: r["_id"])}


def _memory_server() -> tuple[subprocess.Popen, str]:
    """Start ``secantusd-py --storage-path :memory:`` on a free port; returns (process, uri)."""
    from flows.store.embedded import ping, server_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(server_command(port, ":memory:"))  # nothing to sync in memory
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    deadline = time.monotonic() + 120
    while not ping(uri, timeout_s=0.5):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("secantusd-py :memory: did not start")
        time.sleep(0.3)
    return proc, uri


def fill(store: Store, args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """Write the pool, its screening summaries, labels, candidates and iterations; returns the iteration count."""
    rng = np.random.default_rng(0)
    n_iter = max(1, args.candidates // PER_ITERATION)

    def timed(name: str, n: int, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        print(f"{name}: {n:,} in {dt:.1f} s ({n / dt:,.0f}/s)", flush=True)
        rows.append({"operation": name, "n": n, "seconds": round(dt, 2), "docs_per_s": round(n / dt)})

    mean, passed = pool_arrays(args.pool, rng)
    starts = list(range(0, args.pool, args.batch))

    def write_pool() -> None:
        for b, lo in enumerate(starts):
            hi = min(args.pool, lo + args.batch)
            store.bulk_insert_new("pools", pool_docs(lo, hi, b), batch=args.write_batch)
            store.bulk_insert_new("screenings", screening_docs(lo, hi, mean, passed, b), batch=args.write_batch)
            if b % 10 == 9:
                print(f"  pool batch {b + 1}/{len(starts)}", flush=True)

    def pool_summaries() -> None:
        for b, lo in enumerate(starts):
            hi = min(args.pool, lo + args.batch)
            store.note_screen_top(POOL, KEY, [synthetic_formula(i) for i in range(lo, hi)], passed[lo:hi], mean[lo:hi])
            store.record_screen_batch(POOL, KEY, b)

    timed("fill pools + screenings (bulk_insert_new)", 2 * args.pool, write_pool)
    timed("screening summaries (per batch: hint + counts)", len(starts), pool_summaries)
    values = rng.gamma(2.0, 1.0, args.labels)

    def write_labels() -> None:
        for lo in range(0, args.labels, args.write_batch):
            store.upsert_labels(
                CAMPAIGN, label_records(lo, min(args.labels, lo + args.write_batch), args.labels, n_iter, values)
            )

    timed("fill labels (Store.upsert_labels)", args.labels, write_labels)
    timed(
        "fill candidates (Store.bulk_upsert)",
        args.candidates,
        lambda: store.bulk_upsert("candidates", candidate_docs(args.candidates, n_iter, rng), batch=args.write_batch),
    )
    timed(
        "fill iterations (Store.bulk_upsert)", n_iter, lambda: store.bulk_upsert("iterations", iteration_docs(n_iter))
    )
    timed(
        "iteration summaries (record_iteration_summary)",
        n_iter - 1,
        lambda: [store.record_iteration_summary(CAMPAIGN, it) for it in range(1, n_iter)],
    )
    store.update_campaign(CAMPAIGN, status="running", iteration=n_iter)
    return n_iter


def main() -> None:
    """Fill the store, time the queries (median of ``--repeats``), print the table and write results/load.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000, help="pool members (default 1,000,000)")
    parser.add_argument("--labels", type=int, default=100_000, help="labels (default 100,000)")
    parser.add_argument(
        "--candidates", type=int, default=100_000, help=f"candidates, {PER_ITERATION} an iteration (default 100,000)"
    )
    parser.add_argument("--batch", type=int, default=10_000, help="pool generation/screening batch size")
    parser.add_argument("--write-batch", type=int, default=10_000, help="documents per bulk write")
    parser.add_argument("--repeats", type=int, default=5, help="runs per query (median reported)")
    parser.add_argument("--baseline-repeats", type=int, default=5, help="runs per full query (0: skip them)")
    parser.add_argument("--uri", default=None, help="MongoDB URI (default: a secantusd-py :memory: child process)")
    parser.add_argument(
        "--in-process", action="store_true", help="run SecantusDB inside this process (shares the GIL with the client)"
    )
    args = parser.parse_args()

    server, child = None, None
    if args.uri is not None:
        uri, where = args.uri, "given URI"
    elif args.in_process:
        from secantus import SecantusDBServer

        server = SecantusDBServer(storage_path=":memory:")
        server.start()
        uri, where = server.uri, "in-process in-memory SecantusDB"
    else:
        child, uri = _memory_server()
        where = "secantusd-py --storage-path :memory: (separate process)"
    store = Store.from_uri(uri, database="bench_load")
    store.client.drop_database("bench_load")
    store = Store.from_uri(uri, database="bench_load")
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        store.create_campaign(CAMPAIGN, {"mode": "pool"})
        n_iter = fill(store, args, rows)
        fill_s = time.perf_counter() - t_start
        label_scope = {"campaign": CAMPAIGN, "property": "band_gap"}
        # name, summary answer, full query giving the same answer (None: no "before"), size of the answer
        queries: list[tuple[str, Callable[[], Any], Callable[[], Any] | None, Callable[[Any], int]]] = [
            (
                "status: campaign show (campaign, iterations, counts, summary)",
                lambda: campaign_show(store),
                None,
                lambda r: r["iterations"],
            ),
            (
                "status: candidate/label counts",
                lambda: store.campaign_counts(CAMPAIGN),
                lambda: full_counts(store),
                lambda r: sum(r["candidates"].values()) + sum(r["labels"].values()),
            ),
            (
                "campaign_summary (metrics + top 10)",
                lambda: campaign_summary(store, CAMPAIGN),
                None,
                lambda r: len(r["iterations"]),
            ),
            (
                "top-10 labels",
                lambda: store.top_labels(CAMPAIGN, 10),
                lambda: full_top(store, "labels", label_scope, "value", 10),
                len,
            ),
            (
                "top-100 labels",
                lambda: store.top_labels(CAMPAIGN, 100),
                lambda: full_top(store, "labels", label_scope, "value", 100),
                len,
            ),
            (
                "top-10 pool (passed, by pred_mean)",
                lambda: top_members(store, POOL, 10, key=KEY),
                lambda: full_top(store, "screenings", {"pool": POOL, "key": KEY, "verdict": "pass"}, "pred_mean", 10),
                len,
            ),
            ("top-20 pool (pass or fail)", lambda: top_members(store, POOL, 20, passed_only=False, key=KEY), None, len),
            (
                "pool screening counts (by verdict)",
                lambda: store.screen_counts(POOL, KEY),
                lambda: full_screen_counts(store),
                lambda r: sum(r.values()),
            ),
            ("iteration docs (all)", lambda: store.iterations(CAMPAIGN), None, len),
            ("candidates of one iteration", lambda: store.candidates(CAMPAIGN, iteration=n_iter // 2), None, len),
            ("candidates awaiting_label", lambda: store.candidates(CAMPAIGN, status="awaiting_label"), None, len),
            (
                "pool member lookup (formula)",
                lambda: store.db.pools.find_one({"pool": POOL, "formula": synthetic_formula(args.pool // 2)}),
                None,
                lambda r: int(r is not None),
            ),
        ]
        for name, fn, full, size in queries:
            seconds, result = median_time(fn, repeats=args.repeats)
            row: dict[str, Any] = {
                "operation": name,
                "n": size(result),
                "seconds": round(seconds, 4),
                "under_1s": seconds < 1.0,
            }
            if full is not None and args.baseline_repeats > 0:
                full_s, expected = median_time(full, repeats=args.baseline_repeats)
                row["full_query_s"] = round(full_s, 4)
                row["equal_to_full"] = result == expected
                if not row["equal_to_full"]:
                    print(f"MISMATCH {name}: {result!r:.300} != {expected!r:.300}", flush=True)
            print(
                f"{name}: {seconds * 1000:.1f} ms"
                + (
                    f" (full query {row['full_query_s'] * 1000:.0f} ms, equal: {row['equal_to_full']})"
                    if "full_query_s" in row
                    else ""
                ),
                flush=True,
            )
            rows.append(row)
    finally:
        store.close()
        if server is not None:
            server.stop()
        if child is not None:
            child.terminate()
            child.wait(timeout=120)
    report(
        "load",
        rows,
        {
            "sizes": {
                "pool": args.pool,
                "labels": args.labels,
                "candidates": args.candidates,
                "iterations": n_iter,
                "pool_batch": args.batch,
            },
            "repeats": args.repeats,
            "baseline_repeats": args.baseline_repeats,
            "fill_minutes": round(fill_s / 60, 1),
            "server": where,
        },
    )


if __name__ == "__main__":
    main()

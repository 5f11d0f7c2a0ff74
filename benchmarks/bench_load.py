"""Store under load: a pool of up to 1 M formulas, 100k labels and 100k candidates, then the queries a
user runs (campaign status aggregate, iteration documents, top-k labels, top-k pool, candidates).

Runs against ``secantusd-py --storage-path :memory:`` in its own process (the engine of the embedded
default, ephemeral storage), ``--in-process`` for the in-process test server, or ``--uri`` for a MongoDB
server. Synthetic formula strings.
Prints a table and writes ``benchmarks/results/load.json``. Goal: every query < 1 s.

    python benchmarks/bench_load.py                      # 1,000,000 pool formulas
    python benchmarks/bench_load.py --pool 200000        # reduced (used on the loaded 2-core machine)
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

from benchmarks.common import median_time, report  # noqa: E402
from flows.campaign import campaign_summary  # noqa: E402
from flows.store import Store  # noqa: E402

ELEMENTS = ["H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc",
            "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr",
            "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs", "Ba", "La", "Ce", "Pr",
            "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir",
            "Pt", "Au", "Hg", "Tl", "Pb", "Bi"]
STATUSES = ("labelled", "rejected", "awaiting_label", "label_failed", "acquired")
CAMPAIGN = "bench"


def synthetic_formula(i: int) -> str:
    """A unique formula-like string for integer ``i`` (three elements and a count, mixed radix)."""
    n = len(ELEMENTS)
    a, b, c, k = i % n, (i // n) % n, (i // n**2) % n, i // n**3
    return f"{ELEMENTS[a]}{ELEMENTS[b]}{k + 2}{ELEMENTS[c]}3"


def pool_docs(n: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """``n`` pool members with screening fields (pred_mean eV, verdict, batch)."""
    mean = rng.gamma(2.0, 1.0, n)
    for i in range(n):
        yield {"pool": "bench", "formula": synthetic_formula(i), "generator": "synthetic", "seed": 0,
               "pred_mean": float(mean[i]), "pred_std": 0.1, "verdict": "ok" if i % 3 else "invalid",
               "batch": i // 10_000}


def label_docs(n: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """``n`` labels of campaign ``bench`` (values eV; 300 seeds, the rest from iterations)."""
    values = rng.gamma(2.0, 1.0, n)
    for i in range(n):
        yield {"campaign": CAMPAIGN, "property": "band_gap", "formula": synthetic_formula(i), "value": float(values[i]),
               "std": 0.0, "source": "seed" if i < 300 else "lookup", "iteration": 0 if i < 300 else 1 + i // 100}


def candidate_docs(n: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """``n`` candidates spread over iterations of 100, with statuses and GP fields."""
    status = rng.integers(0, len(STATUSES), n)
    for i in range(n):
        yield {"campaign": CAMPAIGN, "iteration": 1 + i // 100, "formula": synthetic_formula(i), "rank": i % 100,
               "status": STATUSES[status[i]], "valid": bool(status[i] != 1), "gp_mean": float(i % 97) / 10,
               "gp_std": 0.2, "acq_value": float(i % 89), "novel": bool(i % 2), "latent": [0.0] * 8}


def iteration_docs(n: int) -> Iterator[dict[str, Any]]:
    """``n`` finished iteration documents with stage states and metrics."""
    for it in range(1, n + 1):
        yield {"campaign": CAMPAIGN, "iteration": it,
               "stages": {s: {"status": "done", "attempt": 1, "result": {"seconds": 1.0}}
                          for s in ("fit", "acquire", "label", "retrain", "metrics")},
               "metrics": {"n_labels": 300 + 100 * it, "n_acquired_labels": 100 * it, "best_value": 9.0,
                           "best_formula": "X", "count_above_threshold": it, "acquired_above_threshold": it,
                           "best_acquired": 8.0, "val_mae": 0.5},
               "timings": {"fit": 1.0, "acquire": 1.0}}


def status_aggregate(store: Store) -> dict[str, Any]:
    """What ``campaign show`` needs: the campaign, candidate counts by status, labels by source, iterations."""
    camp = store.get_campaign(CAMPAIGN)
    by_status = {d["_id"]: d["n"] for d in store.db.candidates.aggregate(
        [{"$match": {"campaign": CAMPAIGN}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}])}
    by_source = {d["_id"]: d["n"] for d in store.db.labels.aggregate(
        [{"$match": {"campaign": CAMPAIGN}}, {"$group": {"_id": "$source", "n": {"$sum": 1}}}])}
    return {"status": camp["status"], "candidates": by_status, "labels": by_source,
            "iterations": len(store.iterations(CAMPAIGN))}


def _memory_server() -> tuple[subprocess.Popen, str]:
    """Start ``secantusd-py --storage-path :memory:`` on a free port; returns (process, uri)."""
    from flows.embedded import _secantusd_executable, ping

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([_secantusd_executable(), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                             ":memory:", "--log-level", "WARNING"])
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    deadline = time.monotonic() + 120
    while not ping(uri, timeout_s=0.5):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("secantusd-py :memory: did not start")
        time.sleep(0.3)
    return proc, uri


def main() -> None:
    """Fill the store, time the queries (median of 3), print the table and write results/load.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--uri", default=None, help="MongoDB URI (default: a secantusd-py :memory: child process)")
    parser.add_argument("--in-process", action="store_true",
                        help="run SecantusDB inside this process (shares the GIL with the client)")
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
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    try:
        store.create_campaign(CAMPAIGN, {"mode": "pool"})
        n_iter = max(1, args.candidates // 100)
        fills: list[tuple[str, int, Callable[[], int]]] = [
            ("pools", args.pool, lambda: store.bulk_upsert("pools", pool_docs(args.pool, rng))),
            ("labels", args.labels, lambda: store.bulk_upsert("labels", label_docs(args.labels, rng))),
            ("candidates", args.candidates, lambda: store.bulk_upsert("candidates", candidate_docs(args.candidates, rng))),
            ("iterations", n_iter, lambda: store.bulk_upsert("iterations", iteration_docs(n_iter))),
        ]
        for coll, _n, fill in fills:
            t0 = time.perf_counter()
            written = fill()
            dt = time.perf_counter() - t0
            print(f"inserted {written:,} {coll} in {dt:.1f} s ({written / dt:,.0f} docs/s)", flush=True)
            rows.append({"operation": f"bulk_upsert {coll}", "n": written, "seconds": round(dt, 2),
                         "docs_per_s": round(written / dt)})
        store.update_campaign(CAMPAIGN, status="running", iteration=n_iter)

        queries: list[tuple[str, Callable[[], Any], Callable[[Any], Any]]] = [
            ("status aggregate (campaign show)", lambda: status_aggregate(store), lambda r: sum(r["candidates"].values())),
            ("iteration docs (all)", lambda: store.iterations(CAMPAIGN), len),
            ("campaign_summary (metrics + top 10)", lambda: campaign_summary(store, CAMPAIGN), lambda r: len(r["iterations"])),
            ("top-10 labels", lambda: store.top_labels(CAMPAIGN, 10), len),
            ("top-10 pool (verdict ok, by pred_mean)",
             lambda: list(store.db.pools.find({"pool": "bench", "verdict": "ok"}, {"_id": 0, "formula": 1, "pred_mean": 1})
                          .sort("pred_mean", -1).limit(10)), len),
            ("candidates of one iteration", lambda: store.candidates(CAMPAIGN, iteration=n_iter // 2), len),
            ("candidates by status (awaiting_label)",
             lambda: store.candidates(CAMPAIGN, status="awaiting_label"), len),
            ("pool member lookup (formula)",
             lambda: store.db.pools.find_one({"pool": "bench", "formula": synthetic_formula(args.pool // 2)}),
             lambda r: int(r is not None)),
        ]
        for name, fn, size in queries:
            seconds, result = median_time(fn, repeats=3)
            print(f"{name}: {seconds * 1000:.1f} ms", flush=True)
            rows.append({"operation": name, "n": size(result), "seconds": round(seconds, 4),
                         "under_1s": seconds < 1.0})
    finally:
        store.close()
        if server is not None:
            server.stop()
        if child is not None:
            child.terminate()
            child.wait(timeout=60)
    report("load", rows, {"sizes": {"pool": args.pool, "labels": args.labels, "candidates": args.candidates},
                          "server": where})


if __name__ == "__main__":
    main()

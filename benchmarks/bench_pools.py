"""Benchmark pool generation + screening: MatGAN samples -> MongoDB ``pools`` -> screened verdicts.

Two measurements, because on this machine they are limited by different things:

1. ``compute``: the work of the flows without the database, at ``--compute-n`` samples (default
   200 k on this loaded machine, extrapolated linearly to 1 M and marked as such; pass 1000000):
   MatGAN sampling + decoding + canonicalisation, dedup, formula sizes, composition filters and the
   screening model on the formulas that pass them.
2. ``end_to_end``: the real Prefect flows ``generate-pool`` and ``screen-pool`` against the embedded
   SecantusDB server (a separate process, as in production without ``ALFLOW_MONGODB_URI``) at
   ``--n`` samples (default 20,000), with per-stage timings; the 1 M figure is extrapolated
   linearly from it and marked as such.

Usage: ``python benchmarks/bench_pools.py [--n 20000] [--compute-n 1000000] [--oracle resnet-agd]``.
Writes ``benchmarks/results/pools.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "pools.json"


class StandInOracle:
    """Used only when no shipped band-gap oracle is available: a cheap deterministic stand-in
    (Pauling electronegativity spread of the formula, in 'eV'); it measures the flow, not science."""

    name = "stand-in-electronegativity-spread"
    property = "band_gap"

    def predict(self, formulas):
        from pymatgen.core import Composition

        from oracles.base import Prediction

        mean = np.array([max(e.X for e in Composition(f)) - min(e.X for e in Composition(f)) for f in formulas])
        return Prediction(mean * 2.0, np.full(len(formulas), 0.5))


def load_oracle(name: str):
    """The named oracle from oracles.registry, or the stand-in (with a note) if it cannot be loaded."""
    try:
        from oracles.registry import get_oracle

        return get_oracle(name), None
    except Exception as exc:  # missing weights while another agent trains them
        return StandInOracle(), f"oracle {name!r} unavailable ({type(exc).__name__}: {exc}); used the stand-in"


def bench_compute(n: int, oracle, gap: tuple[float, float], batch: int = 50_000) -> dict:
    """Flow work without the database at n samples; returns timings (s) and counts."""
    from flows.pool_flow import batch_plan, batch_seed, formula_sizes
    from flows.screen_flow import ScreenFilters, screen_formulas
    from generators.matgan import MatGANSampler

    sampler = MatGANSampler.pretrained(with_autoencoder=False)
    t0 = time.perf_counter()
    pool: set[str] = set()
    for k, size in enumerate(batch_plan(n, batch)):
        pool.update(sampler.sample(size, batch_seed(0, k)))
    t1 = time.perf_counter()
    forms = sorted(pool)
    atoms, elems = formula_sizes(forms)
    t2 = time.perf_counter()
    v = screen_formulas(forms, oracle, ScreenFilters(gap_min=gap[0], gap_max=gap[1]), atoms, elems)
    t3 = time.perf_counter()
    return {"samples": n, "distinct_formulas": len(forms), "sample_decode_canonical_s": t1 - t0,
            "sizes_s": t2 - t1, "screen_s": t3 - t2, "predicted": int(np.isfinite(v.mean).sum()),
            "passed": int(v.passed.sum()), "total_s": t3 - t0}


def bench_end_to_end(n: int, oracle_name: str, gap: tuple[float, float], batch: int) -> dict:
    """Real flows against a fresh embedded SecantusDB at n samples; returns timings and counts."""
    from flows.embedded import start_server, stop_server
    from flows.pool_flow import generate_pool_flow
    from flows.screen_flow import screen_pool_flow

    oracle, note = load_oracle(oracle_name)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), port=27900 + os.getpid() % 90)
        try:
            t0 = time.perf_counter()
            gen = generate_pool_flow(pool="bench", n=n, batch_size=batch, seed=0, mongodb_uri=server.uri,
                                     database="bench")
            t1 = time.perf_counter()
            scr = screen_pool_flow("bench", oracle, gap_min=gap[0], gap_max=gap[1], mongodb_uri=server.uri,
                                   database="bench")
            t2 = time.perf_counter()
        finally:
            stop_server(Path(tmp))
    return {"samples": n, "pool_size": gen["pool_size"], "generate_s": t1 - t0, "screen_s": t2 - t1,
            "screen_predict_s": scr["predict_s"], "screen_write_s": scr["write_s"],
            "passed": scr["passed_total"], "oracle_note": note, "total_s": t2 - t0}


def main() -> None:
    """Run both measurements, print a table, write benchmarks/results/pools.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="samples for the end-to-end run with the database")
    ap.add_argument("--compute-n", type=int, default=200_000, help="samples for the database-free run")
    ap.add_argument("--batch", type=int, default=10_000, help="pool batch size of the end-to-end run")
    ap.add_argument("--oracle", default="resnet-agd")
    ap.add_argument("--gap-min", type=float, default=1.6)
    ap.add_argument("--gap-max", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    # the ephemeral Prefect API starts slowly on a loaded machine (the 20 s default timed out here)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    gap = (args.gap_min, args.gap_max)
    oracle, note = load_oracle(args.oracle)
    load = os.getloadavg()
    compute = bench_compute(args.compute_n, oracle, gap)
    print("compute (no database):", compute, flush=True)
    e2e = bench_end_to_end(args.n, args.oracle, gap, args.batch)
    print("end to end:", e2e, flush=True)
    scale = 1_000_000 / args.n
    cscale = 1_000_000 / args.compute_n
    compute_1m = {"total_s": compute["total_s"] * cscale,
                  "note": f"linear extrapolation x{cscale:g} from the {args.compute_n}-sample run (not measured)"}
    extrap = {"generate_s": e2e["generate_s"] * scale, "screen_s": e2e["screen_s"] * scale,
              "total_s": e2e["total_s"] * scale,
              "note": f"linear extrapolation x{scale:g} from the {args.n}-sample end-to-end run (not measured)"}
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cores, shared with other agents; "
                      f"load average at start {load[0]:.1f}",
           "oracle": getattr(oracle, "name", str(oracle)), "oracle_note": note, "gap_window": gap,
           "filters": {"max_atoms": 7, "max_elements": 3},
           "compute_without_db": compute, "compute_without_db_1M_extrapolated": compute_1m, "end_to_end": e2e, "end_to_end_1M_extrapolated": extrap,
           "target": "1 M formulas screened and stored in <= 10 min on 2 cores"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'stage':48s} {'samples':>10s} {'seconds':>9s} {'samples/s':>10s}")
    for label, n, s in [
        ("compute: sample+decode+canonicalise", compute["samples"], compute["sample_decode_canonical_s"]),
        ("compute: sizes + filters + model", compute["samples"], compute["sizes_s"] + compute["screen_s"]),
        ("compute: total (no database)", compute["samples"], compute["total_s"]),
        ("compute: total, extrapolated to 1 M", 1_000_000, compute_1m["total_s"]),
        ("e2e: generate-pool flow (SecantusDB)", e2e["samples"], e2e["generate_s"]),
        ("e2e: screen-pool flow (SecantusDB)", e2e["samples"], e2e["screen_s"]),
        ("e2e: total", e2e["samples"], e2e["total_s"]),
        ("e2e: total, extrapolated to 1 M", 1_000_000, extrap["total_s"]),
    ]:
        print(f"{label:48s} {n:>10,d} {s:>9.1f} {n / max(s, 1e-9):>10,.0f}")
    if note:
        print("note:", note)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Structure recovery on hidden compounds (issue 18, item 4): does EMD template substitution + CHGNet
rediscover the known structure of compounds the pipeline has never seen?

A 20 % chemical-system hold-out split of the MP formula universe (``alcore.holdout``); a seeded sample of
the hidden compounds whose known structure (MP ground state from ``mp_megnet_36k``, else an MP/AMCSD
record of ``templates_merged``) has <= 20 sites; the structure stage on the *visible* template library
(leak-checked); every relaxed trial matched against the known structure with pymatgen's
``StructureMatcher`` (default tolerances). See docs/structures.md, "Structure recovery".

Usage (resumable: results live in an embedded SecantusDB under ``--db-dir``; rerun to continue):

    python benchmarks/bench_structure_recovery.py                      # n=200, split seed 0, 100 FIRE steps
    python benchmarks/bench_structure_recovery.py --limit 10           # compute at most 10 more compounds
    python benchmarks/bench_structure_recovery.py --score-only         # table + JSON from what is done

Needs the team's ``../shared/data/structures`` (known structures; a user's clone has none): without it,
the script stops with a one-line message. Prints an 80-column table and writes
``benchmarks/results/structure_recovery.json`` with every compound's detail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")
# before prefect is imported: its ephemeral API server starts slowly on a loaded machine
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "structure_recovery.json"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f} %"


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:+.{nd}f}"


def score(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline scores, baselines and breakdowns from the compound documents (see the flow module)."""
    from oracles.structure_match import breakdown, recovery_summary

    gaps = [d["energy_gap"] for d in docs]

    def rs(field: str) -> dict[str, Any]:
        return recovery_summary([d.get(field) for d in docs], gaps).as_dict()

    trials = [t for d in docs for t in d["trials"]]
    relaxed = [t for t in trials if t["verdict"] != "failed"]
    for d in docs:
        d["nsites_bin"] = (
            "01-06" if d["reference"]["nsites"] <= 6 else ("07-12" if d["reference"]["nsites"] <= 12 else "13-20")
        )
        d["proposals"] = "pyxtal fallback" if d["fallback"] else "templates"
        d["prototype_available"] = "in top-k templates" if d["prototype_in_templates"] else "not in top-k"
        d["best_spg_equal"] = str(d.get("best_template_spg_equal"))
        d["spg_available"] = "in visible library" if d.get("ref_spg_in_visible_library") else "not in library"
    return {
        "n": len(docs),
        "main (relaxed, ordered by CHGNet energy)": rs("rank_energy"),
        "relaxed, ordered by EMD (template order)": rs("rank_emd"),
        "relaxed, matched to the CHGNet-relaxed known structure": rs("rank_relaxed_reference"),
        "baseline: EMD top-k templates, unrelaxed": rs("rank_unrelaxed_emd"),
        "baseline: random same-anonymised templates, unrelaxed": rs("rank_random_unrelaxed"),
        "trials": {
            "n": len(trials),
            "failed": len(trials) - len(relaxed),
            "converged": sum(bool(t["converged"]) for t in relaxed),
            "median_steps": _median([t["steps"] for t in relaxed]),
            "median_seconds": _median([t["seconds"] for t in relaxed]),
        },
        "reference_relaxations": {
            "failed": sum(d["reference"]["verdict"] == "failed" for d in docs),
            "converged": sum(bool(d["reference"]["converged"]) for d in docs),
        },
        "by_n_elements": breakdown(docs, "n_elements"),
        "by_reference_sites": breakdown(docs, "nsites_bin"),
        "by_proposal_kind": breakdown(docs, "proposals"),
        "by_prototype_in_templates": breakdown(docs, "prototype_available"),
        "by_best_template_spg_equal": breakdown(docs, "best_spg_equal"),
        "by_known_spg_in_visible_library": breakdown(docs, "spg_available"),
        "compound_seconds": {
            "sum": float(sum(d["seconds"] for d in docs)),
            "median": _median([d["seconds"] for d in docs]),
        },
    }


def _median(xs: list[float]) -> float | None:
    import numpy as np

    return float(np.median(xs)) if xs else None


def print_table(s: dict[str, Any], n_qualified: int, n_sample: int) -> None:
    """80-column tables of the headline, baselines and breakdowns."""
    print(f"structure recovery: {s['n']} of {n_sample} sampled hidden compounds done ({n_qualified} qualified)")
    print(f"{'ranking / reference':<56}{'match@1':>12}{'match@3':>12}")
    print("-" * 80)
    for key in (
        "main (relaxed, ordered by CHGNet energy)",
        "relaxed, ordered by EMD (template order)",
        "relaxed, matched to the CHGNet-relaxed known structure",
        "baseline: EMD top-k templates, unrelaxed",
        "baseline: random same-anonymised templates, unrelaxed",
    ):
        r = s[key]
        print(f"{key:<56}{_pct(r['match_at'].get(1)):>12}{_pct(r['match_at'].get(3)):>12}")
    g = s["main (relaxed, ordered by CHGNet energy)"]["energy_gap"]
    print("-" * 80)
    print(f"energy gap, best proposal - known (CHGNet, eV/atom): n {g['n']}")
    print(f"  median {_f(g['median'])}, mean {_f(g['mean'])}")
    print(f"  share <= 0.001: {_pct(g['le_0'])}, <= 0.05: {_pct(g['le_0.05'])}, <= 0.1: {_pct(g['le_0.1'])}")
    t = s["trials"]
    print(f"trials {t['n']}: {t['failed']} failed, {t['converged']} converged within the step bound")
    print(f"  median {t['median_steps']} steps, {t['median_seconds'] and round(t['median_seconds'], 1)} s")
    print()
    print(f"{'breakdown (main ranking)':<40}{'n':>6}{'match@1':>11}{'match@3':>11}{'gap median':>12}")
    print("-" * 80)
    for name in (
        "by_n_elements",
        "by_reference_sites",
        "by_proposal_kind",
        "by_prototype_in_templates",
        "by_best_template_spg_equal",
        "by_known_spg_in_visible_library",
    ):
        for k, r in s[name].items():
            label = f"{name[3:].replace('_in_visible_library', '')}: {k}"[:39]
            print(
                f"{label:<40}{r['n']:>6}{_pct(r['match_at'].get(1)):>11}{_pct(r['match_at'].get(3)):>11}"
                f"{_f(r['energy_gap']['median']):>12}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="compounds in the sample")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--fraction", type=float, default=0.2, help="share of chemical systems hidden")
    ap.add_argument("--max-sites", type=int, default=20)
    ap.add_argument("--k", type=int, default=3, help="templates per compound")
    ap.add_argument("--steps", type=int, default=100, help="FIRE step bound (the product's default is 200)")
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="compute at most this many more compounds")
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--structure-dir", default=None, help="folder of the known structures (../shared/...)")
    ap.add_argument("--db-dir", default=str(ROOT / "runs" / "structure_recovery_db"))
    ap.add_argument("--port", type=int, default=27993)
    args = ap.parse_args(argv)

    from alcore.errors import AlflowError
    from flows.pipelines.structure_recovery import (
        SHARED_STRUCTURES,
        RecoveryParams,
        RecoverySample,
        compound_documents,
        plan,
        run_name,
        run_structure_recovery,
        visible_stage,
    )
    from flows.store import Store
    from flows.store.embedded import running_server, start_server, stop_server

    folder = Path(args.structure_dir) if args.structure_dir else SHARED_STRUCTURES
    if not folder.exists():
        print(f"bench_structure_recovery: known structures not found at {folder} (needs ../shared); stopping")
        return 2
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    spec = RecoverySample(args.n, args.sample_seed, args.fraction, args.split_seed, args.max_sites)
    try:
        split, refs, sample = plan(spec, args.structure_dir)
    except AlflowError as exc:
        print(f"bench_structure_recovery: {exc}")
        return 2
    params = RecoveryParams(args.k, 3, args.fmax, args.steps, args.sample_seed)
    run = run_name(split, params)
    db_dir = Path(args.db_dir)
    ours = running_server(db_dir) is None  # a server another call of this script started stays up
    server = start_server(db_dir, args.port)
    summary: dict[str, Any] = {}
    try:
        if not args.score_only:
            summary = run_structure_recovery(
                workers=args.workers,
                spec=spec,
                params=params,
                structure_dir=args.structure_dir,
                mongo_uri=server.uri,
                database="bench_recovery",
                limit=args.limit,
            )
        store = Store.open(server.uri, "bench_recovery")
        try:
            docs = compound_documents(store, run, sample)
        finally:
            store.close()
    finally:
        if ours:
            stop_server(db_dir)
    if not docs:
        print("no compound done yet")
        return 1
    # the ceiling of template substitution: does the visible library hold any template with the same
    # anonymised formula in the known structure's space group at all?
    lib = visible_stage(split).library
    for d in docs:
        rows = lib.rows_with_anon(d["anonymised"])
        d["ref_spg_in_visible_library"] = bool((lib.spg[rows] == d["reference"]["spg"]).any())
    s = score(docs)
    print_table(s, len(refs), len(sample))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:  # the calls that built this run (a resumed run is several calls)
        calls = json.loads(RESULTS.read_text()).get("calls", []) if RESULTS.exists() else []
    except ValueError:
        calls = []
    calls.append(
        {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "score_only": args.score_only,
            "computed": summary.get("computed", 0),
            "wall_s": time.perf_counter() - t0,
            "workers": args.workers,
            "loadavg_1m_start": load0,
        }
    )
    RESULTS.write_text(
        json.dumps(
            {
                "run": run,
                "protocol": {
                    "split": {"protocol": split.protocol, "fraction": split.fraction, "seed": split.seed},
                    "n_hidden_formulas": len(split.hidden),
                    "n_hidden_systems": len(split.hidden_systems),
                    "n_qualified": len(refs),
                    "sample_seed": args.sample_seed,
                    "n_sample": len(sample),
                    "max_sites": args.max_sites,
                    "params": params.__dict__,
                    "matcher": __import__("oracles.structure_match", fromlist=["x"]).DEFAULT_TOLERANCES,
                    "known_structure": "MP ground state (lowest DFT E_form) of mp_megnet_36k, else MP/AMCSD record "
                    "of templates_merged (MP first, fewest sites)",
                },
                "this_call": {k: v for k, v in summary.items() if k != "sample"},
                "calls": calls,
                "wall_s_this_call": time.perf_counter() - t0,
                "machine": {**machine(), "loadavg_1m_start": load0},
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "scores": s,
                "sample": sample,
                "compounds": docs,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

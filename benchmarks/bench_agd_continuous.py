"""The continuous route on the AGD recovery experiment, side by side (issue 20; docs/agd_recovery.md).

Runs ``flows.pipelines.agd_recovery.agd_recovery_flow`` for each variant of the continuous loop and
each campaign seed (the replicates), at one label budget, on the same pool and reference set:

* ``decode-select``: the default (decode-then-select, P(feasible) weighting, C+H and applicability-
  domain rules, at most 25 % of a batch per chemical system);
* ``ds-no-feas-plaus``: the ablation: decode-then-select without P(feasible), without the C+H and
  domain rules and without the system cap;
* ``optimise-decode``: the old behaviour (qUCB optimised in one trust region, decoded, SMACT-checked).

Each run is resumable (campaigns live in MongoDB; a finished run's JSON in
``benchmarks/results/agd_continuous/`` is reused). Per run it also reads the acquisitions back:
organic (C+H) share, predicted E_form < 0 share, distinct chemical systems and anions, decodes per
new label. Writes ``benchmarks/results/<name>.json`` with every run and a per-variant summary.

``python benchmarks/bench_agd_continuous.py [--iterations 10] [--seeds 1 2 3] [--variants ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, report  # noqa: E402

from alcore.paths import PROJECT_ROOT  # noqa: E402

#: The ablation switch: what each variant changes in the campaign config.
VARIANTS: dict[str, dict[str, Any]] = {
    "decode-select": {},
    "ds-no-feas-plaus": {
        "acquisition": {"feasibility": False, "max_share_system": 1.0},
        "validity": {"reject_organic": False, "applicability_domain": False},
    },
    "optimise-decode": {
        "acquisition": {"strategy": "optimise_decode"},
        "validity": {"reject_organic": False, "applicability_domain": False},
    },
}


def acquisition_stats(store: Any, campaign: str) -> dict[str, Any]:
    """What the loop acquired: labels, organic share, E_form < 0 share (shipped ``eform`` ensemble),
    distinct chemical systems / anions, decodes and per-iteration diversity."""
    import numpy as np

    from alcore.plausibility import anion_family, chemical_system, is_organic
    from oracles.registry import get_oracle

    acquired = sorted({d["formula"] for d in store.labels(campaign) if d.get("source") != "seed"})
    eform = np.asarray(get_oracle("eform").predict(acquired).mean, dtype=np.float64) if acquired else np.empty(0)
    results = [store.stage_result(campaign, it["iteration"], "acquire") for it in store.iterations(campaign)]
    results = [r for r in results if r]
    return {
        "n_acquired": len(acquired),
        "organic_share": float(np.mean([is_organic(f) for f in acquired])) if acquired else float("nan"),
        "eform_negative_share": float(np.mean(eform < 0)) if acquired else float("nan"),
        "n_systems": len({chemical_system(f) for f in acquired}),
        "n_anions": len({anion_family(f) for f in acquired}),
        "n_decodes": int(sum(r.get("n_decodes", 0) for r in results)),
        "per_iteration_systems": [r.get("n_systems") for r in results],
        "per_iteration_anions": [r.get("n_anions") for r in results],
        "acquire_seconds": [r.get("seconds") for r in results],
        "timings": [r.get("timings") for r in results],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=str(PROJECT_ROOT / "deploy" / "campaigns" / "agd_exp3_ds.yaml"))
    ap.add_argument("--iterations", type=int, default=10, help="iterations of q acquisitions (Exp 3: 50)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="campaign seeds (replicates)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--model-seeds", type=int, default=2, help="screening models per arm")
    ap.add_argument("--draws", type=int, default=1_000_000, help="MatGAN draws of the pool")
    ap.add_argument("--name", default="agd_continuous")
    args = ap.parse_args()
    os.environ.setdefault("ALFLOW_REPORTS", "0")
    import torch

    torch.set_num_threads(1)
    from flows.pipelines.agd_recovery import RecoverySetup, agd_recovery_flow, configured
    from flows.settings import get_settings
    from flows.store import Store

    setup = RecoverySetup(draws=args.draws, model_seeds=tuple(range(args.model_seeds)))
    out = RESULTS / args.name
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            path = out / f"{variant}-i{args.iterations}-s{seed}.json"
            if path.exists():
                runs.append(json.loads(path.read_text()))
                continue
            overrides = {**VARIANTS[variant], "iterations": args.iterations, "screening_epochs": 1}
            t0 = time.perf_counter()
            result = agd_recovery_flow(args.config, setup, campaign_seed=seed, overrides=overrides, variant=variant)
            config = configured(args.config, overrides, variant, seed)
            store = Store.connect(get_settings())
            try:
                stats = acquisition_stats(store, config.name)
            finally:
                store.close()
            run = {
                "variant": variant,
                "seed": seed,
                "iterations": args.iterations,
                "overrides": overrides,
                **{k: result[k] for k in ("campaign", "pool", "summary", "ratios", "setup")},
                "acquisitions": stats,
                "wall_s": time.perf_counter() - t0,
                "machine": machine(),
            }
            path.write_text(json.dumps(run, indent=1, default=str))
            runs.append(run)
            print(f"{variant} seed {seed}: {result['ratios']} ({run['wall_s']:.0f} s)", flush=True)
    rows = []
    import numpy as np

    for variant in args.variants:
        rs = [r for r in runs if r["variant"] == variant]
        if not rs:
            continue
        recall = {a["arm"]: [] for a in rs[0]["summary"]}
        for r in rs:
            for a in r["summary"]:
                recall[a["arm"]].append(a["recall"])
        al = np.array(recall["seeds + AL"])
        rows.append(
            {
                "variant": variant,
                "replicates": len(rs),
                "AL recall": f"{al.mean():.1%} ± {al.std():.1%}",
                "rand decodes": f"{np.mean(recall['seeds + random decodes']):.1%}",
                "rand MP": f"{np.mean(recall['seeds + random MP']):.1%}",
                "AL/decodes": float(np.mean([r["ratios"]["AL / seeds + random decodes"] for r in rs])),
                "AL/MP": float(np.mean([r["ratios"]["AL / seeds + random MP"] for r in rs])),
                "C+H": float(np.mean([r["acquisitions"]["organic_share"] for r in rs])),
                "Ef<0": float(np.mean([r["acquisitions"]["eform_negative_share"] for r in rs])),
                "systems": float(np.mean([r["acquisitions"]["n_systems"] for r in rs])),
                "labels": float(np.mean([r["acquisitions"]["n_acquired"] for r in rs])),
            }
        )
    report(args.name, rows, {"runs": runs, "args": vars(args)})


if __name__ == "__main__":
    main()

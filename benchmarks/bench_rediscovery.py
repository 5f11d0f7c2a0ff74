"""The hold-out rediscovery benchmark (issue 18; docs/rediscovery.md): hide 20 % of the chemical
systems of the MP data in data/, rebuild every model from the visible part (leak-checked), run each
route at the same label budget and count how many hidden real materials each route proposes.

Run (resumable: models, pools, campaigns and lists are kept in MongoDB; a rerun resumes):
``python benchmarks/bench_rediscovery.py [deploy/benchmarks/rediscovery.yaml] [--split-seeds 0 1 2]``.
Prints the table and the wall time per stage; writes ``benchmarks/results/rediscovery.json``
(scores per split and list, summary, times), ``benchmarks/results/rediscovery_proposals.json.gz``
(every route's full ranked proposal list: formula, rank, score, route, split seed) and
``docs/rediscovery_curves.png``.

The composition-LM pool beside MatGAN's (issue 22; a config with ``generators: [matgan, complm]``),
written to its own stem so the committed ``rediscovery.json`` stays:
``python benchmarks/bench_rediscovery.py deploy/benchmarks/rediscovery_complm.yaml --name rediscovery_complm
--png docs/rediscovery_complm_curves.png`` (also prints the per-seed comparison of the two pools).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

from alcore.paths import PROJECT_ROOT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config", nargs="?", default=str(PROJECT_ROOT / "deploy" / "benchmarks" / "rediscovery.yaml"))
    ap.add_argument("--split-seeds", type=int, nargs="+", default=None)
    ap.add_argument("--name", default="rediscovery", help="results file stem in benchmarks/results")
    ap.add_argument("--png", default=str(PROJECT_ROOT / "docs" / "rediscovery_curves.png"))
    args = ap.parse_args()
    os.environ.setdefault("ALFLOW_REPORTS", "0")

    from flows.pipelines.rediscovery_report import run_and_report

    run_and_report(
        args.config,
        args.split_seeds,
        RESULTS / f"{args.name}.json",
        RESULTS / f"{args.name}_proposals.json.gz",
        Path(args.png),
        extra={"machine": machine()},
    )


if __name__ == "__main__":
    main()

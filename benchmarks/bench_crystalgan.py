"""Benchmark: the CrystalGAN paper's Table II (Pd-Ni-H) with several seeds.

Prints a markdown table (published count next to ours: mean ± std over seeds, per-seed counts,
distinct good structures, epochs, wall time) and writes ``benchmarks/results/crystalgan.json``.

    python benchmarks/bench_crystalgan.py --epochs1 1000 --epochs2 1000 --seeds 0 1 2

Seeds can run as separate processes (``--seeds 1 --out /tmp/s1.json``) and be combined with
``--merge /tmp/s0.json /tmp/s1.json ...``. ``--save-weights STEM`` keeps the first seed's
constrained model (the committed ``data/weights/crystalgan_PdH-NiH`` was written this way).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from generators.crystalgan.compare import format_table, run_comparison, summarise, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "crystalgan.json"


def main() -> None:
    """Parse the budget, run the comparison on one torch thread, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs1", type=int, default=1000, help="step-1 epochs (paper: 1000)")
    p.add_argument("--epochs2", type=int, default=1000, help="step-2 epochs (paper: 1000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--gen-steps", type=int, default=5, help="generator updates per discriminator update")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--save-weights", type=Path, default=None, help="save the first seed's constrained model")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="combine per-seed result JSONs")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        runs = [r for part in parts for r in part["runs"]]
        res = {
            "config": parts[0]["config"] | {"seeds": [r["seed"] for r in runs]},
            "runs": runs,
            "summary": summarise(runs),
            "wall_s": sum(pt["wall_s"] for pt in parts),
            "torch_threads": 1,
            "merged_from": [str(f) for f in args.merge],
        }
    else:
        res = run_comparison(
            args.epochs1, args.epochs2, args.seeds, args.gen_steps, show=True, save_stem=args.save_weights
        )
    res["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": 1,
        "note": "2-core machine shared with ~6 other agents; wall times are inflated",
    }
    print(format_table(res["summary"]))
    print(f"total wall time {res['wall_s']} s")
    write_json(res, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Score CPU-trained matbench_mp_gap fold predictions against the shipped default's 5-fold row.

Reads one ``--preds`` file per matbench fold as written by ``probe_features.py --preds`` (test-row
indices, DFT gaps, ensemble means and raw spreads), scores each fold with
:func:`oracles.gap_metrics.gap_metrics` (MAE, Spearman, metal/non-metal ROC-AUC, ROC-AUC for
Eg > 3 eV), pairs them with the same folds of the reference row in ``benchmarks/results/bandgap.json``
(default: ``resnet-mp-union (L1 m10)``, the shipped default) and reports the sigma calibration
cross-fitted over folds (the two-quantile map fitted on four folds' out-of-fold predictions, scored
on the fifth; :func:`oracles.calibration.cross_fit`). No experimental band gap is read.

Usage::

    python benchmarks/bandgap/score_folds.py --preds /work/probe/ext80_fold{0,1,2,3,4}.npz \\
        --name "ext w256 m5 80ep" --out benchmarks/results/bandgap_ext.json --oof benchmarks/results/bandgap_ext_oof.npz

Prints a table and writes JSON (per-fold metrics, means, paired differences, calibration); ``--oof``
also writes the out-of-fold means and raw sigmas (float32, matbench row order) for re-scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402

from alcore.paths import data_file  # noqa: E402
from oracles.calibration import cross_fit, fit_two_quantile  # noqa: E402
from oracles.gap_metrics import gap_metrics  # noqa: E402
from oracles.training import matbench_folds  # noqa: E402

METRICS = ("mae", "spearman", "auc_metal", "auc_wide")
CAL = ("nll", "miscal_area", "cov68", "cov95", "spearman_sigma_abs_err")


def load_fold(path: Path, fold: int, y_all: np.ndarray) -> dict[str, np.ndarray]:
    """One fold's predictions; checks that its rows are matbench's test fold and its targets the data's."""
    z = np.load(path)
    _, test = matbench_folds(len(y_all))[fold]
    if not np.array_equal(z["test_idx"], test):
        raise SystemExit(f"{path}: its rows are not matbench fold {fold}'s test rows; give the files in fold order")
    if not np.allclose(z["y"], y_all[test]):
        raise SystemExit(f"{path}: its targets differ from data/bandgap/matbench_mp_gap.csv")
    return {"rows": test, "y": z["y"], "mean": z["mean"], "std": z["std"]}


def main() -> None:
    """Score the folds, print the table, write JSON (and the out-of-fold file)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preds", type=Path, nargs=5, required=True, help="fold 0..4 prediction files, in order")
    ap.add_argument("--name", required=True, help="row label of the candidate")
    ap.add_argument("--reference", default="resnet-mp-union (L1 m10)", help="row of bandgap.json to pair with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--oof", type=Path, help="also write out-of-fold means/sigmas here (.npz)")
    args = ap.parse_args()
    y_all = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))["target"].to_numpy(np.float64)
    folds = [load_fold(p, k, y_all) for k, p in enumerate(args.preds)]
    ref = json.loads((ROOT / "benchmarks" / "results" / "bandgap.json").read_text())["models"][args.reference]
    rows = []
    for k, f in enumerate(folds):
        m = gap_metrics(f["y"], f["mean"])
        r = {key: ref["folds"][k][key] for key in METRICS}
        rows.append({"fold": k, "candidate": m, "reference": r, "diff": {key: m[key] - r[key] for key in METRICS}})
    summary = {
        who: {key: float(np.mean([r[who][key] for r in rows])) for key in METRICS}
        | {f"{key}_sd": float(np.std([r[who][key] for r in rows], ddof=1)) for key in METRICS}
        for who in ("candidate", "reference", "diff")
    }
    y = np.concatenate([f["y"] for f in folds])
    mu = np.concatenate([f["mean"] for f in folds])
    sig = np.concatenate([f["std"] for f in folds])
    part = np.concatenate([np.full(len(f["y"]), k) for k, f in enumerate(folds)])
    cal = cross_fit(y, mu, sig, lambda a, b, c: fit_two_quantile(a, b, c, isotonic=True), parts=part)

    print(
        f"{'fold':>4} | {'MAE cand':>8} {'ref':>7} {'diff':>8} | {'Spear':>6} {'ref':>6} | "
        f"{'AUCmet':>6} {'ref':>6} | {'AUC>3':>6} {'ref':>6}"
    )
    for r in rows:
        c, f, d = r["candidate"], r["reference"], r["diff"]
        print(
            f"{r['fold']:>4} | {c['mae']:8.4f} {f['mae']:7.4f} {d['mae']:+8.4f} | {c['spearman']:6.4f} "
            f"{f['spearman']:6.4f} | {c['auc_metal']:6.4f} {f['auc_metal']:6.4f} | {c['auc_wide']:6.4f} "
            f"{f['auc_wide']:6.4f}"
        )
    c, f, d = summary["candidate"], summary["reference"], summary["diff"]
    print(
        f"mean | {c['mae']:8.4f} {f['mae']:7.4f} {d['mae']:+8.4f} | {c['spearman']:6.4f} {f['spearman']:6.4f} | "
        f"{c['auc_metal']:6.4f} {f['auc_metal']:6.4f} | {c['auc_wide']:6.4f} {f['auc_wide']:6.4f}"
    )
    print(f"MAE sd over folds: candidate {c['mae_sd']:.4f}, paired difference {d['mae_sd']:.4f}")
    print("sigma, 4 folds -> 5th (two-quantile map):")
    for who in ("raw", "calibrated"):
        print(f"  {who:>10}: " + "  ".join(f"{key} {cal[who][key]:.3f}" for key in CAL))
    out = {
        "candidate": args.name,
        "reference": args.reference,
        "preds": [str(p) for p in args.preds],
        "folds": rows,
        "summary": summary,
        "calibration_4_folds_to_5th": cal,
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
    if args.oof:
        order = np.argsort(np.concatenate([f["rows"] for f in folds]))
        np.savez_compressed(
            args.oof,
            mean=mu[order].astype(np.float32),
            std=sig[order].astype(np.float32),
            fold=part[order].astype(np.int8),
        )
    print(f"wrote {args.out}" + (f" and {args.oof}" if args.oof else ""))


if __name__ == "__main__":
    main()

"""Score CPU-trained matbench_mp_gap fold predictions against the shipped default's 5-fold row.

Reads one ``--preds`` file per matbench fold as written by ``probe_features.py --preds`` (test-row
indices, DFT gaps, member predictions; ``--preds2``: a second run of the same folds with another
seed, pooled into one ensemble), scores each fold with
:func:`oracles.gap_metrics.gap_metrics` (MAE, Spearman, metal/non-metal ROC-AUC, ROC-AUC for
Eg > 3 eV), pairs them with the same folds of the reference row in ``benchmarks/results/bandgap.json``
(default: ``resnet-mp-union (L1 m10)``, the shipped default) and reports the sigma calibration
cross-fitted over folds (the two-quantile map fitted on four folds' out-of-fold predictions, scored
on the fifth; :func:`oracles.calibration.cross_fit`), and scores the equal-weight mean of each
candidate with the reference's out-of-fold predictions (``bandgap_device/oof_resnet_mp_union.npz``).
No experimental band gap is read.

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
    return {"rows": test, "y": z["y"], "members": z["members"]}


def pool(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Members of several runs on one fold as one ensemble: mean and spread (ddof 1) over all members."""
    members = np.concatenate([p["members"] for p in parts])
    return {"rows": parts[0]["rows"], "y": parts[0]["y"], "mean": members.mean(0), "std": members.std(0, ddof=1)}


def reference_oof(folds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The reference model's out-of-fold means (GPU run ``plain_union_m10``) of each matbench test fold."""
    z = np.load(ROOT / "benchmarks" / "results" / "bandgap_device" / "oof_resnet_mp_union.npz")
    for k, f in enumerate(folds):
        if not np.array_equal(z[f"fold{k}_test_rows"], f["rows"]):
            raise SystemExit(f"the reference's fold {k} rows differ from matbench's; cannot blend")
    return [z[f"fold{k}_test_mean"].astype(np.float64) for k in range(len(folds))]


def score(folds: list[dict[str, np.ndarray]], ref: dict) -> dict:
    """Per-fold metrics, paired differences to the reference row, means/sds and the cross-fitted sigma map."""
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
    out = {"folds": rows, "summary": summary}
    if "std" in folds[0]:
        y, mu, sig = (np.concatenate([f[key] for f in folds]) for key in ("y", "mean", "std"))
        part = np.concatenate([np.full(len(f["y"]), k) for k, f in enumerate(folds)])
        fit = lambda a, b, c: fit_two_quantile(a, b, c, isotonic=True)  # noqa: E731
        out["calibration_4_folds_to_5th"] = cross_fit(y, mu, sig, fit, parts=part)
    return out


def print_table(name: str, res: dict) -> None:
    """One block of the 80-column table: per fold, candidate vs reference on the four metrics."""
    print(f"\n{name}")
    print(
        f"{'fold':>4} | {'MAE':>7} {'ref':>7} {'diff':>8} | {'Spear':>6} {'ref':>6} | {'AUCmet':>6} {'ref':>6} | "
        f"{'AUC>3':>6} {'ref':>6}"
    )
    lines = [(str(r["fold"]), r["candidate"], r["reference"], r["diff"]) for r in res["folds"]]
    s = res["summary"]
    lines.append(("mean", s["candidate"], s["reference"], s["diff"]))
    for label, c, f, d in lines:
        print(
            f"{label:>4} | {c['mae']:7.4f} {f['mae']:7.4f} {d['mae']:+8.4f} | {c['spearman']:6.4f} "
            f"{f['spearman']:6.4f} | {c['auc_metal']:6.4f} {f['auc_metal']:6.4f} | {c['auc_wide']:6.4f} "
            f"{f['auc_wide']:6.4f}"
        )
    print(f"MAE sd over folds {s['candidate']['mae_sd']:.4f}; paired difference sd {s['diff']['mae_sd']:.4f}")
    if "calibration_4_folds_to_5th" in res:
        cal = res["calibration_4_folds_to_5th"]
        for who in ("raw", "calibrated"):
            print(f"  sigma {who:>10}: " + " ".join(f"{key} {cal[who][key]:.3f}" for key in CAL))


def main() -> None:
    """Score the folds, print the table, write JSON (and the out-of-fold file)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preds", type=Path, nargs=5, required=True, help="fold 0..4 prediction files, in order")
    ap.add_argument("--preds2", type=Path, nargs=5, help="a second run (other seed) of the same folds: pooled")
    ap.add_argument("--name", required=True, help="row label of the candidate")
    ap.add_argument("--reference", default="resnet-mp-union (L1 m10)", help="row of bandgap.json to pair with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--oof", type=Path, help="also write the out-of-fold means/sigmas of the last row (.npz)")
    args = ap.parse_args()
    y_all = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))["target"].to_numpy(np.float64)
    ref = json.loads((ROOT / "benchmarks" / "results" / "bandgap.json").read_text())["models"][args.reference]
    first = [load_fold(p, k, y_all) for k, p in enumerate(args.preds)]
    runs = {f"{args.name}, one run": [pool([f]) for f in first]}
    if args.preds2:
        second = [load_fold(p, k, y_all) for k, p in enumerate(args.preds2)]
        runs[f"{args.name}, both runs pooled"] = [pool([a, b]) for a, b in zip(first, second, strict=True)]
    ref_means = reference_oof(next(iter(runs.values())))
    results = {}
    for name, folds in list(runs.items()):
        results[name] = score(folds, ref)
        blend = [{"y": f["y"], "mean": 0.5 * (f["mean"] + r)} for f, r in zip(folds, ref_means, strict=True)]
        results[f"equal-weight blend: {name} + {args.reference}"] = score(blend, ref)
    for name, res in results.items():
        print_table(name, res)
    out = {
        "reference": args.reference,
        "preds": [str(p) for p in args.preds],
        "preds2": [str(p) for p in args.preds2] if args.preds2 else None,
        "results": results,
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
    if args.oof:
        folds = list(runs.values())[-1]
        order = np.argsort(np.concatenate([f["rows"] for f in folds]))
        mu, sig = (np.concatenate([f[key] for f in folds])[order].astype(np.float32) for key in ("mean", "std"))
        fold = np.concatenate([np.full(len(f["y"]), k) for k, f in enumerate(folds)])[order].astype(np.int8)
        np.savez_compressed(args.oof, mean=mu, std=sig, fold=fold)
    print(f"wrote {args.out}" + (f" and {args.oof}" if args.oof else ""))


if __name__ == "__main__":
    main()

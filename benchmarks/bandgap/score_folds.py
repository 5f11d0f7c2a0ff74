"""Score CPU-trained matbench_mp_gap fold predictions against the shipped default's 5-fold row.

Reads one ``--preds`` group of five files (matbench folds 0-4, as written by ``probe_features.py
--preds``: test-row indices, DFT gaps, member predictions) per run; ``--preds`` may be given several
times (runs with other seeds or epochs). Rows scored: each run alone, and the first two, three, ...
runs pooled into one ensemble. Each fold is scored with :func:`oracles.gap_metrics.gap_metrics`
(MAE, Spearman, metal/non-metal ROC-AUC, ROC-AUC for Eg > 3 eV) and paired with the same folds of
the reference row in ``benchmarks/results/bandgap.json`` (default: ``resnet-mp-union (L1 m10)``);
the sigma calibration is cross-fitted over folds (the two-quantile map fitted on four folds'
out-of-fold predictions, scored on the fifth; :func:`oracles.calibration.cross_fit`). For the
largest pool, the point prediction is also chosen per fold between the ensemble mean and median by
the MAE on the other four folds (cross-fitted; session 14's rule 2 in ``docs/oracles.md``), and
each candidate is blended half-and-half with the reference's out-of-fold predictions
(``bandgap_device/oof_resnet_mp_union.npz``). No experimental band gap is read.

Usage::

    python benchmarks/bandgap/score_folds.py --preds run1_fold{0,1,2,3,4}.npz \\
        --preds run2_fold{0,1,2,3,4}.npz --name "ext w256" --out benchmarks/results/bandgap_ext.json \\
        --oof benchmarks/results/bandgap_ext_oof.npz

Prints a table and writes JSON (per-fold metrics, means, paired differences, calibration); ``--oof``
also writes the out-of-fold predictions and raw sigmas of the selected row (float32, matbench row
order) for re-scoring.
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
from oracles.resnet import POINTS  # noqa: E402
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


def pool(parts: list[dict[str, np.ndarray]], point: str = "mean") -> dict[str, np.ndarray]:
    """Members of several runs on one fold as one ensemble.

    ``mean`` (the scored point prediction, eV) is the members' mean or, with ``point="median"``,
    their median; ``std`` is the members' spread (ddof 1) either way.
    """
    members = np.concatenate([p["members"] for p in parts])
    centre = POINTS[point](members)  # the shipped oracle's own aggregation (oracles.resnet)
    return {"rows": parts[0]["rows"], "y": parts[0]["y"], "mean": centre, "std": members.std(0, ddof=1)}


def cross_fitted_point(options: dict[str, list[dict[str, np.ndarray]]]) -> tuple[list[dict], list[str]]:
    """Per test fold, the point prediction (a key of ``options``: its pooled folds) with the lower MAE
    on the other folds.

    Returns the pooled folds with each fold's chosen point prediction and the list of choices.
    """
    abs_err = {p: [np.abs(f["mean"] - f["y"]) for f in folds] for p, folds in options.items()}
    chosen = []
    for k in range(len(next(iter(options.values())))):
        others = {p: np.concatenate([e for j, e in enumerate(errs) if j != k]).mean() for p, errs in abs_err.items()}
        chosen.append(min(others, key=others.get))
    return [options[p][k] for k, p in enumerate(chosen)], chosen


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
    ap.add_argument(
        "--preds", type=Path, nargs=5, action="append", required=True, help="one run's fold 0..4 files (repeatable)"
    )
    ap.add_argument("--name", required=True, help="row label of the candidate")
    ap.add_argument("--reference", default="resnet-mp-union (L1 m10)", help="row of bandgap.json to pair with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--oof", type=Path, help="also write the out-of-fold predictions/sigmas of the last row (.npz)")
    args = ap.parse_args()
    y_all = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))["target"].to_numpy(np.float64)
    ref = json.loads((ROOT / "benchmarks" / "results" / "bandgap.json").read_text())["models"][args.reference]
    run_folds = [[load_fold(p, k, y_all) for k, p in enumerate(group)] for group in args.preds]
    by_fold = list(zip(*run_folds, strict=True))  # per fold: that fold's part of every run
    runs = {f"{args.name}, run {i + 1}": [pool([f]) for f in folds] for i, folds in enumerate(run_folds)}
    for n in range(2, len(run_folds) + 1):
        runs[f"{args.name}, runs 1-{n} pooled"] = [pool(list(parts[:n])) for parts in by_fold]
    largest = list(runs)[-1]
    medians = [pool(list(parts), "median") for parts in by_fold]
    chosen_folds, choices = cross_fitted_point({"mean": runs[largest], "median": medians})
    runs[f"{largest}, mean/median cross-fitted"] = chosen_folds
    ref_means = reference_oof(runs[largest])
    results = {name: score(folds, ref) for name, folds in runs.items()}
    results[f"{largest}, mean/median cross-fitted"]["point_per_fold"] = choices
    blend = [{"y": f["y"], "mean": 0.5 * (f["mean"] + r)} for f, r in zip(runs[largest], ref_means, strict=True)]
    results[f"equal-weight blend: {largest} + {args.reference}"] = score(blend, ref)
    for name, res in results.items():
        print_table(name, res)
    print(f"point prediction chosen per fold (cross-fitted): {', '.join(choices)}")
    out = {
        "reference": args.reference,
        "preds": [[str(p) for p in group] for group in args.preds],
        "results": results,
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
    if args.oof:
        folds = runs[f"{largest}, mean/median cross-fitted"]
        order = np.argsort(np.concatenate([f["rows"] for f in folds]))
        mu, sig = (np.concatenate([f[key] for f in folds])[order].astype(np.float32) for key in ("mean", "std"))
        fold = np.concatenate([np.full(len(f["y"]), k) for k, f in enumerate(folds)])[order].astype(np.int8)
        np.savez_compressed(args.oof, mean=mu, std=sig, fold=fold, point=np.array(choices))
    print(f"wrote {args.out}" + (f" and {args.oof}" if args.oof else ""))


if __name__ == "__main__":
    main()

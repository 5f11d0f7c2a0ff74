"""Oracle benchmarks: accuracy of the shipped weights on their held-out splits, matbench protocol,
inference throughput, screening-model fit time, training speed with 1 vs 2 threads, small Roost.

Usage::

    python benchmarks/bench_oracles.py                      # evaluate shipped weights + timings
    python benchmarks/bench_oracles.py --matbench-folds 0,1,2,3,4 --epochs 15   # retrain per fold
    python benchmarks/bench_oracles.py --roost-n 3000 --roost-epochs 4          # small Roost vs ResNet

Prints a table and writes ``benchmarks/results/oracles.json``. The machine is a shared 2-core box
(other agents running); every timing records wall and process-CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alcore.paths import data_file  # noqa: E402
from oracles.descriptors import Featuriser  # noqa: E402
from oracles.registry import SHIPPED, fit_screening_model, get_oracle  # noqa: E402
from oracles.resnet import TrainConfig, train_resnet  # noqa: E402
from oracles.training import RECIPES, load_recipe_data, matbench_folds, metrics  # noqa: E402

REFERENCES = {
    "matbench_mp_gap MAE (eV)": {"CrabNet": 0.2655, "MODNet": 0.2199, "RF-Magpie": 0.3452, "goal": 0.26},
    "matbench_mp_e_form MAE (eV/atom)": {"CrabNet": 0.0862},
    "throughput goal (formulas/s, 2 cores)": {"goal": 2000},
}


class Timer:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = round(time.perf_counter() - self.w, 3)
        self.cpu = round(time.process_time() - self.c, 3)


def eval_shipped() -> dict:
    """Re-evaluate every shipped oracle on its recipe's held-out rows (predictions only)."""
    out = {}
    for name in SHIPPED:
        recipe = RECIPES[name]
        df, _train, test, sha = load_recipe_data(recipe)
        oracle = get_oracle(name)
        f = df[recipe.formula_col].astype(str).to_numpy()[test]
        y = df[recipe.target_col].to_numpy(dtype=float)[test]
        pred = oracle.predict(list(f))
        out[name] = {
            "split": recipe.split,
            "n_test": int(len(test)),
            "data_sha256": sha,
            **metrics(y, pred.mean, pred.std),
            "train_info": {k: oracle.info.get(k) for k in ("n_train", "epochs", "wall_s", "torch_threads")},
            "config": {k: getattr(oracle.config, k) for k in ("hidden", "n_layers", "n_members", "epochs")},
        }
        if name == "resnet-agd":
            # AGD test set also scored by band-gap class: how many Eg > 6 eV compounds come out > 6 eV
            hi = y > 6
            out[name]["wide_gap_recall_gt6"] = float((pred.mean[hi] > 6).mean()) if hi.any() else None
    return out


def matbench_retrain(folds: list[int], epochs: int, hidden: int, members: int) -> dict:
    """Retrain a ResNet ensemble on matbench_mp_gap folds (matbench protocol) and score each fold."""
    df = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))
    f = df.formula.astype(str).to_numpy()
    y = df.target.to_numpy(dtype=float)
    res = {"folds": {}, "epochs": epochs, "hidden": hidden, "n_members": members}
    for k, (tr, te) in enumerate(matbench_folds(len(df))):
        if k not in folds:
            continue
        with Timer() as t:
            o = train_resnet(list(f[tr]), y[tr], config=TrainConfig(hidden=hidden, n_members=members, epochs=epochs))
            p = o.predict(list(f[te]))
        res["folds"][k] = {**metrics(y[te], p.mean, p.std), "wall_s": t.wall, "cpu_s": t.cpu}
        print(f"  matbench fold {k}: MAE {res['folds'][k]['mae']:.4f} eV ({t.wall:.0f} s)", flush=True)
    maes = [v["mae"] for v in res["folds"].values()]
    res["mean_mae"] = float(np.mean(maes)) if maes else None
    return res


def throughput(n: int = 20000) -> dict:
    """Formulas/s of ``get_oracle('resnet-agd').predict`` on n uncached MP formulas, 1 and 2 threads."""
    formulas = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv")).formula.astype(str).tolist()[:n]
    oracle = get_oracle("resnet-agd")
    out = {"n": n}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        oracle.featuriser = Featuriser()  # cold cache: featurisation included
        with Timer() as t:
            oracle.predict(formulas)
        with Timer() as w:
            oracle.predict(formulas)  # warm descriptor cache: network only
        out[f"{threads}_threads"] = {
            "cold_formulas_per_s": round(n / t.wall),
            "cold_wall_s": t.wall,
            "cold_cpu_s": t.cpu,
            "warm_formulas_per_s": round(n / w.wall),
            "warm_wall_s": w.wall,
        }
    torch.set_num_threads(1)
    return out


def train_threads(n: int = 10000) -> dict:
    """Seconds for one training epoch of the shipped-size ensemble on n rows, with 1 vs 2 threads."""
    df = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv")).iloc[:n]
    out = {"n": n}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with Timer() as t:
            train_resnet(
                df.composition.tolist(), df.Eg.to_numpy(), config=TrainConfig(hidden=128, n_members=5, epochs=1)
            )
        out[f"{threads}_threads"] = {"wall_s": t.wall, "cpu_s": t.cpu}
    torch.set_num_threads(1)
    return out


def screening_timing() -> dict:
    """Wall/CPU seconds and held-out MAE of :func:`fit_screening_model` on 300 and 2,300 AGD labels."""
    df = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv")).sample(frac=1.0, random_state=0)
    te = df.iloc[-2000:]
    out = {}
    for n in (300, 1000, 2300):
        tr = df.iloc[:n]
        with Timer() as t:
            o = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=0)
        p = o.predict(te.composition.tolist())
        out[str(n)] = {
            "wall_s": t.wall,
            "cpu_s": t.cpu,
            "epochs": o.config.epochs,
            "mae_2000_heldout": float(np.abs(p.mean - te.Eg.to_numpy()).mean()),
            "mean_predictor_mae": float(np.abs(tr.Eg.mean() - te.Eg.to_numpy()).mean()),
        }
    return out


def roost_vs_resnet(n: int, epochs: int) -> dict:
    """Small Roost and a same-budget ResNet ensemble, both on n AGD rows, scored on agd_test_500."""
    from oracles.roost import train_roost

    df = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv"))
    test = pd.read_csv(data_file("bandgap", "agd_test_500.csv"))
    tr = df[~df.id.isin(test.id)].sample(n=n, random_state=0)
    out = {"n_train": n, "epochs": epochs}
    with Timer() as t:
        r = train_roost(tr.composition.tolist(), tr.Eg.to_numpy(), epochs=epochs, lr=1e-3)
    p = r.predict(test.composition.tolist())
    out["roost_small"] = {
        **metrics(test.Eg.to_numpy(), p.mean, p.std),
        "wall_s": t.wall,
        "cpu_s": t.cpu,
        "params": r.info["params"],
    }
    with Timer() as t:
        o = train_resnet(
            tr.composition.tolist(), tr.Eg.to_numpy(), config=TrainConfig(hidden=128, n_members=5, epochs=30)
        )
    p = o.predict(test.composition.tolist())
    out["resnet_ensemble"] = {
        **metrics(test.Eg.to_numpy(), p.mean, p.std),
        "wall_s": t.wall,
        "cpu_s": t.cpu,
        "epochs": 30,
    }
    return out


def main() -> None:
    """Run the selected benchmarks, print a table, write benchmarks/results/oracles.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--matbench-folds", default="", help="comma-separated folds to retrain (default: none)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--roost-n", type=int, default=0, help="train a small Roost on this many rows (0: skip)")
    ap.add_argument("--roost-epochs", type=int, default=4)
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "oracles.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.update(
        {
            "machine": f"{platform.machine()} shared 2-core VM, loaded by ~6 other agents",
            "torch": torch.__version__,
            "references": REFERENCES,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    )
    print("evaluating shipped weights ...", flush=True)
    results["shipped"] = eval_shipped()
    if args.matbench_folds:
        folds = [int(x) for x in args.matbench_folds.split(",")]
        results["matbench_mp_gap_retrain"] = matbench_retrain(folds, args.epochs, args.hidden, args.members)
    if not args.skip_timing:
        print("timing ...", flush=True)
        results["throughput"] = throughput()
        results["screening_fit"] = screening_timing()
        results["train_epoch_threads"] = train_threads()
    if args.roost_n:
        print("roost ...", flush=True)
        results["roost_vs_resnet"] = roost_vs_resnet(args.roost_n, args.roost_epochs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{'benchmark':46s} {'ours':>10s}  reference")
    s = results["shipped"]
    print(
        f"{'matbench_mp_gap fold 0 MAE (eV), resnet-mp-gap':46s} {s['resnet-mp-gap']['mae']:10.4f}  "
        "CrabNet 0.2655, MODNet 0.2199, RF-Magpie 0.3452 (5-fold mean)"
    )
    if "matbench_mp_gap" in results:  # merged per-fold results (see docs/oracles.md)
        m = results["matbench_mp_gap"]
        print(
            f"{'matbench_mp_gap folds ' + ','.join(m['folds_run']) + ' mean MAE (eV)':46s} "
            f"{m['mean_mae']:10.4f}  goal <= 0.26"
        )
    if "matbench_mp_gap_retrain" in results and results["matbench_mp_gap_retrain"].get("mean_mae"):
        m = results["matbench_mp_gap_retrain"]
        print(f"{'matbench_mp_gap folds ' + ','.join(map(str, m['folds'])) + ' mean MAE':46s} {m['mean_mae']:10.4f}")
    print(f"{'AGD agd_test_500 MAE (eV), resnet-agd':46s} {s['resnet-agd']['mae']:10.4f}")
    print(
        f"{'mp_e_form ground-state 10% split MAE (eV/atom)':46s} {s['eform']['mae']:10.4f}  "
        "CrabNet 0.0862 (matbench 5-fold)"
    )
    if "throughput" in results:
        t = results["throughput"]
        for k in ("1_threads", "2_threads"):
            print(
                f"{'predict throughput cold, ' + k + ' (formulas/s)':46s} {t[k]['cold_formulas_per_s']:10d}  goal 2000"
            )
    if "screening_fit" in results:
        for n, v in results["screening_fit"].items():
            print(
                f"{'screening fit ' + n + ' labels wall/cpu s':46s} {v['wall_s']:5.1f}/{v['cpu_s']:4.1f}  "
                f"MAE {v['mae_2000_heldout']:.3f} (mean predictor {v['mean_predictor_mae']:.3f})"
            )
    if "roost_vs_resnet" in results:
        r = results["roost_vs_resnet"]
        print(
            f"{'small Roost (n=' + str(r['n_train']) + ') agd_test_500 MAE':46s} {r['roost_small']['mae']:10.4f}  "
            f"ResNet same data {r['resnet_ensemble']['mae']:.4f}"
        )
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()

"""Closed-world benchmark of the pool-mode loop (the AGD claim, measured against random selection).

Pool: every AGD Exp-1 formula the one-hot matrix can hold (max count 8), encoded by the committed
autoencoder; labels looked up in agd_exp1_42k (the lookup oracle). Each run starts from 300 random
seed labels and acquires ``iterations x q`` formulas by GP-BUCB (UCB with hallucinated
observations), refitting the GP (warm-started) after each batch. Random selection with the same
budget is the baseline. Reports how many of the pool's top-1 % band gaps were found (enhancement
factor = AL / random) and writes the discovery curve to docs/closed_world_discovery.png.
Run: ``python benchmarks/bench_closed_world.py [--al-seeds 0 1 2] [--q 50] [--iterations 20]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import report  # noqa: E402

from alcore.acquisition import AcquisitionSettings, acquire_discrete  # noqa: E402
from alcore.autoencoder import encode_formulas, load_weights  # noqa: E402
from alcore.composition import CompositionEncoder  # noqa: E402
from alcore.paths import PROJECT_ROOT, WEIGHTS_DIR  # noqa: E402
from alcore.surrogate import fit_gp  # noqa: E402
from flows.datasets import band_gap_table  # noqa: E402


def run_al(
    z: np.ndarray, y: np.ndarray, box: np.ndarray, seed: int, n_seed: int, q: int, iterations: int, beta: float
) -> tuple[list[int], list[float]]:
    """One active-learning run; returns the order in which pool rows were labelled and fit+acq times."""
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(z), size=n_seed, replace=False))
    times, state = [], None
    for it in range(iterations):
        t0 = time.perf_counter()
        fit = fit_gp(z[labelled], y[labelled], box, warm_start=state, maxiter=75 if state is None else 25)
        state = fit.state
        mask = np.ones(len(z), dtype=bool)
        mask[labelled] = False
        rest = np.flatnonzero(mask)
        idx, _ = acquire_discrete(fit.model, z[rest], AcquisitionSettings(beta=beta, q=q), seed=seed * 1000 + it)
        labelled.extend(rest[idx].tolist())
        times.append(time.perf_counter() - t0)
        print(f"seed {seed} iteration {it + 1}/{iterations}: {len(labelled)} labels, {times[-1]:.1f} s", flush=True)
    return labelled, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--al-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--random-seeds", type=int, default=20)
    ap.add_argument("--n-seed", type=int, default=300)
    ap.add_argument("--q", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--beta", type=float, default=25.0)
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / "autoencoder_agd87.safetensors"))
    args = ap.parse_args()
    model, meta = load_weights(Path(args.weights))
    enc = CompositionEncoder(meta["element_list"])
    table = band_gap_table("agd_exp1_42k")
    table = table[[enc.representable(f)[0] for f in table["formula"]]].reset_index(drop=True)
    z = encode_formulas(model, enc, list(table["formula"]))
    y = table["value"].to_numpy()
    box = np.asarray(meta["box"])
    threshold = np.quantile(y, 0.99)
    top = y >= threshold
    budget = args.q * args.iterations
    rows, curves = [], {}
    for s in args.al_seeds:
        order, times = run_al(z, y, box, s, args.n_seed, args.q, args.iterations, args.beta)
        acquired = np.array(order[args.n_seed :])
        curves[f"AL seed {s}"] = np.cumsum(top[acquired])
        rows.append(
            {
                "method": "GP-UCB (BUCB batches)",
                "seed": s,
                "acquired": len(acquired),
                "top1pct_found": int(top[acquired].sum()),
                "mean_acquired_eV": float(y[acquired].mean()),
                "best_eV": float(y[acquired].max()),
                "median_iter_s": float(np.median(times)),
            }
        )
    random_found = []
    for s in range(args.random_seeds):
        rng = np.random.default_rng(10_000 + s)
        seeds = rng.choice(len(z), size=args.n_seed, replace=False)
        rest = np.setdiff1d(np.arange(len(z)), seeds)
        pick = rng.choice(rest, size=budget, replace=False)
        random_found.append(int(top[pick].sum()))
        curves.setdefault("random (mean)", np.zeros(budget))
        curves["random (mean)"] = curves["random (mean)"] + np.cumsum(top[pick]) / args.random_seeds
    rows.append(
        {
            "method": "random",
            "seed": f"{args.random_seeds} seeds",
            "acquired": budget,
            "top1pct_found": float(np.mean(random_found)),
            "mean_acquired_eV": float(y.mean()),
        }
    )
    al = [r["top1pct_found"] for r in rows if r["method"] != "random"]
    factor = float(np.mean(al) / max(np.mean(random_found), 1e-9))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), c, label=name, ls="--" if "random" in name else "-")
    ax.set_xlabel("acquisitions (after 300 random seeds)")
    ax.set_ylabel(f"top-1 % band gaps found (Eg >= {threshold:.2f} eV)")
    ax.set_title(f"closed world, pool {len(z):,} AGD formulas: enhancement {factor:.1f}x")
    ax.legend()
    fig.tight_layout()
    png = PROJECT_ROOT / "docs" / "closed_world_discovery.png"
    fig.savefig(png, dpi=110)
    report(
        "closed_world",
        rows,
        {
            "pool": len(z),
            "top1pct_threshold_eV": float(threshold),
            "top1pct_count": int(top.sum()),
            "enhancement_factor": factor,
            "budget": budget,
            "q": args.q,
            "beta": args.beta,
            "random_found": random_found,
            "plot": str(png),
        },
    )
    print(f"enhancement factor (top 1 %): {factor:.2f}x")


if __name__ == "__main__":
    main()

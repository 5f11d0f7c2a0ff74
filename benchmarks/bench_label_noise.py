"""GP label noise: the oracle's calibrated sigma per label (``gp.label_noise: oracle``) vs one learned
noise (``learned``), side by side in one run (issue 21).

1. GP step: ``--n`` labels of the AGD set in the autoencoder's 128-d latent space, ``--n-seed`` of
   them exact (their DFT values, std 0, as seed labels) and the rest labelled by ``--oracle`` (its
   mean, its calibrated std); cold fit time (median of ``--repeats``) and, on ``--n-test`` other
   formulas, the RMSE and Gaussian NLL of the GP posterior against their DFT values.
2. A small pool campaign per setting (same seed, same config but ``gp.label_noise``), driven stage
   by stage as ``run_campaign_in`` does but without the Prefect server (an in-memory SecantusDB):
   fit time per iteration, the DFT band gap of the acquired formulas (pool = AGD formulas, which
   carry DFT values), hits with DFT value >= the target, and the final GP's RMSE against DFT on the
   pool.

No experimental data: all reference values are the AGD set's DFT (PBE) gaps. Run:
``python benchmarks/bench_label_noise.py`` (~5-10 CPU-min); writes ``results/label_noise.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, machine  # noqa: E402

from alcore.autoencoder import encode_formulas, load_weights  # noqa: E402
from alcore.composition import CompositionEncoder  # noqa: E402
from alcore.paths import WEIGHTS_DIR  # noqa: E402
from alcore.surrogate import fit_gp, posterior  # noqa: E402
from flows.datasets import band_gap_table  # noqa: E402
from oracles.registry import get_oracle  # noqa: E402


def _gauss_nll(y: np.ndarray, m: np.ndarray, s: np.ndarray) -> float:
    s = np.maximum(s, 1e-9)
    return float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * ((y - m) / s) ** 2))


def gp_step(args: argparse.Namespace) -> list[dict]:
    """Fit time and posterior quality vs DFT of both noise settings on the same labels."""
    model, meta = load_weights(WEIGHTS_DIR / "autoencoder_agd87.safetensors")
    enc = CompositionEncoder(meta["element_list"])
    box = np.asarray(meta["box"])
    table = band_gap_table("agd_exp1_42k")
    table = table[[enc.representable(f)[0] for f in table["formula"]]].sample(frac=1.0, random_state=0)
    train, test = table.iloc[: args.n], table.iloc[args.n : args.n + args.n_test]
    formulas = list(train["formula"])
    dft = train["value"].to_numpy(float)
    pred = get_oracle(args.oracle).predict(formulas[args.n_seed :])
    y = np.concatenate([dft[: args.n_seed], pred.mean])
    std = np.concatenate([np.zeros(args.n_seed), pred.std])
    x = encode_formulas(model, enc, formulas)
    xt = encode_formulas(model, enc, list(test["formula"]))
    yt = test["value"].to_numpy(float)
    rows = []
    for mode, yvar in (("learned", None), ("oracle", std**2)):
        times, fit = [], None
        for _ in range(args.repeats):
            fit = fit_gp(x, y, box, maxiter=75, threads=1, yvar=yvar)
            times.append(fit.fit_s)
        m, s = posterior(fit.model, xt)
        rows.append(
            {
                "label_noise": mode,
                "n": args.n,
                "n_exact": args.n_seed,
                "fit_s_median": float(np.median(times)),
                "fit_s_all": times,
                "rmse_vs_dft": float(np.sqrt(np.mean((m - yt) ** 2))),
                "nll_vs_dft": _gauss_nll(yt, m, s),
                "cov95_vs_dft": float(np.mean(np.abs(m - yt) <= 1.96 * s)),
                "hyperparameters": fit.hyperparameters,
            }
        )
    return rows


def campaign(args: argparse.Namespace, mode: str, seed: int, iterations: int | None = None) -> dict:
    """One pool campaign with ``gp.label_noise = mode`` and campaign ``seed`` (also the pool subset's);
    per-iteration fit time and DFT outcome."""
    from secantus import SecantusDBServer

    from flows.campaign import ITERATION_STAGES, SEED_STAGE, CampaignContext
    from flows.campaign.runner import run_stage
    from flows.config import parse_config
    from flows.store import Store

    cfg = parse_config(
        {
            "name": f"noise-{mode}-{seed}",
            "mode": "pool",
            "iterations": iterations or args.iterations,
            "seed": seed,
            "oracle": args.oracle,
            "seeds": {"dataset": "agd_exp3_init_300", "n": args.campaign_seeds},
            "pool": "agd_exp1_42k",
            "pool_size": args.pool_size,
            "acquisition": {"q": args.q, "beta": 4.0},
            "gp": {"label_noise": mode},
            "screening_epochs": 5,
        }
    )
    dft = dict(zip(*(band_gap_table("agd_exp1_42k")[c] for c in ("formula", "value")), strict=True))
    server = SecantusDBServer(storage_path=":memory:")
    server.start()
    try:
        store = Store.from_uri(server.uri, "bench")
        store.create_campaign(cfg.name, cfg.resolved())
        store.acquire_lease(cfg.name, "bench", 600)
        ctx = CampaignContext(store, cfg, "bench")
        _ = ctx.pool, ctx.oracle_predict(["MgO"])  # load the models and encode the pool outside the timing
        t0 = time.perf_counter()
        run_stage(ctx, 0, SEED_STAGE)
        fits, acq_s = [], []
        for it in range(1, cfg.iterations + 1):
            for stage in ITERATION_STAGES:
                ts = time.perf_counter()
                res = run_stage(ctx, it, stage)
                if stage.name == "fit":
                    fits.append(
                        {
                            "iteration": it,
                            "fit_s": res["fit_s"],
                            "label_noise": res["hyperparameters"]["label_noise"],
                            "noise": res["hyperparameters"]["noise"],
                        }
                    )
                if stage.name == "acquire":
                    acq_s.append(time.perf_counter() - ts)
        wall = time.perf_counter() - t0
        acquired = [d for d in store.labels(cfg.name) if d["source"] != "seed"]
        true = np.array([dft[d["formula"]] for d in acquired])
        # the GP the campaign would fit next, on the pool vs DFT
        formulas, y, yvar = ctx.gp_labels()
        model, box = ctx.autoencoder
        fit = fit_gp(encode_formulas(model, ctx.encoder, formulas), y, box, maxiter=75, yvar=yvar)
        pool_f, pool_x = ctx.pool
        m, s = posterior(fit.model, pool_x)
        yp = np.array([dft[f] for f in pool_f])
        return {
            "label_noise": mode,
            "seed": seed,
            "fits": fits,
            "fit_s_total": float(sum(f["fit_s"] for f in fits)),
            "acquire_s_total": float(sum(acq_s)),
            "wall_s": wall,
            "acquired": sorted((d["formula"], d["value"], dft[d["formula"]]) for d in acquired),
            "acquired_dft_mean": float(true.mean()),
            "acquired_dft_hits": int((true >= cfg.target.threshold).sum()),
            "acquired_oracle_hits": int(sum(d["value"] >= cfg.target.threshold for d in acquired)),
            "pool_top1pct_found": int(
                np.isin([d["formula"] for d in acquired], np.array(pool_f)[yp >= np.quantile(yp, 0.99)]).sum()
            ),
            "final_gp_rmse_vs_dft_pool": float(np.sqrt(np.mean((m - yp) ** 2))),
            "final_gp_nll_vs_dft_pool": _gauss_nll(yp, m, s),
        }
    finally:
        server.stop()


def main() -> None:
    """Run both parts, print two tables, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oracle", default="resnet-mp-union")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-seed", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--q", type=int, default=10)
    ap.add_argument("--campaign-seeds", type=int, default=100)
    ap.add_argument("--pool-size", type=int, default=3000)
    ap.add_argument("--replicates", type=int, default=3, help="campaign seeds 0..R-1, both settings each")
    ap.add_argument("--skip-campaign", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res: dict = {"args": vars(args), "gp_step": gp_step(args)}
    print(f"GP step: N = {args.n} ({args.n_seed} exact DFT, rest {args.oracle}), test on {args.n_test} DFT gaps")
    print(f"{'label_noise':12s} {'fit s (median)':>15s} {'RMSE eV':>8s} {'NLL':>7s} {'cov95':>6s} {'noise':>8s}")
    for r in res["gp_step"]:
        print(
            f"{r['label_noise']:12s} {r['fit_s_median']:15.2f} {r['rmse_vs_dft']:8.3f} {r['nll_vs_dft']:7.3f} "
            f"{r['cov95_vs_dft']:6.3f} {r['hyperparameters']['noise']:8.4f}"
        )
    if not args.skip_campaign:
        campaign(args, "learned", seed=99, iterations=1)  # warm-up (imports, first acquisition), not reported
        runs = []
        for seed in range(args.replicates):  # alternate the order so neither setting always runs first
            order = ("learned", "oracle") if seed % 2 == 0 else ("oracle", "learned")
            runs += [campaign(args, mode, seed) for mode in order]
        res["campaign"] = runs
        print(f"\npool campaign: {args.iterations} x q={args.q}, {args.campaign_seeds} seeds, pool {args.pool_size}")
        head = f"{'label_noise':12s} {'seed':>4s} {'fit s':>6s} {'acq s':>6s} {'wall s':>7s}"
        print(f"{head} {'DFT mean':>9s} {'hits':>5s} {'RMSE pool':>9s}")
        for r in sorted(runs, key=lambda r: (r["label_noise"], r["seed"])):
            print(
                f"{r['label_noise']:12s} {r['seed']:4d} {r['fit_s_total']:6.1f} {r['acquire_s_total']:6.1f} "
                f"{r['wall_s']:7.1f} {r['acquired_dft_mean']:9.3f} {r['acquired_dft_hits']:5d} "
                f"{r['final_gp_rmse_vs_dft_pool']:9.3f}"
            )
        res["campaign_mean"] = {}
        for mode in ("learned", "oracle"):
            rs = [r for r in runs if r["label_noise"] == mode]
            keys = ("fit_s_total", "acquire_s_total", "wall_s", "acquired_dft_mean", "acquired_dft_hits")
            res["campaign_mean"][mode] = {k: float(np.mean([r[k] for r in rs])) for k in keys} | {
                "final_gp_rmse_vs_dft_pool": float(np.mean([r["final_gp_rmse_vs_dft_pool"] for r in rs]))
            }
            m = res["campaign_mean"][mode]
            print(
                f"{mode:12s} {'mean':>4s} {m['fit_s_total']:6.1f} {m['acquire_s_total']:6.1f} {m['wall_s']:7.1f} "
                f"{m['acquired_dft_mean']:9.3f} {m['acquired_dft_hits']:5.1f} {m['final_gp_rmse_vs_dft_pool']:9.3f}"
            )
    res["machine"] = machine()
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["date"] = time.strftime("%Y-%m-%d %H:%M")
    out = RESULTS / "label_noise.json"
    import json

    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"\nwrote {out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

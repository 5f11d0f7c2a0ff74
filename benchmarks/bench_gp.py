"""GP step benchmark at N = 1,000 labels, d = 128 latent dimensions (real AGD band gaps).

Compares, side by side in one run: BoTorch defaults (no iteration bound, gpytorch's CG above 800
points, 2 threads) against this project's settings (exact Cholesky, bounded L-BFGS-B, 1 thread),
cold and warm-started from a previous fit on 950 of the points. "Does the faster step pick worse
points?": each variant picks q = 50 formulas from a 5,000-formula pool by qUCB; we report the mean
true band gap of the picks, how many are in the pool's top 1 %, and the overlap with the default's
picks. With ``--decode-select CONFIG`` the warm-started variant also runs the campaign's continuous
decode-then-select step (issue 20) as the campaign builds it from CONFIG (q, regions, draws, validity
rules, E_form screen and applicability domain), timed per phase. Run:
``python benchmarks/bench_gp.py [--skip-default] [--decode-select deploy/campaigns/agd_exp3_ds.yaml]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpytorch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import report  # noqa: E402

from alcore.acquisition import AcquisitionSettings, acquire_continuous, acquire_discrete  # noqa: E402
from alcore.autoencoder import encode_formulas, load_weights  # noqa: E402
from alcore.composition import CompositionEncoder  # noqa: E402
from alcore.paths import WEIGHTS_DIR  # noqa: E402
from alcore.surrogate import fit_gp  # noqa: E402
from flows.datasets import band_gap_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pool", type=int, default=5000)
    ap.add_argument("--q", type=int, default=50)
    ap.add_argument("--skip-default", action="store_true", help="skip the slow BoTorch-default fit")
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / "autoencoder_agd87.safetensors"))
    ap.add_argument("--out-name", default="gp", help="results/<name>.json")
    ap.add_argument("--decode-select", default=None, help="campaign config whose decode-then-select step to time")
    args = ap.parse_args()
    model, meta = load_weights(Path(args.weights))
    enc = CompositionEncoder(meta["element_list"])
    box = np.asarray(meta["box"])
    table = band_gap_table("agd_exp1_42k")
    table = table[[enc.representable(f)[0] for f in table["formula"]]].sample(frac=1.0, random_state=0)
    train, pool = table.iloc[: args.n], table.iloc[args.n : args.n + args.pool]
    x = encode_formulas(model, enc, list(train["formula"]))
    y = train["value"].to_numpy()
    zp = encode_formulas(model, enc, list(pool["formula"]))
    yp = pool["value"].to_numpy()
    top1 = yp >= np.quantile(yp, 0.99)
    settings = AcquisitionSettings(beta=25.0, q=args.q)
    cont = AcquisitionSettings(beta=25.0, q=4, num_restarts=4, raw_samples=256, maxiter=30)
    prev = fit_gp(x[:-50], y[:-50], box, maxiter=75)
    variants = [
        ("project, cold (maxiter 75, Cholesky, 1 thread)", dict(maxiter=75, threads=1), None, True),
        ("project, warm-started (maxiter 25)", dict(maxiter=25, threads=1, warm_start=prev.state), None, True),
    ]
    if not args.skip_default:
        variants.insert(
            0, ("BoTorch defaults (no maxiter, CG > 800, 2 threads)", dict(maxiter=None, threads=2), 800, False)
        )
    rows, picks = [], {}
    for label, kw, cholesky, _exact in variants:
        ctx = gpytorch.settings.max_cholesky_size(cholesky) if cholesky else _null()
        torch.set_num_threads(kw.get("threads", 1))
        with ctx:
            t0 = time.perf_counter()
            fit = fit_gp(x, y, box, **kw)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            acquire_continuous(fit.model, box, cont, seed=0)
            acq_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            idx, _ = acquire_discrete(fit.model, zp, settings, seed=0)
            disc_s = time.perf_counter() - t0
        picks[label] = set(idx.tolist())
        extra = {}
        if args.decode_select and "warm" in label:
            extra = decode_select_step(args.decode_select, fit.model, x, y, list(train["formula"]))
            extra["fit_plus_decode_select_s"] = fit_s + extra["decode_select_s"]
        with torch.no_grad():
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(fit.model.likelihood, fit.model)
            fit.model.train()
            value = float(mll(fit.model(*fit.model.train_inputs), fit.model.train_targets))
            fit.model.eval()
        rows.append(
            {
                "variant": label,
                "fit_s": fit_s,
                "acquire_q4_continuous_s": acq_s,
                "fit_plus_acquire_s": fit_s + acq_s,
                "pool_q50_s": disc_s,
                "mll": value,
                "picks_mean_eV": float(yp[idx].mean()),
                "picks_in_top1pct": int(top1[idx].sum()),
                "noise": fit.hyperparameters["noise"],
                **extra,
            }
        )
    ref = rows[0]["variant"]
    for r in rows:
        r["overlap_with_first"] = len(picks[r["variant"]] & picks[ref])
    report(
        args.out_name,
        rows,
        {
            "n": args.n,
            "d": int(x.shape[1]),
            "pool": args.pool,
            "q": args.q,
            "pool_mean_eV": float(yp.mean()),
            "pool_top1_count": int(top1.sum()),
        },
    )


def decode_select_step(config_path: str, gp, x, y, formulas) -> dict:
    """Time one decode-then-select proposal (the campaign's acquire step without MongoDB) on the fitted
    ``gp`` with labelled latents ``x`` (N, d), labels ``y`` (N,) eV and their ``formulas``; returns the
    wall time, the proposal's phase timings (s) and its counts."""
    from flows.campaign.context import CampaignContext
    from flows.campaign.stages import build_recommender
    from flows.config import load_config

    ctx = CampaignContext(store=None, config=load_config(config_path), owner="bench")  # continuous mode: no store
    recommender = build_recommender(ctx, x, y, formulas)
    ctx.screen(["MgO"])  # load the E_form ensemble and the oracle's domain before the clock
    q = ctx.config.acquisition.q
    t0 = time.perf_counter()
    proposal = recommender.propose(gp, q, lambda attempt: 1000 + attempt)
    wall = time.perf_counter() - t0
    return {
        "decode_select_q": q,
        "decode_select_s": wall,
        "decode_select_timings": proposal.timings,
        "decode_select_accepted": len(proposal.accepted),
        "decode_select_decodes": proposal.n_decodes,
        "decode_select_survivors": proposal.n_survivors,
    }


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()

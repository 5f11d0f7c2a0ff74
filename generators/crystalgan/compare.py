"""The paper's Table II on Pd-Ni-H: standard GAN, DiscoGAN, CrystalGAN without and with constraints.

For each seed: a noise GAN is trained on both binary domains (``epochs1 + epochs2`` epochs, the same
budget as CrystalGAN); step 1 of CrystalGAN is trained once (it *is* a DiscoGAN: its outputs
``G_AHB1(x_AH)``, ``G_BHA1(y_BH)`` are the DiscoGAN row); the feature transfer builds AHB_g/BHA_g; step 2
is then trained twice from the same initialisation, with and without the geometric loss. Each model
yields 2 x 35 = 70 structures; a structure is *good* when Pd, Ni and H are all present and every
metal atom's nearest metal neighbour (pymatgen neighbour list) lies in [d1, d2] = [1.8, 3.0] Å.

Run: ``python -m generators.crystalgan.compare --epochs1 1000 --epochs2 1000 --seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from generators.crystalgan.data import try_decode
from generators.crystalgan.geometry import check_structure
from generators.crystalgan.train import (
    CrystalGANConfig,
    generate,
    save_weights,
    train_noise_gan,
    train_step1,
    train_step2,
    vectors_to_numpy,
)

#: Table II of the paper (Pd-Ni-H row).
PUBLISHED = {"gan": 0, "discogan": 0, "crystalgan_noconstr": 4, "crystalgan": 9}
LABELS = {
    "gan": "GAN (standard, Gaussian noise)",
    "discogan": "DiscoGAN (= CrystalGAN step 1)",
    "transfer_only": "feature transfer only (no step 2)",
    "crystalgan_noconstr": "CrystalGAN without constraints",
    "crystalgan": "CrystalGAN with constraints",
}


def evaluate(
    vectors: torch.Tensor | np.ndarray, metal_a: str, metal_b: str, d1: float, d2: float, slots: int = 18
) -> dict[str, Any]:
    """Decode and check generated vectors ``(K, feature_dim)``.

    Returns counts: ``n`` generated, ``decoded``, ``ternary`` (H, A, B present), ``good`` (passes
    :func:`check_structure`), ``good_distinct`` (good ones not matched by pymatgen's StructureMatcher),
    ``good_formulas`` (the distinct reduced formulas among the good ones: the paper counts "compositions"),
    plus ``good_index`` and the decoded ``structures`` (None where undecodable) and ``reports``.
    """
    vecs = vectors_to_numpy(vectors) if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
    structures, reports = [], []
    for v in vecs:
        s = try_decode(v, metal_a, metal_b, slots)
        structures.append(s)
        reports.append(None if s is None else check_structure(s, metal_a, metal_b, d1, d2))
    good_idx = [i for i, r in enumerate(reports) if r is not None and r.good]
    distinct = 0
    if good_idx:
        groups = StructureMatcher().group_structures([structures[i] for i in good_idx])
        distinct = len(groups)
    return {
        "n": len(vecs),
        "decoded": sum(s is not None for s in structures),
        "ternary": sum(r is not None and r.has_all_elements for r in reports),
        "good": len(good_idx),
        "good_distinct": distinct,
        "good_formulas": sorted({structures[i].composition.reduced_formula for i in good_idx}),
        "good_index": good_idx,
        "structures": structures,
        "reports": reports,
    }


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in ("structures", "reports")}


def run_seed(cfg: CrystalGANConfig, show: bool = False, save_stem: str | Path | None = None) -> dict[str, Any]:
    """All four models (plus the transfer-only diagnostic) for one seed; returns counts and timings.

    With ``save_stem``, the constrained CrystalGAN of this seed is saved there (safetensors + json).
    """
    torch.set_num_threads(1)
    out: dict[str, Any] = {"seed": cfg.seed, "models": {}}

    def prog(label: str, i: int, n: int) -> None:
        if show and (i == n or i % max(1, n // 4) == 0):
            print(f"  seed {cfg.seed} {label}: epoch {i}/{n}", flush=True)

    t0 = time.perf_counter()
    m1 = train_step1(cfg, prog)
    t_step1 = time.perf_counter() - t0
    a, b = m1.metal_a, m1.metal_b
    x_ahb1, y_bha1 = m1.step1.translate(m1.x_ah, m1.y_bh)
    out["models"]["discogan"] = {
        **_public(evaluate(torch.cat([x_ahb1, y_bha1]), a, b, cfg.d1, cfg.d2)),
        "epochs": cfg.epochs1,
        "wall_s": round(t_step1, 2),
    }
    out["models"]["transfer_only"] = {
        **_public(evaluate(torch.cat([m1.ahb_g, m1.bha_g]), a, b, cfg.d1, cfg.d2)),
        "epochs": cfg.epochs1,
        "wall_s": round(t_step1, 2),
    }
    for key, use_geo in (("crystalgan_noconstr", False), ("crystalgan", True)):
        t1 = time.perf_counter()
        m2 = train_step2(m1, use_geo, prog)
        t_step2 = time.perf_counter() - t1
        vecs, _ = generate(m2)
        out["models"][key] = {
            **_public(evaluate(vecs, a, b, cfg.d1, cfg.d2)),
            "epochs": cfg.epochs1 + cfg.epochs2,
            "wall_s": round(t_step1 + t_step2, 2),
            "final_losses": m2.history["step2"][-1] if m2.history["step2"] else {},
        }
        if use_geo and save_stem is not None:
            ev = out["models"][key]
            save_weights(
                m2, save_stem, metrics={k: ev[k] for k in ("n", "decoded", "ternary", "good", "good_distinct")}
            )
    t2 = time.perf_counter()
    gan_epochs = cfg.epochs1 + cfg.epochs2
    gan, _ = train_noise_gan(torch.cat([m1.x_ah, m1.y_bh]), gan_epochs, cfg, progress=prog)
    samples = gan.sample(len(m1.x_ah) + len(m1.y_bh), torch.Generator().manual_seed(cfg.seed))
    out["models"]["gan"] = {
        **_public(evaluate(samples, a, b, cfg.d1, cfg.d2)),
        "epochs": gan_epochs,
        "wall_s": round(time.perf_counter() - t2, 2),
    }
    return out


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample std, min and max of ``good`` (and ``good_distinct``, ``ternary``) per model over seeds."""
    summary: dict[str, dict[str, Any]] = {}
    for key in LABELS:
        rows = [r["models"][key] for r in runs if key in r["models"]]
        if not rows:
            continue
        entry: dict[str, Any] = {"label": LABELS[key], "published": PUBLISHED.get(key)}
        for metric in ("good", "good_distinct", "good_formulas", "ternary", "decoded"):
            vals = [float(len(r[metric]) if isinstance(r[metric], list) else r[metric]) for r in rows]
            entry[metric] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "min": min(vals),
                "max": max(vals),
                "per_seed": vals,
            }
        entry["n_per_seed"] = rows[0]["n"]
        entry["epochs"] = rows[0]["epochs"]
        entry["wall_s_mean"] = statistics.fmean(float(r["wall_s"]) for r in rows)
        summary[key] = entry
    return summary


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    """Markdown table: model, published count, ours (mean ± std, [min-max]), distinct, ternary, time."""
    lines = [
        "| model | published | good (mean ± std) | per seed | good, distinct structures | good, distinct "
        "formulas | ternary | epochs | wall s/seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary.values():
        g, gd, gf, t = entry["good"], entry["good_distinct"], entry["good_formulas"], entry["ternary"]
        pub = "" if entry["published"] is None else str(entry["published"])
        per = ", ".join(str(int(v)) for v in g["per_seed"])
        lines.append(
            f"| {entry['label']} | {pub} | {g['mean']:.1f} ± {g['std']:.1f} / {entry['n_per_seed']} | {per} | "
            f"{gd['mean']:.1f} ± {gd['std']:.1f} | {gf['mean']:.1f} ± {gf['std']:.1f} | {t['mean']:.1f} | "
            f"{entry['epochs']} | {entry['wall_s_mean']:.0f} |"
        )
    return "\n".join(lines)


def run_comparison(
    epochs1: int = 1000,
    epochs2: int = 1000,
    seeds: Sequence[int] = (0, 1, 2),
    gen_steps: int = 5,
    show: bool = False,
    save_stem: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run :func:`run_seed` for each seed and summarise. Returns ``{"config", "runs", "summary", "wall_s"}``."""
    t0 = time.perf_counter()
    runs = []
    base = CrystalGANConfig(epochs1=epochs1, epochs2=epochs2, gen_steps=gen_steps, **overrides)
    for seed in seeds:
        cfg = CrystalGANConfig.from_dict({**base.to_dict(), "seed": int(seed)})
        runs.append(run_seed(cfg, show, save_stem if seed == seeds[0] else None))
    return {
        "config": base.to_dict() | {"seeds": list(seeds)},
        "runs": runs,
        "summary": summarise(runs),
        "wall_s": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write a comparison result as JSON (infinities as null); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(result), indent=1, default=float) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: ``python -m generators.crystalgan.compare [--epochs1 N] [--epochs2 N] [--seeds ...] [--json PATH]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs1", type=int, default=1000, help="step-1 epochs (paper: 1000)")
    p.add_argument("--epochs2", type=int, default=1000, help="step-2 epochs (paper: 1000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--gen-steps", type=int, default=5, help="generator updates per discriminator update")
    p.add_argument("--json", type=str, default=None, help="write the full result here")
    args = p.parse_args(argv)
    res = run_comparison(args.epochs1, args.epochs2, args.seeds, args.gen_steps, show=True)
    print(format_table(res["summary"]))
    print(f"total wall time {res['wall_s']} s (1 torch thread)")
    if args.json:
        write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()

"""Benchmark MatGAN generation: validity, novelty, uniqueness at 100 k and 1 M samples.

* validity: representable and passing :func:`alcore.validity.check_validity` with default
  ``ValidityRules()`` (SMACT charge neutrality + Pauling electronegativity, <= 8 elements,
  <= 64 atoms), as a share of all samples. SMACT took ~50 ms per distinct generated formula on this
  loaded machine (many-element formulas enumerate many oxidation states), so by default validity is
  estimated on a uniform random subsample of ``--validity-sample`` samples (binomial standard error
  reported); ``--full-validity-max N`` checks every distinct formula of sizes <= N (weighted by count).
* novelty: share of representable samples (and of distinct formulas) not among the canonical MP
  formulas of data/known/mp_formulas_spacegroups.csv; and share of samples not in the model's own
  training set (MatGAN's definition; a subset of MP, so this is >= the MP novelty).
* uniqueness: distinct formulas / samples.
* reachable: share of distinct generated formulas the companion autoencoder reconstructs exactly.

Usage: ``python benchmarks/bench_matgan.py [--sizes 100000 1000000] [--validity-sample 20000]``.
Writes ``benchmarks/results/matgan.json`` and prints a table next to the published numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "matgan.json"

PUBLISHED = {
    "source": "Dan et al., npj Comput. Mater. 6, 84 (2020) (MatGAN), as summarised in DESIGN.md / paper 002",
    "novelty": 0.9253,
    "validity_icsd_trained": 0.845,
    "validity_2M": 1.69 / 2.0,
    "note": "published models were trained on OQMD/ICSD/MP for 1000 epochs on GPUs; ours on MP for minutes of one "
    "shared CPU core",
}


def main() -> None:
    """Sample, measure, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument(
        "--validity-sample",
        type=int,
        default=5_000,
        help="samples checked with SMACT for sizes above --full-validity-max",
    )
    ap.add_argument(
        "--full-validity-max", type=int, default=0, help="largest size whose distinct formulas are all checked"
    )
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--weights", default=None, help="weights folder (default data/weights)")
    ap.add_argument("--out", default=str(RESULTS), help=f"JSON result file (default {RESULTS})")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from generators.matgan import MatGANSampler, generation_metrics, known_formulas, training_formulas_of

    sampler = MatGANSampler.pretrained(args.weights)
    known = known_formulas()
    train = training_formulas_of(sampler.metadata)
    training = frozenset(train) if train is not None else None
    load = os.getloadavg()
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        batch = sampler.sample_batch(n, args.seed)
        t_sample = time.perf_counter() - t0
        vs = None if n <= args.full_validity_max else args.validity_sample
        m = generation_metrics(batch, known, validity_sample=vs, seed=args.seed, training=training)
        uniq = sorted({f for f, ok in zip(batch.formulas, batch.ok, strict=True) if ok})
        rng = np.random.default_rng(args.seed)
        probe = [uniq[i] for i in rng.choice(len(uniq), min(20_000, len(uniq)), replace=False)] if uniq else []
        t1 = time.perf_counter()
        m["reachable_unique"] = float(sampler.reachable(probe).mean()) if probe else 0.0
        m["reachable_probe"] = len(probe)
        m["reachable_seconds"] = time.perf_counter() - t1
        m["sample_seconds"] = t_sample
        m["samples_per_second"] = n / t_sample
        rows.append(m)
        print(f"n={n:,}: {m}", flush=True)
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores shared with other agents; load average at start "
        f"{load[0]:.1f}; torch threads 1",
        "weights": {
            k: sampler.metadata.get(k)
            for k in ("data_sha256", "n_formulas", "epochs", "generator_steps", "seconds", "config")
        },
        "seed": args.seed,
        "results": rows,
        "published": PUBLISHED,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, default=str) + "\n")

    print()
    print(f"{'metric':40s}" + "".join(f"{r['samples']:>14,d}" for r in rows) + f"{'published':>14s}")
    lines = [
        ("validity (SMACT, all samples)", "validity", f"{PUBLISHED['validity_2M']:.1%} (2M, OQMD)"),
        ("  +- std. error", "validity_se", ""),
        ("validity, >= 2 elements only", "validity_multi_element", ""),
        ("single-element samples", "single_element_share", ""),
        ("novelty (samples not in MP)", "novelty_samples", ""),
        ("novelty (distinct formulas, MP)", "novelty_unique", ""),
        ("novelty (samples not in training set)", "novelty_vs_training_samples", f"{PUBLISHED['novelty']:.2%}"),
        ("uniqueness (distinct / samples)", "uniqueness", ""),
        ("representable (non-empty, <= 8 el.)", "representable", ""),
        ("AE-reachable (distinct, probe)", "reachable_unique", ""),
    ]
    for label, key, pub in lines:
        print(f"{label:40s}" + "".join(f"{r.get(key, float('nan')):>14.2%}" for r in rows) + f"  {pub}")
    print(f"{'distinct formulas':40s}" + "".join(f"{r['unique_formulas']:>14,d}" for r in rows))
    print(f"{'sampling + decoding (s)':40s}" + "".join(f"{r['sample_seconds']:>14.1f}" for r in rows))
    print(f"{'validity method':40s}" + "  |  ".join(r["validity_method"] for r in rows))
    print(f"published ICSD-trained validity: {PUBLISHED['validity_icsd_trained']:.1%}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()

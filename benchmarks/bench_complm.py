"""Benchmark the composition language model beside MatGAN: validity, novelty, uniqueness, the
valid-and-novel-and-unique share, representability and throughput at 100 k and 1 M samples, and
property conditioning.

Same definitions as ``bench_matgan.py`` (:func:`generators.matgan.generation_metrics`): validity =
SMACT charge neutrality + electronegativity (default ``ValidityRules()``) on a uniform random
subsample of ``--validity-sample`` samples (binomial standard error); novelty vs the generator's
training formulas and vs all canonical MP formulas; uniqueness = distinct / samples. Added here:

* ``vnu_vs_training``: distinct formulas that are SMACT-valid with >= 2 elements and not in the
  training set, divided by the number of samples (validity checked on ``--validity-sample`` distinct
  novel formulas, extrapolated); ``vnu_vs_mp`` the same against all MP formulas.
* ``agd87_representable``: share of distinct formulas that the campaign autoencoder's encoding
  (agd87 elements, counts <= 8, <= 8 elements) can hold.
* conditioning (``--conditioning``): ``--cond-samples`` samples per setting; the share whose gap
  predicted by the project's default band-gap oracle (``resnet-mp-union``, MP PBE gaps) falls in the
  requested bin, against unconditioned sampling, and validity of the conditioned samples.

Usage: ``python benchmarks/bench_complm.py [--sizes 100000 1000000] [--generators complm complm-novel
matgan-valid] [--conditioning [--cond-bins '>5'] [--cond-guidance 1] [--cond-eform neg]]
[--weights STEM]``. Writes ``benchmarks/results/complm.json`` (``--out``; rows of the same generator
and size are replaced, others kept). ``--weights`` benchmarks other complm weights than the shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "complm.json"
ORACLE = "resnet-mp-union"


def _training_set(name: str, gen: object) -> frozenset[str]:
    from generators.matgan import training_formulas

    if name.startswith("complm"):
        from generators.complm.data import lm_data
        from generators.complm.tokens import FormulaTokenizer

        return frozenset(lm_data(FormulaTokenizer()).train_formulas)
    return frozenset(training_formulas(valid_only=name == "matgan-valid"))


def _gen_kwargs(name: str, weights: str | None) -> dict:
    """Generator kwargs: the ``--weights`` stem for the complm generators (default: shipped weights)."""
    return {"weights": weights} if weights and name.startswith("complm") else {}


def measure(
    name: str,
    size: int,
    seed: int,
    validity_sample: int,
    known: frozenset[str],
    train: frozenset[str],
    weights: str | None = None,
) -> dict:
    """Sample ``size`` draws of generator ``name`` (complm weights ``weights``, default the shipped
    ones) and compute every metric (a dict)."""
    from alcore.composition import CompositionEncoder
    from generators.base import get_generator
    from generators.complm.metrics import vnu
    from generators.matgan import generation_metrics

    gen = get_generator(name, **_gen_kwargs(name, weights))
    t0 = time.perf_counter()
    batch = gen.sample_batch(size, seed)
    dt = time.perf_counter() - t0
    m = generation_metrics(batch, known, validity_sample=validity_sample, seed=seed, training=train)
    forms = [f if ok else None for f, ok in zip(batch.formulas, batch.ok, strict=True)]
    v_t = vnu(forms, train, check_max=validity_sample, seed=seed)
    v_k = vnu(forms, known, check_max=validity_sample, seed=seed)
    distinct = sorted({f for f in forms if f is not None})
    enc = CompositionEncoder("agd87", max_count=8, max_elements=8)
    rep = float(enc.encode_batch(distinct, errors="mask").valid.mean()) if distinct else 0.0
    return {
        "generator": name,
        "weights": weights or "data/weights/complm (shipped)",
        "samples": size,
        "seed": seed,
        **{k: v for k, v in m.items() if k != "samples"},
        "vnu_vs_training": v_t["vnu"],
        "vnu_vs_training_se": v_t["vnu_se"],
        "vnu_vs_mp": v_k["vnu"],
        "vnu_vs_mp_se": v_k["vnu_se"],
        "agd87_representable": rep,
        "sample_seconds": dt,
        "samples_per_s": size / dt,
    }


def conditioning(
    n: int,
    seed: int,
    validity_sample: int,
    weights: str | None = None,
    only: list[str] | None = None,
    guidances: tuple[float, ...] = (1.0, 2.0),
    eform: str | None = None,
    temperature: float = 1.0,
) -> list[dict]:
    """Per gap bin (or the bins in ``only``): share of samples with an oracle gap in the bin,
    conditioned (each of ``guidances``; E_form condition ``eform``) vs unconditioned; validity of
    each setting (subsample). ``weights``: a complm stem (default the shipped weights);
    ``temperature`` applies to every row, the unconditioned one included."""
    from alcore.validity import check_validity
    from generators.complm import CompLMSampler
    from generators.complm.tokens import GAP_BINS
    from oracles.registry import get_oracle

    oracle = get_oracle(ORACLE)
    rows = []
    settings = [("any", 1.0)] + [(b[0], w) for b in GAP_BINS for w in guidances if only is None or b[0] in only]
    rng = np.random.default_rng(seed)
    for cond, w in settings:
        s = CompLMSampler.pretrained(
            weights,
            condition=None if cond == "any" else cond,
            guidance=w,
            eform=None if cond == "any" else eform,
            temperature=temperature,
        )
        t0 = time.perf_counter()
        forms = s.sample(n, seed)
        gaps = np.asarray(oracle.predict(forms).mean, dtype=float)
        pick = rng.choice(len(forms), size=min(validity_sample, len(forms)), replace=False)
        valid = float(np.mean([check_validity(forms[i]).valid for i in pick]))
        row = {
            "condition": cond,
            "weights": str(weights) if weights else f"data/weights/{s.metadata.get('shipped_as', 'complm')}",
            "eform": eform if cond != "any" else None,
            "guidance": w,
            "temperature": temperature,
            "samples": n,
            "validity": valid,
            "seconds": time.perf_counter() - t0,
        }
        for name, lo, hi in GAP_BINS:
            row[f"share_{name}"] = float(((gaps >= lo) & (gaps < hi)).mean())
        row["mean_pred_gap"] = float(gaps.mean())
        rows.append(row)
        print(row, flush=True)
    base = rows[0]
    for r in rows[1:]:
        r["share_in_bin"] = r[f"share_{r['condition']}"]
        r["uncond_share_in_bin"] = base[f"share_{r['condition']}"]
        r["ratio_vs_uncond"] = r["share_in_bin"] / max(r["uncond_share_in_bin"], 1e-12)
    return rows


def pool_timing(generator: str, n: int, seed: int, port: int) -> dict:
    """Wall time of ``generate-pool`` (``n`` draws of ``generator``, batches of 50,000) into a
    fresh embedded MongoDB-wire server (the product's SecantusDB) under /tmp; returns a dict."""
    import tempfile

    from flows.pipelines.pool import generate_pool_flow
    from flows.store.embedded import start_server, stop_server
    from generators.base import get_generator

    get_generator(generator).sample(10, 0)  # load the weights before the clock
    base = Path(tempfile.mkdtemp(prefix="alflow-bench-complm-", dir="/tmp"))
    server = start_server(base, port)
    try:
        generate_pool_flow(pool="warm-up", n=10, batch_size=10, mongodb_uri=server.uri, database="bench")
        t0 = time.perf_counter()
        summary = generate_pool_flow(
            pool="complm-pool", n=n, generator=generator, seed=seed, mongodb_uri=server.uri, database="bench"
        )
        wall = time.perf_counter() - t0
    finally:
        stop_server(base)
    row = {"generator": generator, "draws": n, "wall_s": wall, "pool_size": summary["pool_size"], "machine": machine()}
    print(f"generate-pool {generator}: {n:,} draws -> {summary['pool_size']:,} documents in {wall:.0f} s", flush=True)
    return row


def main() -> None:
    """Sample, measure, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--generators", nargs="*", default=["complm", "complm-novel", "matgan-valid"])
    ap.add_argument("--validity-sample", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--conditioning", action="store_true", help="also run the conditioning benchmark")
    ap.add_argument("--cond-samples", type=int, default=20_000)
    ap.add_argument("--pool", default=None, help="also time generate-pool of --pool-draws draws of this generator")
    ap.add_argument("--pool-draws", type=int, default=1_000_000)
    ap.add_argument("--port", type=int, default=27800 + os.getpid() % 90)
    ap.add_argument("--out", default=str(RESULTS), help=f"JSON result file (default {RESULTS})")
    ap.add_argument("--weights", default=None, help="complm weights stem (default: the shipped data/weights/complm)")
    ap.add_argument("--cond-bins", nargs="*", default=None, help="conditioning: only these gap bins (default all)")
    ap.add_argument("--cond-guidance", type=float, nargs="+", default=[1.0, 2.0], help="conditioning: guidances")
    ap.add_argument("--cond-eform", default=None, help="conditioning: also condition on E_form (neg/pos)")
    ap.add_argument("--cond-temperature", type=float, default=1.0, help="conditioning: sampling temperature")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from generators.base import get_generator
    from generators.matgan import known_formulas

    known = known_formulas()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    rows = [
        r
        for r in result.get("rows", [])
        if (r["generator"], r["samples"]) not in {(g, s) for g in args.generators for s in args.sizes}
    ]
    for name in args.generators:
        train = _training_set(name, get_generator(name, **_gen_kwargs(name, args.weights)))
        for size in args.sizes:
            r = measure(name, size, args.seed, args.validity_sample, known, train, args.weights)
            rows.append(r)
            print(
                f"{name:14s} {size:>9,}  valid {r['validity']:.1%} (multi {r['validity_multi_element']:.1%})  "
                f"novel/train {r['novelty_vs_training_samples']:.1%}  novel/MP {r['novelty_samples']:.1%}  "
                f"unique {r['uniqueness']:.1%}  VNU/train {r['vnu_vs_training']:.1%}  VNU/MP {r['vnu_vs_mp']:.1%}  "
                f"agd87 {r['agd87_representable']:.1%}  {r['samples_per_s']:,.0f}/s",
                flush=True,
            )
            result["rows"] = rows
            result["machine"] = machine()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1, default=str))
    if args.pool:
        result.setdefault("pool_timing", []).append(pool_timing(args.pool, args.pool_draws, args.seed, args.port))
        out.write_text(json.dumps(result, indent=1, default=str))
    if args.conditioning:
        key = "conditioning" if args.cond_eform is None else f"conditioning_eform_{args.cond_eform}"
        if args.cond_temperature != 1.0:
            key += f"_T{args.cond_temperature:g}"
        result[key] = conditioning(
            args.cond_samples,
            args.seed,
            args.validity_sample,
            args.weights,
            args.cond_bins,
            tuple(args.cond_guidance),
            args.cond_eform,
            args.cond_temperature,
        )
        result["conditioning_oracle"] = ORACLE
        out.write_text(json.dumps(result, indent=1, default=str))
    print(f"-> {out}")


if __name__ == "__main__":
    main()

"""The AGD recovery experiment (DESIGN.md section 6): does active learning teach a screening model
to find the oracle's wide-gap materials in a generated pool, and is it better than random labels?

1. Pool: ``draws`` samples of a generator (MatGAN by default), canonical and deduplicated, kept if
   <= ``max_atoms`` atoms, 2..``max_elements`` elements and SMACT-valid; the oracle labels it and
   its hits above ``threshold`` are the reference set. Cached as a JSON file per (generator, draws,
   seed, filters, oracle) in ``out_dir`` so a re-run skips it. A pool-mode config with a
   ``pool_collection`` (``agd_exp3_pool.yaml``) gets this pool written to MongoDB under that name:
   its campaign chooses among the pool's formulas (AGD's "AL + Roost with MATGAN" route).
2. Run (or resume) the campaign of a config (e.g. ``deploy/campaigns/agd_exp3.yaml``: 300 MP seed
   labels + 50 x 20 acquisitions labelled by the oracle).
3. Screening models with identical settings are trained on (a) the seed labels, (b) the seeds plus
   the campaign's acquisitions, (c1) the seeds plus as many random labels from the loop's own design
   space, labelled by the oracle: valid decodes of random latent points (continuous mode) or random
   pool members (pool mode), (c2) the seeds plus as many random MP rows with their DFT labels; each
   several times with different model seeds.
4. Each is scored by :func:`alcore.recovery.recovery_score` on the pool.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow

from alcore.errors import AlflowError, ConfigError, EmptyPoolError
from alcore.recovery import hits, recovery_score
from alcore.validity import check_validity_batch
from flows.campaign import CampaignContext, run_campaign_in, seed_table
from flows.config import CampaignConfig, load_config, parse_config
from flows.datasets import band_gap_table
from flows.logs import flow_logger
from flows.pipelines.pool import formula_sizes, pool_member_docs
from flows.store import Store
from generators.base import get_generator
from generators.latent_sampler import LatentSampler
from oracles.registry import fit_screening_model, get_oracle

#: Generator draws per chunk while building the pool (bounds memory, drives the progress callback).
POOL_CHUNK = 100_000
#: Rounds of 4 x n latent draws before random_decodes gives up.
RANDOM_DECODE_ROUNDS = 50


@dataclass(frozen=True)
class RecoverySetup:
    """Experiment settings: pool ``draws`` from ``generator`` with ``pool_seed``; reference = oracle
    prediction > ``threshold`` eV among formulas with <= ``max_atoms`` atoms and <= ``max_elements``
    elements (AGD: 6 eV, 7, 3); one screening model per arm and entry of ``model_seeds``;
    ``screening`` overrides :data:`oracles.registry.SCREENING_DEFAULTS` fields for all arms alike."""

    draws: int = 1_000_000
    generator: str = "matgan"
    pool_seed: int = 0
    threshold: float = 6.0
    max_atoms: int = 7
    max_elements: int = 3
    model_seeds: tuple[int, ...] = (0, 1, 2)
    screening: dict[str, Any] = field(default_factory=dict)


def build_pool(setup: RecoverySetup, progress: Callable[[int, int], None] | None = None) -> list[str]:
    """The screened pool: distinct canonical formulas among ``setup.draws`` generator samples that pass
    the size filters and SMACT validity; returns them sorted. Raises :class:`EmptyPoolError` if none."""
    generator = get_generator(setup.generator)
    distinct: set[str] = set()
    for start in range(0, setup.draws, POOL_CHUNK):
        n = min(POOL_CHUNK, setup.draws - start)
        distinct.update(generator.sample(n, seed=setup.pool_seed * 1_000_003 + start // POOL_CHUNK))
        if progress:
            progress(start + n, setup.draws)
    formulas = sorted(distinct)
    atoms, elements = formula_sizes(formulas)
    small = [
        f
        for f, a, e in zip(formulas, atoms, elements, strict=True)
        if a <= setup.max_atoms and 2 <= e <= setup.max_elements
    ]
    pool = [v.formula for v in check_validity_batch(small) if v.valid]
    if not pool:
        raise EmptyPoolError(
            f"{setup.draws} draws of {setup.generator!r} left no valid formula with <= "
            f"{setup.max_atoms} atoms and <= {setup.max_elements} elements; draw more"
        )
    return pool


def labelled_pool(
    setup: RecoverySetup, oracle_name: str, cache_dir: Path, progress: Callable[[int, int], None] | None = None
) -> tuple[list[str], np.ndarray]:
    """``(formulas, oracle eV (N,))`` of the pool, from the cache file in ``cache_dir`` or built and
    labelled now (then cached). The cache is keyed by the settings and the generator's weights hash
    (a retrained MatGAN gets a new pool)."""
    weights = (getattr(get_generator(setup.generator), "metadata", None) or {}).get("weights_sha256")
    key = {
        "generator": setup.generator,
        "draws": setup.draws,
        "pool_seed": setup.pool_seed,
        "max_atoms": setup.max_atoms,
        "max_elements": setup.max_elements,
        "oracle": oracle_name,
        "generator_weights": weights,
    }
    name = [setup.generator, setup.draws, setup.pool_seed, setup.max_atoms, setup.max_elements, oracle_name]
    path = cache_dir / ("pool-" + "-".join(map(str, name)) + ".json.gz")
    if path.exists():
        data = json.loads(gzip.decompress(path.read_bytes()))
        if data.get("key") == key:
            return data["formulas"], np.asarray(data["oracle"], dtype=np.float64)
    formulas = build_pool(setup, progress)
    values = np.asarray(get_oracle(oracle_name).predict(formulas).mean, dtype=np.float64)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(
        gzip.compress(
            json.dumps(
                {"key": key, "formulas": formulas, "oracle": [None if not np.isfinite(v) else float(v) for v in values]}
            ).encode()
        )
    )
    tmp.replace(path)
    return formulas, values


def store_pool(store: Store, name: str, pool: list[str], setup: RecoverySetup) -> int:
    """Write the experiment's ``pool`` into MongoDB's ``pools`` collection as pool ``name`` (members
    not stored yet; the generator and pool seed recorded); returns how many were new. Raises
    :class:`ConfigError` if a pool of that name holds other formulas."""
    stored = set(store.pool_formulas(name))
    if not stored <= set(pool):
        raise ConfigError(
            f"MongoDB pool {name!r} holds {len(stored - set(pool))} formulas that are not in this "
            f"experiment's pool ({setup.generator}, {setup.draws} draws, seed {setup.pool_seed}); "
            "give the config a new pool_collection name"
        )
    missing = [f for f in pool if f not in stored]
    atoms, elements = formula_sizes(missing)
    meta = {"generator": setup.generator, "seed": setup.pool_seed, "batch": 0, "source": "agd-recovery"}
    return store.bulk_insert_new("pools", pool_member_docs(name, missing, atoms, elements, meta))


def random_decodes(ctx: CampaignContext, n: int, exclude: set[str], seed: int) -> list[str]:
    """``n`` distinct formulas from uniform random points of the campaign's latent box that pass the
    campaign's validity rules and are not in ``exclude`` (the random-search counterpart of the loop)."""
    model, box = ctx.autoencoder
    sampler = LatentSampler(model, ctx.encoder, box)
    out: list[str] = []
    seen = set(exclude)
    for attempt in range(RANDOM_DECODE_ROUNDS):
        fresh = [f for f in dict.fromkeys(sampler.sample(4 * n, seed=seed * 1000 + attempt)) if f not in seen]
        seen.update(fresh)
        out.extend(v.formula for v in check_validity_batch(fresh, ctx.validity_rules) if v.valid)
        if len(out) >= n:
            return out[:n]
    raise AlflowError(
        f"only {len(out)} of {n} random decodes passed the validity rules after {RANDOM_DECODE_ROUNDS} "
        f"rounds of {4 * n} draws; the autoencoder {ctx.config.autoencoder!r} decodes too few valid "
        "formulas: use a trained one (e.g. autoencoder_agd87) or relax the validity limits"
    )


def training_sets(store: Store, config: CampaignConfig, seed: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{arm: (formulas, eV)}`` for the four arms (see the module docstring): every seed row of the
    config (also those the one-hot encoding cannot hold, which the loop itself skipped), plus the
    finished campaign's acquisitions from ``store`` or as many random labels (the in-space random arm
    is ``seeds + random decodes`` in continuous mode, ``seeds + random pool`` in pool mode)."""
    # Every seed row: the descriptor-based screening model needs no latent vector. With ``seeds.n``
    # the loop sampled among representable rows only, so the same sample is taken here.
    ctx = CampaignContext(store, config, owner="agd-recovery")
    table = seed_table(config, ctx.encoder if config.seeds.n is not None else None)
    seeds = list(zip(table["formula"], table["value"].astype(float), strict=True))
    acquired = [(d["formula"], d["value"]) for d in store.labels(config.name) if d.get("source") != "seed"]
    if not acquired:
        raise AlflowError(f"campaign {config.name!r} has no acquired labels; run it first")
    seed_set = {f for f, _ in seeds}
    if config.mode == "pool":
        members = [f for f in ctx.pool[0] if f not in seed_set]
        random_arm = "seeds + random pool"
        in_space = sorted(np.random.default_rng(seed).choice(members, size=len(acquired), replace=False).tolist())
    else:
        random_arm = "seeds + random decodes"
        in_space = random_decodes(ctx, len(acquired), seed_set, seed)
    in_space_values = ctx.oracle_predict(in_space).mean
    mp = band_gap_table("agd_exp1_42k")
    mp = mp[~mp["formula"].isin(seed_set)].sample(n=len(acquired), random_state=seed)

    def arm(pairs: list[tuple[str, float]]) -> tuple[list[str], np.ndarray]:
        good = [(f, v) for f, v in pairs if np.isfinite(v)]
        return [f for f, _ in good], np.array([v for _, v in good], dtype=np.float64)

    return {
        "seeds": arm(seeds),
        "seeds + AL": arm(seeds + acquired),
        random_arm: arm(seeds + list(zip(in_space, map(float, in_space_values), strict=True))),
        "seeds + random MP": arm(seeds + list(zip(mp["formula"], mp["value"].astype(float), strict=True))),
    }


def score_arms(
    sets: dict[str, tuple[list[str], np.ndarray]], pool: list[str], oracle_values: np.ndarray, setup: RecoverySetup
) -> list[dict[str, Any]]:
    """Train one screening model per arm and model seed, predict the pool and score it; returns one
    row per (arm, model seed): labels, wide-gap labels, recall, precision, counts, MAE vs the oracle (eV),
    and ``reference_predictions`` (the model's eV for each reference formula, in pool order)."""
    reference = hits(oracle_values, setup.threshold)
    rows = []
    for arm_name, (formulas, values) in sets.items():
        for model_seed in setup.model_seeds:
            t0 = time.perf_counter()
            model = fit_screening_model(formulas, values, seed=model_seed, **setup.screening)
            pred = np.asarray(model.predict(pool).mean, dtype=np.float64)
            score = recovery_score(oracle_values, pred, setup.threshold)
            rows.append(
                {
                    "arm": arm_name,
                    "model_seed": model_seed,
                    "n_labels": len(formulas),
                    "n_wide_labels": int(hits(values, setup.threshold).sum()),
                    **score.as_dict(),
                    "pool_mae_eV": float(np.nanmean(np.abs(pred - oracle_values))),
                    "reference_predictions": [float(v) for v in pred[reference]],
                    "seconds": time.perf_counter() - t0,
                }
            )
    return rows


def reference_table(
    pool: list[str], oracle_values: np.ndarray, rows: list[dict[str, Any]], threshold: float
) -> list[dict[str, Any]]:
    """One entry per reference formula (oracle eV > ``threshold``), best first: formula, oracle eV and,
    per arm, the share of its screening models that also put it above the threshold."""
    reference = np.flatnonzero(hits(oracle_values, threshold))
    out = [{"formula": pool[i], "oracle_eV": float(oracle_values[i]), "found_by": {}} for i in reference]
    for arm_name in dict.fromkeys(r["arm"] for r in rows):
        preds = np.array([r["reference_predictions"] for r in rows if r["arm"] == arm_name]).reshape(-1, len(out))
        for j, entry in enumerate(out):
            entry["found_by"][arm_name] = float(hits(preds[:, j], threshold).mean())
    return sorted(out, key=lambda e: -e["oracle_eV"])


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm: mean and standard deviation over model seeds of recall and precision, mean counts."""
    out = []
    for arm_name in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm_name]
        recall = np.array([r["recall"] for r in rs])
        precision = np.array([r["precision"] for r in rs])
        out.append(
            {
                "arm": arm_name,
                "labels": rs[0]["n_labels"],
                "wide_labels": rs[0]["n_wide_labels"],
                "reference": rs[0]["n_reference"],
                "recovered": float(np.mean([r["n_recovered"] for r in rs])),
                "predicted": float(np.mean([r["n_predicted"] for r in rs])),
                "recall": float(recall.mean()),
                "recall_sd": float(recall.std()),
                "precision": float(np.nanmean(precision)) if np.isfinite(precision).any() else float("nan"),
                "pool_mae_eV": float(np.mean([r["pool_mae_eV"] for r in rs])),
                "models": len(rs),
            }
        )
    return out


def configured(
    config_path: str, overrides: dict[str, Any] | None = None, variant: str | None = None, seed: int | None = None
) -> CampaignConfig:
    """The campaign config of ``config_path`` with ``overrides`` merged in (sections key by key),
    named ``<name>[-<variant>][-s<seed>]`` and, with ``seed``, that campaign seed."""
    base = load_config(config_path)
    data = base.resolved()
    for key, value in (overrides or {}).items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    name = base.name + (f"-{variant}" if variant else "")
    if seed is not None:
        data["seed"] = seed
        name += f"-s{seed}"
    data["name"] = name
    return parse_config(data, source=config_path)


@flow(name="agd-recovery", log_prints=True)
def agd_recovery_flow(
    config_path: str,
    setup: RecoverySetup = RecoverySetup(),
    out_dir: str = "runs/agd_recovery",
    progress: Callable[[int, int], None] | None = None,
    campaign_seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """Prefect flow: the whole experiment for the campaign in ``config_path`` (run or resumed first).
    ``campaign_seed`` replaces the config's seed (GP, acquisition and random arms) and names the
    campaign ``<name>-s<seed>``, so several campaign seeds of one config live side by side.
    ``overrides`` are merged into the YAML's settings (nested sections key by key, e.g.
    ``{"iterations": 10, "acquisition": {"strategy": "optimise_decode"}}``: a reduced budget or an
    ablation); with ``variant`` the campaign is named ``<name>-<variant>[-s<seed>]``.

    Returns ``{"setup", "campaign", "pool", "rows" (per model), "summary" (per arm), "ratios"}``;
    ``ratios`` are the AL arm's mean recall divided by each random arm's. Writes nothing but the pool
    cache under ``out_dir``; the caller saves the result.
    """
    logger = flow_logger()
    from flows.settings import get_settings

    config = configured(config_path, overrides, variant, campaign_seed)
    store = Store.connect(get_settings())
    try:
        t1 = time.perf_counter()
        pool, oracle_values = labelled_pool(setup, config.oracle, Path(out_dir), progress)
        logger.info(
            "pool: %d formulas, %d oracle hits > %.1f eV (%.0f s)",
            len(pool),
            int(hits(oracle_values, setup.threshold).sum()),
            setup.threshold,
            time.perf_counter() - t1,
        )
        if config.pool_collection is not None:
            new = store_pool(store, config.pool_collection, pool, setup)
            logger.info("MongoDB pool %s: %d formulas, %d new", config.pool_collection, len(pool), new)
        t0 = time.perf_counter()
        campaign = run_campaign_in(store, config)
        if campaign["status"] != "finished":
            raise AlflowError(f"campaign {config.name!r} ended {campaign['status']!r}; finish it before scoring")
        logger.info("campaign %s finished (%.0f s)", config.name, time.perf_counter() - t0)
        sets = training_sets(store, config, seed=config.seed)
        rows = score_arms(sets, pool, oracle_values, setup)
    finally:
        store.close()
    summary = summarise(rows)
    by_arm = {s["arm"]: s["recall"] for s in summary}
    ratios = {
        f"AL / {arm}": by_arm["seeds + AL"] / by_arm[arm] if by_arm[arm] else float("inf")
        for arm in by_arm
        if arm != "seeds + AL"
    }
    return {
        "setup": asdict(setup),
        "campaign": config.name,
        "config": config_path,
        "pool": {"size": len(pool), "reference": int(hits(oracle_values, setup.threshold).sum())},
        "rows": rows,
        "summary": summary,
        "ratios": ratios,
        "reference": reference_table(pool, oracle_values, rows, setup.threshold),
    }


def plot_recovery(result: dict[str, Any], path: Path) -> Path:
    """Bar chart of recall (mean ± sd over model seeds) per arm, with the published AGD figures for
    reference in the title; writes ``path`` (PNG) and returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(summary))
    ax.bar(
        x,
        [100 * s["recall"] for s in summary],
        yerr=[100 * s["recall_sd"] for s in summary],
        color=["#999999", "#1f77b4", "#ff7f0e", "#ffbb78"][: len(summary)],
        capsize=4,
    )
    ax.set_xticks(x, [s["arm"].replace(" + ", "\n+ ") for s in summary])
    ax.set_ylabel("recall of the oracle's wide-gap set (%)")
    ax.set_ylim(0, 105)
    ax.set_title(
        f"{result['campaign']}: pool {result['pool']['size']:,}, reference {result['pool']['reference']} "
        "(AGD Exp 3: AL 57.8 %, baseline 2.9 %)",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

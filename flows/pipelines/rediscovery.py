"""Prefect flow ``rediscovery``: the hold-out rediscovery benchmark of the whole pipeline.

Per split seed (``alcore.holdout``: default 20 % of the chemical systems of the MP data in
``data/`` hidden), every model the pipeline learns from is rebuilt from the visible part only,
with a leak check in code for each table (:func:`alcore.holdout.assert_no_leak`):

============== ==============================================================================
stage          what
============== ==============================================================================
split          the split and its counts (hidden formulas, hidden wide-gap ones)
data           300 seed labels and the validation rows: random visible MP gaps (max over polymorphs)
oracle         band-gap ResNet ensemble on every visible MP gap (labels acquisitions = "DFT")
eform          (continuous route with ``strategy: decode_select``) formation-energy ResNet ensemble
               on every visible MP E_form: P(E_form < 0); the oracle's domain is rebuilt from the
               visible gaps and calibrated on visible formulas it never saw
autoencoder    composition autoencoder (agd87) on the visible MP formulas (continuous route, GP latents)
matgan         MatGAN WGAN-GP from scratch on the visible SMACT-valid MP formulas (resumable checkpoint)
pool           MatGAN draws -> distinct, 2..max_elements elements, <= max_atoms atoms, SMACT-valid,
               representable, not in the visible known list; stored in MongoDB ``pools``
complm         (``generators`` has ``complm``) the composition LM from scratch on the same visible
               SMACT-valid formulas (resumable checkpoint)
pool@complm    complm-distinct-style draws (visible-known and repeated formulas redrawn; hidden
               formulas count as new), the same filters, until the pool is as large as MatGAN's
screening      plain screening: the pool ranked by the oracle (no label budget)
judged-        screening by the judges (:mod:`alcore.judged_screening`): the pool ranked by
screening      P(gap >= target) x P(E_form < 0) or P(E_hull <= t) against the visible MP DFT hull
pool-al        campaign choosing among the pool (``mode: pool``), seeds + acquisitions labelled by
               the oracle; lists: its acquisitions by label, the pool by its last screening model
continuous-al  campaign in the autoencoder's latent space (``mode: continuous``); same two lists
random-*       random pool labels (both lists), random visible MP labels (pool by its screening
               model), random pool members and random SMACT-valid compositions as proposals
<route>@complm a pool route on the complm pool (lists ``<list>@complm``; random SMACT compositions
               and the continuous route are not per pool)
stability      (``stability`` set) the structure stage on the top of the judged lists, visible data
               only (:mod:`flows.pipelines.rediscovery_stability`); lists ``<list>+stable``
score          rediscoveries@K etc. (:mod:`alcore.rediscovery`) per list; ceilings and base rates;
               what the stability filter kept of each judged top
============== ==============================================================================

Models are cached by (protocol, fraction, split seed, MP data sha256, settings) in MongoDB GridFS
(kinds ``rediscovery_oracle``, ``rediscovery_eform``, ``rediscovery_autoencoder``, ``rediscovery_matgan``,
``rediscovery_complm``) with their files under ``out_dir`` (never ``data/weights``). Each stage
stores its result and settings digest in the ``rediscovery`` collection and each ranked list in
``rediscovery_lists``; a rerun returns what is stored, and the campaigns resume stage by stage, so
a killed run resumes where it stopped. A stage stored with other settings (the YAML was edited),
or without any, is redone with every stage that reads it
(:mod:`flows.pipelines.rediscovery_stages`); a redone route runs a new campaign (its name holds
the settings digest). H (the hidden formulas and their DFT gaps) is used only by the ``score``
stage. With ``nested: true`` every split seed runs on a split of the visible part of its split
(:func:`benchmark_split`): methods are chosen on that inner answer key, never on H.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE

from alcore.composition import CompositionEncoder, element_formulas
from alcore.errors import AlflowError, EmptyPoolError
from alcore.holdout import HoldoutSplit, assert_no_leak, make_split, nested_split
from alcore.judged_screening import judged_scores, rank_by
from alcore.rediscovery import (
    CRITERIA,
    base_rate,
    count_members,
    distinct,
    filter_scores,
    mean_sd,
    rediscovery_curve,
    score_list,
)
from alcore.validity import ValidityRules, check_validity_batch
from flows.campaign import CampaignContext, run_campaign_in
from flows.campaign.faults import fault_point
from flows.config import parse_config
from flows.holdout_data import mp_data_sha256, mp_tables, mp_universe
from flows.logs import flow_logger
from flows.pipelines.pool import formula_sizes, pool_member_docs
from flows.pipelines.rediscovery_config import LISTS, POOL_ROUTES, RediscoveryConfig
from flows.pipelines.rediscovery_stability import STABLE_SUFFIX, stability_stage
from flows.pipelines.rediscovery_stages import stage_settings, stages_for
from flows.store import Store
from oracles.base import Prediction

ELEMENTS = "agd87"
#: A nested split of split seed s is drawn with seed NESTED_SEED_OFFSET + s.
NESTED_SEED_OFFSET = 1000


def pool_suffix(generator: str) -> str:
    """Suffix of the stages and lists of a pool generator: ``""`` for MatGAN, ``"@complm"`` else."""
    return "" if generator == "matgan" else f"@{generator}"


def split_suffix(name: str) -> tuple[str, str]:
    """``(base name, generator)`` of a stage or list name (``"screening/oracle@complm"`` ->
    ``("screening/oracle", "complm")``; no suffix -> MatGAN)."""
    base, _, gen = name.partition("@")
    return base, gen or "matgan"


def _log(msg: str, *args: Any) -> None:
    flow_logger().info(msg, *args)


def split_key(cfg: RediscoveryConfig, seed: int) -> str:
    """The cache key of one split: protocol, fraction, seed, MP data sha256 (and universe limit)."""
    key = f"{cfg.protocol}-f{cfg.fraction:g}-s{seed}-{mp_data_sha256()[:8]}"
    key += f"-u{cfg.universe_limit}" if cfg.universe_limit else ""
    return key + (f"-in{NESTED_SEED_OFFSET + seed}" if cfg.nested else "")


def benchmark_universe(cfg: RediscoveryConfig) -> frozenset[str]:
    """The formula universe of the split: all MP formulas in ``data/``, or a seeded subset of
    ``universe_limit`` of them (tests)."""
    universe = mp_universe(Path(cfg.out_dir) / "cache")
    if cfg.universe_limit is None or cfg.universe_limit >= len(universe):
        return universe
    rng = np.random.default_rng(12345)
    return frozenset(rng.choice(sorted(universe), size=cfg.universe_limit, replace=False).tolist())


def benchmark_split(cfg: RediscoveryConfig, seed: int) -> HoldoutSplit:
    """The split of split seed ``seed``; with ``cfg.nested``, the split (seed ``NESTED_SEED_OFFSET +
    seed``) of that split's visible part (:func:`alcore.holdout.nested_split`)."""
    split = _split_cached(cfg.protocol, cfg.fraction, seed, benchmark_universe(cfg))
    return nested_split(split, NESTED_SEED_OFFSET + seed) if cfg.nested else split


@functools.lru_cache(maxsize=8)
def _split_cached(protocol: str, fraction: float, seed: int, universe: frozenset[str]) -> HoldoutSplit:
    return make_split(universe, protocol, fraction, seed)


# ---------------------------------------------------------------------------------------- resources
@dataclass
class SplitRun:
    """One split seed of one benchmark: config, store, split and the lazily built visible tables."""

    cfg: RediscoveryConfig
    store: Store
    seed: int
    split: HoldoutSplit
    key: str
    times: dict[str, float] = field(default_factory=dict)
    _pools: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def out(self) -> Path:
        """Folder of this split's model files."""
        return Path(self.cfg.out_dir) / "models" / self.key

    @cached_property
    def tables(self) -> dict[str, dict]:
        """The MP tables (:func:`flows.holdout_data.mp_tables`)."""
        return mp_tables(Path(self.cfg.out_dir) / "cache")

    @cached_property
    def visible_gaps(self) -> pd.DataFrame:
        """Visible MP band gaps (``formula``, ``value`` eV, max over polymorphs), sorted by formula."""
        return self._visible("gap", "visible band gaps")

    @cached_property
    def visible_eforms(self) -> pd.DataFrame:
        """Visible MP formation energies (``formula``, ``value`` eV/atom, min over polymorphs), sorted."""
        return self._visible("eform", "visible formation energies")

    def _visible(self, table: str, what: str) -> pd.DataFrame:
        rows = sorted((f, v) for f, v in self.tables[table].items() if f in self.split.visible)
        out = pd.DataFrame(rows, columns=["formula", "value"])
        assert_no_leak(what, out["formula"], self.split)
        return out

    @cached_property
    def hidden_gaps(self) -> dict[str, float | None]:
        """Every hidden formula -> DFT gap (eV) or None: the answer key, used only for scoring."""
        gap = self.tables["gap"]
        return {f: gap.get(f) for f in self.split.hidden}

    @cached_property
    def known(self) -> frozenset[str]:
        """The novelty reference: visible MP formulas plus every element (whose solid is known)."""
        elements = frozenset(e for e in element_formulas() if not self.split.is_hidden(e))
        known = frozenset(self.split.visible) | elements
        assert_no_leak("known-formula list", known, self.split)
        return known

    @cached_property
    def encoder(self) -> CompositionEncoder:
        """The agd87 one-hot encoder of the autoencoder and the campaigns."""
        return CompositionEncoder(ELEMENTS)

    @cached_property
    def rules(self) -> ValidityRules:
        """Validity limits of every proposal (SMACT + size limits)."""
        return ValidityRules(max_elements=self.cfg.max_elements, max_atoms=self.cfg.max_atoms, min_elements=2)

    def stage_id(self, stage: str) -> str:
        """``_id`` of a stage document (see :mod:`flows.store.benchmarks`)."""
        return f"{self.cfg.name}:{self.key}:{stage}"

    def result(self, stage: str) -> dict[str, Any]:
        """The stored result of a finished stage (raises :class:`AlflowError` if it has not run)."""
        result = self.store.bench_stage_result(self.stage_id(stage))
        if result is None:
            raise AlflowError(f"rediscovery stage {stage!r} of {self.key} has not run")
        return result

    def save_list(self, name: str, formulas: list[str], scores: list[float | None]) -> None:
        """Store ranked list ``name`` (formulas best first, their scores; NaN -> None)."""
        clean = [None if s is None or not np.isfinite(s) else float(s) for s in scores]
        doc = {"bench": self.cfg.name, "split": self.key, "seed": self.seed, "list": name}
        self.store.save_bench_list(
            f"{self.stage_id('list')}:{name}", {**doc, "formulas": list(formulas), "scores": clean}
        )

    def load_list(self, name: str) -> tuple[list[str], list[float | None]] | None:
        """A stored ranked list ``(formulas, scores)``, or None."""
        doc = self.store.bench_list(f"{self.stage_id('list')}:{name}")
        return None if doc is None else (doc["formulas"], doc["scores"])

    @cached_property
    def oracle(self):
        """The visible-data band-gap oracle (loaded from GridFS)."""
        from oracles.registry import load_screening_model

        state, meta = self.store.load_model(self.result("oracle")["sha256"], kind="rediscovery_oracle")
        return load_screening_model(state, meta)

    @cached_property
    def eform(self):
        """The visible-data formation-energy model (loaded from GridFS)."""
        from oracles.registry import load_screening_model

        state, meta = self.store.load_model(self.result("eform")["sha256"], kind="rediscovery_eform")
        return load_screening_model(state, meta)

    @cached_property
    def oracle_domain(self) -> Any:
        """The visible oracle's applicability domain (:class:`oracles.domain.Domain`): its training
        formulas (every visible MP gap), bounds calibrated on up to :data:`flows.oracle_domain.CALIBRATION_N` seeded
        visible MP formulas without a gap, which the oracle never saw (their ensemble std and distance)."""
        from flows.oracle_domain import CALIBRATION_N, calibrated_domain

        trained = list(self.visible_gaps["formula"])
        assert_no_leak("oracle domain", trained, self.split)
        unseen = sorted((set(self.tables["eform"]) | set(self.tables["known"])) & self.split.visible - set(trained))
        rng = np.random.default_rng([self.seed, 2])
        pick = np.sort(rng.choice(len(unseen), size=min(CALIBRATION_N, len(unseen)), replace=False))
        held = [unseen[i] for i in pick]
        assert_no_leak("oracle domain calibration", held, self.split)
        return calibrated_domain(trained, held, self.oracle, source=f"visible MP gaps of split {self.key}")

    @property
    def pool(self) -> list[str]:
        """The MatGAN pool's formulas (sorted)."""
        return self.pool_of("matgan")

    def pool_of(self, generator: str) -> list[str]:
        """The formulas (sorted) of the pool of ``generator`` (``matgan`` or ``complm``)."""
        if generator not in self._pools:
            stage = "pool" + pool_suffix(generator)
            self._pools[generator] = sorted(self.store.pool_formulas(self.result(stage)["pool"]))
        return self._pools[generator]

    @property
    def pool_oracle(self) -> dict[str, float]:
        """Oracle band gap (eV) of every MatGAN pool member (the plain-screening scores)."""
        return self.pool_oracle_of("matgan")

    def pool_oracle_of(self, generator: str) -> dict[str, float]:
        """Oracle band gap (eV) of every member of ``generator``'s pool (its plain-screening scores)."""
        stored = self.load_list("screening/oracle" + pool_suffix(generator))
        if stored is None:
            raise AlflowError(f"the {generator} pool of {self.key} has not been screened yet")
        return {f: s for f, s in zip(*stored, strict=True) if s is not None}


def run_stage(run: SplitRun, stage: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one stage idempotently: the stored result if it was done with this config's settings
    (:func:`flows.pipelines.rediscovery_stages.stage_settings`), else ``body()`` stored with its
    time and settings (a stage done with other settings, or stored before stages recorded their
    settings, is redone). Fault points ``rediscovery:<stage>:before`` / ``:after`` (see
    :func:`flows.campaign.faults.fault_point`)."""
    settings = stage_settings(run.cfg, stage)
    doc = run.store.bench_stage(run.stage_id(stage))
    if doc is not None and doc.get("status") == "done":
        stored = doc.get("settings")
        if stored == settings:
            return doc["result"]
        _log("rediscovery %s %s: done with settings %s, now %s; redoing it", run.key, stage, stored, settings)
    fault_point(f"rediscovery:{stage}:before")
    t0 = time.perf_counter()
    result = body()
    result = {**result, "seconds": round(time.perf_counter() - t0, 3)}
    fault_point(f"rediscovery:{stage}:after")
    run.store.set_bench_stage(
        run.stage_id(stage),
        {
            "bench": run.cfg.name,
            "split": run.key,
            "seed": run.seed,
            "stage": stage,
            "status": "done",
            "settings": settings,
            "result": result,
        },
    )
    _log("rediscovery %s %s: done in %.1f s", run.key, stage, result["seconds"])
    return result


@task(name="rediscovery-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def stage_task(run: SplitRun, stage: str) -> dict[str, Any]:
    """Prefect task: one benchmark stage of one split (see the module docstring)."""
    return run_stage(run, stage, stage_body(run, stage))


# ---------------------------------------------------------------------------------------- stages
def split_stage(run: SplitRun) -> dict[str, Any]:
    """Counts of the split (the split itself is recomputed deterministically)."""
    gaps = run.hidden_gaps
    with_gap = [g for g in gaps.values() if g is not None]
    return {
        "protocol": run.split.protocol,
        "fraction": run.split.fraction,
        "seed": run.seed,
        "data_sha256": mp_data_sha256(),
        "n_visible": len(run.split.visible),
        "n_hidden": len(run.split.hidden),
        "n_hidden_systems": len(run.split.hidden_systems),
        "n_hidden_with_gap": len(with_gap),
        **{f"n_hidden_{c.name}": sum(c.meets(g) for g in with_gap) for c in CRITERIA},
    }


def data_stage(run: SplitRun) -> dict[str, Any]:
    """Seed labels (``cfg.seeds`` random visible MP gaps the autoencoder can encode) and
    ``cfg.validation`` other random visible rows for the campaigns' screening-model MAE."""
    table = run.visible_gaps
    ok = np.array([run.encoder.representable(f)[0] for f in table["formula"]], dtype=bool)
    rng = np.random.default_rng([run.seed, 1])
    idx = rng.permutation(np.flatnonzero(ok))
    seeds = table.iloc[np.sort(idx[: run.cfg.seeds])]
    val = table.iloc[np.sort(idx[run.cfg.seeds : run.cfg.seeds + run.cfg.validation])]
    assert_no_leak("seed labels", seeds["formula"], run.split)
    assert_no_leak("validation rows", val["formula"], run.split)
    return {
        "seeds": {"formula": seeds["formula"].tolist(), "value": seeds["value"].astype(float).tolist()},
        "validation": {"formula": val["formula"].tolist(), "value": val["value"].astype(float).tolist()},
        "n_wide_seeds": int((seeds["value"] >= 4.0).sum()),
    }


def _cached_model(run: SplitRun, kind: str, settings: str) -> str | None:
    return run.store.latest_model(kind, holdout_key=run.key, settings=settings)


def _train_visible_resnet(
    run: SplitRun, what: str, kind: str, spec: Any, table: pd.DataFrame, property: str
) -> dict[str, Any]:
    """Train (or find in GridFS, by ``kind`` and ``spec``'s digest) a ResNet ensemble of ``property``
    (``band_gap`` or ``e_form``) on the visible ``table`` (``formula``, ``value``), leak-checked;
    ``what`` names it in the leak check and the progress bar."""
    from oracles.registry import screening_state
    from oracles.resnet import TrainConfig, train_resnet

    settings = spec.digest()
    sha = _cached_model(run, kind, settings)
    if sha is not None:
        return {"sha256": sha, "cached": True}
    if spec.max_train is not None and spec.max_train < len(table):
        table = table.sample(n=spec.max_train, random_state=run.seed)
    assert_no_leak(f"{what} training set", table["formula"], run.split)
    cfg = TrainConfig(
        hidden=spec.hidden,
        n_layers=spec.layers,
        n_members=spec.members,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        seed=run.seed,
    )
    import torch

    torch.set_num_threads(1)
    bar = _epoch_bar(f"{what} epochs", spec.epochs)
    oracle = train_resnet(
        list(table["formula"]),
        table["value"].to_numpy(),
        property=property,
        name=f"holdout-{kind.removeprefix('rediscovery_')}-{run.key}",
        config=cfg,
        progress=lambda e, loss: bar.update(1),
    )
    bar.close()
    state, meta = screening_state(oracle)
    sha = run.store.save_model(
        kind,
        state,
        {**meta, "holdout_key": run.key, "settings": settings, "n_train": len(table), "spec": spec.model_dump()},
    )
    return {"sha256": sha, "cached": False, "n_train": len(table), "train_s": oracle.info.get("wall_s")}


def oracle_stage(run: SplitRun) -> dict[str, Any]:
    """Train (or find in GridFS) the band-gap oracle on every visible MP gap."""
    return _train_visible_resnet(run, "oracle", "rediscovery_oracle", run.cfg.oracle, run.visible_gaps, "band_gap")


def eform_stage(run: SplitRun) -> dict[str, Any]:
    """Train (or find in GridFS) the formation-energy model (eV/atom) on every visible MP E_form:
    decode-then-select's P(E_form < 0) in the continuous route."""
    return _train_visible_resnet(run, "eform", "rediscovery_eform", run.cfg.eform, run.visible_eforms, "e_form")


def _epoch_bar(desc: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


def autoencoder_stage(run: SplitRun) -> dict[str, Any]:
    """Train (or find in GridFS) the composition autoencoder on the visible MP formulas; writes its
    file under ``out_dir`` (restored from GridFS when the file is gone)."""
    import torch

    from alcore.autoencoder import load_weights, model_from_state, save_weights
    from flows.pipelines.autoencoder import train_and_save_autoencoder

    spec = run.cfg.autoencoder
    settings = spec.digest()
    path = run.out / f"autoencoder-{settings}.safetensors"
    sha = _cached_model(run, "rediscovery_autoencoder", settings)
    if sha is not None:
        if not path.exists():
            state, meta = run.store.load_model(sha, kind="rediscovery_autoencoder")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(model_from_state(state, meta["config"]), path, meta["file_metadata"])
        return {"sha256": sha, "path": str(path), "cached": True}
    corpus = sorted(f for f in run.split.visible if run.encoder.representable(f)[0])
    if spec.max_train is not None and spec.max_train < len(corpus):
        corpus = sorted(np.random.default_rng(run.seed).choice(corpus, size=spec.max_train, replace=False).tolist())
    assert_no_leak("autoencoder corpus", corpus, run.split)
    meta = train_and_save_autoencoder(
        path,
        element_list=ELEMENTS,
        epochs=spec.epochs,
        seed=run.seed,
        corpus=corpus,
        progress=True,
        min_val_exact=spec.min_val_exact,
        restarts=spec.restarts,
    )
    torch.set_num_threads(1)
    model, file_meta = load_weights(path)
    sha = run.store.save_model(
        "rediscovery_autoencoder",
        model.state_dict(),
        {"holdout_key": run.key, "settings": settings, "config": file_meta["config"], "file_metadata": file_meta},
    )
    return {
        "sha256": sha,
        "path": str(path),
        "cached": False,
        "corpus": len(corpus),
        "val_exact": meta["metrics"]["val_exact"],
        "attempts": meta["attempts"],
    }


def generator_corpus(run: SplitRun, max_train: int | None) -> list[str]:
    """The training formulas of the pool generators (MatGAN and the composition LM alike): the
    visible formulas with >= 2 elements that the matgan85 encoding holds (counts <= 8), SMACT-valid; a
    seeded subset of ``max_train`` of them if given. Sorted."""
    from generators.matgan import encoder as matgan_encoder

    enc = matgan_encoder()
    forms = []
    for f in sorted(run.split.visible):
        ok, _ = enc.representable(f)
        if ok and len(enc.counts(f)) >= 2:
            forms.append(f)
    forms = [v.formula for v in check_validity_batch(forms, ValidityRules()) if v.valid]
    if max_train is not None and max_train < len(forms):
        forms = sorted(np.random.default_rng(run.seed).choice(forms, size=max_train, replace=False).tolist())
    return forms


def matgan_stage(run: SplitRun) -> dict[str, Any]:
    """Train (or find in GridFS) MatGAN on the visible SMACT-valid MP formulas (>= 2 elements,
    matgan85 / max count 8), resumably from its checkpoint under ``out_dir``."""
    import torch

    from generators.matgan import GENERATOR_NAME, GANConfig, encode_formulas, save_module, train_gan

    spec = run.cfg.matgan
    settings = spec.digest()
    sha = _cached_model(run, "rediscovery_matgan", settings)
    if sha is not None:
        return {"sha256": sha, "cached": True}
    forms = generator_corpus(run, spec.max_train)
    assert_no_leak("MatGAN training formulas", forms, run.split)
    torch.set_num_threads(1)
    cfg = GANConfig(epochs=spec.epochs, seed=run.seed, ch=spec.ch, lr=spec.lr)
    bar = _epoch_bar("MatGAN epochs", spec.epochs)
    gen, history = train_gan(
        encode_formulas(forms),
        cfg,
        progress=lambda e, s: bar.update(1),
        checkpoint=run.out / f"matgan-{settings}" / "matgan_gan.pt",
    )
    bar.close()
    meta = {
        "holdout_key": run.key,
        "settings": settings,
        "params": {"latent_dim": cfg.latent_dim, "ch": cfg.ch},
        "n_formulas": len(forms),
        "epochs": history["epochs"],
        "seconds": history["seconds"],
    }
    save_module(run.out / f"matgan-{settings}", GENERATOR_NAME, gen, meta)
    sha = run.store.save_model("rediscovery_matgan", gen.state_dict(), meta)
    return {"sha256": sha, "cached": False, "n_formulas": len(forms), "gan_seconds": history["seconds"]}


def _matgan_sampler(run: SplitRun):
    from generators.matgan import Generator, MatGANSampler

    state, meta = run.store.load_model(run.result("matgan")["sha256"], kind="rediscovery_matgan")
    gen = Generator(meta["params"]["latent_dim"], meta["params"]["ch"])
    gen.load_state_dict(state)
    return MatGANSampler(gen, None, meta, name=f"matgan-holdout-{run.key}")


def pool_stage(run: SplitRun) -> dict[str, Any]:
    """Draw the pool from the visible MatGAN and store it in MongoDB ``pools``."""
    from tqdm import tqdm

    cfg = run.cfg
    sampler = _matgan_sampler(run)
    name = f"{cfg.name}-{run.key}-{hashlib.sha256(run.result('matgan')['sha256'].encode()).hexdigest()[:6]}"
    name += f"-{cfg.pool_draws}-{cfg.max_atoms}-{cfg.max_elements}"
    distinct: dict[str, None] = {}
    chunk = 20_000
    bar = tqdm(total=cfg.pool_draws, desc="pool draws", unit="draw", unit_scale=True, leave=False)
    for start in range(0, cfg.pool_draws, chunk):
        n = min(chunk, cfg.pool_draws - start)
        for f in sampler.sample(n, seed=run.seed * 1_000_003 + start):
            distinct.setdefault(f, None)
        bar.update(n)
    bar.close()
    forms = list(distinct)
    n_sized, n_novel, members = _pool_members(run, forms)
    members.sort()
    need = max(cfg.acquisitions, cfg.pool_q) + 1
    if len(members) < need:
        raise EmptyPoolError(
            f"the pool of {run.key} has {len(members)} novel valid formulas ({len(distinct)} distinct of "
            f"{cfg.pool_draws} draws), fewer than the {need} the routes need; raise pool_draws or matgan.epochs"
        )
    _store_pool(run, name, members, sampler.name)
    return {
        "pool": name,
        "draws": cfg.pool_draws,
        "distinct": len(forms),
        "within_limits": n_sized,
        "novel": n_novel,
        "size": len(members),
    }


def _pool_members(run: SplitRun, formulas: list[str]) -> tuple[int, int, list[str]]:
    """The pool filter of every generator, on distinct ``formulas``: how many are within the size
    limits (2..max_elements elements, <= max_atoms atoms), how many of those are new (not in the
    visible known list) and representable, and those that are also SMACT-valid (in the given order)."""
    cfg = run.cfg
    atoms, elems = formula_sizes(formulas)
    sized = [
        f for f, a, e in zip(formulas, atoms, elems, strict=True) if a <= cfg.max_atoms and 2 <= e <= cfg.max_elements
    ]
    novel = [f for f in sized if f not in run.known and run.encoder.representable(f)[0]]
    valid = {v.formula for v in check_validity_batch(novel, run.rules) if v.valid}
    return len(sized), len(novel), [f for f in novel if f in valid]


def complm_train_config(run: SplitRun) -> Any:
    """The :class:`generators.complm.TrainConfig` of this split's composition LM (``cfg.complm``,
    seeded with the split seed)."""
    from generators.complm import TrainConfig

    spec = run.cfg.complm
    same_name = {
        "steps",
        "batch_size",
        "lr",
        "d",
        "layers",
        "heads",
        "ff",
        "eval_every",
        "eval_samples",
        "eval_sampler",
    }
    return TrainConfig(
        **spec.model_dump(include=same_name),
        warmup=min(spec.warmup, spec.steps),
        eval_cond_samples=0,  # the > 5 eV validity record of the shipped model's training is not needed here
        seed=run.seed,
    )


def complm_paths(run: SplitRun) -> tuple[Path, Path]:
    """``(weights stem, training checkpoint)`` of this split's composition LM under ``out_dir``."""
    folder = run.out / f"complm-{run.cfg.complm.digest()}"
    return folder / "complm", folder / "checkpoint.pt"


def complm_corpus(run: SplitRun) -> list[str]:
    """The composition LM's training formulas: :func:`generator_corpus` (MatGAN's corpus) less the
    formulas its tokeniser cannot hold (more than 8 elements). Sorted."""
    from generators.complm import FormulaTokenizer

    tok = FormulaTokenizer()
    out = []
    for f in generator_corpus(run, run.cfg.complm.max_train):
        try:
            tok.pairs(f)
        except AlflowError:
            continue
        out.append(f)
    return out


def complm_stage(run: SplitRun) -> dict[str, Any]:
    """Train (or find in GridFS) the composition LM on the visible SMACT-valid MP formulas
    (:func:`complm_corpus`; condition tokens from those formulas' own MP DFT labels), resumably from
    its checkpoint under ``out_dir``; the weights with the best valid-novel-unique share are kept."""
    import torch

    from generators.complm import load_lm, train_complm

    spec = run.cfg.complm
    settings = spec.model_digest()
    sha = _cached_model(run, "rediscovery_complm", settings)
    if sha is not None:
        return {"sha256": sha, "cached": True}
    corpus = complm_corpus(run)
    assert_no_leak("complm training formulas", corpus, run.split)
    torch.set_num_threads(1)
    stem, checkpoint = complm_paths(run)
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = train_complm(
        stem,
        complm_train_config(run),
        checkpoint,
        log_fn=lambda msg: _log("rediscovery %s complm: %s", run.key, msg),
        formulas=corpus,
    )
    model, _ = load_lm(stem)
    info = {
        "holdout_key": run.key,
        "settings": settings,
        "lm_config": _lm_config(model),
        "n_formulas": len(corpus),
        "n_train": meta["n_train"],
        "n_val": meta["n_val"],
        "data_sha256": meta["data_sha256"],
        "steps": meta["steps"],
        "epochs": meta.get("epochs"),
        "seconds": meta["seconds"],
        "runs": meta.get("runs"),
        "best": meta["best"],
        "evals": meta["evals"],
    }
    sha = run.store.save_model("rediscovery_complm", model.state_dict(), info)
    return {
        "sha256": sha,
        "cached": False,
        "n_formulas": len(corpus),
        "steps": meta["steps"],
        "runs": meta.get("runs"),
        "lm_seconds": meta["seconds"],
        "best_step": meta["best"].get("step"),
        "best_vnu": meta["best"].get("criterion"),
    }


def _lm_config(model: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(model.cfg)


def complm_model(run: SplitRun) -> tuple[Any, dict[str, Any]]:
    """This split's composition LM from GridFS: ``(CompositionLM in eval mode, metadata)``."""
    from generators.complm import CompositionLM, LMConfig

    state, meta = run.store.load_model(run.result("complm")["sha256"], kind="rediscovery_complm")
    model = CompositionLM(LMConfig(**meta["lm_config"]))
    model.load_state_dict(state)
    return model.eval(), meta


def complm_pool_stage(run: SplitRun) -> dict[str, Any]:
    """The composition-LM pool, as large as the MatGAN pool of the split: draws of the visible LM
    (unconditioned, or round robin over the gap bins ``complm.conditions``, one seeded sampler per
    bin; temperature ``complm.temperature``; up to ``complm.reject_tries`` redraws of a draw
    that is in the visible known list or was drawn before in the call, as ``complm-distinct`` does;
    hidden formulas count as new), filtered as the MatGAN pool (distinct, 2..max_elements elements,
    <= max_atoms atoms, SMACT-valid, representable, not visible-known) in draw order until the pool
    holds as many members as MatGAN's (the first that many). Stored in MongoDB ``pools``."""
    import torch
    from tqdm import tqdm

    from generators.complm import CompLMSampler, FormulaTokenizer, SamplingSettings
    from generators.complm.tokens import condition_tokens

    cfg, spec = run.cfg, run.cfg.complm
    target = int(run.result("pool")["size"])
    torch.set_num_threads(1)
    model, meta = complm_model(run)
    samplers = [
        CompLMSampler(
            model,
            FormulaTokenizer(),
            SamplingSettings(
                temperature=spec.temperature,
                gap=condition_tokens(cond)[0],
                reject_tries=spec.reject_tries,
                reject_seen=spec.reject_tries > 0,
            ),
            meta,
            f"complm-holdout-{run.key}",
            run.known,
        )
        for cond in spec.conditions or [None]
    ]
    assert_no_leak("complm exclusion list", samplers[0].exclude or (), run.split)  # one list, shared
    name = f"{cfg.name}-{run.key}-complm-{hashlib.sha256(run.result('complm')['sha256'].encode()).hexdigest()[:6]}"
    name += f"-{target}-{cfg.max_atoms}-{cfg.max_elements}"
    if spec.conditions:
        name += "-cond-" + "+".join(spec.conditions)
    seen: set[str] = set()
    members: list[str] = []
    draws = within = novel = 0
    t0 = time.perf_counter()
    bar = tqdm(total=target, desc="complm pool", unit="member", leave=False)
    per_bin = -(-spec.max_draws // len(samplers))
    streams = [s.iter_batches(per_bin, seed=run.seed + 7919 * k) for k, s in enumerate(samplers)]
    for batch in _round_robin(streams):
        draws += len(batch.formulas)
        fresh = list(dict.fromkeys(f for f, ok in zip(batch.formulas, batch.ok, strict=True) if ok and f not in seen))
        seen.update(fresh)
        n_sized, n_novel, ok_members = _pool_members(run, fresh)
        within += n_sized
        novel += n_novel
        take = ok_members[: target - len(members)]
        members += take
        bar.update(len(take))
        if len(members) >= target:
            break
    bar.close()
    sample_s = time.perf_counter() - t0
    if len(members) < target:
        raise EmptyPoolError(
            f"the complm pool of {run.key} has {len(members)} novel valid formulas after {draws} draws, fewer than "
            f"the {target} of the MatGAN pool; raise complm.max_draws"
        )
    members = sorted(members)
    _store_pool(run, name, members, samplers[0].name)
    return {
        "pool": name,
        "draws": draws,
        "distinct": len(seen),
        "within_limits": within,
        "novel": novel,
        "size": len(members),
        "target": target,
        "sample_s": round(sample_s, 1),
    }


def _round_robin(streams: list[Iterator[Any]]) -> Iterator[Any]:
    """Items of ``streams`` in turn (one from each, in order) until all are exhausted."""
    live = list(streams)
    while live:
        for it in list(live):
            try:
                yield next(it)
            except StopIteration:
                live.remove(it)


def _store_pool(run: SplitRun, name: str, members: list[str], generator: str) -> None:
    """Write the pool ``name``'s ``members`` not stored yet (a rerun adds nothing twice)."""
    stored = set(run.store.pool_formulas(name))
    todo = [f for f in members if f not in stored]
    a, e = formula_sizes(todo)
    meta = {"generator": generator, "seed": run.seed, "batch": 0, "source": "rediscovery"}
    run.store.bulk_insert_new("pools", pool_member_docs(name, todo, a, e, meta))


def screening_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """Plain screening: the oracle predicts every member of ``generator``'s pool; the pool ranked by it."""
    pool = run.pool_of(generator)
    pred = np.asarray(run.oracle.predict(pool).mean, dtype=np.float64)
    order = _rank(pool, pred)
    run.save_list(
        "screening/oracle" + pool_suffix(generator), [pool[i] for i in order], [float(pred[i]) for i in order]
    )
    return {"n": len(pool), "n_predicted": int(np.isfinite(pred).sum())}


def _rank(formulas: list[str], scores: np.ndarray) -> list[int]:
    """Indices best first: by score descending (NaN last), ties by formula."""
    return rank_by(scores, np.zeros(len(formulas)), formulas)


def judged_screening_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """Screening by the judges (:mod:`alcore.judged_screening`): every member of ``generator``'s pool
    scored by P(gap >= target) from the visible oracle, times P(E_form < 0) or P(E_hull <=
    e_hull_max) from the visible E_form model against the visible MP DFT hull (with or without the
    other pool members' predicted E_form); one list per rule."""
    from flows.pipelines.rediscovery_stability import VisibleFormationEnergies
    from oracles.stability.hull import hull_energies

    spec = run.cfg.judged
    pool = run.pool_of(generator)
    gap, eform = run.oracle.predict(pool), run.eform.predict(pool)
    t0 = time.perf_counter()
    phases = VisibleFormationEnergies(run.split)
    hull = np.asarray(hull_energies(pool, phases), dtype=np.float64)
    hull_pool = np.full(len(pool), np.nan)
    if "p-wide-hull-pool" in spec.rules:  # the pool's own hull: one more diagram pass
        predicted = {f: float(e) for f, e in zip(pool, eform.mean, strict=True) if np.isfinite(e)}
        hull_pool = np.asarray(hull_energies(pool, phases, candidates=predicted), dtype=np.float64)
    hull_s = time.perf_counter() - t0
    scores = judged_scores(gap.mean, gap.std, eform.mean, eform.std, hull, hull_pool, spec.target, spec.e_hull_max)
    for rule in spec.rules:
        score = scores[rule]
        order = rank_by(score, gap.mean, pool)
        run.save_list(f"judged-screening/{rule}{pool_suffix(generator)}", [pool[i] for i in order], list(score[order]))
    return {
        "n": len(pool),
        "hull_s": round(hull_s, 1),
        "mean_score": {rule: float(np.mean(scores[rule])) for rule in spec.rules},
    }


@dataclass
class HoldoutCampaignContext(CampaignContext):
    """A campaign context whose seeds, validation rows, oracle and known list come from the visible
    part of a split (:class:`SplitRun`) instead of the committed data sets and shipped oracles."""

    run: SplitRun | None = None

    def _run(self) -> SplitRun:
        if self.run is None:
            raise AlflowError("HoldoutCampaignContext needs its SplitRun")
        return self.run

    @property
    def oracle_source(self) -> str:
        """Acquired labels record the visible-data oracle's GridFS sha256."""
        return f"holdout-oracle:{self._run().result('oracle')['sha256'][:12]}"

    def seed_rows(self) -> pd.DataFrame:
        """The split's seed labels (random visible MP gaps)."""
        seeds = self._run().result("data")["seeds"]
        return pd.DataFrame({"formula": seeds["formula"], "value": seeds["value"]})

    def validation_rows(self) -> pd.DataFrame:
        """The split's validation rows (visible MP gaps)."""
        val = self._run().result("data")["validation"]
        return pd.DataFrame({"formula": val["formula"], "value": val["value"]})

    def oracle_predict(self, formulas: list[str]) -> Prediction:
        """Labels from the visible-data oracle."""
        return self._run().oracle.predict(formulas)

    @cached_property
    def known(self) -> frozenset[str]:
        """The visible known list (hidden formulas count as new)."""
        return self._run().known

    def eform_predict(self, formulas: list[str]) -> Prediction:
        """Formation energies from the visible-data E_form model."""
        return self._run().eform.predict(formulas)

    @cached_property
    def oracle_domain(self) -> Any:
        """The visible oracle's applicability domain, when ``validity.applicability_domain`` is on."""
        return self._run().oracle_domain if self.config.validity.applicability_domain else None


def campaign_name(run: SplitRun, mode: str, generator: str = "matgan") -> str:
    """The campaign of a route: benchmark, split, mode, generator (not MatGAN) and the route stage's
    settings digest, so that a route redone with other settings runs a new campaign beside the old."""
    stage = ("pool-al" if mode == "pool" else "continuous-al") + pool_suffix(generator)
    name = f"{run.cfg.name}-{run.key}-{mode}" + ("" if generator == "matgan" else f"-{generator}")
    return f"{name}-{stage_settings(run.cfg, stage)[:6]}"


def campaign_config(run: SplitRun, mode: str, generator: str = "matgan") -> Any:
    """The :class:`flows.config.CampaignConfig` of the pool (among ``generator``'s pool) or
    continuous route of this split."""
    cfg = run.cfg
    base = {
        "name": campaign_name(run, mode, generator),
        "mode": mode,
        "seed": run.seed,
        # placeholders for the validator: HoldoutCampaignContext supplies seeds, oracle and validation
        "seeds": {"dataset": "matbench_mp_gap", "n": cfg.seeds},
        "oracle": "resnet-mp-gap",
        "validation": "matbench_mp_gap",
        "autoencoder": str(Path(run.result("autoencoder")["path"]).resolve()),
        "element_list": ELEMENTS,
        # The plausibility terms (C+H rule, oracle domain) only where the continuous route asks for them:
        # the pool route and the measured optimise-then-decode runs keep them off.
        "validity": {
            "max_atoms": cfg.max_atoms,
            "max_elements": cfg.max_elements,
            "reject_organic": False,
            "applicability_domain": False,
        },
        "target": {"threshold": 4.0},
    }
    if mode == "pool":
        base.update(
            iterations=cfg.acquisitions // cfg.pool_q,
            pool_collection=run.result("pool" + pool_suffix(generator))["pool"],
            acquisition={"q": cfg.pool_q, "beta": cfg.beta},
        )
    else:
        c = cfg.continuous
        base.update(
            iterations=c.acquisitions // c.q,
            acquisition={
                "q": c.q,
                "beta": c.beta,
                "max_attempts": c.max_attempts,
                "trust_region": c.trust_region,
                "strategy": c.strategy,
                "feasibility": c.plausibility,
            },
        )
        base["validity"].update(reject_organic=c.plausibility, applicability_domain=c.plausibility)
    return parse_config(base, source=f"rediscovery {mode} campaign")


def _campaign_route(run: SplitRun, mode: str, generator: str = "matgan") -> dict[str, Any]:
    """Run (or resume) the route's campaign (the pool route among ``generator``'s pool), then store
    its two ranked lists (the screening list ranks that pool)."""
    from oracles.registry import load_screening_model

    config = campaign_config(run, mode, generator)
    sfx = pool_suffix(generator)
    store = run.store
    context = functools.partial(_holdout_context, run=run)
    t0 = time.perf_counter()
    summary = run_campaign_in(store, config, owner=f"rediscovery-{run.key}-{mode}", context=context)
    if summary["status"] != "finished":
        raise AlflowError(f"campaign {config.name!r} ended {summary['status']!r}")
    store.update_campaign(config.name, holdout={"split": run.key, "oracle": run.result("oracle")["sha256"]})
    campaign_s = time.perf_counter() - t0
    docs = store.labels(config.name)
    seeds = [d["formula"] for d in docs if d.get("source") == "seed"]
    assert_no_leak(f"campaign {config.name} seed labels", seeds, run.split)
    acquired = [(d["formula"], float(d["value"])) for d in docs if d.get("source") != "seed"]
    novel = sorted((p for p in acquired if p[0] not in run.known), key=lambda p: (-p[1], p[0]))
    label = "pool-AL" if mode == "pool" else "continuous-AL"
    run.save_list(f"{label}/acquired{sfx}", [f for f, _ in novel], [v for _, v in novel])
    last = store.stage_result(config.name, config.iterations, "retrain")
    state, meta = store.load_model(last["screening_sha"], kind="screening")
    model = load_screening_model(state, meta)
    pool = run.pool_of(generator)
    pred = np.asarray(model.predict(pool).mean, dtype=np.float64)
    order = _rank(pool, pred)
    run.save_list(f"{label}/screen{sfx}", [pool[i] for i in order], [float(pred[i]) for i in order])
    acquire = [store.stage_result(config.name, i, "acquire") for i in range(1, config.iterations + 1)]
    acquire_s = [a["seconds"] for a in acquire if a]
    return {
        "campaign": config.name,
        "acquired": len(acquired),
        "acquired_novel": len(novel),
        "acquired_wide_by_oracle": sum(v >= 4.0 for _, v in acquired),
        "campaign_s": round(campaign_s, 1),
        "iterations": config.iterations,
        "q": config.acquisition.q,
        "acquire_s_per_iteration": float(np.mean(acquire_s)) if acquire_s else None,
        "screening_val_mae": last.get("val_mae"),
    }


def _holdout_context(store: Store, config: Any, owner: str, run: SplitRun) -> HoldoutCampaignContext:
    return HoldoutCampaignContext(store, config, owner, run=run)


def pool_al_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """The pool route (campaign ``mode: pool`` among ``generator``'s pool)."""
    return _campaign_route(run, "pool", generator)


def continuous_al_stage(run: SplitRun) -> dict[str, Any]:
    """The continuous latent route (campaign ``mode: continuous``)."""
    return _campaign_route(run, "continuous")


def _seed_pairs(run: SplitRun) -> tuple[list[str], list[float]]:
    seeds = run.result("data")["seeds"]
    return list(seeds["formula"]), list(seeds["value"])


def _screen_pool_with(
    run: SplitRun, formulas: list[str], values: list[float], list_name: str, generator: str = "matgan"
) -> dict[str, Any]:
    from oracles.registry import fit_screening_model

    t0 = time.perf_counter()
    model = fit_screening_model(formulas, values, seed=run.seed)
    pool = run.pool_of(generator)
    pred = np.asarray(model.predict(pool).mean, dtype=np.float64)
    order = _rank(pool, pred)
    run.save_list(list_name, [pool[i] for i in order], [float(pred[i]) for i in order])
    return {"n_labels": len(formulas), "fit_predict_s": round(time.perf_counter() - t0, 1)}


def random_pool_labels_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """Baseline: the seeds plus ``acquisitions`` random members of ``generator``'s pool labelled by the oracle."""
    pool, oracle = run.pool_of(generator), run.pool_oracle_of(generator)
    sfx = pool_suffix(generator)
    labelled = [f for f in pool if f in oracle]
    rng = np.random.default_rng([run.seed, 2])
    pick = sorted(rng.choice(labelled, size=min(run.cfg.acquisitions, len(labelled)), replace=False).tolist())
    ranked = sorted(pick, key=lambda f: (-oracle[f], f))
    run.save_list(f"random-pool-labels/acquired{sfx}", ranked, [oracle[f] for f in ranked])
    sf, sv = _seed_pairs(run)
    labels = sv + [max(oracle[f], 0.0) for f in pick]
    out = _screen_pool_with(run, sf + pick, labels, f"random-pool-labels/screen{sfx}", generator)
    return {**out, "acquired_wide_by_oracle": sum(oracle[f] >= 4.0 for f in pick)}


def random_mp_labels_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """Baseline: the seeds plus ``acquisitions`` random visible MP rows with their DFT gaps (the
    same rows for every pool); ranks ``generator``'s pool."""
    data = run.result("data")
    used = set(data["seeds"]["formula"]) | set(data["validation"]["formula"])
    table = run.visible_gaps[~run.visible_gaps["formula"].isin(used)]
    rows = table.sample(n=min(run.cfg.acquisitions, len(table)), random_state=run.seed)
    assert_no_leak("random MP labels", rows["formula"], run.split)
    sf, sv = _seed_pairs(run)
    return _screen_pool_with(
        run,
        sf + rows["formula"].tolist(),
        sv + rows["value"].astype(float).tolist(),
        "random-MP-labels/screen" + pool_suffix(generator),
        generator,
    )


def random_stage(run: SplitRun, generator: str = "matgan") -> dict[str, Any]:
    """Random proposals: ``generator``'s pool in random order; with MatGAN's (once per split) also
    random SMACT-valid compositions within the limits (matgan85 elements, 2..max_elements,
    <= max_atoms atoms, not in the visible known list)."""
    from generators.random_compositions import RandomCompositions

    pool = run.pool_of(generator)
    rng = np.random.default_rng([run.seed, 3])
    perm = rng.permutation(len(pool))
    run.save_list("random/pool" + pool_suffix(generator), [pool[i] for i in perm], [None] * len(pool))
    if generator != "matgan":
        return {"n_pool": len(pool)}
    gen = RandomCompositions(
        "matgan85", max_atoms=run.cfg.max_atoms, max_elements=run.cfg.max_elements, exclude=run.known
    )
    forms = gen.distinct(run.cfg.random_compositions, seed=run.seed)
    run.save_list("random/SMACT", forms, [None] * len(forms))
    return {"n_random_compositions": len(forms)}


STAGE_BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    "split": split_stage,
    "data": data_stage,
    "oracle": oracle_stage,
    "eform": eform_stage,
    "autoencoder": autoencoder_stage,
    "matgan": matgan_stage,
    "pool": pool_stage,
    "screening": screening_stage,
    "judged-screening": judged_screening_stage,
    "pool-al": pool_al_stage,
    "continuous-al": continuous_al_stage,
    "random-pool-labels": random_pool_labels_stage,
    "random-mp-labels": random_mp_labels_stage,
    "random": random_stage,
    "complm": complm_stage,
    "pool@complm": complm_pool_stage,
    "stability": stability_stage,
}


def stage_body(run: SplitRun, stage: str) -> Callable[[], dict[str, Any]]:
    """The body of ``stage`` bound to ``run``: a stage of :data:`STAGE_BODIES`, or ``<pool
    route>@<generator>`` (the pool route on that generator's pool)."""
    if stage in STAGE_BODIES:
        return functools.partial(STAGE_BODIES[stage], run)
    base, gen = split_suffix(stage)
    if base not in POOL_ROUTES or gen == "matgan":
        raise AlflowError(f"unknown rediscovery stage {stage!r}")
    return functools.partial(STAGE_BODIES[base], run, generator=gen)


# ---------------------------------------------------------------------------------------- scoring
def limits_ceiling(run: SplitRun) -> dict[str, int]:
    """Hidden members the size/validity limits can express at all (any route's absolute ceiling):
    hidden formulas with 2..max_elements elements, <= max_atoms atoms, SMACT-valid, per criterion."""
    hidden = sorted(f for f, g in run.hidden_gaps.items() if g is not None)
    ok = [v.formula for v in check_validity_batch(hidden, run.rules) if v.valid]
    return {c.name: count_members(ok, run.hidden_gaps, c) for c in CRITERIA}


def score_split(run: SplitRun) -> dict[str, Any]:
    """Score every stored list of this split (see :mod:`alcore.rediscovery`); returns per list
    ``{route, list, n, scores (per K), curve (rediscoveries >= 4 eV at K = 1..max K)}`` plus the
    ceilings and base rates."""
    gaps = run.hidden_gaps
    primary = CRITERIA[0]
    pools = {}
    for gen in run.cfg.generators:
        members = run.pool_of(gen)
        pools[gen] = {
            "size": len(members),
            "ceiling": {c.name: count_members(members, gaps, c) for c in CRITERIA},
            "base_rate": base_rate(members, gaps, primary),
        }
    limits = limits_ceiling(run)
    smact = run.load_list("random/SMACT")
    rates = {
        "pool": pools["matgan"]["base_rate"],
        "smact": base_rate(smact[0], gaps, primary) if smact else float("nan"),
    }
    k_max = max(run.cfg.ks)
    eform = run.eform if "eform" in stages_for(run.cfg) else None
    lists = []
    for route, name, universe, gen in all_lists(run.cfg):
        stored = run.load_list(name)
        if stored is None:
            continue
        formulas, _ = stored
        ceiling = pools[gen]["ceiling"][primary.name] if universe == "pool" else limits[primary.name]
        # DAF against the base rate of the list's own pool (random members of that pool)
        scores = score_list(formulas, gaps, run.cfg.ks, ceiling=ceiling, rate=pools[gen]["base_rate"])
        negative = None if eform is None else np.asarray(eform.predict(formulas[:k_max]).mean) < 0  # NaN: False
        for s in scores:
            s["daf_smact"] = s["precision"] / rates["smact"] if rates["smact"] else float("nan")
            if negative is not None:
                s["eform_neg_share"] = float(negative[: s["k"]].mean()) if len(negative) else float("nan")
        lists.append(
            {
                "route": route,
                "list": name,
                "generator": gen,
                "n": len(formulas),
                "ceiling_universe": universe,
                "ceiling": ceiling,
                "scores": scores,
                "curve": rediscovery_curve(formulas, gaps, primary, k_max).tolist(),
            }
        )
    return {
        "pool_size": pools["matgan"]["size"],
        "pool_ceiling": pools["matgan"]["ceiling"],
        "pools": pools,
        "limits_ceiling": limits,
        "base_rate": rates,
        "oracle": oracle_errors(run),
        "lists": lists,
        "stability": stability_scores(run),
    }


def stability_scores(run: SplitRun) -> list[dict[str, Any]]:
    """Per judged list: what the stability filter did to its top (:func:`alcore.rediscovery.filter_scores`)."""
    out = []
    for name in run.cfg.stability_lists():
        judged, kept = run.load_list(name), run.load_list(name + STABLE_SUFFIX)
        if judged is None or kept is None:
            continue
        top = distinct(judged[0])[: run.cfg.stability.top]
        out.append({"list": name, **filter_scores(top, kept[0], run.hidden_gaps)})
    return out


def all_lists(cfg: RediscoveryConfig) -> list[tuple[str, str, str, str]]:
    """``(route, list name, ceiling universe, pool generator)`` of every list ``cfg`` produces, in
    table order: :data:`LISTS` on the MatGAN pool, then the pool lists on each other generator's pool
    (``<list>@<generator>``, route ``<route>@<generator>``; random SMACT compositions and the
    continuous route are not per pool)."""
    out = [(route, name, universe, "matgan") for route, name, universe in LISTS if route in cfg.routes]
    for gen in cfg.generators:
        if gen == "matgan":
            continue
        for route, name, universe in LISTS:
            if route in cfg.routes and route in POOL_ROUTES and name != "random/SMACT":
                out.append((f"{route}@{gen}", f"{name}@{gen}", universe, gen))
    return out


def oracle_errors(run: SplitRun) -> dict[str, Any]:
    """Diagnostics of the visible-data oracle (scoring side only): MAE (eV) on the visible
    validation rows and on every hidden formula with a DFT gap (unseen chemical systems), and the
    recall of the hidden >= 4 eV formulas at an oracle threshold of 4 eV."""
    val = run.result("data")["validation"]
    pv = np.asarray(run.oracle.predict(val["formula"]).mean, dtype=np.float64)
    hidden = sorted(f for f, g in run.hidden_gaps.items() if g is not None)
    y = np.array([run.hidden_gaps[f] for f in hidden], dtype=np.float64)
    ph = np.asarray(run.oracle.predict(hidden).mean, dtype=np.float64)
    ok = np.isfinite(ph)
    wide = y >= 4.0
    return {
        "mae_validation_eV": float(np.nanmean(np.abs(pv - np.asarray(val["value"])))),
        "mae_hidden_eV": float(np.mean(np.abs(ph[ok] - y[ok]))),
        "n_hidden": int(ok.sum()),
        "hidden_ge4_recall_at_4eV": float(np.mean(ph[wide & ok] >= 4.0)) if (wide & ok).any() else float("nan"),
    }


def summarise_stability(per_split: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over split seeds of every stability-filter score, per judged list, and the shares
    of the real proposals and of the rest that the filter keeps, pooled over the splits."""
    entries = [e for s in per_split for e in s["score"].get("stability", [])]
    out = []
    for name in dict.fromkeys(e["list"] for e in entries):
        mine = [e for e in entries if e["list"] == name]
        row: dict[str, Any] = {"list": name, "splits": len(mine)}
        for key in (k for k in mine[0] if k != "list"):
            row[key] = mean_sd([e[key] for e in mine])
        # shares pooled over the splits (a split without a real compound in its top has no share)
        real_top, real_kept = sum(e["real_top"] for e in mine), sum(e["real_kept"] for e in mine)
        rest_top = sum(e["n_top"] - e["real_top"] for e in mine)
        rest_kept = sum(e["n_kept"] - e["real_kept"] for e in mine)
        row["real_retained_pooled"] = real_kept / real_top if real_top else float("nan")
        row["other_retained_pooled"] = rest_kept / rest_top if rest_top else float("nan")
        out.append(row)
    return out


def summarise(per_split: list[dict[str, Any]], ks: tuple[int, ...]) -> list[dict[str, Any]]:
    """Mean and sd over split seeds per (list, K) of every score (rows for the table and the JSON)."""
    rows = []
    names = list(dict.fromkeys(lst["list"] for s in per_split for lst in s["score"]["lists"]))
    for name in names:
        entries = [lst for s in per_split for lst in s["score"]["lists"] if lst["list"] == name]
        for k in ks:
            at_k = [next(x for x in e["scores"] if x["k"] == k) for e in entries]
            row: dict[str, Any] = {"list": name, "route": entries[0]["route"], "k": k, "splits": len(at_k)}
            for crit in CRITERIA:
                row[f"red_{crit.name}"] = mean_sd([x["rediscoveries"][crit.name] for x in at_k])
            for metric in ("precision", "recall", "real", "daf", "daf_smact", "ch_share", "n_systems"):
                row[metric] = mean_sd([x[metric] for x in at_k])
            if all("eform_neg_share" in x for x in at_k):  # splits with the visible E_form model
                row["eform_neg_share"] = mean_sd([x["eform_neg_share"] for x in at_k])
            row["ceiling"] = mean_sd([e["ceiling"] for e in entries])
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------- flow
def run_split(cfg: RediscoveryConfig, store: Store, seed: int) -> dict[str, Any]:
    """Every stage of one split seed (resuming what is stored), then its scores."""
    run = SplitRun(cfg, store, seed, benchmark_split(cfg, seed), split_key(cfg, seed))
    results = {}
    for stage in stages_for(cfg):
        results[stage] = stage_task(run, stage)
    # scored afresh on every run (cheap, deterministic): stored for the record, never reused
    t0 = time.perf_counter()
    score = score_split(run)
    record = {"bench": cfg.name, "split": run.key, "seed": seed, "stage": "score", "status": "scored"}
    store.set_bench_stage(run.stage_id("score"), {**record, "result": score, "seconds": time.perf_counter() - t0})
    return {"seed": seed, "key": run.key, "stages": results, "score": score}


def ranked_lists(store: Store, cfg: RediscoveryConfig) -> list[dict[str, Any]]:
    """Every stored ranked list of the benchmark: ``{list, route, seed, split, formulas, scores}``."""
    route_of = {name: route for route, name, _, _ in all_lists(cfg)}
    keys = {split_key(cfg, s) for s in cfg.split_seeds}
    out = []
    for doc in store.bench_lists(cfg.name):
        if doc["split"] in keys:
            out.append({**doc, "route": route_of.get(doc["list"], doc["list"])})
    return out


@flow(name="rediscovery", log_prints=True)
def rediscovery_flow(
    config_path: str, split_seeds: list[int] | None = None, mongodb_uri: str | None = None, database: str | None = None
) -> dict[str, Any]:
    """Prefect flow: run (or resume) the hold-out rediscovery benchmark of the YAML ``config_path``
    (``split_seeds`` overrides the config's). Returns ``{"config", "splits" (per seed: stage results
    and scores), "summary" (mean ± sd over seeds per list and K)}``; the ranked lists stay in
    MongoDB (:func:`ranked_lists`)."""
    from flows.pipelines.rediscovery_config import load_rediscovery_config

    cfg = load_rediscovery_config(config_path, split_seeds=tuple(split_seeds) if split_seeds else None)
    store = Store.open(mongodb_uri, database)
    try:
        splits = [run_split(cfg, store, seed) for seed in cfg.split_seeds]
    finally:
        store.close()
    return {
        "config": cfg.resolved(),
        "splits": splits,
        "summary": summarise(splits, cfg.ks),
        "stability": summarise_stability(splits),
    }

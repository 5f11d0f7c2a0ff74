"""Configuration of the hold-out rediscovery benchmark: a validated YAML file (pydantic)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alcore.errors import ConfigError
from alcore.judged_screening import RULES as JUDGED_RULES
from flows.config import read_settings, validation_problems
from oracles.defaults import DEFAULT_JUDGE

#: Every route the benchmark can run (see :mod:`flows.pipelines.rediscovery`).
ROUTES: tuple[str, ...] = (
    "screening",
    "judged-screening",
    "pool-al",
    "continuous-al",
    "random-pool-labels",
    "random-mp-labels",
    "random",
)
#: Routes that work on a generated pool (run once per pool generator of ``generators``).
POOL_ROUTES: tuple[str, ...] = tuple(r for r in ROUTES if r != "continuous-al")
#: Generators that can build a pool: MatGAN (always built: it sets the pool size) and the composition LM.
GENERATORS: tuple[str, ...] = ("matgan", "complm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def digest(self, include: set[str] | None = None, exclude: set[str] | None = None) -> str:
        """12 hex digits identifying these settings (or only the fields ``include``, or all but
        ``exclude``; part of every cache key)."""
        data = self.model_dump(mode="json", include=include, exclude=exclude)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


class _Retrained(_Strict):
    """A model retrained per split on the visible data: ``max_train`` caps its training rows (a seeded
    subset; None: all visible rows)."""

    max_train: int | None = Field(default=None, ge=10)


class OracleSpec(_Retrained):
    """A composition oracle retrained on visible MP data: the band-gap oracle (visible MP gaps; labels
    acquisitions, ranks plain screening) and, for decode-then-select, the formation-energy model
    (visible MP E_form): a ResNet ensemble of ``members`` x ``layers`` residual layers of width
    ``hidden``, ``epochs`` epochs."""

    hidden: int = Field(default=128, ge=4)
    layers: int = Field(default=5, ge=1)
    members: int = Field(default=5, ge=1)
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=8)


class AutoencoderSpec(_Retrained):
    """The composition autoencoder (agd87 one-hot) retrained on the visible MP formulas, ``epochs``
    epochs; a training run whose held-out exact reconstruction rate (visible formulas) stays below
    ``min_val_exact`` is redone from a new initialisation up to ``restarts`` times (a loss plateau
    leaves the decoder unable to write formulas, and the campaigns with nothing to label)."""

    epochs: int = Field(default=4, ge=1)
    min_val_exact: float = Field(default=0.5, ge=0, le=1)
    restarts: int = Field(default=2, ge=0)


class MatGANSpec(_Retrained):
    """MatGAN (WGAN-GP) retrained from scratch on the visible SMACT-valid MP formulas, ``epochs``
    epochs (resumable checkpoint), channel width ``ch``."""

    epochs: int = Field(default=6, ge=1)
    ch: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-3, gt=0)


class CompLMSpec(_Retrained):
    """The composition language model (:mod:`generators.complm`) retrained from scratch on the visible
    SMACT-valid MP formulas (>= 2 elements; condition tokens from their own MP DFT labels), resumable
    checkpoint: ``steps`` optimiser steps of ``batch_size`` (cosine schedule over ``steps``), the
    weights with the best valid-novel-unique share of ``eval_samples`` samples (every
    ``eval_every`` steps, criterion fixed as in :func:`generators.complm.train_complm`; samples drawn
    with ``eval_sampler``: ``plain``, the criterion of the measured comparison, or ``distinct``, the
    shipped v2 weights' criterion) kept; model
    width ``d``, ``layers``, ``heads``, MLP ``ff``. Its pool: unconditioned sampling at
    ``temperature`` with ``reject_tries`` redraws of visible-known and already-drawn formulas (the
    ``complm-distinct`` sampler), drawn until it holds as many members as the MatGAN pool of the
    split (at most ``max_draws`` draws). ``conditions``: gap bins (``3-5``, ``>5``, ...) to condition
    the pool's draws on, in equal shares (round robin over the bins; empty: unconditioned); the
    condition tokens were learnt from the visible formulas' own MP DFT labels."""

    steps: int = Field(default=900, ge=1)
    eval_every: int = Field(default=300, ge=1)
    eval_samples: int = Field(default=2000, ge=10)
    eval_sampler: Literal["plain", "distinct"] = "plain"
    batch_size: int = Field(default=256, ge=8)
    lr: float = Field(default=2e-3, gt=0)
    warmup: int = Field(default=200, ge=0)
    d: int = Field(default=128, ge=8)
    layers: int = Field(default=3, ge=1)
    heads: int = Field(default=4, ge=1)
    ff: int = Field(default=512, ge=8)
    temperature: float = Field(default=1.0, gt=0)
    reject_tries: int = Field(default=4, ge=0)
    max_draws: int = Field(default=2_000_000, ge=100)
    conditions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _heads(self) -> CompLMSpec:
        if self.d % self.heads:
            raise ValueError(f"complm.d ({self.d}) must be a multiple of complm.heads ({self.heads})")
        from generators.complm.tokens import gap_bin_names

        bad = [c for c in self.conditions if c not in gap_bin_names()]
        if bad:
            raise ValueError(f"complm.conditions {bad} are not gap bins; use some of {gap_bin_names()}")
        return self

    def model_digest(self) -> str:
        """Cache key of the trained LM: the settings without ``conditions``, which only steer the pool's
        sampling (the older sampling fields stay in it so that cached models keep their keys)."""
        return self.digest(exclude={"conditions"})


#: (route, list name, universe of its ceiling) of every ranked list, in table order.
LISTS: tuple[tuple[str, str, str], ...] = (
    ("screening", "screening/oracle", "pool"),
    *(("judged-screening", f"judged-screening/{rule}", "pool") for rule in JUDGED_RULES),
    ("pool-al", "pool-AL/acquired", "pool"),
    ("pool-al", "pool-AL/screen", "pool"),
    ("continuous-al", "continuous-AL/acquired", "limits"),
    ("continuous-al", "continuous-AL/screen", "pool"),
    ("random-pool-labels", "random-pool-labels/acquired", "pool"),
    ("random-pool-labels", "random-pool-labels/screen", "pool"),
    ("random-mp-labels", "random-MP-labels/screen", "pool"),
    ("random", "random/pool", "pool"),
    ("random", "random/SMACT", "limits"),
)
#: The list of each route that the stability filter judges by default (its proposals, best first).
MAIN_LISTS: dict[str, str] = {
    "screening": "screening/oracle",
    "pool-al": "pool-AL/acquired",
    "continuous-al": "continuous-AL/acquired",
    "random-mp-labels": "random-MP-labels/screen",
    "random": "random/pool",
}


class StabilitySpec(_Strict):
    """The structure stage on the top of ranked lists ("the list after the stability filter"): the
    ``top`` proposals of each of ``lists`` (None: the main list of every route run,
    :data:`MAIN_LISTS`) get ``k_templates`` trial structures from the *visible* template library
    (EMD-nearest same-anonymised templates, substituted; else ``fallback_trials`` pyxtal structures
    in the space group of the nearest visible known composition), relaxed by ``judge`` (``fmax``
    eV/A, at most ``steps`` steps) and placed against the MP DFT hull of the visible formulas
    (model energies against DFT competing phases, as Matbench Discovery judges a potential); a
    proposal is kept if its best trial is on or within ``e_hull_max`` eV/atom of that hull."""

    top: int = Field(default=50, ge=1)
    lists: tuple[str, ...] | None = None
    judge: str = DEFAULT_JUDGE
    k_templates: int = Field(default=1, ge=1)
    fallback_trials: int = Field(default=1, ge=0)
    e_hull_max: float = Field(default=0.1, ge=0)
    fmax: float = Field(default=0.1, gt=0)
    steps: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _judge(self) -> StabilitySpec:
        from oracles.stability.judges import JUDGES

        if self.judge not in JUDGES:
            raise ValueError(f"stability.judge {self.judge!r} is not one of {', '.join(JUDGES)}")
        return self

    def judge_settings(self) -> str:
        """12 hex digits of the settings a verdict depends on (not ``top`` or ``lists``): verdicts are
        shared by every list, config and rerun of a split that judges with the same settings."""
        return self.digest(include={"judge", "k_templates", "fallback_trials", "e_hull_max", "fmax", "steps"})


class JudgedSpec(_Strict):
    """Screening the pool by the judges (:mod:`alcore.judged_screening`): the band-gap ``target`` (eV)
    of P(gap >= target) and the ``e_hull_max`` (eV/atom) of P(E_hull <= e_hull_max), with the
    formation-energy model ``eform`` and the visible MP DFT hull; ``rules``: which of
    :data:`alcore.judged_screening.RULES` rank the pool (one list each)."""

    target: float = 4.0
    e_hull_max: float = Field(default=0.1, ge=0)
    rules: tuple[str, ...] = JUDGED_RULES

    @model_validator(mode="after")
    def _rules(self) -> JudgedSpec:
        unknown = [r for r in self.rules if r not in JUDGED_RULES]
        if unknown or not self.rules:
            raise ValueError(f"judged.rules must name some of {', '.join(JUDGED_RULES)}, got {list(self.rules)}")
        return self


class ContinuousSpec(_Strict):
    """The continuous latent route's campaign: ``acquisitions`` in batches of ``q`` (UCB ``beta``,
    ``max_attempts`` decode rounds, ``trust_region`` side), acquisition ``strategy``
    (``optimise_decode``: optimise UCB, decode, check, the measured default of this benchmark;
    ``decode_select``: the campaign's default, decode many points, then select). ``plausibility``
    (decode-then-select only) turns on the loop's feasibility and plausibility terms, all rebuilt
    from the visible data: P(E_form < 0) from the ``eform`` model retrained on the visible MP
    formation energies, the visible oracle's applicability domain, and the C+H rule; off, it is the
    ablation without them."""

    acquisitions: int = Field(default=1000, ge=1)
    q: int = Field(default=20, ge=1)
    beta: float = Field(default=25.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    trust_region: float = Field(default=0.2, gt=0, le=1)
    strategy: Literal["optimise_decode", "decode_select"] = "optimise_decode"
    plausibility: bool = False

    @model_validator(mode="after")
    def _plausibility_needs_decode_select(self) -> ContinuousSpec:
        if self.plausibility and self.strategy != "decode_select":
            raise ValueError("continuous.plausibility needs continuous.strategy: decode_select")
        return self


class RediscoveryConfig(_Strict):
    """A whole benchmark. ``protocol``/``fraction``/``split_seeds``: the hold-out splits
    (:mod:`alcore.holdout`); ``seeds`` + ``acquisitions``: the label budget of every AL and
    random-label route (pool route in batches of ``pool_q``, UCB ``beta``); ``continuous``: the
    continuous route's own budget (reported beside the others when smaller); ``max_atoms`` /
    ``max_elements``: size limits of every proposal (pool, campaign validity, random compositions);
    ``pool_draws``: MatGAN draws of the pool; ``random_compositions``: random SMACT-valid
    compositions drawn for the base rate; ``validation``: visible rows held out for the campaign's
    screening-model MAE; ``universe_limit``: use a seeded subset of the MP universe (tests);
    ``out_dir``: model files and caches (never ``data/weights``); ``generators``: the pools the
    pool routes run on: ``matgan`` (always built: it sets the pool size of the split) and
    ``complm`` (a composition-LM pool of the same size; its lists are named ``<list>@complm``);
    ``eform``: the formation-energy model of the continuous route's plausibility terms;
    ``stability``: the stability filter of the top of the lists (off when None); ``judged``: the
    ``judged-screening`` route's settings; ``nested``: run every split seed s on the split (seed
    1000 + s, same protocol and fraction) of the *visible* formulas of split s, whose hidden part is
    the answer key for choosing among methods without touching split s's (model selection)."""

    name: str = Field(default="rediscovery", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    protocol: Literal["system", "random"] = "system"
    fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seeds: tuple[int, ...] = (0, 1, 2)
    seeds: int = Field(default=300, ge=2)
    acquisitions: int = Field(default=1000, ge=1)
    pool_q: int = Field(default=50, ge=1)
    beta: float = Field(default=25.0, gt=0)
    continuous: ContinuousSpec = ContinuousSpec()
    judged: JudgedSpec = JudgedSpec()
    nested: bool = False
    max_atoms: int = Field(default=7, ge=2)
    max_elements: int = Field(default=3, ge=2)
    oracle: OracleSpec = OracleSpec()
    eform: OracleSpec = OracleSpec()
    autoencoder: AutoencoderSpec = AutoencoderSpec()
    matgan: MatGANSpec = MatGANSpec()
    complm: CompLMSpec = CompLMSpec()
    generators: tuple[Literal["matgan", "complm"], ...] = ("matgan",)
    pool_draws: int = Field(default=100_000, ge=100)
    random_compositions: int = Field(default=20_000, ge=10)
    validation: int = Field(default=500, ge=1)
    ks: tuple[int, ...] = (50, 100, 500)
    routes: tuple[str, ...] = ROUTES
    universe_limit: int | None = Field(default=None, ge=100)
    stability: StabilitySpec | None = None
    out_dir: str = "runs/rediscovery"

    @model_validator(mode="after")
    def _check(self) -> RediscoveryConfig:
        unknown = [r for r in self.routes if r not in ROUTES]
        if unknown:
            raise ValueError(f"unknown route(s) {unknown}; known: {', '.join(ROUTES)}")
        if "matgan" not in self.generators:
            raise ValueError(
                f"generators must include matgan (its pool sets the pool size), got {list(self.generators)}"
            )
        if len(set(self.generators)) != len(self.generators):
            raise ValueError(f"generators lists a generator twice: {list(self.generators)}")
        if not self.split_seeds:
            raise ValueError("split_seeds must name at least one seed")
        if any(k < 1 for k in self.ks):
            raise ValueError(f"every K must be >= 1, got {list(self.ks)}")
        if self.acquisitions % self.pool_q:
            raise ValueError(f"acquisitions ({self.acquisitions}) must be a multiple of pool_q ({self.pool_q})")
        if self.stability is not None and self.stability.lists is not None:
            made = {name for route, name, _ in LISTS if route in self.routes}
            missing = [n for n in self.stability.lists if n not in made]
            if missing:
                raise ValueError(
                    f"stability.lists names {missing}, which the routes {list(self.routes)} do not produce; "
                    f"they produce: {', '.join(sorted(made))}"
                )
        if self.continuous.acquisitions % self.continuous.q:
            raise ValueError(
                f"continuous.acquisitions ({self.continuous.acquisitions}) must be a multiple of "
                f"continuous.q ({self.continuous.q})"
            )
        return self

    def stability_lists(self) -> list[str]:
        """The lists the stability filter judges (empty without ``stability``)."""
        if self.stability is None:
            return []
        if self.stability.lists is not None:
            return list(self.stability.lists)
        return [MAIN_LISTS[r] for r in ROUTES if r in self.routes and r in MAIN_LISTS]

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON-able data."""
        return self.model_dump(mode="json")


def load_rediscovery_config(path: str | Path, **overrides: Any) -> RediscoveryConfig:
    """Read and validate a benchmark YAML file; ``overrides`` replace top-level keys (None = keep).
    Raises :class:`ConfigError` with every problem on one line."""
    data = read_settings(path, "rediscovery config", **overrides)
    try:
        return RediscoveryConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid rediscovery config: {validation_problems(exc)}") from None

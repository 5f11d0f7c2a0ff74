"""Campaign configuration: a validated YAML file (pydantic), resolved and stored with the campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alcore.acquisition import AcquisitionSettings
from alcore.errors import ConfigError
from flows.datasets import BANDGAP_FILES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedSpec(_Strict):
    """Initial labels: a committed data set (``dataset``), optionally only ``max_gap`` and below
    (AGD Exp 4: all seeds with Eg < 3 eV), or the first ``n`` rows after a seeded shuffle."""

    dataset: str = "agd_exp3_init_300"
    n: int | None = None
    max_gap: float | None = None

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BANDGAP_FILES:
            raise ValueError(f"unknown seed data set {v!r}; known: {sorted(BANDGAP_FILES)}")
        return v


class AcquisitionSpec(_Strict):
    """UCB and optimiser settings (see :class:`alcore.acquisition.AcquisitionSettings`) plus the
    decode budget: ``max_attempts`` rounds of re-acquisition to collect ``q`` valid candidates.
    ``trust_region`` (continuous mode): side of the local search box as a fraction of the latent
    box, centred on the best labelled point (attempt a: the a-th best), TuRBO style; doubled (up to
    the whole box) after an attempt whose decodes were all known, invalid or duplicates."""

    beta: float = 25.0
    q: int = 4
    num_restarts: int = 4
    raw_samples: int = 256
    maxiter: int = 30
    mc_samples: int = 128
    max_attempts: int = 6
    trust_region: float = Field(default=0.2, gt=0, le=1)

    def settings(self) -> AcquisitionSettings:
        """The pure-computation settings object (validates beta, q and effort)."""
        return AcquisitionSettings(
            self.beta, self.q, self.num_restarts, self.raw_samples, self.maxiter, self.mc_samples
        )


class GPSpec(_Strict):
    """Surrogate fitting: L-BFGS-B ``maxiter`` for a cold fit (None = BoTorch default),
    ``warm_maxiter`` when warm-started from the previous iteration, and torch threads of the fit and
    of the acquisition."""

    maxiter: int | None = 75
    warm_maxiter: int | None = 25
    warm_start: bool = True
    threads: int = 1


class ValiditySpec(_Strict):
    """Limits on acquired formulas (on top of SMACT): elements and atoms in the reduced formula."""

    max_elements: int = 5
    max_atoms: int = 40
    include_alloys: bool = False


class TargetSpec(_Strict):
    """What counts as a hit: value >= ``threshold`` (eV), optionally within [``window_lo``, ``window_hi``]."""

    threshold: float = 3.0
    window_lo: float | None = None
    window_hi: float | None = None


class StructuresSpec(_Strict):
    """Structure stage at the end of the campaign: ``top_k`` best labelled new formulas (0 = off),
    ``templates_per_formula`` trials each, relaxation bounded to ``relax_steps`` FIRE steps and
    judged by ``judge``: ``chgnet``, ``sevennet``, ``funnel`` (CHGNet pre-screen, SevenNet judges the
    survivors) or a SevenNet checkpoint (``7net-0``, ``7net-l3i5``, ``7net-mf-0``); docs/structures.md."""

    top_k: int = 0
    templates_per_formula: int = 1
    e_hull_max: float = 0.1
    relax_steps: int = Field(default=200, ge=1)
    judge: Literal["chgnet", "sevennet", "funnel", "7net-0", "7net-l3i5", "7net-mf-0"] = "chgnet"


class CampaignConfig(_Strict):
    """A whole campaign. ``mode``: ``continuous`` (optimise UCB in the autoencoder's latent box and
    decode) or ``pool`` (choose among an encoded data set's formulas). ``oracle``: ``lookup`` (the
    ``lookup_table`` data set's values), a registered model oracle (e.g. ``resnet-agd``) or
    ``external`` (labels are imported later through the CLI). In pool mode the candidates are the
    ``pool`` data set's formulas, or with ``pool_collection`` the members of that generated pool in
    MongoDB's ``pools`` collection (``alflow pools generate-pool``) that pass ``validity``; ``pool_size``
    takes a seeded random subset (None = all representable formulas)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    property: Literal["band_gap"] = "band_gap"
    mode: Literal["continuous", "pool"] = "continuous"
    iterations: int = Field(default=3, ge=1, le=10_000)
    seed: int = 0
    seeds: SeedSpec = SeedSpec()
    oracle: str = "resnet-agd"
    lookup_table: str = "agd_exp1_42k"
    pool: str = "agd_exp1_42k"
    pool_collection: str | None = Field(default=None, min_length=1, max_length=100)
    pool_size: int | None = Field(default=None, ge=1)
    validation: str = "agd_test_500"
    element_list: str = "agd87"
    autoencoder: str = "autoencoder_agd87"
    acquisition: AcquisitionSpec = AcquisitionSpec()
    gp: GPSpec = GPSpec()
    validity: ValiditySpec = ValiditySpec()
    target: TargetSpec = TargetSpec()
    structures: StructuresSpec = StructuresSpec()
    screening_epochs: int | None = None

    @model_validator(mode="after")
    def _check(self) -> CampaignConfig:
        self.acquisition.settings()  # raises ConfigError on bad beta/q
        if self.pool_collection is not None and self.mode != "pool":
            raise ValueError(f"pool_collection {self.pool_collection!r} needs mode: pool (got {self.mode!r})")
        for field_name in ("lookup_table", "pool", "validation"):
            if getattr(self, field_name) not in BANDGAP_FILES:
                raise ValueError(
                    f"{field_name}: unknown data set {getattr(self, field_name)!r}; known: {sorted(BANDGAP_FILES)}"
                )
        if self.oracle not in {"lookup", "external"}:
            from oracles.registry import known_oracles

            if self.oracle not in known_oracles():
                raise ValueError(
                    f"unknown oracle {self.oracle!r}; known: lookup, external, {', '.join(sorted(known_oracles()))}"
                )
        return self

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON-able data (stored with the campaign)."""
        return self.model_dump(mode="json")


def parse_config(data: dict[str, Any], source: str = "config") -> CampaignConfig:
    """Validate a config mapping; raises :class:`ConfigError` listing every problem."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: invalid campaign config: {problems}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path, **overrides: Any) -> CampaignConfig:
    """Read and validate a YAML campaign file; ``overrides`` replace top-level keys (e.g. ``name``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"campaign config {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of settings, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, source=str(path))

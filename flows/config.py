"""Campaign configuration: a validated YAML file (pydantic), resolved and stored with the campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alcore.acquisition import AcquisitionSettings
from alcore.errors import ConfigError
from alcore.hull_probability import HullSettings
from alcore.validity import BAND_GAP_MIN_ELEMENTS
from flows.datasets import BANDGAP_FILES
from oracles.defaults import DEFAULT_BANDGAP_ORACLE, DEFAULT_JUDGE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedSpec(_Strict):
    """Initial labels: a committed data set (``dataset``), optionally only ``max_gap`` and below
    (AGD Exp 4: all seeds with Eg < 3 eV), or the first ``n`` rows after a seeded shuffle."""

    dataset: str = "agd_exp3_init_300"
    n: int | None = Field(default=None, ge=1)
    max_gap: float | None = Field(default=None, ge=0)

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BANDGAP_FILES:
            raise ValueError(f"unknown seed data set {v!r}; known: {sorted(BANDGAP_FILES)}")
        return v


_ACQ = AcquisitionSettings()
_HULL = HullSettings()


class HullSpec(_Strict):
    """The ``acquisition.hull`` section: P(E_hull <= ``threshold``) learned from the campaign's own
    structure verdicts (:mod:`alcore.hull_probability`), the second factor of decode-then-select's
    P(feasible) = P(E_form < ``feasibility_threshold``) * P(E_hull <= ``threshold``). Trained on the
    formulas of this campaign that the structure stage judged ``stable``/``near_hull``/``unstable``
    (``failed``, ``unconverged`` and ``e_form_only`` trials have no E_hull and are left out); used
    only with ``enabled``, at least ``min_verdicts`` judged formulas and both classes present,
    otherwise the factor is 1 and each candidate's ``p_hull_note`` says why. ``threshold`` in
    eV/atom; None: the structure stage's ``structures.e_hull_max`` (0.1), so ``near_hull`` counts
    as feasible."""

    enabled: bool = _HULL.enabled
    threshold: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    min_verdicts: int = Field(default=_HULL.min_verdicts, ge=2)


class AcquisitionSpec(_Strict):
    """The ``acquisition`` section: the fields and defaults of
    :class:`alcore.acquisition.AcquisitionSettings` (UCB, optimiser effort, and in continuous mode
    the decode budget ``max_attempts``, the trust-region side ``trust_region``, the ``strategy``
    (``decode_select``, default, or the old ``optimise_decode``) and decode-then-select's regions,
    draws, feasibility weighting and diversity caps), plus ``hull`` (:class:`HullSpec`: the
    learned P(E_hull) factor of P(feasible))."""

    beta: float = _ACQ.beta
    q: int = _ACQ.q
    num_restarts: int = _ACQ.num_restarts
    raw_samples: int = _ACQ.raw_samples
    maxiter: int = _ACQ.maxiter
    mc_samples: int = _ACQ.mc_samples
    max_attempts: int = Field(default=_ACQ.max_attempts, ge=1)
    trust_region: float = Field(default=_ACQ.trust_region, gt=0, le=1)
    strategy: Literal["decode_select", "optimise_decode"] = _ACQ.strategy  # type: ignore[assignment]
    n_regions: int = Field(default=_ACQ.n_regions, ge=1)
    region_draws: int = Field(default=_ACQ.region_draws, ge=1)
    optimiser_points: bool = _ACQ.optimiser_points
    exclude_known: bool = _ACQ.exclude_known
    feasibility: bool = _ACQ.feasibility
    feasibility_threshold: float = Field(default=_ACQ.feasibility_threshold, allow_inf_nan=False)
    max_share_system: float = Field(default=_ACQ.max_share_system, gt=0, le=1)
    max_share_anion: float = Field(default=_ACQ.max_share_anion, gt=0, le=1)
    hull: HullSpec = HullSpec()

    def settings(self) -> AcquisitionSettings:
        """The pure-computation settings object (validates every field)."""
        return AcquisitionSettings(**self.model_dump(exclude={"hull"}))


class GPSpec(_Strict):
    """Surrogate fitting: L-BFGS-B ``maxiter`` for a cold fit (None = BoTorch default),
    ``warm_maxiter`` when warm-started from the previous iteration, torch threads of the fit and
    of the acquisition, and ``label_noise``: ``oracle`` (each label's stored std, the oracle's
    calibrated sigma, squared, is its observation noise, plus a learned homoscedastic term),
    ``learned`` (one learned noise for all labels) or ``auto`` (``oracle`` as soon as a label carries
    a std > 0, i.e. came from an oracle with a sigma; seeds and lookup labels have std 0)."""

    maxiter: int | None = Field(default=75, ge=1)
    warm_maxiter: int | None = Field(default=25, ge=1)
    warm_start: bool = True
    threads: int = Field(default=1, ge=1)
    label_noise: Literal["auto", "oracle", "learned"] = "auto"


class ValiditySpec(_Strict):
    """Limits on acquired formulas (on top of SMACT): elements and atoms in the reduced formula.

    ``min_elements`` defaults to 2: a band-gap campaign looks for compounds, and pure elements (Ca,
    Xe, O2) pass SMACT's check (issue 19: they took 2 of the demo's 11 acquisitions).

    Plausibility (issue 20): ``reject_organic`` rejects compositions with both C and H (organic or
    molecular, not an inorganic solid); ``applicability_domain`` rejects (in continuous
    decode-then-select) a decode outside the band-gap oracle's applicability domain: ensemble std or
    distance to its training compositions above the bound calibrated on its own held-out split
    (``oracles/domain.py``; oracles without a training recipe have no domain)."""

    min_elements: int = Field(default=BAND_GAP_MIN_ELEMENTS, ge=1)
    max_elements: int = Field(default=5, ge=1)
    max_atoms: int = Field(default=40, ge=1)
    include_alloys: bool = False
    reject_organic: bool = True
    applicability_domain: bool = True

    @model_validator(mode="after")
    def _satisfiable(self) -> ValiditySpec:
        if self.min_elements > self.max_elements:
            raise ValueError(f"min_elements {self.min_elements} > max_elements {self.max_elements}: nothing is valid")
        if self.min_elements > self.max_atoms:
            raise ValueError(f"min_elements {self.min_elements} > max_atoms {self.max_atoms}: nothing is valid")
        return self


class TargetSpec(_Strict):
    """What counts as a hit: value >= ``threshold`` (eV), optionally within [``window_lo``, ``window_hi``]."""

    threshold: float = Field(default=3.0, allow_inf_nan=False)
    window_lo: float | None = Field(default=None, allow_inf_nan=False)
    window_hi: float | None = Field(default=None, allow_inf_nan=False)


class StructuresSpec(_Strict):
    """Structure stage at the end of the campaign: ``top_k`` best labelled new formulas (0 = off),
    ``templates_per_formula`` trials each, relaxation bounded to ``relax_steps`` FIRE steps and
    judged by ``judge``: ``sevennet`` (the default: SevenNet 7net-l3i5), ``chgnet``, ``funnel`` (CHGNet
    pre-screen, SevenNet judges the survivors) or a SevenNet checkpoint (``7net-0``, ``7net-l3i5``,
    ``7net-mf-0``); docs/structures.md."""

    top_k: int = Field(default=0, ge=0)
    templates_per_formula: int = Field(default=1, ge=1)
    e_hull_max: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    relax_steps: int = Field(default=200, ge=1)
    judge: Literal["chgnet", "sevennet", "funnel", "7net-0", "7net-l3i5", "7net-mf-0"] = DEFAULT_JUDGE


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
    oracle: str = DEFAULT_BANDGAP_ORACLE
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
    screening_epochs: int | None = Field(default=None, ge=1)

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
        from oracles.registry import known_oracles

        if self.oracle not in known_oracles():
            raise ValueError(f"unknown oracle {self.oracle!r}; known: {', '.join(sorted(known_oracles()))}")
        return self

    def hull_settings(self) -> HullSettings:
        """The learned P(E_hull) model's settings: ``acquisition.hull``, its threshold defaulting to
        ``structures.e_hull_max`` (eV/atom), the campaign seed for its cross-validation split."""
        h = self.acquisition.hull
        threshold = h.threshold if h.threshold is not None else self.structures.e_hull_max
        return HullSettings(enabled=h.enabled, threshold=threshold, min_verdicts=h.min_verdicts, seed=self.seed)

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON-able data (stored with the campaign)."""
        return self.model_dump(mode="json")


def validation_problems(exc: ValidationError) -> str:
    """Every problem of a pydantic validation error on one line: ``where: what; where: what``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())


def parse_config(data: dict[str, Any], source: str = "config") -> CampaignConfig:
    """Validate a config mapping; raises :class:`ConfigError` listing every problem."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid campaign config: {validation_problems(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def read_settings(path: str | Path, what: str = "campaign config", **overrides: Any) -> dict[str, Any]:
    """The mapping of settings in the YAML file ``path``, ``overrides`` (None = keep) replacing its
    top-level keys. ``what`` names the file in the errors: :class:`ConfigError` for a missing,
    unreadable or invalid YAML file (with the line and column of the problem) or one that holds no mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML: {problem}{where}") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of settings, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


def load_config(path: str | Path, **overrides: Any) -> CampaignConfig:
    """Read and validate a YAML campaign file; ``overrides`` replace top-level keys (e.g. ``name``)."""
    return parse_config(read_settings(path, "campaign config", **overrides), source=str(path))

"""The stages of a campaign iteration, declared once in :data:`ITERATION_STAGES`.

Iteration 0 runs :data:`SEED_STAGE`; iterations 1..N run ``fit`` (GP on latent vectors of all labels),
``acquire`` (read -> :mod:`alcore.recommend` proposes -> write candidates), ``label`` (oracle, lookup
table or external labels), ``retrain`` (screening model, MAE on a fixed validation set) and
``metrics``. A :class:`Stage` names its body and the ``reset`` that deletes what an interrupted
attempt of it alone wrote (see :mod:`flows.campaign.runner` for how they are run idempotently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from alcore.autoencoder import decode_latents, encode_formulas
from alcore.errors import AcquisitionError
from alcore.hull_probability import HullModel
from alcore.plausibility import anion_family, chemical_system
from alcore.recommend import (
    DecodeSelectRecommender,
    LatentBoxRecommender,
    NothingAcceptedError,
    Pick,
    PoolRecommender,
    Recommender,
)
from alcore.surrogate import fit_gp, torch_threads
from alcore.validity import check_validity
from flows.campaign.context import CampaignContext, stage_seed
from flows.campaign.faults import fault_point
from flows.store.schemas import LABELLABLE, CandidateStatus

log = logging.getLogger(__name__)


class SeedResult(TypedDict):
    """Result of the seed stage: labels written and the data set they came from."""

    n_seed: int
    dataset: str


class FitResult(TypedDict):
    """Result of ``fit``: the GP blob's sha256, labels used, fit time (s), warm start, a failed fit's
    error (None when the optimisation succeeded) and the hyperparameters as plain numbers."""

    gp_sha: str
    n_labels: int
    fit_s: float
    warm_started: bool
    fit_error: str | None
    hyperparameters: dict[str, Any]


class AcquireResult(TypedDict):
    """Result of ``acquire``: accepted/rejected picks, latent points decoded, repeats of a formula
    within the iteration, optimisation attempts, accepted formulas, trust-region side per attempt,
    the continuous strategy, decodes that passed every check (decode-then-select), distinct chemical
    systems and anion families acquired, wall seconds of the proposal's steps and, in
    decode-then-select, the learned P(E_hull) model's summary (``hull``: kind, ``n_verdicts`` judged
    formulas it was trained on, how many were stable/near-hull, threshold, note; None otherwise)."""

    n_accepted: int
    n_rejected: int
    n_decodes: int
    n_duplicates: int
    attempts: int
    formulas: list[str]
    trust_region_sides: list[float]
    strategy: str
    n_survivors: int
    n_systems: int
    n_anions: int
    timings: dict[str, float]
    hull: dict[str, Any] | None


class LabelResult(TypedDict, total=False):
    """Result of ``label``: labels written, failures (oracle only), label source, best label (eV)."""

    n_labelled: int
    n_failed: int
    source: str
    max: float


class RetrainResult(TypedDict):
    """Result of ``retrain``: the screening model's sha256, validation MAE (eV) and set sizes."""

    screening_sha: str
    val_mae: float
    n_val: int
    n_labels: int


class MetricsResult(TypedDict):
    """Result of ``metrics``: label counts, best value (eV) and formula, hits above the target (all
    labels and acquired ones only) and the best acquired value."""

    n_labels: int
    n_acquired_labels: int
    best_value: float | None
    best_formula: str | None
    count_above_threshold: int
    acquired_above_threshold: int
    best_acquired: float | None


StageResult = SeedResult | FitResult | AcquireResult | LabelResult | RetrainResult | MetricsResult
"""What a stage stores in ``iterations.stages.<name>.result`` (a plain document; ``seconds`` is added)."""


@dataclass(frozen=True)
class Waiting:
    """A stage result meaning "nothing to do yet": the stage stays open (status ``waiting``) and the
    campaign pauses with ``message`` (e.g. labels to import); the next run completes the stage."""

    message: str


@dataclass(frozen=True)
class Stage:
    """One step of an iteration: ``run(ctx, iteration)`` returns its result (or :class:`Waiting`);
    ``reset(ctx, iteration)``, if given, deletes what an interrupted attempt of this stage wrote."""

    name: str
    run: Callable[[CampaignContext, int], StageResult | Waiting]
    reset: Callable[[CampaignContext, int], None] | None = None


# ---------------------------------------------------------------------------- seed labels (iteration 0)
def seed_labels(ctx: CampaignContext) -> SeedResult:
    """Iteration 0: write the seed labels (source ``seed``) from the configured data set."""
    spec = ctx.config.seeds
    table = ctx.seed_rows()
    records = [
        {"formula": f, "value": float(v), "source": "seed", "iteration": 0, "std": 0.0}
        for f, v in zip(table["formula"], table["value"], strict=True)
    ]
    n = ctx.store.upsert_labels(ctx.name, records, ctx.config.property)
    return {"n_seed": n, "dataset": spec.dataset}


# ---------------------------------------------------------------------------- fit, acquire
def fit_stage(ctx: CampaignContext, iteration: int) -> FitResult:
    """Fit the GP on latent vectors of all labels (noise per ``gp.label_noise``: the labels' calibrated
    oracle sigma or learned); store its hyperparameters as a model blob."""
    model, box = ctx.autoencoder
    formulas, y, yvar = ctx.gp_labels()
    x = encode_formulas(model, ctx.encoder, formulas)
    warm = None
    if ctx.config.gp.warm_start and iteration > 1:
        prev = ctx.store.stage_result(ctx.name, iteration - 1, "fit")
        if prev and prev.get("gp_sha"):
            warm, _ = ctx.store.load_model(prev["gp_sha"], kind="gp")
    maxiter = ctx.config.gp.warm_maxiter if warm is not None else ctx.config.gp.maxiter
    fit = fit_gp(x, y, box, warm_start=warm, maxiter=maxiter, threads=ctx.config.gp.threads, yvar=yvar)
    if fit.fit_error:
        log.warning(
            "campaign %s iteration %d: GP fit failed (%s); kept the previous hyperparameters",
            ctx.name,
            iteration,
            fit.fit_error,
        )
    sha = ctx.store.save_model(
        "gp",
        fit.state,
        {"campaign": ctx.name, "iteration": iteration, "n_labels": len(y), "hyperparameters": fit.hyperparameters},
    )
    return {
        "gp_sha": sha,
        "n_labels": len(y),
        "fit_s": round(fit.fit_s, 3),
        "warm_started": fit.warm_started,
        "fit_error": fit.fit_error,
        "hyperparameters": fit.hyperparameters,
    }


def _gp_for(ctx: CampaignContext, iteration: int):
    """Rebuild the fitted GP of an iteration from its stored hyperparameters (no refit); returns it
    with the labelled latents (N, d), labels (N,) eV and formulas it was built on."""
    model, box = ctx.autoencoder
    formulas, y, yvar = ctx.gp_labels()  # the label stage of this iteration has not run yet (or was reset)
    x = encode_formulas(model, ctx.encoder, formulas)
    state, _ = ctx.store.load_model(ctx.store.stage_result(ctx.name, iteration, "fit")["gp_sha"], kind="gp")
    return fit_gp(x, y, box, warm_start=state, optimize=False, yvar=yvar).model, x, y, formulas


def acquire_stage(ctx: CampaignContext, iteration: int) -> AcquireResult:
    """Acquire ``q`` candidates: read the GP and labels, let the mode's recommender propose, write
    every pick (accepted and rejected, with reasons) to ``candidates``."""
    with torch_threads(ctx.config.gp.threads):
        gp, x_labelled, y_labelled, labelled = _gp_for(ctx, iteration)
        decode_select = ctx.config.mode == "continuous" and ctx.config.acquisition.strategy == "decode_select"
        hull = ctx.hull_model() if decode_select else None
        recommender = build_recommender(ctx, x_labelled, y_labelled, labelled, hull)
        seed_for = lambda attempt: stage_seed(ctx.config.seed, iteration, "acq", attempt)  # noqa: E731
        try:
            proposal = recommender.propose(gp, ctx.config.acquisition.q, seed_for)
        except NothingAcceptedError as exc:
            ctx.store.upsert_candidates(ctx.name, iteration, [_candidate(ctx, p) for p in exc.proposal.picks])
            raise AcquisitionError(f"iteration {iteration}: {exc}") from exc
    docs = [_candidate(ctx, p) for p in proposal.picks]
    # written in two bulk batches with a fault point between them (a kill mid-write must be harmless)
    ctx.store.upsert_candidates(ctx.name, iteration, docs[: len(docs) // 2])
    fault_point(f"acquire:{iteration}:mid-candidates")
    ctx.store.upsert_candidates(ctx.name, iteration, docs[len(docs) // 2 :])
    return {
        "n_accepted": len(proposal.accepted),
        "n_rejected": len(proposal.rejected),
        "n_decodes": proposal.n_decodes,
        "n_duplicates": proposal.n_duplicates,
        "attempts": proposal.attempts,
        "formulas": [p.formula for p in proposal.accepted],
        "trust_region_sides": proposal.trust_region_sides,
        "strategy": "pool" if ctx.config.mode == "pool" else ctx.config.acquisition.strategy,
        "n_survivors": proposal.n_survivors,
        **proposal.diversity,
        "timings": proposal.timings,
        "hull": hull.summary() if hull is not None else None,
    }


def build_recommender(
    ctx: CampaignContext,
    x_labelled: np.ndarray,
    y_labelled: np.ndarray,
    labelled: list[str],
    hull: HullModel | None = None,
) -> Recommender:
    """The campaign mode's recommender over the stored labels (latents (N, d), values (N,) eV, sorted
    formulas; pool members or the latent box); decode-then-select screens with ``hull`` (the learned
    P(E_hull) model) when given."""
    settings = ctx.config.acquisition.settings()
    if ctx.config.mode == "pool":
        formulas, latents = ctx.pool
        return PoolRecommender(formulas, latents, frozenset(labelled), settings)
    ae, box = ctx.autoencoder
    if settings.strategy == "decode_select":
        return DecodeSelectRecommender(
            box,
            x_labelled,
            y_labelled,
            labelled,
            decode=lambda z: decode_latents(ae, ctx.encoder, z),
            validate=lambda formula: check_validity(formula, ctx.validity_rules).reasons,
            encode=lambda formulas: encode_formulas(ae, ctx.encoder, list(formulas)),
            settings=settings,
            screen=lambda formulas: ctx.screen(formulas, hull),
            known=ctx.known,
        )
    return LatentBoxRecommender(
        box,
        x_labelled,
        y_labelled,
        frozenset(labelled),
        decode=lambda z: decode_latents(ae, ctx.encoder, z),
        validate=lambda formula: check_validity(formula, ctx.validity_rules).reasons,
        settings=settings,
    )


def _candidate(ctx: CampaignContext, pick: Pick) -> dict[str, Any]:
    """The ``candidates`` document of one pick (the store adds campaign and iteration); decode-then-select
    adds the predicted formation energy (eV/atom), P(feasible) = ``p_eform`` * ``p_hull`` (``p_hull``
    None, with ``p_hull_note`` saying why, while the learned P(E_hull) model is off) and the trust region."""
    doc: dict[str, Any] = {
        "formula": pick.formula,
        "latent": [round(float(v), 6) for v in pick.latent],
        "acq_value": pick.acq_value,
        "gp_mean": pick.gp_mean,
        "gp_std": pick.gp_std,
        "rank": pick.rank,
        "attempt": pick.attempt,
        "valid": pick.accepted,
        "reasons": list(pick.reasons),
        "duplicates": pick.duplicates,
        "novel": pick.formula not in ctx.known,
        "status": CandidateStatus.ACQUIRED if pick.accepted else CandidateStatus.REJECTED,
    }
    doc.update(pick.judged())  # decode-then-select: the judges' view of the formula
    if pick.region is not None:
        doc["region"] = pick.region
    if not pick.formula.startswith("<"):
        doc.update(chemsys=chemical_system(pick.formula), anion=anion_family(pick.formula))
    return doc


# ---------------------------------------------------------------------------- label, retrain, metrics
def label_stage(ctx: CampaignContext, iteration: int) -> LabelResult | Waiting:
    """Label the accepted candidates with the oracle. With the ``external`` oracle, candidates whose
    label has not been imported yet are marked ``awaiting_label`` and the stage returns
    :class:`Waiting` (nothing to label yet; the next run completes it)."""
    todo = ctx.store.candidates(ctx.name, iteration, status=list(LABELLABLE))
    formulas = [c["formula"] for c in todo]
    if getattr(ctx.oracle, "is_external", False):
        return _external_labels(ctx, iteration, formulas)
    pred = ctx.oracle_predict(formulas)
    records, failed = [], []
    for f, m, s, why in zip(formulas, pred.mean, pred.std, pred.reasons, strict=True):
        if np.isfinite(m):
            records.append(
                {
                    "formula": f,
                    "value": float(max(m, 0.0)),
                    "std": float(s),
                    "iteration": iteration,
                    "source": ctx.oracle_source,
                }
            )
        else:
            failed.append((f, why or "oracle returned NaN"))
    ctx.store.upsert_labels(ctx.name, records[: len(records) // 2], ctx.config.property)
    fault_point(f"label:{iteration}:mid-labels")
    ctx.store.upsert_labels(ctx.name, records[len(records) // 2 :], ctx.config.property)
    for f, why in failed:
        ctx.store.set_candidate_status(ctx.name, iteration, [f], CandidateStatus.LABEL_FAILED, label_error=why)
    ctx.store.set_candidate_status(ctx.name, iteration, [r["formula"] for r in records], CandidateStatus.LABELLED)
    return {
        "n_labelled": len(records),
        "n_failed": len(failed),
        "source": ctx.oracle_source,
        "max": float(max((r["value"] for r in records), default=float("nan"))),
    }


def _external_labels(ctx: CampaignContext, iteration: int, formulas: list[str]) -> LabelResult | Waiting:
    """The ``external`` oracle: imported labels complete the stage; missing ones make it wait."""
    labels = ctx.store.labels_of(ctx.name, formulas, ctx.config.property)
    missing = [f for f in formulas if f not in labels]
    if missing:
        ctx.store.set_candidate_status(ctx.name, iteration, missing, CandidateStatus.AWAITING_LABEL)
        return Waiting(
            f"campaign {ctx.name!r} iteration {iteration}: {len(missing)} candidate(s) await external "
            f"labels ({', '.join(missing[:5])}...); import them with `alflow labels import {ctx.name} FILE.csv` "
            "and run the campaign again"
        )
    ctx.store.set_candidate_status(ctx.name, iteration, formulas, CandidateStatus.LABELLED)
    values = [labels[f]["value"] for f in formulas]
    return {"n_labelled": len(formulas), "source": "external", "max": float(max(values, default=np.nan))}


def retrain_stage(ctx: CampaignContext, iteration: int) -> RetrainResult:
    """Retrain the screening model on all labels; MAE (eV) on the fixed validation set; store weights."""
    from oracles.registry import fit_screening_model, screening_state

    formulas, y = ctx.labelled()
    model = fit_screening_model(
        formulas, y, seed=stage_seed(ctx.config.seed, iteration, "retrain"), epochs=ctx.config.screening_epochs
    )
    val = ctx.validation_rows()
    pred = model.predict(list(val["formula"]))
    ok = pred.ok
    mae = float(np.mean(np.abs(pred.mean[ok] - val["value"].to_numpy()[ok]))) if ok.any() else float("nan")
    state, meta = screening_state(model)
    sha = ctx.store.save_model(
        "screening", state, {**meta, "campaign": ctx.name, "iteration": iteration, "n_labels": len(y), "val_mae": mae}
    )
    return {"screening_sha": sha, "val_mae": mae, "n_val": int(ok.sum()), "n_labels": len(y)}


def metrics_stage(ctx: CampaignContext, iteration: int) -> MetricsResult:
    """Discovery metrics after this iteration: best value, hits above the threshold, counts."""
    formulas, y = ctx.labelled()
    docs = ctx.store.labels(ctx.name, ctx.config.property)
    acquired = np.array([d["value"] for d in docs if d.get("source") != "seed"], dtype=np.float64)
    t = ctx.config.target
    hits = y >= t.threshold
    if t.window_lo is not None and t.window_hi is not None:
        hits = (y >= t.window_lo) & (y <= t.window_hi)
    acquired_hits = int(np.sum(acquired >= t.threshold)) if len(acquired) else 0
    best_i = int(np.argmax(y)) if len(y) else -1
    out: MetricsResult = {
        "n_labels": len(y),
        "n_acquired_labels": len(acquired),
        "best_value": float(y[best_i]) if len(y) else None,
        "best_formula": formulas[best_i] if len(y) else None,
        "count_above_threshold": int(hits.sum()),
        "acquired_above_threshold": acquired_hits,
        "best_acquired": float(acquired.max()) if len(acquired) else None,
    }
    stages = {s.name: ctx.store.stage_result(ctx.name, iteration, s.name) for s in ITERATION_STAGES[:-1]}
    ctx.store.set_iteration_fields(
        ctx.name,
        iteration,
        metrics={**out, "val_mae": stages["retrain"]["val_mae"]},
        gp={"hyperparameters": stages["fit"]["hyperparameters"], "sha": stages["fit"]["gp_sha"]},
        timings={s: stages[s]["seconds"] for s in stages},
        screening_sha=stages["retrain"]["screening_sha"],
    )
    ctx.store.record_iteration_summary(ctx.name, iteration)  # counts snapshot: `campaign show` stays O(iterations)
    ctx.store.update_campaign(ctx.name, iteration=iteration)
    return out


# ---------------------------------------------------------------------------- the registry
def _reset_candidates(ctx: CampaignContext, iteration: int) -> None:
    ctx.store.delete_candidates(ctx.name, iteration)


def _reset_labels(ctx: CampaignContext, iteration: int) -> None:
    if ctx.config.oracle != "external":  # imported labels belong to the user, not to the stage
        ctx.store.delete_acquired_labels(ctx.name, iteration)


SEED_STAGE = Stage("seed", lambda ctx, _iteration: seed_labels(ctx))
ITERATION_STAGES: tuple[Stage, ...] = (
    Stage("fit", fit_stage),
    Stage("acquire", acquire_stage, _reset_candidates),
    Stage("label", label_stage, _reset_labels),
    Stage("retrain", retrain_stage),
    Stage("metrics", metrics_stage),
)
#: Names of the iteration stages, in order.
STAGES: tuple[str, ...] = tuple(s.name for s in ITERATION_STAGES)

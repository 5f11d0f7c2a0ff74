"""The closed active-learning loop as a resumable Prefect flow.

Per iteration the stages are ``fit`` (GP on latent vectors of all labels), ``acquire`` (UCB, decode,
validate, re-acquire until q valid), ``label`` (oracle / lookup / external), ``retrain`` (screening
model on all labels, MAE on a fixed validation set) and ``metrics``. Every stage first looks in
MongoDB and returns the stored result if it is done; its writes are upserts on unique keys, and a
stage that was interrupted clears what it alone writes before it runs again, so a run killed
anywhere resumes at the first unfinished stage and reaches the same final state. One runner per
campaign: the lease is taken at the start, renewed at every stage and released at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE
from pymongo.errors import PyMongoError

from alcore.acquisition import AcquisitionSettings, acquire_continuous, acquire_discrete, trust_region
from alcore.autoencoder import CompositionAutoencoder, decode_latents, encode_formulas, load_weights
from alcore.composition import CompositionEncoder, canonical_formula
from alcore.errors import AcquisitionError, AlflowError, EmptyPoolError, InvalidFormulaError
from alcore.paths import WEIGHTS_DIR
from alcore.surrogate import fit_gp, posterior, torch_threads
from alcore.validity import ValidityRules, check_validity, check_validity_batch
from flows.config import CampaignConfig
from flows.datasets import band_gap_table, known_formulas
from flows.store import Store, default_owner
from oracles.base import Prediction

log = logging.getLogger(__name__)

STAGES = ("fit", "acquire", "label", "retrain", "metrics")
LEASE_TTL_S = 600.0

#: Test hook: called with (stage, "before" | "after", iteration); fault injection uses it.
STAGE_HOOK: Callable[[str, str, int], None] | None = None


def fault_point(name: str) -> None:
    """Fault-injection point for the crash-anywhere tests (no effect unless armed).

    ``ALFLOW_FAULT_POINT=<name>`` plus ``ALFLOW_FAULT_MARKER=<file>`` makes the process SIGKILL
    itself the first time it reaches ``name`` (the marker file records that it happened, so the
    restarted run goes through). Names: ``<stage>:<iteration>:before``, ``<stage>:<iteration>:after``
    and the mid-write points ``acquire:<i>:mid-candidates``, ``label:<i>:mid-labels``.
    """
    import os

    if os.environ.get("ALFLOW_FAULT_POINT") != name:
        return
    marker = Path(os.environ.get("ALFLOW_FAULT_MARKER", ".alflow-fault-fired"))
    if marker.exists():
        return
    marker.write_text(name)
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a flow/task run context
        return log


def stage_seed(campaign_seed: int, iteration: int, stage: str, attempt: int = 0) -> int:
    """A deterministic 31-bit seed for one stage (and attempt) of one iteration."""
    digest = hashlib.sha256(f"{campaign_seed}:{iteration}:{stage}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class WaitingForLabels(AlflowError):
    """The campaign is paused: candidates await external labels (import them with the CLI)."""


@dataclass
class CampaignContext:
    """Everything a stage needs: the store, the config, and lazily loaded models and tables."""

    store: Store
    config: CampaignConfig
    owner: str

    @property
    def name(self) -> str:
        """The campaign's name (its key in every collection)."""
        return self.config.name

    @cached_property
    def encoder(self) -> CompositionEncoder:
        """The one-hot encoder matching the autoencoder's element list."""
        return CompositionEncoder(self.config.element_list)

    @cached_property
    def autoencoder(self) -> tuple[CompositionAutoencoder, np.ndarray]:
        """``(model, latent box (2, d))`` from committed weights or a given .safetensors path."""
        ref = self.config.autoencoder
        path = Path(ref) if ref.endswith(".safetensors") else WEIGHTS_DIR / f"{ref}.safetensors"
        model, meta = load_weights(path)
        return model, np.asarray(meta["box"], dtype=np.float64)

    @cached_property
    def known(self) -> frozenset[str]:
        """Canonical formulas of known materials (for the novelty flag): the MP compounds of
        ``data/known`` plus every element, whose solid is known (that list holds compounds only)."""
        from pymatgen.core.periodic_table import Element

        elements = set()
        for element in Element:
            try:
                elements.add(canonical_formula(element.symbol))
            except InvalidFormulaError:
                continue
        return known_formulas() | elements

    @cached_property
    def validity_rules(self) -> ValidityRules:
        """Validity limits of acquired formulas."""
        v = self.config.validity
        return ValidityRules(max_elements=v.max_elements, max_atoms=v.max_atoms, include_alloys=v.include_alloys)

    @cached_property
    def pool(self) -> tuple[list[str], np.ndarray]:
        """Pool mode: the candidate formulas (sorted, representable) and their latents ``(M, d)``:
        the ``pool`` data set's, or the valid members of the MongoDB pool ``pool_collection``.
        Raises :class:`EmptyPoolError` if none is left."""
        if self.config.pool_collection is None:
            formulas = list(band_gap_table(self.config.pool)["formula"])
        else:
            limits = self.config.validity  # size limits in the query, so SMACT sees only the rest
            stored = self.store.pool_formulas(self.config.pool_collection, limits.max_atoms, limits.max_elements)
            formulas = [v.formula for v in check_validity_batch(stored, self.validity_rules) if v.valid]
        formulas = sorted(f for f in formulas if self.encoder.representable(f)[0])
        if not formulas:
            where = (
                f"MongoDB pool {self.config.pool_collection!r}"
                if self.config.pool_collection
                else f"data set {self.config.pool!r}"
            )
            raise EmptyPoolError(
                f"{where} has no formula the campaign can choose (representable by "
                f"{self.config.element_list!r} and valid); generate or fill the pool first"
            )
        if self.config.pool_size is not None and self.config.pool_size < len(formulas):
            rng = np.random.default_rng(self.config.seed)
            formulas = sorted(rng.choice(formulas, size=self.config.pool_size, replace=False).tolist())
        return formulas, encode_formulas(self.autoencoder[0], self.encoder, formulas)

    @property
    def oracle_source(self) -> str:
        """What acquired labels record as their ``source``: the configured oracle's name."""
        return self.config.oracle

    def seed_rows(self) -> pd.DataFrame:
        """The seed labels of iteration 0 (columns ``formula``, ``value``): :func:`seed_table`."""
        return seed_table(self.config, self.encoder)

    def validation_rows(self) -> pd.DataFrame:
        """The fixed validation set of the retrain stage (columns ``formula``, ``value`` in eV)."""
        return band_gap_table(self.config.validation)

    def oracle_predict(self, formulas: list[str]) -> Prediction:
        """Label formulas with the configured oracle (lookup table or registered model)."""
        if self.config.oracle == "lookup":
            from oracles.lookup import LookupOracle

            table = band_gap_table(self.config.lookup_table)
            oracle = LookupOracle(
                dict(zip(table["formula"], table["value"], strict=True)), name=f"lookup:{self.config.lookup_table}"
            )
            return oracle.predict(formulas)
        from oracles.registry import get_oracle

        return get_oracle(self.config.oracle).predict(formulas)

    def labelled(self) -> tuple[list[str], np.ndarray]:
        """All labelled formulas (sorted) and their values (eV) for the campaign's property."""
        docs = self.store.labels(self.name, self.config.property)
        return [d["formula"] for d in docs], np.array([d["value"] for d in docs], dtype=np.float64)


# ---------------------------------------------------------------------------- stage runner
def run_stage(
    ctx: CampaignContext,
    iteration: int,
    stage: str,
    body: Callable[[], dict[str, Any]],
    reset: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run one stage idempotently: return the stored result if done; otherwise renew the lease,
    undo any partial writes of an interrupted attempt (``reset``), run ``body`` and store its result."""
    done = ctx.store.stage_result(ctx.name, iteration, stage)
    if done is not None:
        return done
    ctx.store.renew_lease(ctx.name, ctx.owner, LEASE_TTL_S)
    if STAGE_HOOK:
        STAGE_HOOK(stage, "before", iteration)
    fault_point(f"{stage}:{iteration}:before")
    if reset is not None:
        reset()
    ctx.store.mark_stage(ctx.name, iteration, stage, "running")
    t0 = time.perf_counter()
    try:
        result = body()
    except WaitingForLabels:
        ctx.store.mark_stage(ctx.name, iteration, stage, "waiting")
        raise
    except Exception as exc:
        ctx.store.mark_stage(ctx.name, iteration, stage, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    result = {**result, "seconds": round(time.perf_counter() - t0, 3)}
    if STAGE_HOOK:
        STAGE_HOOK(stage, "after", iteration)
    fault_point(f"{stage}:{iteration}:after")
    ctx.store.mark_stage(ctx.name, iteration, stage, "done", result=result)
    _logger().info("campaign %s iteration %d: %s done in %.1f s", ctx.name, iteration, stage, result["seconds"])
    return result


# ---------------------------------------------------------------------------- stages
def seed_table(config: CampaignConfig, encoder: CompositionEncoder | None = None) -> pd.DataFrame:
    """The seed labels a config selects (columns ``formula``, ``value`` in eV): its data set, below
    ``seeds.max_gap`` if set, only formulas ``encoder`` can represent if given (the loop needs latent
    vectors), then ``seeds.n`` rows sampled with the campaign seed if set."""
    spec = config.seeds
    table = band_gap_table(spec.dataset)
    if spec.max_gap is not None:
        table = table[table["value"] < spec.max_gap]
    if encoder is not None:
        table = table[[encoder.representable(f)[0] for f in table["formula"]]]
    if spec.n is not None:
        table = table.sample(n=min(spec.n, len(table)), random_state=config.seed)
    return table


def seed_labels(ctx: CampaignContext) -> dict[str, Any]:
    """Iteration 0: write the seed labels (source ``seed``) from the configured data set."""
    spec = ctx.config.seeds
    table = ctx.seed_rows()
    records = [
        {"formula": f, "value": float(v), "source": "seed", "iteration": 0, "std": 0.0}
        for f, v in zip(table["formula"], table["value"], strict=True)
    ]
    n = ctx.store.upsert_labels(ctx.name, records, ctx.config.property)
    return {"n_seed": n, "dataset": spec.dataset}


def fit_stage(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
    """Fit the GP on latent vectors of all labels; store its hyperparameters as a model blob."""
    model, box = ctx.autoencoder
    formulas, y = ctx.labelled()
    x = encode_formulas(model, ctx.encoder, formulas)
    warm = None
    if ctx.config.gp.warm_start and iteration > 1:
        prev = ctx.store.stage_result(ctx.name, iteration - 1, "fit")
        if prev and prev.get("gp_sha"):
            warm, _ = ctx.store.load_model(prev["gp_sha"], kind="gp")
    maxiter = ctx.config.gp.warm_maxiter if warm is not None else ctx.config.gp.maxiter
    fit = fit_gp(x, y, box, warm_start=warm, maxiter=maxiter, threads=ctx.config.gp.threads)
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
        "hyperparameters": fit.hyperparameters,
    }


def _gp_for(ctx: CampaignContext, iteration: int):
    """Rebuild the fitted GP of an iteration from its stored hyperparameters (no refit)."""
    model, box = ctx.autoencoder
    formulas, y = ctx.labelled()  # the label stage of this iteration has not run yet (or was reset)
    x = encode_formulas(model, ctx.encoder, formulas)
    state, _ = ctx.store.load_model(ctx.store.stage_result(ctx.name, iteration, "fit")["gp_sha"], kind="gp")
    return fit_gp(x, y, box, warm_start=state, optimize=False).model, x, formulas


def acquire_stage(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
    """Acquire ``q`` candidates: UCB, decode, validate; rejected decodes are stored with reasons and
    kept as pending points so the next attempt looks elsewhere. Writes ``candidates``."""
    with torch_threads(ctx.config.gp.threads):
        return _acquire(ctx, iteration)


def _acquire(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
    cfg = ctx.config
    gp, x_labelled, labelled = _gp_for(ctx, iteration)
    labelled_set = set(labelled)
    ae, box = ctx.autoencoder
    q = cfg.acquisition.q
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    attempts = 0
    sides: list[float] = []  # trust-region side of each continuous-mode attempt
    if cfg.mode == "pool":
        all_formulas, all_z = ctx.pool
        keep = np.array([f not in labelled_set for f in all_formulas], dtype=bool)
        pool = [f for f, k in zip(all_formulas, keep, strict=True) if k]
        z_pool = all_z[keep]
        idx, values = acquire_discrete(gp, z_pool, cfg.acquisition.settings(), stage_seed(cfg.seed, iteration, "acq"))
        mean, std = posterior(gp, z_pool[idx])
        for rank, (i, v, m, s) in enumerate(zip(idx, values, mean, std, strict=True)):
            accepted.append(_candidate(ctx, pool[i], z_pool[i], float(v), float(m), float(s), rank, [], True))
        attempts = 1
    else:
        pending = np.empty((0, box.shape[1]))
        seen: set[str] = set()
        _, y_labelled = ctx.labelled()
        order = np.argsort(-y_labelled, kind="stable")
        side = cfg.acquisition.trust_region
        while len(accepted) < q and attempts < cfg.acquisition.max_attempts:
            need = q - len(accepted)
            settings = AcquisitionSettings(
                cfg.acquisition.beta,
                need,
                cfg.acquisition.num_restarts,
                cfg.acquisition.raw_samples,
                cfg.acquisition.maxiter,
                cfg.acquisition.mc_samples,
            )
            centre = x_labelled[order[attempts % len(order)]]
            local = trust_region(centre, box, side)
            sides.append(side)
            n_before = len(accepted)
            z, value = acquire_continuous(
                gp,
                local,
                settings,
                stage_seed(cfg.seed, iteration, "acq", attempts),
                x_pending=pending if len(pending) else None,
            )
            attempts += 1
            pending = np.vstack([pending, z])
            mean, std = posterior(gp, z)
            for zi, formula, m, s in zip(z, decode_latents(ae, ctx.encoder, z), mean, std, strict=True):
                reasons = _rejection_reasons(ctx, formula, labelled_set, seen)
                doc = _candidate(
                    ctx,
                    formula or f"<empty decode {len(rejected)}>",
                    zi,
                    value,
                    float(m),
                    float(s),
                    len(accepted) + len(rejected),
                    reasons,
                    not reasons,
                    attempt=attempts,
                )
                (rejected if reasons else accepted).append(doc)
                if formula:
                    seen.add(formula)
            if len(accepted) == n_before:  # this region only decodes to known formulas: look wider next
                side = min(1.0, 2.0 * side)
        if not accepted:
            ctx.store.upsert_candidates(ctx.name, iteration, rejected)
            raise AcquisitionError(
                f"iteration {iteration}: no valid formula decoded in {attempts} attempts "
                f"({len(rejected)} rejected; first reasons: {[r['reasons'] for r in rejected[:3]]}); "
                "raise acquisition.max_attempts, lower beta, or relax the validity limits"
            )
    everything = unique_by_formula(accepted + rejected)
    # written in two bulk batches with a fault point between them (a kill mid-write must be harmless)
    ctx.store.upsert_candidates(ctx.name, iteration, everything[: len(everything) // 2])
    fault_point(f"acquire:{iteration}:mid-candidates")
    ctx.store.upsert_candidates(ctx.name, iteration, everything[len(everything) // 2 :])
    return {
        "n_accepted": len(accepted),
        "n_rejected": len(rejected),
        "attempts": attempts,
        "formulas": [c["formula"] for c in accepted],
        "trust_region_sides": sides,
    }


def unique_by_formula(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first candidate document per formula, in order. Candidates are stored keyed by formula, so
    a later duplicate decode of an accepted formula (rejected as a duplicate) would otherwise
    overwrite the accepted document, which then was never labelled."""
    seen: set[str] = set()
    out = []
    for doc in docs:
        if doc["formula"] not in seen:
            seen.add(doc["formula"])
            out.append(doc)
    return out


def _rejection_reasons(ctx: CampaignContext, formula: str | None, labelled: set[str], seen: set[str]) -> list[str]:
    if formula is None:
        return ["decodes to no atoms"]
    reasons = list(check_validity(formula, ctx.validity_rules).reasons)
    if formula in labelled:
        reasons.append("already labelled")
    if formula in seen:
        reasons.append("duplicate within this iteration")
    return reasons


def _candidate(
    ctx: CampaignContext,
    formula: str,
    z: np.ndarray,
    acq_value: float,
    mean: float,
    std: float,
    rank: int,
    reasons: list[str],
    valid: bool,
    attempt: int = 1,
) -> dict[str, Any]:
    return {
        "formula": formula,
        "latent": [round(float(v), 6) for v in z],
        "acq_value": acq_value,
        "gp_mean": mean,
        "gp_std": std,
        "rank": rank,
        "attempt": attempt,
        "valid": valid,
        "reasons": reasons,
        "novel": formula not in ctx.known,
        "status": "acquired" if valid else "rejected",
    }


def label_stage(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
    """Label the accepted candidates with the oracle; ``external`` pauses until labels are imported."""
    cands = ctx.store.candidates(ctx.name, iteration)
    todo = [c for c in cands if c["status"] in {"acquired", "awaiting_label", "labelled"}]
    formulas = [c["formula"] for c in todo]
    if ctx.config.oracle == "external":
        labels = {
            d["formula"]: d
            for d in ctx.store.db.labels.find(
                {"campaign": ctx.name, "property": ctx.config.property, "formula": {"$in": formulas}}
            )
        }
        missing = [f for f in formulas if f not in labels]
        ctx.store.db.candidates.update_many(
            {"campaign": ctx.name, "iteration": iteration, "formula": {"$in": missing}},
            {"$set": {"status": "awaiting_label"}},
        )
        if missing:
            ctx.store.update_campaign(ctx.name, status="awaiting_labels")
            raise WaitingForLabels(
                f"campaign {ctx.name!r} iteration {iteration}: {len(missing)} candidate(s) await external "
                f"labels ({', '.join(missing[:5])}...); import them with `alflow labels import {ctx.name} FILE.csv` "
                "and run the campaign again"
            )
        ctx.store.db.candidates.update_many(
            {"campaign": ctx.name, "iteration": iteration, "formula": {"$in": formulas}},
            {"$set": {"status": "labelled"}},
        )
        values = [labels[f]["value"] for f in formulas]
        return {"n_labelled": len(formulas), "source": "external", "max": float(max(values, default=np.nan))}
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
        ctx.store.db.candidates.update_one(
            {"campaign": ctx.name, "iteration": iteration, "formula": f},
            {"$set": {"status": "label_failed", "label_error": why}},
        )
    ok = [r["formula"] for r in records]
    ctx.store.db.candidates.update_many(
        {"campaign": ctx.name, "iteration": iteration, "formula": {"$in": ok}}, {"$set": {"status": "labelled"}}
    )
    return {
        "n_labelled": len(records),
        "n_failed": len(failed),
        "source": ctx.oracle_source,
        "max": float(max((r["value"] for r in records), default=float("nan"))),
    }


def retrain_stage(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
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


def metrics_stage(ctx: CampaignContext, iteration: int) -> dict[str, Any]:
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
    out = {
        "n_labels": len(y),
        "n_acquired_labels": len(acquired),
        "best_value": float(y[best_i]) if len(y) else None,
        "best_formula": formulas[best_i] if len(y) else None,
        "count_above_threshold": int(hits.sum()),
        "acquired_above_threshold": acquired_hits,
        "best_acquired": float(acquired.max()) if len(acquired) else None,
    }
    stages = {s: ctx.store.stage_result(ctx.name, iteration, s) for s in STAGES[:-1]}
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
    _publish_report(ctx, iteration)
    return out


def _publish_report(ctx: CampaignContext, iteration: int) -> None:
    """Plots (PNG) and Prefect UI artifacts of this iteration under ``ALFLOW_REPORT_DIR`` (default
    ``runs/reports``)/<campaign>; ``ALFLOW_REPORTS=0`` disables them. Best effort: a reporting
    failure is logged and never fails the stage."""
    import os

    if os.environ.get("ALFLOW_REPORTS", "1") == "0":
        return
    from flows.reporting import publish_iteration

    out_dir = Path(os.environ.get("ALFLOW_REPORT_DIR", "runs/reports")) / ctx.name
    try:
        publish_iteration(ctx.store, ctx.name, iteration, out_dir)
    except Exception as exc:  # noqa: BLE001 - reports are best effort
        _logger().warning(
            "campaign %s iteration %d: report not published (%s: %s)", ctx.name, iteration, type(exc).__name__, exc
        )


# ---------------------------------------------------------------------------- Prefect tasks + flow
def _retry_on_database_fault(task, task_run, state) -> bool:
    """Retry a stage only when the database connection failed (not on a user or model error)."""
    from pymongo.errors import ConnectionFailure

    from alcore.errors import StoreUnavailableError

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, ConnectionFailure | StoreUnavailableError)


RETRY = {"retries": 4, "retry_delay_seconds": [2, 5, 15, 30], "retry_condition_fn": _retry_on_database_fault}


@task(name="seed-labels", cache_policy=NO_CACHE, **RETRY)
def seed_task(ctx: CampaignContext) -> dict[str, Any]:
    """Prefect task: iteration 0 seed labels."""
    return run_stage(ctx, 0, "seed", lambda: seed_labels(ctx))


def _reset_candidates(ctx: CampaignContext, iteration: int) -> Callable[[], None]:
    return lambda: ctx.store.db.candidates.delete_many({"campaign": ctx.name, "iteration": iteration})


def _reset_labels(ctx: CampaignContext, iteration: int) -> Callable[[], None]:
    if ctx.config.oracle == "external":
        return lambda: None
    return lambda: ctx.store.db.labels.delete_many(
        {"campaign": ctx.name, "iteration": iteration, "source": {"$ne": "seed"}}
    )


@task(name="iteration-stage", cache_policy=NO_CACHE, task_run_name="{stage}-{iteration}", **RETRY)
def stage_task(ctx: CampaignContext, iteration: int, stage: str) -> dict[str, Any]:
    """Prefect task: one stage of one iteration (see :data:`STAGES`)."""
    bodies: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[], None] | None]] = {
        "fit": (lambda: fit_stage(ctx, iteration), None),
        "acquire": (lambda: acquire_stage(ctx, iteration), _reset_candidates(ctx, iteration)),
        "label": (lambda: label_stage(ctx, iteration), _reset_labels(ctx, iteration)),
        "retrain": (lambda: retrain_stage(ctx, iteration), None),
        "metrics": (lambda: metrics_stage(ctx, iteration), None),
    }
    body, reset = bodies[stage]
    return run_stage(ctx, iteration, stage, body, reset)


def run_campaign_in(
    store: Store,
    config: CampaignConfig,
    owner: str | None = None,
    on_iteration: Callable[[int, dict[str, Any]], None] | None = None,
    context: Callable[[Store, CampaignConfig, str], CampaignContext] = CampaignContext,
) -> dict[str, Any]:
    """Run (or resume) a campaign against ``store``; returns a summary dict.

    ``context(store, config, owner)`` builds the stages' :class:`CampaignContext` (a subclass may
    supply its own seed labels, oracle, validation set and known list, e.g. the hold-out benchmark).

    Takes the lease (raises :class:`~alcore.errors.CampaignLockedError` if another runner holds it),
    runs iterations 1..``config.iterations`` stage by stage, and releases the lease. A campaign with
    an external oracle stops with ``status = "awaiting_labels"`` when labels are missing.
    """
    owner = owner or default_owner()
    store.create_campaign(config.name, config.resolved())
    store.acquire_lease(config.name, owner, LEASE_TTL_S)
    ctx = context(store, config, owner)
    status = "running"
    try:
        store.update_campaign(config.name, status="running", target_iterations=config.iterations)
        seed_task(ctx)
        for iteration in range(1, config.iterations + 1):
            try:
                for stage in STAGES:
                    stage_task(ctx, iteration, stage)
            except WaitingForLabels as exc:
                _logger().warning(str(exc))
                status = "awaiting_labels"
                break
            if on_iteration:
                on_iteration(iteration, store.stage_result(config.name, iteration, "metrics"))
        else:
            status = "finished"
        store.update_campaign(config.name, status=status)
    except BaseException:
        with contextlib.suppress(PyMongoError):  # the database may be the thing that failed
            store.update_campaign(config.name, status="failed")
            store.release_lease(config.name, owner)
        raise
    store.release_lease(config.name, owner)
    return campaign_summary(store, config.name) | {"status": status}


def campaign_summary(store: Store, name: str) -> dict[str, Any]:
    """Per-iteration metrics and the top labels of a campaign (for tables and the CLI)."""
    rows = []
    for it in store.iterations(name):
        m = it.get("metrics")
        if m:
            rows.append(
                {
                    "iteration": it["iteration"],
                    **m,
                    "fit_s": it.get("timings", {}).get("fit"),
                    "acquire_s": it.get("timings", {}).get("acquire"),
                }
            )
    return {"campaign": name, "iterations": rows, "top": store.top_labels(name, 10)}


@flow(name="campaign", log_prints=True)
def campaign_flow(config_path: str, iterations: int | None = None, name: str | None = None) -> dict[str, Any]:
    """Prefect flow: run or resume the campaign described by the YAML file ``config_path``.

    ``iterations`` raises the iteration target (e.g. a nightly deployment continuing a campaign);
    ``name`` overrides the campaign name in the file. Returns the campaign summary.
    """
    from flows.config import load_config
    from flows.settings import get_settings

    config = load_config(config_path, iterations=iterations, name=name)
    settings = get_settings()
    store = Store.connect(settings)
    try:
        summary = run_campaign_in(store, config)
        if summary["status"] == "finished" and config.structures.top_k > 0:
            summary["structures"] = structure_top_candidates(store, config, settings)
        return summary
    finally:
        store.close()


def top_acquired(store: Store, name: str, k: int) -> list[str]:
    """The ``k`` best-labelled formulas the campaign acquired itself (seed labels excluded)."""
    docs = store.db.labels.find({"campaign": name, "source": {"$ne": "seed"}}, {"formula": 1}).sort("value", -1)
    return [d["formula"] for d in docs.limit(k)]


def structure_top_candidates(store: Store, config: CampaignConfig, settings) -> dict[str, Any]:
    """Structure stage for the campaign's top acquired formulas: EMD template substitution, CHGNet
    relaxation, E_form/E_hull verdicts into ``structures`` and CIFs under ``runs/<campaign>/cif``."""
    from flows.structures_flow import structures_flow

    formulas = top_acquired(store, config.name, config.structures.top_k)
    if not formulas:
        return {"formulas": [], "verdicts": {}}
    cif_dir = settings.output_dir / config.name / "cif"
    result = structures_flow(
        formulas=formulas,
        campaign=config.name,
        k_templates=config.structures.templates_per_formula,
        e_hull_max=config.structures.e_hull_max,
        steps=config.structures.relax_steps,
        cif_dir=str(cif_dir),
        mongo_uri=None,
        database=settings.database,
    )
    result["table"] = [
        {k: d.get(k) for k in ("formula", "template_id", "e_form", "e_hull", "verdict", "reason")}
        for d in store.db.structures.find({"campaign": config.name, "formula": {"$in": formulas}})
    ]
    result["cif_dir"] = str(cif_dir)
    return result

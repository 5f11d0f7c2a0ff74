"""The closed active-learning loop as a resumable Prefect flow.

Every stage (declared in :mod:`flows.campaign.stages`) runs through :func:`run_stage`: it first looks
in MongoDB and returns the stored result if the stage is done; its writes are upserts on unique keys,
and a stage that was interrupted clears what it alone writes before it runs again, so a run killed
anywhere resumes at the first unfinished stage and reaches the same final state. One runner per
campaign: the lease is taken at the start, renewed at every stage and released at the end. After an
iteration's stages, the :data:`ITERATION_HOOKS` run (reports), each at most once per iteration.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE
from pymongo.errors import PyMongoError

from flows.campaign.context import CampaignContext
from flows.campaign.faults import call_stage_hook, fault_point
from flows.campaign.stages import ITERATION_STAGES, SEED_STAGE, Stage, StageResult, Waiting
from flows.config import CampaignConfig
from flows.logs import flow_logger
from flows.settings import Settings
from flows.store import Store, default_owner
from flows.store.schemas import CampaignStatus, StageStatus

log = logging.getLogger(__name__)

LEASE_TTL_S = 600.0


# ---------------------------------------------------------------------------- one stage, idempotently
def run_stage(ctx: CampaignContext, iteration: int, stage: Stage) -> StageResult | Waiting:
    """Run one stage idempotently: return the stored result if done; otherwise renew the lease,
    undo any partial writes of an interrupted attempt (``stage.reset``), run it and store its result.
    A :class:`Waiting` result leaves the stage open (status ``waiting``) and is returned as is."""
    done = ctx.store.stage_result(ctx.name, iteration, stage.name)
    if done is not None:
        return done
    ctx.store.renew_lease(ctx.name, ctx.owner, LEASE_TTL_S)
    call_stage_hook(stage.name, "before", iteration)
    fault_point(f"{stage.name}:{iteration}:before")
    if stage.reset is not None:
        stage.reset(ctx, iteration)
    ctx.store.mark_stage(ctx.name, iteration, stage.name, StageStatus.RUNNING)
    t0 = time.perf_counter()
    try:
        result = stage.run(ctx, iteration)
    except Exception as exc:
        ctx.store.mark_stage(ctx.name, iteration, stage.name, StageStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    if isinstance(result, Waiting):
        ctx.store.mark_stage(ctx.name, iteration, stage.name, StageStatus.WAITING)
        return result
    result = {**result, "seconds": round(time.perf_counter() - t0, 3)}
    call_stage_hook(stage.name, "after", iteration)
    fault_point(f"{stage.name}:{iteration}:after")
    ctx.store.mark_stage(ctx.name, iteration, stage.name, StageStatus.DONE, result=result)
    flow_logger().info(
        "campaign %s iteration %d: %s done in %.1f s", ctx.name, iteration, stage.name, result["seconds"]
    )
    return result


# ---------------------------------------------------------------------------- iteration hooks
def publish_report(ctx: CampaignContext, iteration: int) -> None:
    """Plots (PNG) and Prefect UI artifacts of one iteration under ``Settings.report_dir``/<campaign>;
    ``ALFLOW_REPORTS=0`` disables them. Best effort: a failure is logged and never fails the run."""
    settings = Settings()
    if not settings.reports:
        return
    from flows.reporting import publish_iteration

    try:
        publish_iteration(ctx.store, ctx.name, iteration, settings.report_dir / ctx.name)
    except Exception as exc:  # noqa: BLE001 - reports are best effort
        flow_logger().warning(
            "campaign %s iteration %d: report not published (%s: %s)", ctx.name, iteration, type(exc).__name__, exc
        )


#: Called after an iteration's stages are done, once per iteration (recorded as ``hooks.<name>``).
ITERATION_HOOKS: dict[str, Callable[[CampaignContext, int], None]] = {"report": publish_report}


def run_iteration_hooks(ctx: CampaignContext, iteration: int) -> None:
    """Run every hook not yet recorded as done for this iteration, then record it."""
    done = (ctx.store.get_iteration(ctx.name, iteration) or {}).get("hooks", {})
    for name, hook in ITERATION_HOOKS.items():
        if not done.get(name):
            hook(ctx, iteration)
            ctx.store.set_iteration_fields(ctx.name, iteration, **{f"hooks.{name}": True})


# ---------------------------------------------------------------------------- Prefect tasks + flow
def _retry_on_database_fault(task, task_run, state) -> bool:
    """Retry a stage only when the database connection failed (not on a user or model error)."""
    from pymongo.errors import ConnectionFailure

    from alcore.errors import StoreUnavailableError

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, ConnectionFailure | StoreUnavailableError)


RETRY = {"retries": 4, "retry_delay_seconds": [2, 5, 15, 30], "retry_condition_fn": _retry_on_database_fault}


@task(name="iteration-stage", cache_policy=NO_CACHE, task_run_name="{stage.name}-{iteration}", **RETRY)
def stage_task(ctx: CampaignContext, iteration: int, stage: Stage) -> StageResult | Waiting:
    """Prefect task: one stage of one iteration (iteration 0: the seed stage)."""
    return run_stage(ctx, iteration, stage)


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
    status = CampaignStatus.RUNNING
    try:
        store.update_campaign(config.name, status=CampaignStatus.RUNNING, target_iterations=config.iterations)
        stage_task(ctx, 0, SEED_STAGE)
        for iteration in range(1, config.iterations + 1):
            waiting = next(
                (r for s in ITERATION_STAGES if isinstance(r := stage_task(ctx, iteration, s), Waiting)), None
            )
            if waiting is not None:
                flow_logger().warning(waiting.message)
                status = CampaignStatus.AWAITING_LABELS
                break
            run_iteration_hooks(ctx, iteration)
            if on_iteration:
                on_iteration(iteration, store.stage_result(config.name, iteration, "metrics"))
        else:
            status = CampaignStatus.FINISHED
        store.update_campaign(config.name, status=status)
    except BaseException:
        with contextlib.suppress(PyMongoError):  # the database may be the thing that failed
            store.update_campaign(config.name, status=CampaignStatus.FAILED)
            store.release_lease(config.name, owner)
        raise
    store.release_lease(config.name, owner)
    return campaign_summary(store, config.name) | {"status": str(status)}


def campaign_summary(store: Store, name: str) -> dict[str, Any]:
    """Per-iteration metrics, the top labels and the best 10 acquired candidates of a campaign with
    their predicted formation energy (eV/atom) and P(feasible) where recorded (for tables and the CLI)."""
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
    labelled = {c["formula"]: c for c in store.candidates(name, status="labelled")}
    values = store.labels_of(name, list(labelled))
    acquired = sorted(
        (
            {
                "formula": f,
                "value": values[f]["value"],
                "iteration": c["iteration"],
                "eform_mean": c.get("eform_mean"),
                "p_feasible": c.get("p_feasible"),
                "chemsys": c.get("chemsys"),
            }
            for f, c in labelled.items()
            if f in values
        ),
        key=lambda d: (-d["value"], d["formula"]),
    )[:10]
    return {"campaign": name, "iterations": rows, "top": store.top_labels(name, 10), "acquired": acquired}


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
        if summary["status"] == CampaignStatus.FINISHED and config.structures.top_k > 0:
            summary["structures"] = structure_top_candidates(store, config, settings)
        return summary
    finally:
        store.close()


def structure_top_candidates(store: Store, config: CampaignConfig, settings: Settings) -> dict[str, Any]:
    """Structure stage for the campaign's top acquired formulas: EMD template substitution, relaxation and
    E_form/E_hull verdicts by the configured judge into ``structures`` and CIFs under ``runs/<campaign>/cif``."""
    from flows.pipelines.structures import structures_flow

    formulas = store.top_acquired(config.name, config.structures.top_k, config.property)
    if not formulas:
        return {"formulas": [], "verdicts": {}}
    cif_dir = settings.output_dir / config.name / "cif"
    result = structures_flow(
        formulas=formulas,
        campaign=config.name,
        k_templates=config.structures.templates_per_formula,
        e_hull_max=config.structures.e_hull_max,
        steps=config.structures.relax_steps,
        judge=config.structures.judge,
        cif_dir=str(cif_dir),
        mongo_uri=None,
        database=settings.database,
    )
    fields = ("formula", "template_id", "e_form", "e_hull", "verdict", "reason", "model")
    result["table"] = [{k: d.get(k) for k in fields} for d in store.structures_of(config.name, formulas)]
    result["cif_dir"] = str(cif_dir)
    return result

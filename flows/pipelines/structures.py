"""Prefect flow ``structures``: template structures for candidate formulas, CHGNet relaxation, stability.

For each formula (given, or the best-labelled formulas a campaign acquired itself) it
proposes trial structures (EMD-nearest templates with the same anonymised formula, substituted; or
pyxtal random structures in the nearest known composition's space group), relaxes each with CHGNet
on a task runner (threads by default, Dask optional), computes E_form and E_hull and upserts one
document per trial into ``structures`` keyed by ``(campaign, formula, template_id)``. Trials that
already have a verdict are skipped on a rerun (``redo=True`` recomputes them). CIFs can be exported
to a folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from alcore.composition import canonical_formula
from alcore.errors import AlflowError, ConfigError, EmptyPoolError
from flows.cif_export import write_cif
from flows.logs import flow_logger
from flows.store import Store
from oracles.defaults import DEFAULT_JUDGE

MODEL_NAME = "chgnet-0.4.2-pretrained"


# ---------------------------------------------------------------------------- per-process singletons
@lru_cache(maxsize=1)
def _library():
    from generators.templates import TemplateLibrary

    return TemplateLibrary.load()


@lru_cache(maxsize=8)
def _checker(e_hull_max: float, fmax: float, steps: int, compute_hull: bool, judge: str = DEFAULT_JUDGE):
    from oracles.stability.judges import make_checker

    return make_checker(judge, _library(), e_hull_max, fmax, steps, compute_hull, threads=1)


def _clean(x: Any) -> Any:
    """NaN/inf -> None, numpy scalars/arrays -> Python (MongoDB documents stay JSON-clean)."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    elif isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def judge_trial(checker, trial):
    """``checker.evaluate(trial)``, or a ``failed`` :class:`~oracles.stability.checker.Verdict` with
    the exception as its reason: the last line of defence, a verdict rather than a crashed flow."""
    from oracles.stability.checker import Verdict

    try:
        return checker.evaluate(trial)
    except Exception as exc:
        return Verdict(trial.formula, trial.template_id, "failed", f"{type(exc).__name__}: {exc}", trial.structure)


def verdict_doc(campaign: str, trial, verdict) -> dict[str, Any]:
    """The ``structures`` document of one trial and its verdict (see module doc for the fields)."""
    s = verdict.structure if verdict.structure is not None else trial.structure
    doc = {
        "campaign": campaign,
        "formula": trial.formula,
        "template_id": trial.template_id,
        "structure": s.as_dict() if s is not None else None,
        "cif": s.to(fmt="cif") if s is not None else None,
        "initial_structure": trial.structure.as_dict() if trial.structure is not None else None,
        "template": {k: trial.template.get(k) for k in ("formula", "source", "id", "emd", "spg", "mpid")},
        "mapping": dict(trial.mapping),
        "energy_per_atom": verdict.energy_per_atom,
        "initial_energy_per_atom": verdict.initial_energy_per_atom,
        "e_form": verdict.e_form,
        "e_hull": verdict.e_hull,
        "verdict": str(verdict.verdict),
        "reason": verdict.reason,
        "relax": {"steps": verdict.steps, "converged": verdict.converged, "seconds": verdict.seconds},
        "extra": verdict.extra,
        "model": getattr(verdict, "model", None) or MODEL_NAME,
    }
    return _clean(doc)


# ---------------------------------------------------------------------------- tasks
@task(name="propose-structures", cache_policy=NO_CACHE)
def propose_task(formulas: list[str], k: int, fallback_trials: int, seed: int, generator: str = "templates") -> list:
    """Trials (generators.templates.Trial) for each formula, in order: ``k`` per formula from the
    structure generator named ``generator`` (:func:`generators.structure_generators.get_structure_generator`)."""
    from generators.structure_generators import get_structure_generator

    options = {"library": _library(), "fallback_trials": fallback_trials} if generator == "templates" else {}
    maker = get_structure_generator(generator, **options)
    out = []
    for f in formulas:
        out.extend(maker.propose(k, seed, formula=f))
    return out


@task(name="relax-and-judge", cache_policy=NO_CACHE)
def relax_task(
    campaign: str, trial, e_hull_max: float, fmax: float, steps: int, compute_hull: bool, judge: str = DEFAULT_JUDGE
) -> dict[str, Any]:
    """Relax one trial with ``judge`` and return its ``structures`` document (never raises for a bad structure)."""
    return verdict_doc(campaign, trial, judge_trial(_checker(e_hull_max, fmax, steps, compute_hull, judge), trial))


@task(name="store-structures", cache_policy=NO_CACHE)
def store_structures_task(docs: list[dict[str, Any]], mongodb_uri: str | None, database: str | None) -> int:
    """Upsert ``structures`` documents (keyed by campaign, formula, template id); returns the count written."""
    store = Store.open(mongodb_uri, database)
    try:
        return store.upsert_structures(docs) if docs else 0
    finally:
        store.close()


# ---------------------------------------------------------------------------- helpers
def export_cifs(
    store: Store,
    campaign: str,
    out_dir: str | Path,
    verdicts: Sequence[str] | None = None,
    include_failed: bool = True,
) -> int:
    """Write the CIF of every ``structures`` doc of a campaign to ``out_dir``; returns the count.

    File names are ``<formula>__<verdict>__<template_id>.cif``, each file headed by its verdict,
    E_form, E_hull and judge (:func:`flows.cif_export.write_cif`). ``verdicts`` restricts to e.g.
    ``["stable"]``; without it, ``include_failed=False`` leaves the failed trials out.
    """
    docs = store.structures_of(campaign, verdicts=verdicts, with_cif=True)
    if not verdicts and not include_failed:
        docs = [d for d in docs if d.get("verdict") != "failed"]
    for d in docs:
        write_cif(d, Path(out_dir))
    return len(docs)


def _open_store(mongo_uri: str | None, database: str) -> Store:
    return Store.open(mongo_uri, database)


# ---------------------------------------------------------------------------- the flow
@flow(name="structures", task_runner=ThreadPoolTaskRunner(max_workers=2), validate_parameters=True)
def structures_flow(
    formulas: list[str] | None = None,
    campaign: str = "adhoc",
    top_k: int = 20,
    k_templates: int = 3,
    fallback_trials: int = 3,
    e_hull_max: float = 0.1,
    fmax: float = 0.1,
    steps: int = 200,
    compute_hull: bool = True,
    judge: str = DEFAULT_JUDGE,
    seed: int = 0,
    redo: bool = False,
    cif_dir: str | None = None,
    mongo_uri: str | None = None,
    database: str = "alflow",
    generator: str = "templates",
) -> dict[str, Any]:
    """Structure, relax and judge formulas; returns ``{formulas, trials, relaxed, skipped, verdicts}``.

    ``formulas`` None takes the ``top_k`` best-labelled formulas the campaign acquired (seeds
    excluded). ``mongo_uri`` None uses the configured store (embedded by default). ``judge``:
    ``chgnet``, ``sevennet``, ``funnel`` or a SevenNet checkpoint (:data:`oracles.stability.judges.JUDGES`).
    ``generator``: the structure generator (``templates``: EMD template substitution, ``k_templates``
    per formula; ``cccgan``: that many Mg-Mn-O GAN samples per cell composition; ``crystalgan``).
    """
    from generators.structure_generators import STRUCTURE_GENERATORS
    from oracles.stability.judges import JUDGES

    if judge not in JUDGES:
        raise ConfigError(f"unknown stability judge {judge!r}; use one of: {', '.join(JUDGES)}")
    if generator not in STRUCTURE_GENERATORS:
        generators = ", ".join(STRUCTURE_GENERATORS)
        raise ConfigError(f"unknown structure generator {generator!r}; use one of: {generators}")
    logger = flow_logger()
    store = _open_store(mongo_uri, database)
    try:
        if formulas is None:
            formulas = store.top_acquired(campaign, top_k)
            if not formulas:
                raise EmptyPoolError(
                    f"campaign {campaign!r} has no candidates; run the campaign first or pass formulas"
                )
        given: dict[str, str] = {}  # canonical -> first spelling (a GAN's cell composition, e.g. Mg2Mn2O6)
        for f in formulas:
            given.setdefault(canonical_formula(f), f)
        canon = list(given)
        trials = propose_task(list(given.values()), k_templates, fallback_trials, seed, generator)
        done = set()
        if not redo:
            done = {(d["formula"], d["template_id"]) for d in store.structures_of(campaign, canon, judged_only=True)}
        todo = [t for t in trials if (t.formula, t.template_id) not in done]
        logger.info(
            "%d formulas -> %d trials; %d already judged, %d to relax",
            len(canon),
            len(trials),
            len(trials) - len(todo),
            len(todo),
        )
        futures = [relax_task.submit(campaign, t, e_hull_max, fmax, steps, compute_hull, judge) for t in todo]
        counts: dict[str, int] = {}
        for fut in as_completed(futures):
            doc = fut.result()
            store.upsert_structures([doc])
            counts[doc["verdict"]] = counts.get(doc["verdict"], 0) + 1
            logger.info("%s %s: %s %s", doc["formula"], doc["template_id"], doc["verdict"], doc["reason"] or "")
        if cif_dir:
            n = export_cifs(store, campaign, cif_dir)
            logger.info("exported %d CIFs to %s", n, cif_dir)
        return {
            "formulas": canon,
            "trials": len(trials),
            "relaxed": len(todo),
            "skipped": len(trials) - len(todo),
            "verdicts": counts,
        }
    finally:
        store.close()


def run_structures(
    formulas: list[str] | None = None,
    runner: str = "thread",
    workers: int = 2,
    dask_address: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run :func:`structures_flow` on a chosen task runner: ``"thread"`` (``workers`` threads) or
    ``"dask"`` (a local cluster of ``workers`` single-threaded processes, or ``dask_address``).
    Extra keyword arguments go to the flow. Returns the flow's summary. An unknown ``judge`` is a
    ConfigError before Prefect starts, and so is an unknown structure ``generator``."""
    from generators.structure_generators import STRUCTURE_GENERATORS
    from oracles.stability.judges import JUDGES

    if kwargs.get("judge", DEFAULT_JUDGE) not in JUDGES:
        raise ConfigError(f"unknown stability judge {kwargs['judge']!r}; use one of: {', '.join(JUDGES)}")
    if kwargs.get("generator", "templates") not in STRUCTURE_GENERATORS:
        generators = ", ".join(STRUCTURE_GENERATORS)
        raise ConfigError(f"unknown structure generator {kwargs['generator']!r}; use one of: {generators}")
    if runner == "thread":
        tr = ThreadPoolTaskRunner(max_workers=workers)
    elif runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # pragma: no cover - prefect-dask is a dependency
            raise ConfigError(f"the dask runner needs prefect-dask: {exc}") from None
        tr = (
            DaskTaskRunner(address=dask_address)
            if dask_address
            else DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
        )
    else:
        raise ConfigError(f"unknown runner {runner!r}; use 'thread' or 'dask'")
    return structures_flow.with_options(task_runner=tr)(formulas=formulas, **kwargs)


__all__ = ["AlflowError", "export_cifs", "run_structures", "structures_flow", "verdict_doc"]

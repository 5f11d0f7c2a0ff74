"""Prefect flow "cccgan": load (or train) the composition-conditioned crystal GAN, generate Mg-Mn-O
structures for a list of cell compositions, evaluate them (validity, novelty, CHGNet E_hull), and
upsert every generated structure into ``structures``.

Documents are keyed ``(campaign, formula, template_id)`` with ``campaign = "cccgan:Mg-Mn-O"``,
``formula`` the reduced formula and ``template_id = "cccgan-<seed>-<cell formula>-<index>"``, so a
rerun with the same seed rewrites the same documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from alcore.paths import WEIGHTS_DIR
from flows.logs import flow_logger
from flows.pipelines.structures import store_structures_task
from generators.cccgan.dataset import load_dataset
from generators.cccgan.evaluate import (
    MIN_DIST,
    Candidate,
    candidate_doc,
    load_references,
    mark_novelty,
    mark_stability,
    summarise,
    training_structures,
    validate,
)
from generators.cccgan.representation import counts_formula, parse_counts, reduced_formula
from generators.cccgan.train import (
    DEFAULT_NAME,
    Generator,
    TrainConfig,
    generate,
    load_generator,
    save_weights,
    train,
)

CAMPAIGN = "cccgan:Mg-Mn-O"
Log = Callable[[str], Any]


def load_or_train(
    name: str = DEFAULT_NAME,
    retrain: bool = False,
    config: TrainConfig | None = None,
    directory: Path | None = None,
    log: Log = print,
) -> tuple[Generator, dict]:
    """Load ``<directory>/<name>.safetensors`` or (if missing or ``retrain``) train and save it.

    Returns ``(generator, metadata)``. Training uses one torch thread.
    """
    directory = Path(directory or WEIGHTS_DIR)
    if not retrain and (directory / f"{name}.safetensors").exists():
        log(f"loading {directory / name}.safetensors")
        return load_generator(name, directory)
    torch.set_num_threads(1)
    cfg = config or TrainConfig()
    ds = load_dataset()
    log(f"training cccgan: {cfg}")
    result = train(ds.images, cfg)
    save_weights(result, ds.sha256, name, directory)
    log(f"saved {directory / name}.safetensors: {result.metrics}")
    return load_generator(name, directory)


def weights_sha(name: str = DEFAULT_NAME, directory: Path | None = None) -> str | None:
    """sha256 of the weights file, or None if absent."""
    p = Path(directory or WEIGHTS_DIR) / f"{name}.safetensors"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


@dataclass(frozen=True)
class Evaluation:
    """How each cell composition is evaluated: ``n`` images generated with noise ``seed``, valid when
    no two atoms are closer than ``min_dist`` Å, and up to ``max_relax`` novel valid candidates relaxed
    by CHGNet within ``steps`` FIRE steps (``max_relax`` 0: no stability, no references needed)."""

    n: int = 50
    seed: int = 0
    max_relax: int = 5
    steps: int = 150
    min_dist: float = MIN_DIST


def evaluate_compositions(
    generator: Generator,
    compositions: Sequence[str | Sequence[int]],
    settings: Evaluation = Evaluation(),
    references: list[dict] | None = None,
    log: Log = print,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Candidate]]]:
    """Generate and evaluate images per cell composition as ``settings`` say (:class:`Evaluation`).

    Returns ``(summary per cell formula, candidates per cell formula)``; each summary also says
    whether the composition (reduced formula) occurs in the training data.
    """
    ds = load_dataset()
    known = training_structures(ds.images)
    max_relax = settings.max_relax
    refs = references if references is not None or max_relax == 0 else load_references()
    summaries: dict[str, dict[str, Any]] = {}
    cands: dict[str, list[Candidate]] = {}
    for comp in compositions:
        counts = parse_counts(comp)
        key = counts_formula(counts)
        images = generate(generator, counts, settings.n, settings.seed)
        cs = validate(images, counts, settings.min_dist)
        mark_novelty(cs, known)
        if max_relax > 0:
            mark_stability(cs, refs or [], max_relax=max_relax, steps=settings.steps)
        summ = summarise(cs)
        summ["reduced_formula"] = reduced_formula(counts)
        summ["in_training"] = reduced_formula(counts) in known
        summaries[key], cands[key] = summ, cs
        log(f"{key}: {summ}")
    return summaries, cands


@task(name="cccgan-model", cache_policy=NO_CACHE)
def _model_task(name: str, retrain: bool, config: dict[str, Any], directory: str | None) -> Generator:
    cfg = TrainConfig(**config)
    g, _ = load_or_train(name, retrain, cfg, Path(directory) if directory else None, log=flow_logger().info)
    return g


@task(name="cccgan-evaluate", cache_policy=NO_CACHE)
def _evaluate_task(
    generator: Generator, compositions: list[str], settings: Evaluation, sha: str | None
) -> tuple[dict, list[dict[str, Any]]]:
    summaries, cands = evaluate_compositions(generator, compositions, settings, log=flow_logger().info)
    docs = []
    for cs in cands.values():
        for c in cs:
            doc = candidate_doc(c, settings.seed)
            doc["campaign"] = CAMPAIGN
            doc["weights_sha256"] = sha
            docs.append(doc)
    return summaries, docs


@flow(name="cccgan")
def cccgan_flow(
    compositions: list[str] | None = None,
    evaluation: Evaluation = Evaluation(),
    weights: str = DEFAULT_NAME,
    weights_dir: str | None = None,
    retrain: bool = False,
    train_config: dict[str, Any] | None = None,
    mongodb_uri: str | None = None,
    database: str | None = None,
) -> dict[str, Any]:
    """Load or train the GAN, generate ``evaluation.n`` structures per cell composition, evaluate
    them as ``evaluation`` says (:class:`Evaluation`) and store them all (invalid ones too, with their
    verdict).

    ``compositions``: cell formulas such as ``"Mg2Mn4O8"`` (default: two in the training data, one
    absent). Returns
    ``{"campaign", "summary": {cell formula: counts}, "written", "template_ids"}``.
    """
    comps = list(compositions or ["Mg2Mn4O8", "Mg4Mn2O8", "Mg2Mn3O7"])
    for c in comps:
        parse_counts(c)  # fail early on a bad formula
    g = _model_task(weights, retrain, train_config or {}, weights_dir)
    sha = weights_sha(weights, Path(weights_dir) if weights_dir else None)
    summaries, docs = _evaluate_task(g, comps, evaluation, sha)
    written = store_structures_task(docs, mongodb_uri, database)
    return {
        "campaign": CAMPAIGN,
        "summary": summaries,
        "written": written,
        "template_ids": [d["template_id"] for d in docs],
    }

"""Prefect flow "crystalgan": load (or train) CrystalGAN, generate ternary hydrides, store the accepted ones.

Accepted structures (H, A and B present; every metal atom's nearest metal neighbour in [d1, d2] Å)
are upserted into the ``structures`` collection keyed by ``(campaign, formula, template_id)`` with
``campaign = "crystalgan:<A>-<B>-H"`` and ``template_id = "crystalgan-<seed>-<index>"``, so a rerun
rewrites the same documents instead of duplicating them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from alcore.paths import WEIGHTS_DIR
from flows.logs import flow_logger
from flows.pipelines.structures import store_structures_task
from generators.crystalgan.compare import PRODUCT_VARIANT, VARIANTS, count_distinct, evaluate
from generators.crystalgan.data import to_poscar
from generators.crystalgan.model import LossWeights
from generators.crystalgan.train import (
    CrystalGANConfig,
    CrystalGANModel,
    generate,
    load_weights,
    save_weights,
    train_crystalgan,
)

Log = Callable[[str], Any]


def default_stem(domain_a: str = "PdH", domain_b: str = "NiH") -> Path:
    """Default weights stem for a pair of domains: ``data/weights/crystalgan_<A>-<B>``."""
    return WEIGHTS_DIR / f"crystalgan_{Path(domain_a).stem}-{Path(domain_b).stem}"


def campaign_name(metal_a: str, metal_b: str) -> str:
    """Store campaign for a CrystalGAN run, e.g. ``"crystalgan:Pd-Ni-H"``."""
    return f"crystalgan:{metal_a}-{metal_b}-H"


def load_or_train(
    stem: str | Path | None = None, retrain: bool = False, cfg: CrystalGANConfig | None = None, log: Log = print
) -> CrystalGANModel:
    """Load ``<stem>.safetensors`` if present (and ``retrain`` is False), else train with ``cfg`` and save.

    Returns the model. Training runs on one torch thread.
    """
    cfg = cfg or CrystalGANConfig()
    stem = Path(stem) if stem is not None else default_stem(cfg.domain_a, cfg.domain_b)
    if not retrain and stem.with_suffix(".safetensors").exists():
        log(f"loading CrystalGAN weights {stem.with_suffix('.safetensors')}")
        return load_weights(stem)
    torch.set_num_threads(1)
    log(f"training CrystalGAN {cfg.domain_a}/{cfg.domain_b}: {cfg.epochs1}+{cfg.epochs2} epochs, seed {cfg.seed}")
    model = train_crystalgan(cfg)
    ev = evaluate(generate(model)[0], model.metal_a, model.metal_b, cfg.d1, cfg.d2, cfg.slots)
    metrics = {k: ev[k] for k in ("n", "decoded", "ternary", "good", "good_distinct")}
    save_weights(model, stem, metrics=metrics)
    log(f"saved {stem.with_suffix('.safetensors')}; good structures on the training transfer set: {metrics}")
    return model


def weights_sha(stem: str | Path) -> str | None:
    """sha256 (hex) of ``<stem>.safetensors`` or None if it does not exist."""
    p = Path(stem).with_suffix(".safetensors")
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def structure_documents(
    model: CrystalGANModel,
    seeds: Sequence[int | None] = (None,),
    accepted_only: bool = True,
    weights_sha256: str | None = None,
) -> list[dict[str, Any]]:
    """Generate with each seed (None = the model's own transfer set) and build ``structures`` documents.

    Each document: campaign, formula (pymatgen reduced formula), template_id, structure (``as_dict``),
    cif, poscar, metrics (the quality report), verdict (``"accepted"``/``"rejected"``), generator info.
    Only accepted ones unless ``accepted_only`` is False; undecodable vectors are always skipped.
    """
    cfg = model.config
    docs: list[dict[str, Any]] = []
    for seed in seeds:
        vecs, ids = generate(model, seed)
        ev = evaluate(vecs, model.metal_a, model.metal_b, cfg.d1, cfg.d2, cfg.slots)
        for tid, s, rep in zip(ids, ev["structures"], ev["reports"], strict=True):
            if s is None or rep is None or (accepted_only and not rep.good):
                continue
            docs.append(
                {
                    "campaign": campaign_name(model.metal_a, model.metal_b),
                    "formula": s.composition.reduced_formula,
                    "template_id": tid,
                    "structure": s.as_dict(),
                    "cif": str(CifWriter(s)),
                    "poscar": to_poscar(s, comment=tid),
                    "metrics": rep.as_dict() | {"n_atoms": len(s), "volume": round(float(s.volume), 4)},
                    "verdict": "accepted" if rep.good else "rejected",
                    "generator": {
                        "name": "crystalgan",
                        "domains": [cfg.domain_a, cfg.domain_b],
                        "seed": cfg.seed if seed is None else seed,
                        "d1": cfg.d1,
                        "d2": cfg.d2,
                        "weights_sha256": weights_sha256,
                    },
                }
            )
    return docs


def add_chgnet_energies(docs: list[dict[str, Any]], log: Log = print) -> list[dict[str, Any]]:
    """Add the CHGNet single-point energy per atom (eV/atom, unrelaxed) to each document's metrics.

    Uses :func:`oracles.stability.checker.single_point` (CHGNet weights ship in its wheel). A structure
    CHGNet cannot evaluate gets ``chgnet_e_per_atom = None``. Returns the same list.
    """
    from pymatgen.core import Structure

    from oracles.stability.checker import get_model, single_point

    model = get_model(threads=1)
    for d in docs:
        try:
            d["metrics"]["chgnet_e_per_atom"] = round(single_point(Structure.from_dict(d["structure"]), model), 4)
        except Exception as exc:  # CHGNet raises many types on odd structures; record and go on
            log(f"CHGNet failed on {d['template_id']}: {type(exc).__name__}")
            d["metrics"]["chgnet_e_per_atom"] = None
    return docs


@task(name="crystalgan-model", cache_policy=NO_CACHE)
def _model_task(stem: str, retrain: bool, cfg: dict[str, Any]) -> CrystalGANModel:
    return load_or_train(stem, retrain, CrystalGANConfig.from_dict(cfg), log=flow_logger().info)


@task(name="crystalgan-generate", cache_policy=NO_CACHE)
def _generate_task(
    model: CrystalGANModel, seeds: list[int | None], sha: str | None, chgnet: bool = False
) -> list[dict[str, Any]]:
    docs = structure_documents(model, seeds, accepted_only=True, weights_sha256=sha)
    if chgnet and docs:
        add_chgnet_energies(docs, flow_logger().info)
    flow_logger().info(f"{len(docs)} accepted structures from seeds {seeds}")
    return docs


def product_config(**overrides: Any) -> CrystalGANConfig:
    """The product's CrystalGAN settings: the paper's, plus the step-2 remedy ``PRODUCT_VARIANT``
    (λ_div and snapshot selection); ``overrides`` are CrystalGANConfig fields."""
    remedy = VARIANTS[PRODUCT_VARIANT]
    return CrystalGANConfig(
        **{
            "weights": LossWeights(div=remedy["div"]),
            "noise_dim": remedy["noise_dim"],
            "select_every": remedy["select_every"],
            **overrides,
        }
    )


@flow(name="crystalgan")
def crystalgan_flow(
    cfg: CrystalGANConfig | None = None,
    weights: str | None = None,
    retrain: bool = False,
    seeds: list[int] | None = None,
    chgnet: bool = False,
    mongodb_uri: str | None = None,
    database: str | None = None,
) -> dict[str, Any]:
    """Load or train CrystalGAN on two binary domains, generate, and upsert accepted structures.

    ``cfg``: the training settings and domains (``cfg.domain_a``/``cfg.domain_b``: ``PdH``/``NiH``
    (bundled), a ``.mat`` file or a folder of binary POSCARs; ``cfg.d1``/``cfg.d2``: the accepted
    metal-metal distances; ``cfg.weights.div`` / ``cfg.noise_dim``: the step-2 diversity remedies used
    when training, docs/crystalgan.md, 0 / 0 being the paper's loss; ``cfg.select_every``: step-2
    snapshot selection). Default: the paper's settings on PdH/NiH with the product's remedy
    (:data:`~generators.crystalgan.compare.PRODUCT_VARIANT`: λ_div 3 and snapshot selection every 50 epochs).
    ``weights``: stem (default ``data/weights/crystalgan_<A>-<B>``); trained and saved there if
    missing or ``retrain``. ``seeds``: feature-transfer pairing seeds for generation (default: the
    model's own transfer set). ``chgnet``: add CHGNet single-point energies per atom to the metrics.
    ``mongodb_uri``/``database``: explicit store (default: configured one).
    Returns ``{"campaign", "generated", "accepted", "distinct_accepted", "written", "template_ids"}``
    (``distinct_accepted``: accepted structures counted once per StructureMatcher group).
    """
    cfg = cfg or product_config()
    stem = str(weights) if weights else str(default_stem(cfg.domain_a, cfg.domain_b))
    model = _model_task(stem, retrain, cfg.to_dict())
    seed_list: list[int | None] = list(seeds) if seeds else [None]
    docs = _generate_task(model, seed_list, weights_sha(stem), chgnet)
    written = store_structures_task(docs, mongodb_uri, database)
    n_gen = 2 * min(len(model.x_ah), len(model.y_bh)) * len(seed_list)
    return {
        "campaign": campaign_name(model.metal_a, model.metal_b),
        "generated": n_gen,
        "accepted": len(docs),
        "distinct_accepted": count_distinct([Structure.from_dict(d["structure"]) for d in docs]),
        "written": written,
        "template_ids": [d["template_id"] for d in docs],
    }

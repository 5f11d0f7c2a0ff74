"""Prefect flow "train-complm": (re)train the composition language model, resumably.

Training is checkpointed (:func:`generators.complm.train_lm`), so a scheduled or repeated run with a
time budget continues one training (``steps`` is the total). The best checkpoint under the
validation criterion fixed before training (valid-and-novel-and-unique share of unconditioned
samples drawn with the ``complm-distinct`` sampler, ``TrainConfig.eval_sampler``) is written to
``out`` (a weights stem, default ``data/weights/complm``) and, unless ``store_weights`` is off, into
MongoDB GridFS (kind ``complm``) through :meth:`flows.store.Store.save_model`.
A markdown artifact shows the validation history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, get_run_logger, task

from alcore.paths import WEIGHTS_DIR
from flows.pipelines.training import TrainingTarget, store_trained
from generators.complm import COND_MODEL_NAME, CONDITIONED_RECIPE, MODEL_NAME, TrainConfig, load_lm, train_complm


def _markdown(meta: dict[str, Any], out: Path) -> str:
    rows = [
        f"| {e['step']} | {e['val_loss']:.3f} | {e.get('vnu', float('nan')):.1%} | "
        f"{e.get('valid_of_distinct_novel', float('nan')):.1%} |"
        for e in meta["evals"]
    ]
    return "\n".join(
        [
            f"# Composition LM training ({out})",
            "",
            f"{meta['n_train']:,} training formulas, {meta['steps']} steps, {meta['seconds']:.0f} s, best step "
            f"{meta['best']['step']}",
            "",
            "| step | val loss | VNU share | valid (distinct novel) |",
            "|---|---|---|---|",
            *rows,
        ]
    )


@task(name="train-complm-model")
def _train_task(out: str, cfg: TrainConfig, checkpoint: str | None, threads: int) -> dict[str, Any]:
    logger = get_run_logger()
    torch.set_num_threads(threads)
    return train_complm(out, cfg, checkpoint=checkpoint, log_fn=logger.info)


@flow(name="train-complm", log_prints=True)
def train_complm_flow(
    minutes: float = 45.0,
    steps: int = 3000,
    seed: int | None = None,
    target: TrainingTarget = TrainingTarget(),
    conditioned: bool = False,
) -> dict[str, Any]:
    """Train (or continue training) the composition LM for ``minutes`` of wall-clock time.

    ``steps`` is the total target across resumed runs (the learning-rate schedule spans it);
    ``conditioned`` trains the conditioned-sampling recipe (:data:`CONDITIONED_RECIPE`, default
    stem ``data/weights/complm_cond``; ``seed`` None keeps the recipe's seed, 0 for the plain one);
    ``target.out`` the weights stem (default ``data/weights/complm``); ``target.checkpoint`` defaults
    to ``<out folder>/checkpoints/<stem name>.pt``. With ``target.store_weights`` the model also goes
    to MongoDB. Returns the training metadata plus ``model_sha256`` when stored.
    """
    from prefect.artifacts import create_markdown_artifact

    recipe = dict(CONDITIONED_RECIPE) if conditioned else {"seed": 0}
    if seed is not None:
        recipe["seed"] = seed
    stem = Path(target.out) if target.out else WEIGHTS_DIR / (COND_MODEL_NAME if conditioned else MODEL_NAME)
    cfg = TrainConfig(steps=steps, time_budget_s=minutes * 60, **recipe)
    meta = _train_task(str(stem), cfg, target.checkpoint, target.threads)
    if target.store_weights:
        model, model_meta = load_lm(stem)
        meta["model_sha256"] = store_trained(target, {"complm": (model, {**model_meta, "weights": str(stem)})})[
            "complm"
        ]
    create_markdown_artifact(_markdown(meta, stem), key="complm-training", description="Composition LM training")
    print(f"complm weights in {stem}: best step {meta['best']['step']}, VNU {meta['best'].get('vnu', 0):.1%}")
    return meta

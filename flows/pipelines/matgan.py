"""Prefect flow "train-matgan": (re)train MatGAN and its reachability autoencoder, resumably.

The WGAN-GP part is checkpointed (:func:`generators.matgan.train_gan`), so a scheduled or repeated
run with a time budget continues one long training instead of starting over. The weights go to a
folder (``data/weights`` for generator ``matgan``, ``data/weights/matgan_valid`` for
``matgan-valid``) and, unless ``store_weights`` is off, into MongoDB GridFS (kinds
``matgan_generator`` / ``matgan_autoencoder``, metadata = the training metadata) through
:meth:`flows.store.Store.save_model`. A markdown artifact shows the generation metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, task

from alcore.paths import WEIGHTS_DIR
from flows.logs import flow_logger
from flows.pipelines.training import TrainingTarget, store_trained
from generators.matgan import (
    AUTOENCODER_NAME,
    GENERATOR_NAME,
    AEConfig,
    GANConfig,
    load_trained,
    train_matgan,
)


def _metrics_markdown(meta: dict[str, Any], out: Path) -> str:
    m = meta["metrics"]
    gh = meta["gan_history"]
    rows = [
        ("training formulas", f"{meta['n_formulas']:,}"),
        ("GAN epochs (total) / runs", f"{gh['epochs']:.1f} / {gh['runs']}"),
        ("GAN seconds (total)", f"{gh['seconds']:.0f}"),
        (f"validity (SMACT, {m['gen_samples']:,} samples)", f"{m['gen_validity']:.1%}"),
        ("validity, >= 2 elements", f"{m['gen_validity_multi_element']:.1%}"),
        ("novelty (samples)", f"{m['gen_novelty_samples']:.1%}"),
        ("uniqueness", f"{m['gen_uniqueness']:.1%}"),
        ("AE exact reconstruction (held out)", f"{m['ae_exact_reconstruction_heldout']:.1%}"),
    ]
    return "\n".join(
        [f"# MatGAN training ({out})", "", "| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


@task(name="train-matgan-models")
def _train_task(
    out: str, gan: GANConfig, ae: AEConfig, valid_only: bool, checkpoint: str | None, threads: int
) -> dict[str, Any]:
    logger = flow_logger()
    torch.set_num_threads(threads)
    return train_matgan(out, gan, ae, log_fn=logger.info, valid_only=valid_only, checkpoint=checkpoint)


@flow(name="train-matgan", log_prints=True)
def train_matgan_flow(
    gan: GANConfig = GANConfig(epochs=200, time_budget_s=8 * 60.0),
    ae_minutes: float = 4.0,
    valid_only: bool = False,
    target: TrainingTarget = TrainingTarget(),
) -> dict[str, Any]:
    """Train (or continue training) MatGAN with ``gan`` and its autoencoder for ``ae_minutes``.

    ``gan.epochs`` is the total GAN epoch target across resumed runs and ``gan.time_budget_s`` this
    run's budget; ``gan.ch`` is the channel width of generator, critic and autoencoder and ``gan.seed``
    seeds both trainings; ``gan.lr`` may be lowered by a resumed run (fine-tuning). ``valid_only``
    trains on the SMACT-valid MP formulas only. Weights go to the folder ``target.out`` (default
    ``data/weights``); ``target.checkpoint`` defaults to ``<out>/checkpoints/matgan_gan.pt``. With
    ``target.store_weights`` both models are also stored in MongoDB. Returns the training metadata
    plus ``model_sha256`` (kind -> GridFS sha256) when stored.
    """
    from prefect.artifacts import create_markdown_artifact

    wdir = Path(target.out) if target.out else WEIGHTS_DIR
    ae = AEConfig(epochs=10_000, seed=gan.seed, ch=gan.ch, time_budget_s=ae_minutes * 60)
    meta = _train_task(str(wdir), gan, ae, valid_only, target.checkpoint, target.threads)
    if target.store_weights:
        models = {}
        for name in (GENERATOR_NAME, AUTOENCODER_NAME):
            module, module_meta = load_trained(wdir, name)
            models[name] = (module, {**module_meta, "weights_dir": str(wdir)})
        meta["model_sha256"] = store_trained(target, models)
    create_markdown_artifact(
        _metrics_markdown(meta, wdir), key="matgan-training", description="MatGAN generation metrics after training"
    )
    flow_logger().info(
        f"MatGAN weights in {wdir}: validity {meta['metrics']['gen_validity']:.1%}, "
        f"novelty {meta['metrics']['gen_novelty_samples']:.1%}"
    )
    return meta

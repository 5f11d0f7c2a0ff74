"""Prefect flow "train-oracle": retrain a named oracle recipe and write its weights.

Weights go to ``data/weights/<stem>.safetensors`` + ``<stem>.json`` (default) or, with a store, to
GridFS via :meth:`flows.store.Store.save_model` (kind ``"oracle"``, metadata includes the oracle name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from prefect import flow, task

from alcore.paths import WEIGHTS_DIR
from flows.logs import flow_logger
from oracles.training import RECIPES, train_recipe


def train_and_save(
    name: str,
    epochs: int | None = None,
    seed: int | None = None,
    out_dir: str | Path | None = WEIGHTS_DIR,
    store: Any = None,
    threads: int = 1,
    max_train: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train recipe ``name`` and save it; plain function (no Prefect) used by the flow and scripts.

    Writes ``<out_dir>/<stem>.{safetensors,json}`` when ``out_dir`` is given and stores the weights
    with ``store.save_model("oracle", ...)`` when ``store`` is given. Returns the metadata dict
    (plus ``weights`` paths and/or ``sha256``).
    """
    torch.set_num_threads(threads)
    recipe = RECIPES.get(name)
    oracle, meta = train_recipe(
        name,
        epochs=epochs,
        seed=seed,
        max_train=max_train,
        progress=lambda e, loss: log(f"[{name}] epoch {e + 1}: train loss {loss:.4f} (std units)"),
    )
    meta["config"] = oracle.metadata()["config"]
    if out_dir is not None and recipe is not None:
        st, js = save_recipe_weights(name, oracle, {"training": meta}, out_dir)
        meta["weights"] = [str(st), str(js)]
    if store is not None:
        meta["sha256"] = store.save_model("oracle", oracle.state_dict(), {**oracle.metadata(), "training": meta})
    log(f"[{name}] test metrics: {json.dumps(meta['test_metrics'])}")
    return meta


def save_recipe_weights(name: str, oracle: Any, metadata: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write recipe ``name``'s trained oracle as ``<out_dir>/<recipe stem>.{safetensors,json}`` in the
    recipe's weights dtype, with ``metadata`` added to the JSON; returns both paths."""
    recipe = RECIPES[name]
    dtype = getattr(torch, recipe.weights_dtype) if recipe.weights_dtype else None
    return oracle.save(Path(out_dir) / recipe.stem, extra_metadata=metadata, weights_dtype=dtype)


@task(name="train-oracle-recipe")
def _train_task(
    name: str, epochs: int | None, seed: int | None, out_dir: str | None, threads: int, max_train: int | None
) -> dict[str, Any]:
    logger = flow_logger()
    return train_and_save(
        name, epochs=epochs, seed=seed, out_dir=out_dir, threads=threads, max_train=max_train, log=logger.info
    )


@flow(name="train-oracle")
def train_oracle_flow(
    name: str = "resnet-agd",
    epochs: int | None = None,
    seed: int | None = None,
    out_dir: str | None = str(WEIGHTS_DIR),
    threads: int = 1,
    max_train: int | None = None,
) -> dict[str, Any]:
    """Retrain oracle recipe ``name`` (``resnet-agd``, ``resnet-mp-gap``, ``eform``, ``resnet-mp-union``)
    and write weights (with the sigma calibration fitted on half of the held-out rows).

    ``max_train`` limits the training rows (quick runs). Returns the training metadata
    (data sha256, split, test metrics, params, wall time, paths).
    """
    return _train_task(name, epochs, seed, out_dir, threads, max_train)

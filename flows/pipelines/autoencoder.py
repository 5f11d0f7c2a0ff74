"""Train the composition autoencoder on the committed MP formulas and write its weights + metadata.

The committed ``data/weights/autoencoder_agd87.safetensors`` came from this flow; the main job
loads it and never retrains. ``alflow autoencoder train`` (or the ``train-autoencoder`` flow)
retrains on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import flow

from alcore.autoencoder import latent_box, save_weights, train_autoencoder
from alcore.composition import CompositionEncoder
from alcore.errors import AlflowError
from alcore.paths import WEIGHTS_DIR
from flows.datasets import autoencoder_corpus, file_sha256, split_indices
from flows.logs import flow_logger


def train_and_save_autoencoder(
    out: Path,
    element_list: str = "agd87",
    epochs: int = 8,
    max_train: int | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
    corpus: list[str] | None = None,
    min_val_exact: float = 0.0,
    restarts: int = 0,
) -> dict[str, Any]:
    """Train on the MP corpus (or ``corpus``), evaluate on a held-out split, save to ``out``.

    ``out`` is a ``.safetensors`` path; metadata (JSON beside it) holds the latent box used by the
    GP, the held-out exact reconstruction rate, the corpus size and hash of the source data, the
    training parameters and every attempt. A run whose held-out exact reconstruction rate stays
    below ``min_val_exact`` (a fraction; e.g. stuck on a loss plateau) is trained again from a new
    initialisation (seed ``seed + 1000 * attempt``, same split) up to ``restarts`` times; if none
    reaches it, an :class:`AlflowError` says so and nothing is saved.
    Returns the metadata.
    """
    torch.set_num_threads(threads)
    encoder = CompositionEncoder(element_list)
    formulas = corpus if corpus is not None else autoencoder_corpus(encoder)
    x = encoder.encode_batch(formulas).matrices
    train_idx, val_idx = split_indices(len(x), val_fraction, seed)
    if max_train is not None:
        train_idx = train_idx[:max_train]
    attempts = []
    for attempt in range(restarts + 1):
        init_seed = seed + 1000 * attempt
        result = train_autoencoder(x[train_idx], x[val_idx], encoder, epochs=epochs, seed=init_seed, progress=progress)
        attempts.append(
            {"seed": init_seed, "val_exact": result.metrics["val_exact"], "train_loss": result.metrics["train_loss"]}
        )
        if result.metrics["val_exact"] >= min_val_exact:
            break
        flow_logger().warning(
            "autoencoder attempt %d (seed %d): held-out exact reconstruction %.1f %% < %.1f %%",
            attempt + 1,
            init_seed,
            100 * result.metrics["val_exact"],
            100 * min_val_exact,
        )
    else:
        raise AlflowError(
            f"the autoencoder reconstructs at most {100 * max(a['val_exact'] for a in attempts):.1f} % of its "
            f"held-out formulas in {len(attempts)} attempts (floor {100 * min_val_exact:.1f} %); "
            "train more epochs, allow more restarts or lower the floor"
        )
    box = latent_box(result.model, x[train_idx], margin=0.0)
    meta = {
        "kind": "autoencoder",
        "element_list": element_list,
        "metrics": {k: v for k, v in result.metrics.items() if k != "loss_history"},
        "attempts": attempts,
        "loss_history": result.metrics["loss_history"],
        "box": box.tolist(),
        "corpus_size": len(formulas),
        "split": {
            "val_fraction": val_fraction,
            "seed": seed,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
        },
        "data_sha256": {"known/mp_formulas_spacegroups.csv": file_sha256("known", "mp_formulas_spacegroups.csv")}
        if corpus is None
        else {"corpus": "given"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    meta["sha256"] = save_weights(result.model, out, meta)
    return meta


def random_latent_validity(model_path: Path, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Decode ``n`` uniform random points of the latent box; fractions that decode to any formula
    and to a SMACT-valid one (the "fraction of decodes of random latent points that are valid")."""
    from alcore.autoencoder import decode_latents, load_weights
    from alcore.validity import check_validity

    model, meta = load_weights(model_path)
    encoder = CompositionEncoder(meta["element_list"])
    box = np.asarray(meta["box"])
    z = np.random.default_rng(seed).uniform(box[0], box[1], size=(n, box.shape[1]))
    formulas = decode_latents(model, encoder, z)
    decoded = [f for f in formulas if f]
    valid = [f for f in decoded if check_validity(f).valid]
    return {"n": n, "decoded": len(decoded) / n, "valid": len(valid) / n, "unique_valid": len(set(valid)) / n}


@flow(name="train-autoencoder")
def train_autoencoder_flow(
    epochs: int = 8, element_list: str = "agd87", seed: int = 0, out: str | None = None
) -> dict[str, Any]:
    """Prefect flow: retrain the autoencoder and write weights (default: the committed file)."""
    path = Path(out) if out else WEIGHTS_DIR / f"autoencoder_{element_list}.safetensors"
    meta = train_and_save_autoencoder(path, element_list=element_list, epochs=epochs, seed=seed)
    flow_logger().info(f"held-out exact reconstruction {meta['metrics']['val_exact']:.3%}; weights {path}")
    return meta

"""Random composition generator: uniform points in the composition autoencoder's latent box, decoded.

This is the search space the continuous-mode loop optimises over, sampled without a surrogate:
the "random search" counterpart of Bayesian optimisation, and a second pool source beside MatGAN
(registered as ``"latent-random"`` in :mod:`generators.base`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alcore.autoencoder import CompositionAutoencoder, decode_latents, load_weights
from alcore.composition import CompositionEncoder
from alcore.paths import WEIGHTS_DIR

#: Latent points decoded per forward pass (bounds peak memory: chunk x 87 x 9 floats).
DECODE_CHUNK = 8192


class LatentSampler:
    """Decodes uniform random points of the latent box ``box`` (2, d) with ``model``.

    ``sample(n, seed)`` returns the canonical formulas of the non-empty decodes among ``n`` draws
    (duplicates kept, so the list can be shorter than ``n``); the same ``(n, seed)`` gives the same list.
    """

    name = "latent-random"

    def __init__(self, model: CompositionAutoencoder, encoder: CompositionEncoder, box: np.ndarray) -> None:
        box = np.asarray(box, dtype=np.float64)
        if box.ndim != 2 or box.shape[0] != 2 or not np.all(box[1] >= box[0]):
            raise ValueError(f"latent box must be (2, d) with upper >= lower bounds, got shape {box.shape}")
        self.model = model.eval()
        self.encoder = encoder
        self.box = box

    @classmethod
    def pretrained(cls, autoencoder: str = "autoencoder_agd87", weights_dir: str | Path | None = None) -> LatentSampler:
        """The committed autoencoder ``data/weights/<autoencoder>.safetensors`` and the latent box stored
        with it (per-dimension min/max of the encoded training formulas)."""
        path = Path(weights_dir or WEIGHTS_DIR) / f"{autoencoder}.safetensors"
        model, meta = load_weights(path)
        return cls(model, CompositionEncoder(meta["element_list"]), np.asarray(meta["box"]))

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> list[str]:
        """``n`` uniform draws in the box from ``seed``; returns the canonical formulas decoded (<= n)."""
        rng = np.random.default_rng(int(seed))
        lo, hi = self.box
        out: list[str] = []
        for start in range(0, int(n), DECODE_CHUNK):
            m = min(DECODE_CHUNK, int(n) - start)
            z = lo + (hi - lo) * rng.random((m, lo.size))
            out.extend(f for f in decode_latents(self.model, self.encoder, z) if f)
        return out

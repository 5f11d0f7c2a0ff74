"""The AGD composition autoencoder: one-hot element x count matrix <-> 128-d latent vector.

Architecture (AGD paper): 2 convolutional layers + 1 fully connected layer to the latent; 1 fully
connected layer + 2 transposed convolutions back; ReLU activations; Adam (lr 1e-3); cross-entropy.

One deliberate change, measured: the paper's sigmoid output with binary cross-entropy over all
87 x 8 cells collapses to "all zeros" (0 % exact reconstructions after 3 epochs on 20k formulas at
the same budget) because only ~3 of 696 cells are 1. Here the decoder emits, for every element row,
logits over {absent, 1, ..., 8} and the loss is the categorical cross-entropy per row; ``decode``
returns the softmax probabilities of the counts 1..8, so decoding (argmax, present if above 0.5 or
above "absent") works on the same matrix shape as the input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alcore import weights as weights_io
from alcore.composition import CompositionEncoder
from alcore.errors import CorruptModelError


@dataclass(frozen=True)
class AEConfig:
    """Shape and width of the autoencoder: ``n_elements`` x ``max_count`` input, ``latent_dim`` code."""

    n_elements: int = 87
    max_count: int = 8
    latent_dim: int = 128
    channels: tuple[int, int] = (8, 16)


class CompositionAutoencoder(nn.Module):
    """Conv autoencoder over ``(N, n_elements, max_count)`` one-hot matrices.

    ``encode`` maps matrices to ``(N, latent_dim)``; ``decode`` maps latents to probabilities of
    the same shape as the input (sigmoid output).
    """

    def __init__(self, config: AEConfig = AEConfig()) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.h = math.ceil(config.n_elements / 2)
        self.w = math.ceil(config.max_count / 2)
        self.encoder_conv = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=(5, 3), padding=(2, 1)),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=(5, 3), stride=2, padding=(2, 1)),
            nn.ReLU(),
        )
        self.encoder_fc = nn.Linear(c2 * self.h * self.w, config.latent_dim)
        self.decoder_fc = nn.Linear(config.latent_dim, c2 * self.h * self.w)
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, kernel_size=(4, 4), stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, 2, kernel_size=(5, 3), padding=(2, 1)),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, E, C)`` one-hot matrices -> ``(N, latent_dim)`` latent vectors."""
        z = self.encoder_conv(x.unsqueeze(1))
        return self.encoder_fc(z.flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` -> ``(N, E, C + 1)`` logits over {absent, 1..C} per element row."""
        c2 = self.config.channels[1]
        h = torch.relu(self.decoder_fc(z)).view(-1, c2, self.h, self.w)
        out = self.decoder_conv(h)[:, :, : self.config.n_elements, : self.config.max_count]
        absent = out[:, 1].mean(dim=-1, keepdim=True)
        return torch.cat([absent, out[:, 0]], dim=-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` -> ``(N, E, C)`` probabilities of each count (softmax, absent dropped)."""
        return torch.softmax(self.decode_logits(z), dim=-1)[..., 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits ``(N, E, C + 1)`` of ``x``."""
        return self.decode_logits(self.encode(x))


def row_targets(x: torch.Tensor) -> torch.Tensor:
    """Class index per element row of one-hot matrices ``(N, E, C)``: 0 = absent, k = count k."""
    return torch.where(x.sum(-1) > 0, x.argmax(-1) + 1, torch.zeros_like(x[..., 0], dtype=torch.long))


@dataclass
class TrainResult:
    """A trained autoencoder and its metrics (fractions in [0, 1], seconds)."""

    model: CompositionAutoencoder
    metrics: dict[str, Any]


def exact_match_rate(
    model: CompositionAutoencoder, encoder: CompositionEncoder, x: np.ndarray, batch: int = 4096
) -> float:
    """Fraction of matrices ``x`` (N, E, C) whose decoded counts equal the input counts exactly."""
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i : i + batch])
            probs = model.decode(model.encode(xb)).numpy()
            hits += int((encoder.decode_counts(probs) == encoder.decode_counts(x[i : i + batch])).all(axis=1).sum())
    return hits / max(len(x), 1)


def train_autoencoder(
    x_train: np.ndarray,
    x_val: np.ndarray,
    encoder: CompositionEncoder,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    latent_dim: int = 128,
    progress: bool = False,
    on_epoch: Callable[[int, float, CompositionAutoencoder], None] | None = None,
) -> TrainResult:
    """Train the autoencoder on one-hot matrices ``x_train`` (N, E, C); evaluate on ``x_val``.

    Returns the model and metrics: ``val_exact`` (exact-formula reconstruction rate on ``x_val``),
    ``train_exact``, final losses, epochs and wall time. Deterministic for a fixed ``seed``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_el, n_c = encoder.shape
    model = CompositionAutoencoder(AEConfig(n_el, n_c, latent_dim))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr / 20)
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x_train)
    t0 = time.perf_counter()
    history = []
    iterator = range(epochs)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="autoencoder epochs")
    for _epoch in iterator:
        model.train()
        order = torch.from_numpy(rng.permutation(len(xt)))
        total = 0.0
        for i in range(0, len(order), batch_size):
            xb = xt[order[i : i + batch_size]]
            logits = model(xb)
            loss = loss_fn(logits.reshape(-1, n_c + 1), row_targets(xb).reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        sched.step()
        history.append(total / len(xt))
        if on_epoch is not None:
            on_epoch(_epoch, history[-1], model)
    wall = time.perf_counter() - t0
    metrics = {
        "train_loss": history[-1] if history else None,
        "loss_history": history,
        "val_exact": exact_match_rate(model, encoder, x_val),
        "train_exact": exact_match_rate(model, encoder, x_train[: min(len(x_train), 20_000)]),
        "n_train": int(len(x_train)),
        "n_val": int(len(x_val)),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "wall_s": wall,
        "torch_threads": torch.get_num_threads(),
    }
    model.eval()
    return TrainResult(model, metrics)


def latent_box(model: CompositionAutoencoder, x: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Bounds of the encoded data: ``(2, latent_dim)`` array of per-dimension min and max.

    ``margin`` widens each side by that fraction of the range.
    """
    with torch.no_grad():
        z = model.encode(torch.from_numpy(x)).numpy()
    lo, hi = z.min(axis=0), z.max(axis=0)
    span = hi - lo
    return np.stack([lo - margin * span, hi + margin * span]).astype(np.float64)


def save_weights(model: CompositionAutoencoder, path: Path, metadata: dict[str, Any]) -> str:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` metadata; returns the sha256."""
    meta = {**metadata, "config": asdict(model.config)}
    return weights_io.save_weights(path, model.state_dict(), meta, sha_key="sha256")


def model_from_state(state: dict[str, torch.Tensor], config: dict[str, Any] | AEConfig) -> CompositionAutoencoder:
    """Build an autoencoder from a state dict and its config; raises CorruptModelError on mismatch."""
    cfg = (
        config
        if isinstance(config, AEConfig)
        else AEConfig(
            n_elements=config["n_elements"],
            max_count=config["max_count"],
            latent_dim=config["latent_dim"],
            channels=tuple(config["channels"]),
        )
    )
    model = CompositionAutoencoder(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptModelError(f"autoencoder weights do not fit config {cfg}: {exc}") from None
    model.eval()
    return model


def load_weights(path: Path) -> tuple[CompositionAutoencoder, dict[str, Any]]:
    """Load committed weights (safetensors, no code execution) and metadata; verifies the sha256."""
    tensors, meta = weights_io.load_weights(path, "train it with `alflow autoencoder train` or restore it from git")
    return model_from_state(tensors, meta["config"]), meta


def encode_formulas(model: CompositionAutoencoder, encoder: CompositionEncoder, formulas: Sequence[str]) -> np.ndarray:
    """Latent vectors ``(N, latent_dim)`` float64 for formulas (raises on unrepresentable ones)."""
    x = encoder.encode_batch(list(formulas)).matrices
    with torch.no_grad():
        return model.encode(torch.from_numpy(x)).double().numpy()


def decode_latents(model: CompositionAutoencoder, encoder: CompositionEncoder, z: np.ndarray) -> list[str | None]:
    """Canonical formulas decoded from latent vectors ``(N, latent_dim)`` (None for an empty decode)."""
    with torch.no_grad():
        probs = model.decode(torch.as_tensor(np.asarray(z), dtype=torch.float32)).numpy()
    return encoder.decode(probs)

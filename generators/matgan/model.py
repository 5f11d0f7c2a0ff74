"""MatGAN networks (generator, critic, autoencoder), their losses, and saving/loading their weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alcore import weights as weights_io
from generators.matgan.data import AUTOENCODER_NAME, GENERATOR_NAME, LATENT_DIM, OUTPUT_BIAS_INIT


# ---------------------------------------------------------------------------------------------- models
class Generator(nn.Module):
    """Latent ``(B, latent_dim)`` -> probabilities ``(B, 85, 8)`` in [0, 1] (transposed convs + sigmoid)."""

    def __init__(self, latent_dim: int = LATENT_DIM, ch: int = 8) -> None:
        super().__init__()
        self.latent_dim, self.ch = latent_dim, ch
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * ch * 21 * 2), nn.BatchNorm1d(2 * ch * 21 * 2), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, kernel_size=(5, 4), stride=2, padding=1),  # (43, 4)
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.ConvTranspose2d(ch, ch // 2, kernel_size=3, stride=1, padding=1),  # (43, 4)
            nn.BatchNorm2d(ch // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ch // 2, 1, kernel_size=(3, 4), stride=2, padding=1),  # (85, 8)
            nn.Sigmoid(),
        )
        # sparse prior: a formula fills ~3 of the 680 cells, so start every cell near sigmoid(-4) = 0.02
        # (otherwise early training is spent pushing 677 cells below the 0.5 decode threshold)
        nn.init.constant_(self.deconv[-2].bias, OUTPUT_BIAS_INIT)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (B, latent_dim) -> (B, 85, 8) cell probabilities."""
        h = self.fc(z).view(-1, 2 * self.ch, 21, 2)
        return self.deconv(h).squeeze(1)


class _ConvTrunk(nn.Module):
    """(B, 85, 8) -> (B, 2*ch*21*2) features: two strided convolutions with LeakyReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, kernel_size=4, stride=2, padding=1),  # (42, 4)
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, kernel_size=4, stride=2, padding=1),  # (21, 2)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.out_dim = 2 * ch * 21 * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))


class Critic(nn.Module):
    """WGAN critic: ``(B, 85, 8)`` -> ``(B,)`` unbounded scores (no normalisation layers)."""

    def __init__(self, ch: int = 8) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(ch)
        self.head = nn.Sequential(nn.Linear(self.trunk.out_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of shape (B,)."""
        return self.head(self.trunk(x)).squeeze(-1)


class Autoencoder(nn.Module):
    """Conv encoder -> 128-d code -> :class:`Generator`-architecture decoder; ``forward`` returns (B, 85, 8)."""

    def __init__(self, latent_dim: int = LATENT_DIM, ch: int = 8) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(ch)
        self.to_code = nn.Linear(self.trunk.out_dim, latent_dim)
        self.decoder = Generator(latent_dim, ch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 85, 8) -> (B, latent_dim) codes."""
        return self.to_code(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction probabilities (B, 85, 8)."""
        return self.decoder(self.encode(x))


def neg_dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Negative Dice coefficient, mean over the batch: ``-2 A.B / (sum A + sum B)`` (scalar tensor)."""
    dims = tuple(range(1, pred.dim()))
    inter = (pred * target).sum(dims)
    return -(2 * inter / (pred.sum(dims) + target.sum(dims) + eps)).mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad critic(x_hat)|| - 1)^2]`` on random interpolates (scalar tensor)."""
    alpha = torch.rand(real.shape[0], 1, 1, generator=gen)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


# ---------------------------------------------------------------------------------------------- weights
def save_module(weights_dir: str | Path, name: str, module: nn.Module, metadata: dict[str, Any]) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (metadata + sha256 of the weights file); returns the
    weights path."""
    weights_io.save_weights(Path(weights_dir) / name, module.state_dict(), metadata)
    return weights_io.weights_paths(Path(weights_dir) / name)[0]


def load_module(
    weights_dir: str | Path, name: str, build: Callable[[dict[str, Any]], nn.Module]
) -> tuple[nn.Module, dict]:
    """Load ``<name>.safetensors`` into ``build(metadata)``; returns ``(module in eval mode, metadata)``.

    Raises :class:`CorruptModelError` for missing files, a sha256 mismatch or a shape mismatch.
    """
    stem = Path(weights_dir) / name
    tensors, meta = weights_io.load_weights(stem, "train it with `alflow pools train-matgan`")
    return weights_io.load_into(build(meta), tensors, stem), meta


def load_trained(weights_dir: str | Path, name: str) -> tuple[nn.Module, dict]:
    """Load the saved ``matgan_generator`` or ``matgan_autoencoder`` (``name``) of ``weights_dir``,
    sized by its metadata; returns ``(module in eval mode, metadata)`` (errors as :func:`load_module`)."""
    cls = {GENERATOR_NAME: Generator, AUTOENCODER_NAME: Autoencoder}[name]
    return load_module(weights_dir, name, lambda m: cls(m["params"]["latent_dim"], m["params"]["ch"]))


__all__ = ["Autoencoder", "Critic", "Generator", "load_module", "load_trained", "save_module"]

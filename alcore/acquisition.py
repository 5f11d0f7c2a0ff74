"""Upper-confidence-bound acquisition over the latent box (continuous) or an encoded pool (discrete).

UCB(x) = mu(x) + sqrt(beta) * sigma(x) (BoTorch's convention; AGD's kappa of 5-10 is sqrt(beta),
i.e. beta 25-100). ``q = 1`` uses the analytic ``UpperConfidenceBound``; ``q > 1`` the Monte-Carlo
``qUpperConfidenceBound`` with a seeded quasi-random sampler, so a batch is chosen jointly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction, UpperConfidenceBound, qUpperConfidenceBound
from botorch.models.model import Model
from botorch.optim import optimize_acqf, optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler

from alcore.errors import ConfigError, EmptyPoolError
from alcore.surrogate import CHOLESKY_MAX


@dataclass(frozen=True)
class AcquisitionSettings:
    """``beta`` > 0 exploration weight, ``q`` >= 1 batch size, and optimiser effort.

    ``num_restarts``/``raw_samples``/``maxiter`` bound ``optimize_acqf``; ``mc_samples`` is the
    number of quasi-MC samples of ``qUpperConfidenceBound``.
    """

    beta: float = 25.0
    q: int = 4
    num_restarts: int = 4
    raw_samples: int = 256
    maxiter: int = 60
    mc_samples: int = 128

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be a positive number, got {self.beta}; AGD used kappa 5-10 (beta 25-100)")
        if int(self.q) != self.q or self.q < 1:
            raise ConfigError(f"q must be an integer >= 1, got {self.q}")
        if self.num_restarts < 1 or self.raw_samples < self.num_restarts or self.maxiter < 1:
            raise ConfigError("need num_restarts >= 1, raw_samples >= num_restarts and maxiter >= 1")


def make_ucb(model: Model, settings: AcquisitionSettings, seed: int,
             x_pending: torch.Tensor | None = None) -> AcquisitionFunction:
    """Analytic UCB for q = 1 (and no pending points), else seeded ``qUpperConfidenceBound``."""
    if settings.q == 1 and x_pending is None:
        return UpperConfidenceBound(model, beta=settings.beta)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([settings.mc_samples]), seed=seed)
    return qUpperConfidenceBound(model, beta=settings.beta, sampler=sampler, X_pending=x_pending)


def acquire_continuous(model: Model, bounds: np.ndarray, settings: AcquisitionSettings, seed: int,
                       x_pending: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Maximise UCB inside the latent box ``bounds`` (2, d).

    Returns ``(x, value)``: ``x`` (q, d) float64 latent points and the joint acquisition value.
    ``x_pending`` (m, d) are points already chosen (e.g. rejected decodes being replaced), so the
    new batch avoids them. Deterministic for a fixed ``seed``.
    """
    torch.manual_seed(seed)
    pending = None if x_pending is None or len(x_pending) == 0 else torch.as_tensor(x_pending, dtype=torch.float64)
    acq = make_ucb(model, settings, seed, pending)
    with warnings.catch_warnings(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
        warnings.simplefilter("ignore")
        x, value = optimize_acqf(
            acq, bounds=torch.as_tensor(bounds, dtype=torch.float64), q=settings.q,
            num_restarts=settings.num_restarts, raw_samples=settings.raw_samples,
            options={"maxiter": settings.maxiter, "seed": seed},
        )
    return x.detach().numpy(), float(value.detach().sum())


def acquire_discrete(model: Model, choices: np.ndarray, settings: AcquisitionSettings, seed: int,
                     max_batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``q`` rows of ``choices`` (M, d) that maximise UCB (sequential greedy for q > 1).

    Returns ``(indices, values)``: (q,) row indices into ``choices`` and their acquisition values.
    Raises :class:`EmptyPoolError` if there are fewer choices than ``q``.
    """
    if len(choices) < settings.q:
        raise EmptyPoolError(
            f"the pool has {len(choices)} unlabelled candidates, fewer than q={settings.q}; "
            "add formulas to the pool or lower q"
        )
    torch.manual_seed(seed)
    tc = torch.as_tensor(choices, dtype=torch.float64)
    acq = make_ucb(model, settings, seed)
    with warnings.catch_warnings(), torch.no_grad(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
        warnings.simplefilter("ignore")
        x, values = optimize_acqf_discrete(acq, q=settings.q, choices=tc, max_batch_size=max_batch_size)
    index = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(choices, dtype=np.float64))}
    picked = np.array([index[row.tobytes()] for row in x.numpy()], dtype=np.int64)
    return picked, values.detach().numpy().reshape(-1)

"""Upper-confidence-bound acquisition over the latent box (continuous) or an encoded pool (discrete).

UCB(x) = mu(x) + sqrt(beta) * sigma(x) (BoTorch's convention; AGD's kappa of 5-10 is sqrt(beta),
i.e. beta 25-100). ``q = 1`` uses the analytic ``UpperConfidenceBound``; ``q > 1`` the Monte-Carlo
``qUpperConfidenceBound`` with a seeded quasi-random sampler, so a batch is chosen jointly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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

#: Continuous-mode strategies: decode-then-select (issue 20) and the old optimise-then-decode.
STRATEGIES = ("decode_select", "optimise_decode")


@dataclass(frozen=True)
class AcquisitionSettings:
    """The acquisition settings (the campaign config's ``acquisition`` section is built on these).

    ``beta`` > 0 exploration weight, ``q`` >= 1 batch size; ``num_restarts``/``raw_samples``/
    ``maxiter`` bound ``optimize_acqf``; ``mc_samples`` is the number of quasi-MC samples of
    ``qUpperConfidenceBound``. Continuous mode only: ``max_attempts`` optimise-decode-check rounds to
    collect ``q`` valid candidates, ``trust_region`` the side of the local search box as a fraction
    of the latent box (see :func:`trust_region`).

    Continuous mode ``strategy`` (issue 20): ``"decode_select"`` (default) draws ``region_draws``
    Sobol points in each of ``n_regions`` trust regions centred on the best labelled points of
    distinct chemical systems (plus the UCB optimiser's point per region when ``optimiser_points``),
    decodes them all, drops invalid / labelled / duplicate (and with ``exclude_known`` known)
    formulas, re-encodes the survivors and chooses ``q`` by GP-BUCB, weighted by P(E_form <
    ``feasibility_threshold`` eV/atom) when ``feasibility``, with at most ``max_share_system`` of the
    batch in one chemical system and ``max_share_anion`` in one anion family (1.0: no cap; pool mode
    keeps its measured behaviour and ignores these fields). ``"optimise_decode"`` is the old
    behaviour: optimise UCB, decode, check.
    """

    beta: float = 25.0
    q: int = 4
    num_restarts: int = 4
    raw_samples: int = 256
    maxiter: int = 30
    mc_samples: int = 128
    max_attempts: int = 6
    trust_region: float = 0.2
    strategy: str = "decode_select"
    n_regions: int = 4
    region_draws: int = 256
    optimiser_points: bool = True
    exclude_known: bool = False
    feasibility: bool = True
    feasibility_threshold: float = 0.0
    max_share_system: float = 0.25
    max_share_anion: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be a positive number, got {self.beta}; AGD used kappa 5-10 (beta 25-100)")
        if int(self.q) != self.q or self.q < 1:
            raise ConfigError(f"q must be an integer >= 1, got {self.q}")
        if self.num_restarts < 1 or self.raw_samples < self.num_restarts or self.maxiter < 1:
            raise ConfigError("need num_restarts >= 1, raw_samples >= num_restarts and maxiter >= 1")
        if int(self.max_attempts) != self.max_attempts or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {self.max_attempts}")
        if not 0 < self.trust_region <= 1:
            raise ConfigError(f"trust_region must be in (0, 1], got {self.trust_region}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown continuous strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if int(self.n_regions) != self.n_regions or self.n_regions < 1:
            raise ConfigError(f"n_regions must be an integer >= 1, got {self.n_regions}")
        if int(self.region_draws) != self.region_draws or self.region_draws < 1:
            raise ConfigError(f"region_draws must be an integer >= 1, got {self.region_draws}")
        if not np.isfinite(self.feasibility_threshold):
            raise ConfigError(f"feasibility_threshold must be finite (eV/atom), got {self.feasibility_threshold}")
        for name in ("max_share_system", "max_share_anion"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1] (1 = no cap), got {getattr(self, name)}")


def make_ucb(
    model: Model, settings: AcquisitionSettings, seed: int, x_pending: torch.Tensor | None = None
) -> AcquisitionFunction:
    """Analytic UCB for q = 1 (and no pending points), else seeded ``qUpperConfidenceBound``."""
    if settings.q == 1 and x_pending is None:
        return UpperConfidenceBound(model, beta=settings.beta)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([settings.mc_samples]), seed=seed)
    return qUpperConfidenceBound(model, beta=settings.beta, sampler=sampler, X_pending=x_pending)


def acquire_continuous(
    model: Model, bounds: np.ndarray, settings: AcquisitionSettings, seed: int, x_pending: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
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
            acq,
            bounds=torch.as_tensor(bounds, dtype=torch.float64),
            q=settings.q,
            num_restarts=settings.num_restarts,
            raw_samples=settings.raw_samples,
            options={"maxiter": settings.maxiter, "seed": seed},
        )
    return x.detach().numpy(), float(value.detach().sum())


def acquire_discrete(
    model: Model,
    choices: np.ndarray,
    settings: AcquisitionSettings,
    seed: int,
    max_batch_size: int = 2048,
    method: str = "bucb",
    weights: np.ndarray | None = None,
    groups: Sequence[tuple[np.ndarray, int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``q`` rows of ``choices`` (M, d) that maximise UCB.

    ``method="bucb"`` (default): GP-BUCB (Desautels et al. 2014): greedy analytic UCB where each
    pick is added to the GP as a hallucinated observation at its posterior mean, which shrinks the
    variance around it so the batch spreads out; cost q posterior passes over the pool.
    ``method="qucb"``: BoTorch ``optimize_acqf_discrete`` with the Monte-Carlo
    ``qUpperConfidenceBound`` (sequential greedy; expensive for large q and pools).
    GP-BUCB only: ``weights`` (M,) in [0, 1] (e.g. P(feasible)) multiply the UCB's height above a
    floor below every candidate's mean, ``w * (UCB - (min mean - 1))``, so a weight never flips the
    order of two equally weighted candidates; ``groups`` are ``(labels (M,), cap)`` pairs: at most
    ``cap`` picks share a label (chemical system, anion family); a batch stops early (fewer than
    ``q``) when the caps leave nothing to pick.
    Returns ``(indices, values)``: (<= q,) row indices into ``choices`` and their (weighted) UCB
    values at pick time. Raises :class:`EmptyPoolError` if there are fewer choices than ``q``.
    """
    if len(choices) < settings.q:
        raise EmptyPoolError(
            f"the pool has {len(choices)} unlabelled candidates, fewer than q={settings.q}; "
            "add formulas to the pool or lower q"
        )
    if method == "bucb":
        return _bucb(model, np.asarray(choices, dtype=np.float64), settings, max_batch_size, weights, groups)
    if weights is not None or groups:
        raise ConfigError("weights and diversity groups need method='bucb'")
    if method != "qucb":
        raise ConfigError(f"unknown discrete acquisition method {method!r}; use 'bucb' or 'qucb'")
    torch.manual_seed(seed)
    tc = torch.as_tensor(choices, dtype=torch.float64)
    acq = make_ucb(model, settings, seed)
    with warnings.catch_warnings(), torch.no_grad(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
        warnings.simplefilter("ignore")
        x, values = optimize_acqf_discrete(acq, q=settings.q, choices=tc, max_batch_size=max_batch_size)
    index = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(choices, dtype=np.float64))}
    picked = np.array([index[row.tobytes()] for row in x.numpy()], dtype=np.int64)
    return picked, values.detach().numpy().reshape(-1)


def _bucb(
    model: Model,
    choices: np.ndarray,
    settings: AcquisitionSettings,
    max_batch_size: int,
    weights: np.ndarray | None = None,
    groups: Sequence[tuple[np.ndarray, int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """GP-BUCB batch selection (see :func:`acquire_discrete`) with exact rank-one variance updates.

    With V = L^-1 K(X, P) (L the Cholesky factor of the noisy training covariance), the posterior
    covariance of pool points is c(x, s) = k(x, s) - V[:, x] . V[:, s]; a hallucinated observation
    at s removes w(x)^2 from every variance, w(x) = c(x, s) / sqrt(c(s, s) + noise) (with per-label noise,
    the training covariance has each label's noise and a hallucinated one the median). One O(N^2 M)
    solve per batch, then O(N M) per pick.
    """
    from alcore.surrogate import posterior

    mean, _ = posterior(model, choices, batch=max_batch_size)
    sqrt_beta = float(np.sqrt(settings.beta))
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
        kernel = model.covar_module
        xt = model.train_inputs[0]
        pt = model.transform_inputs(torch.as_tensor(choices, dtype=torch.float64))
        # per-label noise (one value when homoscedastic); a hallucinated label gets the median label noise
        noise_all = model.likelihood.noise.detach().reshape(-1).expand(len(xt))
        noise = noise_all.median()
        k_train = kernel(xt).to_dense() + torch.diag(noise_all)
        chol = torch.linalg.cholesky(k_train)
        v = torch.cat(
            [
                torch.linalg.solve_triangular(chol, kernel(xt, pt[i : i + max_batch_size]).to_dense(), upper=False)
                for i in range(0, len(pt), max_batch_size)
            ],
            dim=1,
        )
        var = (kernel(pt, diag=True) - (v * v).sum(0)).clamp_min(1e-12)
        scale = float(model.outcome_transform.stdvs.reshape(-1)[0]) if hasattr(model, "outcome_transform") else 1.0
        mean_t = torch.as_tensor(mean)
        taken = torch.zeros(len(pt), dtype=torch.bool)
        w_t = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        floor = float(mean_t.min()) - 1.0
        codes = [(np.unique(np.asarray(labels), return_inverse=True)[1], int(cap)) for labels, cap in groups]
        used = [np.zeros(int(c.max()) + 1 if len(c) else 0, dtype=np.int64) for c, _ in codes]
        updates: list[torch.Tensor] = []
        picked, values = [], []
        for _ in range(settings.q):
            ucb = mean_t + sqrt_beta * scale * var.sqrt()
            if w_t is not None:
                ucb = w_t * (ucb - floor)
            ucb[taken] = -torch.inf
            for (c, cap), u in zip(codes, used, strict=True):
                ucb[torch.as_tensor(u[c] >= cap)] = -torch.inf
            i = int(torch.argmax(ucb))
            if not torch.isfinite(ucb[i]):
                break  # the diversity caps leave nothing to pick
            picked.append(i)
            values.append(float(ucb[i]))
            taken[i] = True
            for (c, _), u in zip(codes, used, strict=True):
                u[c[i]] += 1
            cov = kernel(pt, pt[i : i + 1]).to_dense()[:, 0] - v.T @ v[:, i]
            for w in updates:
                cov = cov - w * w[i]
            w = cov / torch.sqrt(cov[i].clamp_min(0) + noise)
            var = (var - w * w).clamp_min(1e-12)
            updates.append(w)
    return np.array(picked, dtype=np.int64), np.array(values)


def trust_region(center: np.ndarray, box: np.ndarray, fraction: float) -> np.ndarray:
    """A TuRBO-style local box (Eriksson et al. 2019): side ``fraction`` of the latent box's span,
    centred on ``center`` (d,), clipped to ``box`` (2, d). Returns (2, d) bounds.

    UCB over the whole 128-d box peaks at its corners, far from any encoded formula, where the
    decoder returns nothing; a local box around good labelled points keeps the search on the data
    manifold while the GP still extrapolates inside it.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"trust-region fraction must be in (0, 1], got {fraction}")
    half = 0.5 * fraction * (box[1] - box[0])
    lo = np.maximum(center - half, box[0])
    hi = np.minimum(center + half, box[1])
    return np.stack([lo, np.maximum(hi, lo + 1e-9)])

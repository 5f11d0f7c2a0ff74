"""Gaussian-process surrogate on latent vectors (BoTorch ``SingleTaskGP``), fast enough to refit
every iteration.

Inputs are normalised to the fixed latent box of the encoded training set (``Normalize`` with
given bounds), outcomes standardised, everything in double precision. Three measured speed-ups
over BoTorch's defaults (see ``benchmarks/bench_gp.py``): hyperparameters warm-started from the
previous iteration's fit, a bounded number of L-BFGS-B iterations, exact Cholesky solves instead
of gpytorch's CG above 800 points, and one torch thread (on 2 shared cores, 2 threads were 5-10x
slower than 1).

Observation noise: learned and homoscedastic (BoTorch's default likelihood), or, with ``yvar`` (the
variance of each label, e.g. the square of an oracle's calibrated sigma), heteroscedastic: label i
has noise ``yvar_i + s^2`` with the homoscedastic ``s^2`` still learned (gpytorch's
``FixedNoiseGaussianLikelihood(learn_additional_noise=True)``, same prior and lower bound as the
default), so exact labels (``yvar = 0``, e.g. DFT seeds) keep the learned noise and uncertain oracle
labels pull the posterior less.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gpytorch
import numpy as np
import torch
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.utils.warnings import NumericalWarning

from alcore.errors import InvalidLabelError

#: Exact Cholesky up to this many training points. gpytorch's default (800) switches to CG/Lanczos
#: above 800 points, which is slower and noisier for the N = 1,000-2,300 of an AGD campaign.
CHOLESKY_MAX = 20_000


@dataclass
class GPFit:
    """A fitted surrogate: the model, its hyperparameters as plain numbers, and fit timings (s).

    ``fit_error`` names the exception when the marginal-likelihood optimisation failed (rare:
    ill-conditioned data); the model then keeps its warm-started or prior hyperparameters, which still
    give a usable posterior, and the caller records the failure.
    """

    model: SingleTaskGP
    hyperparameters: dict[str, Any]
    fit_s: float
    warm_started: bool
    state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    fit_error: str | None = None


def _check_yvar(yvar: np.ndarray, n: int) -> None:
    if yvar.shape != (n,):
        raise ValueError(f"yvar must have one variance per label, shape ({n},), got {yvar.shape}")
    if not np.all(np.isfinite(yvar)) or np.any(yvar < 0):
        raise InvalidLabelError("label variances (yvar) must be finite and >= 0; use 0 for an exact label")


def _heteroscedastic_likelihood(model: SingleTaskGP) -> FixedNoiseGaussianLikelihood:
    """The fixed per-label noise of a model built with ``train_Yvar`` (already in standardised units)
    plus a learned homoscedastic term with BoTorch's default noise prior and bound."""
    from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
    from gpytorch.constraints import GreaterThan
    from gpytorch.priors import LogNormalPrior

    prior = LogNormalPrior(loc=-4.0, scale=1.0)
    return FixedNoiseGaussianLikelihood(
        noise=model.likelihood.noise.detach().clamp_min(1e-6),  # gpytorch rounds smaller values up anyway
        learn_additional_noise=True,
        noise_prior=prior,
        noise_constraint=GreaterThan(MIN_INFERRED_NOISE_LEVEL, transform=None, initial_value=prior.mode),
    )


#: A homoscedastic fit's learned noise warm-starts the learned part of a heteroscedastic one (same prior).
_NOISE_KEYS = ("likelihood.noise_covar.raw_noise", "likelihood.second_noise_covar.raw_noise")


def _check_training_data(x: np.ndarray, y: np.ndarray, bounds: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected x (N, d) and y (N,), got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise InvalidLabelError(f"the GP needs at least 2 labelled points, got {len(x)}; add seed labels")
    if not np.all(np.isfinite(y)):
        raise InvalidLabelError("labels contain NaN or infinity; fix or remove those labels")
    if bounds.shape != (2, x.shape[1]) or np.any(bounds[1] <= bounds[0]):
        raise ValueError(f"bounds must be (2, {x.shape[1]}) with upper > lower")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``n`` (None: unchanged), then restore it.

    On 2 shared cores one thread per process was 5-10x faster than two for the GP fit (see the module
    docstring); the acquisition's optimiser runs the same torch linear algebra, so the loop pins both
    to ``gp.threads``.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    bounds: np.ndarray,
    warm_start: Mapping[str, torch.Tensor] | None = None,
    maxiter: int | None = 75,
    threads: int = 1,
    optimize: bool = True,
    yvar: np.ndarray | None = None,
) -> GPFit:
    """Fit a ``SingleTaskGP`` to latent points ``x`` (N, d) and targets ``y`` (N,) (e.g. eV).

    ``bounds`` (2, d) is the latent box used to normalise inputs. ``warm_start`` is the ``state``
    of a previous :class:`GPFit` (hyperparameters are copied, data-dependent buffers are not);
    ``maxiter`` bounds L-BFGS-B (``None`` = BoTorch default); ``threads`` sets torch's thread
    count for the fit; ``optimize=False`` only rebuilds the model with the ``warm_start``
    hyperparameters (an exact copy of a stored fit, given the same ``yvar``). ``yvar`` (N,): known
    variance of each label (target units squared; 0 = exact): heteroscedastic noise ``yvar + learned``
    (module docstring); None: learned homoscedastic noise. Returns a :class:`GPFit`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.float64)
    _check_training_data(x, y, bounds)
    if yvar is not None:
        yvar = np.asarray(yvar, dtype=np.float64)
        _check_yvar(yvar, len(y))
    with torch_threads(max(1, threads)):
        tx = torch.from_numpy(x)
        ty = torch.from_numpy(y).unsqueeze(-1)
        with warnings.catch_warnings():
            # encoded labels may sit slightly outside the training-set box; Normalize handles it
            warnings.simplefilter("ignore", InputDataWarning)
            warnings.simplefilter("ignore", NumericalWarning)  # exact labels (yvar 0): rounded up to 1e-6
            model = SingleTaskGP(
                tx,
                ty,
                train_Yvar=None if yvar is None else torch.from_numpy(yvar).unsqueeze(-1),
                input_transform=Normalize(d=x.shape[1], bounds=torch.from_numpy(bounds)),
                outcome_transform=Standardize(m=1),
            )
            if yvar is not None:
                model.likelihood = _heteroscedastic_likelihood(model)
        warm = False
        if warm_start:
            own = model.state_dict()
            start = dict(warm_start)
            if _NOISE_KEYS[0] in start and _NOISE_KEYS[1] in own and _NOISE_KEYS[1] not in start:
                start[_NOISE_KEYS[1]] = start[_NOISE_KEYS[0]]
            hyper = {k: v for k, v in start.items() if k in own and own[k].shape == v.shape and _is_hyperparameter(k)}
            if hyper:
                model.load_state_dict(hyper, strict=False)
                warm = True
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if maxiter is not None:
            kwargs["optimizer_kwargs"] = {"options": {"maxiter": int(maxiter)}}
        with warnings.catch_warnings(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
            warnings.simplefilter("ignore")
            fit_error = None
            try:
                if optimize:
                    fit_gpytorch_mll(mll, **kwargs)
            except Exception as exc:  # noqa: BLE001 - botorch raises ModelFittingError variants
                fit_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        fit_s = time.perf_counter() - t0
        model.eval()
        state = {k: v.detach().clone() for k, v in model.state_dict().items() if _is_hyperparameter(k)}
        return GPFit(model, hyperparameters(model), fit_s, warm, state, fit_error)


def _is_hyperparameter(key: str) -> bool:
    """State-dict keys that are learned hyperparameters (not data-dependent transform buffers)."""
    return ("raw_" in key or "constraint" in key) and "transform" not in key


def hyperparameters(model: SingleTaskGP) -> dict[str, Any]:
    """Plain-number summary of a fitted GP: noise (mean over labels, standardised units), the learned
    part of a heteroscedastic noise (``learned_noise``) and ``label_noise`` (``oracle`` or ``learned``),
    outputscale (if any), lengthscale stats."""
    covar = model.covar_module
    base = getattr(covar, "base_kernel", covar)
    ls = base.lengthscale.detach().flatten().numpy()
    lik = model.likelihood
    second = getattr(lik, "second_noise_covar", None)
    out: dict[str, Any] = {
        "noise": float(lik.noise.detach().mean()),
        "label_noise": "oracle" if isinstance(lik, FixedNoiseGaussianLikelihood) else "learned",
        "lengthscale_median": float(np.median(ls)),
        "lengthscale_min": float(ls.min()),
        "lengthscale_max": float(ls.max()),
    }
    if second is not None:
        out["learned_noise"] = float(second.noise.detach().mean())
    if hasattr(covar, "outputscale"):
        out["outputscale"] = float(covar.outputscale.detach())
    return out


def posterior(model: SingleTaskGP, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std (in target units) at points ``x`` (M, d); returns two (M,) arrays."""
    means, stds = [], []
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(CHOLESKY_MAX):
        for i in range(0, len(x), batch):
            post = model.posterior(torch.as_tensor(x[i : i + batch], dtype=torch.float64))
            means.append(post.mean.squeeze(-1).numpy())
            stds.append(post.variance.clamp_min(0).sqrt().squeeze(-1).numpy())
    return np.concatenate(means), np.concatenate(stds)


def ucb_value(mean: np.ndarray, std: np.ndarray, beta: float) -> np.ndarray:
    """Closed-form UCB ``mean + sqrt(beta) * std`` (BoTorch's convention; AGD's kappa = sqrt(beta))."""
    return np.asarray(mean) + math.sqrt(beta) * np.asarray(std)

"""UCB acquisition: closed-form values on a mock posterior, batch picks, trust region, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from botorch.acquisition import UpperConfidenceBound, qUpperConfidenceBound
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.testing import MockModel, MockPosterior

from alcore.acquisition import AcquisitionSettings, acquire_discrete, make_ucb, trust_region
from alcore.errors import ConfigError, EmptyPoolError
from alcore.surrogate import fit_gp, posterior, ucb_value


def test_analytic_ucb_matches_closed_form_on_mock_posterior():
    mean = torch.tensor([[[1.5]]], dtype=torch.float64)
    var = torch.tensor([[[0.25]]], dtype=torch.float64)
    model = MockModel(MockPosterior(mean=mean, variance=var))
    acq = make_ucb(model, AcquisitionSettings(beta=9.0, q=1), seed=0)
    assert isinstance(acq, UpperConfidenceBound)
    value = acq(torch.zeros(1, 1, 3, dtype=torch.float64))
    assert value.item() == pytest.approx(1.5 + 3.0 * 0.5)
    assert ucb_value(np.array([1.5]), np.array([0.5]), 9.0)[0] == pytest.approx(3.0)


def test_qucb_with_one_point_matches_analytic_ucb_on_a_gp():
    # qUCB = E[mu + sqrt(beta*pi/2) |Y - mu|] = mu + sqrt(beta) * sigma for a Gaussian posterior
    fit, rng = _toy_gp()
    x = torch.as_tensor(rng.uniform(size=(5, 1, 3)))
    analytic = UpperConfidenceBound(fit.model, beta=4.0)(x)
    mc = qUpperConfidenceBound(fit.model, beta=4.0, sampler=SobolQMCNormalSampler(torch.Size([8192]), seed=0))(x)
    assert torch.allclose(mc, analytic, rtol=0.02)


def _toy_gp(n: int = 60, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    return fit_gp(x, y, np.stack([np.zeros(d), np.ones(d)]), maxiter=30), rng


def _bucb_by_conditioning(model, pool: np.ndarray, mean: np.ndarray, q: int, **noise) -> list[int]:
    """Reference GP-BUCB picks (beta 25): ``q`` UCB argmaxes over ``pool`` (n, d), each followed by
    BoTorch conditioning on a hallucinated observation at the pick's first mean ``mean[i]``;
    ``noise`` (optional keyword) is passed to ``condition_on_observations``."""
    picked: list[int] = []
    for _ in range(q):
        _, s = posterior(model, pool)
        u = mean + 5.0 * s
        u[picked] = -np.inf
        i = int(np.argmax(u))
        picked.append(i)
        x_new = torch.as_tensor(pool[i : i + 1])
        model = model.condition_on_observations(x_new, torch.tensor([[mean[i]]], dtype=torch.float64), **noise)
    return picked


def test_bucb_first_pick_is_ucb_argmax_and_equals_botorch_conditioning():
    fit, rng = _toy_gp()
    pool = rng.uniform(size=(400, 3))
    settings = AcquisitionSettings(beta=25.0, q=5)
    idx, values = acquire_discrete(fit.model, pool, settings, seed=0)
    mean, std = posterior(fit.model, pool)
    assert idx[0] == int(np.argmax(mean + 5.0 * std))
    assert len(set(idx.tolist())) == 5
    # reference: GP-BUCB by explicit BoTorch conditioning on hallucinated observations
    assert idx.tolist() == _bucb_by_conditioning(fit.model, pool, mean, q=5)


def test_qucb_discrete_method_also_returns_distinct_indices():
    fit, rng = _toy_gp()
    pool = rng.uniform(size=(100, 3))
    idx, _ = acquire_discrete(fit.model, pool, AcquisitionSettings(beta=4.0, q=3, mc_samples=64), seed=1, method="qucb")
    assert len(set(idx.tolist())) == 3 and idx.max() < 100


def test_bad_settings_and_empty_pools_give_clear_errors():
    with pytest.raises(ConfigError, match="beta must be a positive number"):
        AcquisitionSettings(beta=-1)
    with pytest.raises(ConfigError, match="beta"):
        AcquisitionSettings(beta=math.nan)
    with pytest.raises(ConfigError, match="q must be an integer >= 1"):
        AcquisitionSettings(q=0)
    fit, _ = _toy_gp()
    with pytest.raises(EmptyPoolError, match="fewer than q=4"):
        acquire_discrete(fit.model, np.zeros((2, 3)), AcquisitionSettings(q=4), seed=0)
    with pytest.raises(ConfigError, match="trust-region"):
        trust_region(np.zeros(3), np.stack([np.zeros(3), np.ones(3)]), 0.0)


def test_trust_region_is_clipped_to_the_box():
    box = np.stack([np.zeros(2), np.full(2, 10.0)])
    tr = trust_region(np.array([1.0, 5.0]), box, 0.4)
    assert tr.tolist() == [[0.0, 3.0], [3.0, 7.0]]


def test_bucb_with_per_label_noise_equals_botorch_conditioning():
    """Heteroscedastic GP (label variances): the exact rank-one updates use each label's noise and the
    median noise for a hallucinated pick, as BoTorch's conditioning with that noise does."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(60, 3))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    yvar = np.where(np.arange(60) % 2 == 0, 0.0, 0.04)
    fit = fit_gp(x, y, np.stack([np.zeros(3), np.ones(3)]), maxiter=30, yvar=yvar)
    pool = rng.uniform(size=(300, 3))
    idx, _ = acquire_discrete(fit.model, pool, AcquisitionSettings(beta=25.0, q=4), seed=0)
    mean, _ = posterior(fit.model, pool)
    lik = fit.model.likelihood
    extra = lik.second_noise_covar.noise.detach().reshape(-1)
    fixed = (lik.noise.detach().reshape(-1).median() - extra) * fit.model.outcome_transform.stdvs.reshape(-1) ** 2
    assert idx.tolist() == _bucb_by_conditioning(fit.model, pool, mean, q=4, noise=fixed.reshape(1, 1))

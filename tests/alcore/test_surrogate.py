"""GP surrogate: learns, warm-starts, rebuilds exactly from stored hyperparameters, rejects bad labels."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.errors import InvalidLabelError
from alcore.surrogate import fit_gp, posterior


def _data(n=80, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, d))
    y = 2.0 * np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2
    return x, y, np.stack([np.full(d, -2.0), np.full(d, 2.0)]), rng


def test_gp_learns_and_is_uncertain_away_from_data():
    x, y, box, rng = _data()
    fit = fit_gp(x, y, box, maxiter=50)
    xt = rng.uniform(-2, 2, size=(200, 4))
    yt = 2.0 * np.sin(xt[:, 0]) + 0.5 * xt[:, 1] ** 2
    mean, std = posterior(fit.model, xt)
    assert np.mean(np.abs(mean - yt)) < 0.35 * np.mean(np.abs(yt - y.mean()))
    _, std_train = posterior(fit.model, x[:20])
    _, std_far = posterior(fit.model, np.full((1, 4), 1.99) + np.array([[0, 0, 0, 0]]))
    assert std_far[0] > np.median(std_train)
    assert set(fit.hyperparameters) >= {"noise", "lengthscale_median"}


def test_warm_start_reuses_hyperparameters_and_rebuild_is_exact():
    x, y, box, _ = _data()
    first = fit_gp(x[:60], y[:60], box, maxiter=50)
    warm = fit_gp(x, y, box, warm_start=first.state, maxiter=5)
    assert warm.warm_started
    rebuilt = fit_gp(x, y, box, warm_start=warm.state, optimize=False)
    probe = np.random.default_rng(3).uniform(-2, 2, size=(10, 4))
    assert np.array_equal(posterior(warm.model, probe)[0], posterior(rebuilt.model, probe)[0])


def test_bad_labels_are_refused():
    x, y, box, _ = _data()
    y[3] = np.nan
    with pytest.raises(InvalidLabelError, match="NaN"):
        fit_gp(x, y, box)
    with pytest.raises(InvalidLabelError, match="at least 2"):
        fit_gp(x[:1], np.array([1.0]), box)


def test_a_failed_fit_is_reported_not_swallowed(monkeypatch) -> None:
    import alcore.surrogate as surrogate

    def refuse(*args, **kwargs):
        raise RuntimeError("ill-conditioned")

    monkeypatch.setattr(surrogate, "fit_gpytorch_mll", refuse)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(10, 2))
    fit = surrogate.fit_gp(x, x.sum(1), np.array([[0.0, 0.0], [1.0, 1.0]]), maxiter=5)
    assert fit.fit_error == "RuntimeError: ill-conditioned"
    mean, std = surrogate.posterior(fit.model, x[:2])  # the prior hyperparameters still give a posterior
    assert np.isfinite(mean).all() and (std > 0).all()

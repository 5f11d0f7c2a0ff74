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


def test_label_variances_become_the_noise_and_help_when_they_are_right():
    """Half the labels exact, half with noise sd 0.5: known variances fit the truth better than one learned
    noise, the fixed part is each label's variance (standardised) plus one learned term, and a stored fit
    rebuilds exactly from its state and the same variances."""
    rng = np.random.default_rng(0)
    n, d = 200, 3
    x = rng.uniform(0, 1, (n, d))
    f = np.sin(6 * x[:, 0]) + x[:, 1]
    sd = np.where(np.arange(n) < n // 2, 0.0, 0.5)
    y = f + sd * rng.normal(size=n)
    box = np.stack([np.zeros(d), np.ones(d)])
    learned = fit_gp(x, y, box, maxiter=50)
    hetero = fit_gp(x, y, box, maxiter=50, yvar=sd**2)
    assert learned.hyperparameters["label_noise"] == "learned" and "learned_noise" not in learned.hyperparameters
    assert hetero.hyperparameters["label_noise"] == "oracle" and hetero.hyperparameters["learned_noise"] > 0
    noise = hetero.model.likelihood.noise.detach().numpy()
    ystd = y.std(ddof=1)
    extra = hetero.hyperparameters["learned_noise"]
    np.testing.assert_allclose(noise[n // 2 :], 0.25 / ystd**2 + extra, rtol=1e-6)
    np.testing.assert_allclose(noise[: n // 2], 1e-6 + extra, rtol=1e-6)
    xt = rng.uniform(0, 1, (500, d))
    ft = np.sin(6 * xt[:, 0]) + xt[:, 1]
    err = {k: np.sqrt(np.mean((posterior(g.model, xt)[0] - ft) ** 2)) for k, g in (("l", learned), ("h", hetero))}
    assert err["h"] < 0.5 * err["l"]
    rebuilt = fit_gp(x, y, box, warm_start=hetero.state, optimize=False, yvar=sd**2)
    again = fit_gp(x, y, box, warm_start=hetero.state, optimize=False, yvar=sd**2)
    assert np.array_equal(posterior(rebuilt.model, xt)[0], posterior(again.model, xt)[0])  # acquire's rebuild
    np.testing.assert_allclose(posterior(rebuilt.model, xt)[0], posterior(hetero.model, xt)[0], atol=1e-9)
    # a homoscedastic fit warm-starts the learned part of a heteroscedastic one
    warm = fit_gp(x, y, box, warm_start=learned.state, optimize=False, yvar=sd**2)
    assert warm.warm_started
    assert warm.hyperparameters["learned_noise"] == pytest.approx(learned.hyperparameters["noise"])


def test_bad_label_variances_are_refused():
    x, y, box, _ = _data()
    with pytest.raises(ValueError, match="one variance per label"):
        fit_gp(x, y, box, yvar=np.ones(3))
    with pytest.raises(InvalidLabelError, match="finite and >= 0"):
        fit_gp(x, y, box, yvar=np.full(len(y), -1.0))
    with pytest.raises(InvalidLabelError, match="finite and >= 0"):
        fit_gp(x, y, box, yvar=np.full(len(y), np.nan))

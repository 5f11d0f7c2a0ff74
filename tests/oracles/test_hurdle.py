"""Hurdle-model maths on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.hurdle import combine_members, gated_gap, mixture_moments, sigmoid


def test_sigmoid_is_stable_and_symmetric() -> None:
    z = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0])
    s = sigmoid(z)
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, [0.0, 0.11920292, 0.5, 0.88079708, 1.0], atol=1e-8)
    np.testing.assert_allclose(s + sigmoid(-z), 1.0)


def test_mixture_moments_by_hand() -> None:
    # p = 1: the non-metal distribution itself; p = 0: a certain metal; p = 0.5, mu = 2, var 0:
    # mean 1, variance E[g^2] - 1 = 0.5 * 4 - 1 = 1
    mean, var = mixture_moments(np.array([1.0, 0.0, 0.5]), np.array([3.0, 3.0, 2.0]), np.array([0.25, 0.25, 0.0]))
    np.testing.assert_allclose(mean, [3.0, 0.0, 1.0])
    np.testing.assert_allclose(var, [0.25, 0.0, 1.0])


def test_mixture_moments_match_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    p, mu, sd = 0.3, 2.0, 0.5
    g = np.where(rng.random(400_000) < p, rng.normal(mu, sd, 400_000), 0.0)
    mean, var = mixture_moments(np.array([p]), np.array([mu]), np.array([sd**2]))
    assert abs(mean[0] - g.mean()) < 0.01 and abs(var[0] - g.var()) < 0.01


def test_gated_gap_hard_and_soft() -> None:
    p = np.array([0.1, 0.49, 0.51, 0.9])
    mu = np.full(4, 2.0)
    np.testing.assert_array_equal(gated_gap(p, mu, 0.0), [0.0, 0.0, 2.0, 2.0])
    soft = gated_gap(p, mu, 0.05)
    assert np.all(np.diff(soft) > 0)  # keeps the ranking by p
    assert soft[0] < 1e-3 and soft[3] > 1.99
    with pytest.raises(ValueError):
        gated_gap(p, mu, -1.0)


def test_combine_members_by_hand() -> None:
    logits = np.zeros((3, 2))  # p = 0.5 for both formulas
    gaps = np.array([[1.0, -0.5], [3.0, -0.5]])  # negative member gaps are clipped at 0
    mean, sigma, p = combine_members(logits, gaps, None)
    np.testing.assert_allclose(p, [0.5, 0.5])
    np.testing.assert_allclose(mean, [1.0, 0.0])  # mixture mean p * mu
    # formula 0: mu 2, var_nm 2 (ddof 1): 0.5 * 2 + 0.25 * 4 = 2
    np.testing.assert_allclose(sigma, [np.sqrt(2.0), 0.0])
    gated, _, _ = combine_members(np.array([[3.0, -3.0]]), np.array([[2.0, 2.0], [2.0, 2.0]]), 0.0)
    np.testing.assert_allclose(gated, [2.0, 0.0])
    with pytest.raises(ValueError):
        combine_members(np.zeros((2, 3)), np.zeros((2, 4)), 0.0)

"""Hurdle (zero-inflated) combination of a metal/non-metal classifier and a non-metal gap regressor.

A third to a half of DFT band gaps are exactly 0 (metals). A hurdle model predicts
``p = P(non-metal)`` and ``mu = E[gap | non-metal]`` separately; the gap distribution is the mixture
``(1 - p) * delta(0) + p * N(mu, var_nm)``. Pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function of an array (any shape)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def mixture_moments(p: np.ndarray, mu: np.ndarray, var_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (N,) of ``(1 - p) delta(0) + p * D(mu, var_nm)`` for arrays (N,).

    mean = p mu; var = p (var_nm + mu^2) - (p mu)^2 = p var_nm + p (1 - p) mu^2.
    """
    p, mu, var_nm = (np.asarray(a, dtype=np.float64) for a in (p, mu, var_nm))
    mean = p * mu
    var = p * var_nm + p * (1.0 - p) * mu**2
    return mean, np.maximum(var, 0.0)


def gated_gap(p: np.ndarray, mu: np.ndarray, temperature: float) -> np.ndarray:
    """Point prediction (N,) eV: ``mu * gate(p)``.

    ``temperature == 0``: hard gate ``1[p > 0.5]`` (the mixture's median is 0 when p < 0.5, so this is
    the MAE-minded choice); ``temperature > 0``: ``sigmoid((p - 0.5) / temperature)``, which keeps the
    ranking information of p among predicted metals (a small positive value instead of a tie at 0).
    ``temperature = inf`` is not allowed; use :func:`mixture_moments` for the mixture mean ``p * mu``.
    """
    p, mu = np.asarray(p, dtype=np.float64), np.asarray(mu, dtype=np.float64)
    if temperature < 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    gate = (p > 0.5).astype(np.float64) if temperature == 0 else sigmoid((p - 0.5) / temperature)
    return mu * gate


def combine_members(
    logits: np.ndarray, gaps: np.ndarray, temperature: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hurdle prediction from ensemble members.

    ``logits`` (Mc, N): classifier members' logits of P(non-metal); ``gaps`` (Mr, N): regressor
    members' non-metal gaps in eV (clipped at 0 here). ``temperature``: None -> point prediction is
    the mixture mean ``p * mu``, else :func:`gated_gap`. Returns ``(mean, sigma, p)`` (N,) each:
    sigma is the mixture standard deviation with ``var_nm`` = the regressor members' variance
    (ddof 1) — uncalibrated; see :mod:`oracles.calibration`.
    """
    logits, gaps = np.atleast_2d(logits), np.maximum(np.atleast_2d(gaps), 0.0)
    if logits.shape[1] != gaps.shape[1]:
        raise ValueError(f"classifier gives {logits.shape[1]} predictions, regressor {gaps.shape[1]}")
    p = sigmoid(logits).mean(0)
    mu = gaps.mean(0)
    var_nm = gaps.var(0, ddof=1) if gaps.shape[0] > 1 else np.zeros_like(mu)
    mix_mean, var = mixture_moments(p, mu, var_nm)
    mean = mix_mean if temperature is None else gated_gap(p, mu, temperature)
    return mean, np.sqrt(var), p

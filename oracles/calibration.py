"""Uncertainty calibration of regression oracles: metrics and sigma recalibration (pure numpy/scipy).

An oracle predicts a mean ``mu`` and a standard deviation ``sigma`` per formula. The predictive
distribution is a location-scale family with that mean and standard deviation: ``gaussian``
(``N(mu, sigma^2)``), ``laplace`` (scale ``b = sigma / sqrt(2)``: the likelihood an L1-trained
model fits; heavier tails) or Student-t ``t<nu>`` (e.g. ``t3``; scale ``sigma sqrt((nu - 2) / nu)``,
heavier tails still). The central ``level`` interval is ``mu +- w(level) sigma`` with
``w = z_{(1+level)/2}`` (Gaussian), ``-ln(1 - level) / sqrt(2)`` (Laplace) or
``t_nu^{-1}((1+level)/2) sqrt((nu - 2) / nu)``. Metrics (on held-out
rows): negative log-likelihood, coverage of the 68 % / 95 % intervals, miscalibration area (mean
|observed - expected| coverage over levels 0.01..0.99, as in uncertainty-toolbox) and the Spearman
correlation of sigma with |error|.

Recalibration maps the raw sigma to a calibrated one, fitted on validation rows (never the test
rows): ``scale`` (one factor k) or ``isotonic`` (isotonic regression of |error| on raw sigma, then a
factor k), k chosen so that the 68 % and 95 % interval coverages are as close as possible to nominal.
The fitted map is a small JSON-able :class:`SigmaCalibration` stored with the model's metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm, spearmanr
from scipy.stats import t as student_t

LEVELS = (0.68, 0.95)
#: Families a fit chooses from (by NLL on its fitting rows); Student-t with nu >= 2.5 (std = 2.2 scales).
FAMILIES = ("gaussian", "laplace", "t2.5", "t3", "t4", "t6", "t10")


def _nu(family: str) -> float:
    """Degrees of freedom of a ``t<nu>`` family name (> 2 so that the standard deviation exists)."""
    try:
        nu = float(family[1:])
    except ValueError:
        nu = float("nan")
    if not family.startswith("t") or not nu > 2:
        raise ValueError(f"unknown family {family!r}; use gaussian, laplace or t<nu> with nu > 2 (e.g. t3)")
    return nu


#: Smallest calibrated sigma (property units): keeps the NLL finite where raw sigma is 0.
SIGMA_FLOOR = 1e-3


def _prep(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mu, sigma))
    ok = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sigma)
    return (mu - y)[ok], sigma[ok]


def half_width(level: float | np.ndarray, family: str = "gaussian") -> np.ndarray:
    """Half-width of the central ``level`` interval in units of the standard deviation."""
    level = np.asarray(level, dtype=np.float64)
    if family == "gaussian":
        return norm.ppf(0.5 + level / 2)
    if family == "laplace":
        return -np.log1p(-level) / np.sqrt(2.0)
    nu = _nu(family)
    return student_t.ppf(0.5 + level / 2, nu) * np.sqrt((nu - 2) / nu)


def nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, family: str = "gaussian") -> float:
    """Mean negative log-likelihood (nats) of targets y (N,) under the family with mean mu, std sigma."""
    e, s = _prep(y, mu, sigma)
    s = np.maximum(s, 1e-12)
    if family == "gaussian":
        return float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (e / s) ** 2))
    if family == "laplace":
        b = s / np.sqrt(2.0)
        return float(np.mean(np.log(2 * b) + np.abs(e) / b))
    nu = _nu(family)
    scale = s * np.sqrt((nu - 2) / nu)
    return float(np.mean(np.log(scale) - student_t.logpdf(e / scale, nu)))


def gaussian_nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood (nats) of targets y (N,) under N(mu, sigma^2)."""
    return nll(y, mu, sigma, "gaussian")


def coverage(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float, family: str = "gaussian") -> float:
    """Fraction of rows with y inside the central ``level`` interval mu +- w(level) sigma."""
    e, s = _prep(y, mu, sigma)
    return float(np.mean(np.abs(e) <= half_width(level, family) * s))


def miscalibration_area(
    y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n_levels: int = 99, family: str = "gaussian"
) -> float:
    """Mean |observed - expected| coverage of central intervals over levels 1/(n+1) .. n/(n+1) (0..0.5)."""
    e, s = _prep(y, mu, sigma)
    z = np.abs(e) / np.maximum(s, 1e-12)
    levels = np.arange(1, n_levels + 1) / (n_levels + 1)
    observed = (z[None, :] <= half_width(levels, family)[:, None]).mean(1)
    return float(np.mean(np.abs(observed - levels)))


def calibration_report(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, family: str = "gaussian") -> dict[str, Any]:
    """``nll``, ``miscal_area``, ``cov68``, ``cov95`` (under ``family``), ``spearman_sigma_abs_err``,
    ``mean_sigma``, ``n`` and ``family``."""
    e, s = _prep(y, mu, sigma)
    return {
        "nll": nll(y, mu, sigma, family),
        "miscal_area": miscalibration_area(y, mu, sigma, family=family),
        "cov68": coverage(y, mu, sigma, 0.68, family),
        "cov95": coverage(y, mu, sigma, 0.95, family),
        "spearman_sigma_abs_err": float(spearmanr(s, np.abs(e)).statistic),
        "mean_sigma": float(s.mean()),
        "n": int(len(e)),
        "family": family,
    }


@dataclass
class SigmaCalibration:
    """A fitted map raw sigma -> calibrated sigma: ``k * f(sigma)``, floored at ``floor``.

    ``method``: ``identity`` (f = id, k = 1), ``scale`` (f = id) or ``isotonic`` (f = piecewise-linear
    through ``knots_x``/``knots_y``, constant outside). ``family``: the predictive distribution the
    calibrated sigma is the standard deviation of (its intervals and NLL). ``fitted_on`` records where
    it was fitted.
    """

    method: str = "identity"
    scale: float = 1.0
    knots_x: list[float] = field(default_factory=list)
    knots_y: list[float] = field(default_factory=list)
    floor: float = SIGMA_FLOOR
    family: str = "gaussian"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def apply(self, sigma: np.ndarray) -> np.ndarray:
        """Calibrated sigma (N,) from raw sigma (N,); NaN stays NaN."""
        s = np.asarray(sigma, dtype=np.float64)
        if self.method == "identity":
            return s.copy()
        if self.method == "isotonic":
            base = np.interp(s, self.knots_x, self.knots_y)
        elif self.method == "scale":
            base = s
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        out = np.maximum(self.scale * base, self.floor)
        return np.where(np.isfinite(s), out, np.nan)

    def report(self, y: np.ndarray, mu: np.ndarray, sigma_raw: np.ndarray) -> dict[str, Any]:
        """:func:`calibration_report` of the calibrated sigma under this calibration's family."""
        return calibration_report(y, mu, self.apply(sigma_raw), self.family)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in the model's metadata under ``calibration``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SigmaCalibration:
        """Inverse of :meth:`to_dict`; None or {} gives the identity map."""
        return cls(**d) if d else cls()


def _best_scale(z: np.ndarray, family: str = "gaussian", levels: tuple[float, ...] = LEVELS) -> float:
    """Factor k minimising sum over levels of (coverage of |z| <= w(level) k  -  level)^2."""
    az = np.abs(z)
    w = half_width(np.asarray(levels), family)
    exact = [np.quantile(az, lv) / wi for lv, wi in zip(levels, w, strict=True)]
    lo, hi = max(min(exact), 1e-9), max(max(exact), 1e-9)
    grid = np.geomspace(lo, hi, 201) if hi > lo else np.array([lo])
    loss = [sum((np.mean(az <= wi * k) - lv) ** 2 for wi, lv in zip(w, levels, strict=True)) for k in grid]
    return float(grid[int(np.argmin(loss))])


def _pick_family(candidates: list[SigmaCalibration], e: np.ndarray, s: np.ndarray) -> SigmaCalibration:
    """The candidate with the lowest NLL on the rows it was fitted on."""
    zeros = np.zeros_like(e)
    return min(candidates, key=lambda c: nll(zeros, e, c.apply(s), c.family))


def fit_scale(
    y: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    families: tuple[str, ...] = FAMILIES,
    fitted_on: dict | None = None,
) -> SigmaCalibration:
    """One factor k on validation rows: calibrated sigma = k * sigma (68 %/95 % coverage objective),
    for each family in ``families``; the family with the lowest NLL on these rows is returned."""
    e, s = _prep(y, mu, sigma)
    where = {**(fitted_on or {}), "n": int(len(e))}
    z = e / np.maximum(s, 1e-12)
    cands = [SigmaCalibration("scale", _best_scale(z, fam), family=fam, fitted_on=where) for fam in families]
    return _pick_family(cands, e, s)


def fit_isotonic(
    y: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    n_knots: int = 200,
    families: tuple[str, ...] = FAMILIES,
    fitted_on: dict | None = None,
) -> SigmaCalibration:
    """Isotonic recalibration on validation rows.

    Fits the increasing isotonic regression of |error| on raw sigma (scikit-learn), keeps it at
    ``n_knots`` quantiles of the raw sigma (piecewise-linear in between), then per family the factor k
    that brings the 68 %/95 % coverage of ``e / f(sigma)`` closest to nominal; returns the family
    with the lowest NLL on these rows.
    """
    from sklearn.isotonic import IsotonicRegression

    e, s = _prep(y, mu, sigma)
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=SIGMA_FLOOR).fit(s, np.abs(e))
    kx = np.unique(np.quantile(s, np.linspace(0, 1, n_knots)))
    ky = np.maximum(iso.predict(kx), SIGMA_FLOOR)
    z = e / np.interp(s, kx, ky)
    where = {**(fitted_on or {}), "n": int(len(e))}
    cands = [
        SigmaCalibration("isotonic", _best_scale(z, fam), kx.tolist(), ky.tolist(), family=fam, fitted_on=where)
        for fam in families
    ]
    return _pick_family(cands, e, s)

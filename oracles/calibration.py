"""Uncertainty calibration of regression oracles: metrics and sigma recalibration (pure numpy/scipy).

An oracle predicts a mean ``mu`` and a standard deviation ``sigma`` per formula. The predictive
distribution is a location-scale family with that mean and standard deviation: ``gaussian``
(``N(mu, sigma^2)``), ``laplace`` (scale ``b = sigma / sqrt(2)``: the likelihood an L1-trained
model fits; heavier tails) or Student-t ``t<nu>`` (e.g. ``t3``; scale ``sigma sqrt((nu - 2) / nu)``,
heavier tails still) or ``t<nu>@68`` (e.g. ``t1.35@68``: Student-t with any nu > 0, whose sigma is the
half-width of the central 68 % interval, the Gaussian-equivalent standard deviation, since for
nu <= 2 the t has no standard deviation; scale ``sigma / t_nu^{-1}(0.84)``). The central ``level``
interval is ``mu +- w(level) sigma`` with ``w = z_{(1+level)/2}`` (Gaussian), ``-ln(1 - level) /
sqrt(2)`` (Laplace), ``t_nu^{-1}((1+level)/2) sqrt((nu - 2) / nu)`` (``t<nu>``) or
``t_nu^{-1}((1+level)/2) / t_nu^{-1}(0.84)`` (``t<nu>@68``). Metrics (on held-out
rows): negative log-likelihood, coverage of the 68 % / 95 % intervals, miscalibration area (mean
|observed - expected| coverage over levels 0.01..0.99, as in uncertainty-toolbox) and the Spearman
correlation of sigma with |error|.

Recalibration maps the raw sigma to a calibrated one, fitted on validation rows (never the test
rows): ``scale`` (one factor k) or ``isotonic`` (isotonic regression of |error| on raw sigma, then a
factor k), k chosen so that the 68 % and 95 % interval coverages are as close as possible to nominal;
or ``two_quantile`` (:func:`fit_two_quantile`, two parameters after the isotonic shape: k and the
t's nu of a ``t<nu>@68`` family, so that the 68 % and 95 % quantiles of |error| / (k f(sigma)) on the
fitting rows are matched exactly: the quantile recalibration of Kuleshov et al. 2018 restricted to a
symmetric two-parameter family). :func:`cross_fit` reports a fit on rows it was not fitted on
(K parts, each scored with the map fitted on the others).
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
    """Degrees of freedom of a ``t<nu>`` (nu > 2, so that the standard deviation exists) or ``t<nu>@68``
    (nu > 0) family name."""
    q68 = family.endswith("@68")
    try:
        nu = float(family[1 : -3 if q68 else None])
    except ValueError:
        nu = float("nan")
    if not family.startswith("t") or not nu > (0 if q68 else 2):
        raise ValueError(
            f"unknown family {family!r}; use gaussian, laplace, t<nu> with nu > 2 (e.g. t3) or t<nu>@68 with nu > 0"
        )
    return nu


def _t_scale(family: str) -> float:
    """Scale of the unit-sigma Student-t of a ``t<nu>`` or ``t<nu>@68`` family (see the module doc)."""
    nu = _nu(family)
    if family.endswith("@68"):
        return float(1.0 / student_t.ppf(0.84, nu))
    return float(np.sqrt((nu - 2) / nu))


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
    return student_t.ppf(0.5 + level / 2, _nu(family)) * _t_scale(family)


def nll(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, family: str = "gaussian") -> float:
    """Mean negative log-likelihood (nats) of targets y (N,) under the family with mean mu, std sigma."""
    e, s = _prep(y, mu, sigma)
    s = np.maximum(s, 1e-12)
    if family == "gaussian":
        return float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (e / s) ** 2))
    if family == "laplace":
        b = s / np.sqrt(2.0)
        return float(np.mean(np.log(2 * b) + np.abs(e) / b))
    scale = s * _t_scale(family)
    return float(np.mean(np.log(scale) - student_t.logpdf(e / scale, _nu(family))))


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
    through ``knots_x``/``knots_y``, constant outside); :func:`fit_two_quantile` gives either of the
    last two with a ``t<nu>@68`` family. ``family``: the predictive distribution the
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


def _isotonic_knots(e: np.ndarray, s: np.ndarray, n_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of the increasing isotonic regression of |e| on s, kept at ``n_knots`` quantiles of s."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=SIGMA_FLOOR).fit(s, np.abs(e))
    kx = np.unique(np.quantile(s, np.linspace(0, 1, n_knots)))
    return kx, np.maximum(iso.predict(kx), SIGMA_FLOOR)


def t_dof_for_ratio(ratio: float, levels: tuple[float, float] = LEVELS, lo: float = 0.2, hi: float = 1000.0) -> float:
    """Student-t degrees of freedom nu whose central-interval half-widths satisfy
    ``w(levels[1]) / w(levels[0]) == ratio`` (decreasing in nu; clipped to [lo, hi], so a ratio at or
    below the Gaussian one gives ``hi``)."""
    from scipy.optimize import brentq

    def r(nu: float) -> float:
        return float(student_t.ppf(0.5 + levels[1] / 2, nu) / student_t.ppf(0.5 + levels[0] / 2, nu))

    if not np.isfinite(ratio) or ratio >= r(lo):
        return lo
    if ratio <= r(hi):
        return hi
    return float(brentq(lambda nu: r(nu) - ratio, lo, hi, xtol=1e-6))


def fit_two_quantile(
    y: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    isotonic: bool = True,
    n_knots: int = 200,
    fitted_on: dict | None = None,
) -> SigmaCalibration:
    """Two-parameter quantile recalibration on fitting rows (targets, means, raw sigmas; (N,) each).

    Shape ``f``: the isotonic regression of |error| on raw sigma (``isotonic``; else f = id). With
    ``z = |error| / f(sigma)``, the calibrated sigma is ``k f(sigma)`` with ``k = q_0.68(z)``, and the
    family is ``t<nu>@68`` with nu solving ``w(0.95) / w(0.68) = q_0.95(z) / q_0.68(z)``: both interval
    levels are matched exactly on the fitting rows whatever the tail weight (a Student-t parametrised
    by its standard deviation cannot exceed the ratio 3.82 of nu -> 2; band-gap errors reach 3.4-3.6).
    """
    e, s = _prep(y, mu, sigma)
    if len(e) < 8:
        raise ValueError(f"fit_two_quantile needs at least 8 finite rows, got {len(e)}")
    where = {**(fitted_on or {}), "n": int(len(e))}
    if isotonic:
        kx, ky = _isotonic_knots(e, s, n_knots)
        base = np.interp(s, kx, ky)
    else:
        kx, ky, base = np.array([]), np.array([]), np.maximum(s, 1e-12)
    z = np.abs(e) / base
    q68, q95 = np.quantile(z, LEVELS)
    k = max(float(q68), 1e-9)
    nu = t_dof_for_ratio(float(q95) / k)
    method = "isotonic" if isotonic else "scale"
    return SigmaCalibration(method, k, kx.tolist(), ky.tolist(), family=f"t{nu:.4f}@68", fitted_on=where)


#: Metrics averaged over the parts of a cross-fit.
CROSS_FIT_METRICS = ("nll", "miscal_area", "cov68", "cov95", "spearman_sigma_abs_err", "mean_sigma")


def cross_fit(
    y: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    fit: Any,
    parts: np.ndarray | int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a recalibration on rows it was not fitted on.

    ``fit(y, mu, sigma) -> SigmaCalibration`` is called once per part on the rows of all other parts;
    the part is scored with it (:meth:`SigmaCalibration.report`; raw sigma under the same family).
    ``parts``: a part label per row (N,) (e.g. the CV fold of an out-of-fold prediction), or a number of
    seeded random parts. Returns ``{"parts": [{"part", "calibration", "raw", "calibrated"}...],
    "raw": means, "calibrated": means}`` (means over parts of :data:`CROSS_FIT_METRICS`).
    """
    y, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mu, sigma))
    if np.ndim(parts) == 0:
        n_parts = int(parts)
        if n_parts < 2:
            raise ValueError(f"cross_fit needs at least 2 parts, got {n_parts}")
        labels = np.random.default_rng(seed).permutation(len(y)) % n_parts
    else:
        labels = np.asarray(parts)
        if labels.shape != y.shape:
            raise ValueError(f"parts has shape {labels.shape}, expected one label per row {y.shape}")
    if len(np.unique(labels)) < 2:
        raise ValueError("cross_fit needs at least 2 distinct parts")
    rows = []
    for p in np.unique(labels):
        out, inn = labels == p, labels != p
        cal = fit(y[inn], mu[inn], sigma[inn])
        rows.append(
            {
                "part": p.item() if hasattr(p, "item") else p,
                "calibration": {"method": cal.method, "scale": cal.scale, "family": cal.family},
                "raw": calibration_report(y[out], mu[out], sigma[out], cal.family),
                "calibrated": cal.report(y[out], mu[out], sigma[out]),
            }
        )
    res: dict[str, Any] = {"parts": rows}
    for key in ("raw", "calibrated"):
        res[key] = {m: float(np.mean([r[key][m] for r in rows])) for m in CROSS_FIT_METRICS}
        res[key]["n"] = int(sum(r[key]["n"] for r in rows))
    return res

"""Calibration metrics and sigma recalibration on synthetic data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import laplace, norm, t

from oracles.calibration import (
    SigmaCalibration,
    calibration_report,
    coverage,
    cross_fit,
    fit_isotonic,
    fit_scale,
    fit_two_quantile,
    half_width,
    miscalibration_area,
    nll,
    t_dof_for_ratio,
)


def _data(n: int, family: str, seed: int, true_factor: float = 1.0):
    """Targets drawn around mu with std true_factor * sigma_raw (sigma_raw log-uniform 0.05..2)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    s_raw = np.exp(rng.uniform(np.log(0.05), np.log(2.0), n))
    s_true = true_factor * s_raw
    if family == "gaussian":
        noise = rng.normal(size=n)
    elif family == "laplace":
        noise = rng.laplace(size=n) / np.sqrt(2.0)
    else:  # t3 with unit standard deviation
        noise = rng.standard_t(3, size=n) / np.sqrt(3.0)
    return mu + s_true * noise, mu, s_raw


def test_half_widths() -> None:
    np.testing.assert_allclose(half_width([0.68, 0.95], "gaussian"), [0.994458, 1.959964], rtol=1e-5)
    # Laplace with std 1 has scale 1/sqrt(2): P(|x| <= w) = 1 - exp(-w sqrt 2)
    w = half_width(np.array([0.68, 0.95]), "laplace")
    np.testing.assert_allclose(1 - np.exp(-w * np.sqrt(2)), [0.68, 0.95])
    # Student-t with std 1
    w3 = half_width(np.array([0.68, 0.95]), "t3")
    np.testing.assert_allclose(2 * t.cdf(w3 / np.sqrt(1 / 3), 3) - 1, [0.68, 0.95])
    for bad in ("cauchy", "t2", "tx"):
        with pytest.raises(ValueError):
            half_width(0.5, bad)


def test_nll_matches_scipy() -> None:
    y, mu, s = np.array([0.3, -1.0]), np.array([0.0, 0.5]), np.array([0.7, 2.0])
    assert nll(y, mu, s, "gaussian") == pytest.approx(-norm.logpdf(y, mu, s).mean())
    assert nll(y, mu, s, "laplace") == pytest.approx(-laplace.logpdf(y, mu, s / np.sqrt(2)).mean())
    assert nll(y, mu, s, "t4") == pytest.approx(-t.logpdf(y, 4, mu, s * np.sqrt(2 / 4)).mean())


@pytest.mark.parametrize("family", ["gaussian", "laplace", "t3"])
def test_well_specified_sigma_is_calibrated(family: str) -> None:
    y, mu, s = _data(200_000, family, seed=1)
    assert coverage(y, mu, s, 0.68, family) == pytest.approx(0.68, abs=0.005)
    assert coverage(y, mu, s, 0.95, family) == pytest.approx(0.95, abs=0.005)
    assert miscalibration_area(y, mu, s, family=family) < 0.005
    rep = calibration_report(y, mu, s, family)
    assert rep["spearman_sigma_abs_err"] > 0.3 and rep["n"] == 200_000 and rep["family"] == family
    # overconfident sigma: intervals too narrow, area large, coverage low
    assert miscalibration_area(y, mu, 0.3 * s, family=family) > 0.2
    assert coverage(y, mu, 0.3 * s, 0.95, family) < 0.7


@pytest.mark.parametrize("family", ["gaussian", "laplace", "t3"])
def test_fit_scale_recovers_factor_and_family(family: str) -> None:
    y, mu, s = _data(50_000, family, seed=2, true_factor=3.0)
    cal = fit_scale(y, mu, s, families=("gaussian", "laplace", "t3", "t10"))
    assert cal.method == "scale" and cal.family == family
    assert cal.scale == pytest.approx(3.0, rel=0.05)
    y2, mu2, s2 = _data(50_000, family, seed=3, true_factor=3.0)  # fresh rows
    rep = cal.report(y2, mu2, s2)
    assert rep["cov68"] == pytest.approx(0.68, abs=0.015) and rep["cov95"] == pytest.approx(0.95, abs=0.01)


def test_fit_isotonic_learns_a_monotone_nonlinear_map() -> None:
    rng = np.random.default_rng(4)
    n = 60_000
    mu = rng.normal(size=n)
    s_raw = rng.uniform(0.1, 1.0, n)
    y = mu + 0.5 * s_raw**2 * rng.normal(size=n)  # true sigma = 0.5 raw^2: a plain scale cannot fit
    cal = fit_isotonic(y[: n // 2], mu[: n // 2], s_raw[: n // 2], families=("gaussian",))
    iso = cal.report(y[n // 2 :], mu[n // 2 :], s_raw[n // 2 :])
    scl = fit_scale(y[: n // 2], mu[: n // 2], s_raw[: n // 2], families=("gaussian",)).report(
        y[n // 2 :], mu[n // 2 :], s_raw[n // 2 :]
    )
    assert iso["cov68"] == pytest.approx(0.68, abs=0.02) and iso["cov95"] == pytest.approx(0.95, abs=0.015)
    assert iso["miscal_area"] < 0.02 and iso["nll"] < scl["nll"] - 0.1
    assert np.all(np.diff(cal.knots_y) >= 0) and len(cal.knots_x) <= 200


def test_sigma_calibration_round_trip_nan_and_floor() -> None:
    cal = SigmaCalibration("isotonic", 2.0, [0.0, 1.0], [0.0, 0.5], floor=0.01, family="laplace")
    again = SigmaCalibration.from_dict(cal.to_dict())
    assert again == cal
    out = again.apply(np.array([0.0, 0.5, 1.0, 5.0, np.nan]))
    np.testing.assert_allclose(out[:4], [0.01, 0.5, 1.0, 1.0])
    assert np.isnan(out[4])
    ident = SigmaCalibration.from_dict(None)
    np.testing.assert_array_equal(ident.apply(np.array([0.3])), [0.3])
    with pytest.raises(ValueError):
        SigmaCalibration("magic").apply(np.array([1.0]))


def test_t68_family_half_widths_and_nll() -> None:
    # sigma is the 68 % half-width: P(|x| <= sigma) = 0.68 for any nu, including nu <= 2 (no std)
    for nu in (0.8, 1.3, 2.0, 5.0):
        fam = f"t{nu}@68"
        w = half_width(np.array([0.68, 0.95]), fam)
        scale = 1 / t.ppf(0.84, nu)
        np.testing.assert_allclose(2 * t.cdf(w / scale, nu) - 1, [0.68, 0.95])
        assert w[0] == pytest.approx(1.0)
    y, mu, s = np.array([0.3, -1.0]), np.array([0.0, 0.5]), np.array([0.7, 2.0])
    sc = s / t.ppf(0.84, 1.5)
    assert nll(y, mu, s, "t1.5@68") == pytest.approx(-t.logpdf(y, 1.5, mu, sc).mean())
    # a large nu is the Gaussian whose 68 % half-width is sigma
    assert half_width(0.95, "t1e6@68") == pytest.approx(norm.ppf(0.975) / norm.ppf(0.84), rel=1e-4)
    for bad in ("t0@68", "t-1@68", "tx@68"):
        with pytest.raises(ValueError):
            half_width(0.5, bad)


def test_t_dof_for_ratio_inverts_the_interval_ratio() -> None:
    for nu in (0.7, 1.3, 2.5, 10.0):
        ratio = t.ppf(0.975, nu) / t.ppf(0.84, nu)
        assert t_dof_for_ratio(ratio) == pytest.approx(nu, rel=1e-4)
    assert t_dof_for_ratio(1.5) == 1000.0  # lighter than Gaussian: clipped at the upper bound
    assert t_dof_for_ratio(1e9) == 0.2


def test_fit_two_quantile_recovers_scale_and_dof_of_heavy_tails() -> None:
    # errors: t with nu = 1.5 (no std) and 68 % half-width 2 * raw sigma; scale-only shape
    rng = np.random.default_rng(7)
    n = 80_000
    mu = rng.normal(size=n)
    s_raw = np.exp(rng.uniform(np.log(0.05), np.log(2.0), n))
    noise = rng.standard_t(1.5, size=n) * t.ppf(0.84, 1.5) ** -1 * 2.0 * s_raw
    y = mu + noise
    cal = fit_two_quantile(y[: n // 2], mu[: n // 2], s_raw[: n // 2], isotonic=False)
    assert cal.method == "scale" and cal.family.endswith("@68")
    assert cal.scale == pytest.approx(2.0, rel=0.03)
    assert float(cal.family[1:-3]) == pytest.approx(1.5, rel=0.1)
    rep = cal.report(y[n // 2 :], mu[n // 2 :], s_raw[n // 2 :])
    assert rep["cov68"] == pytest.approx(0.68, abs=0.01) and rep["cov95"] == pytest.approx(0.95, abs=0.01)
    # the previous map (std-parametrised families, nu >= 2.5) cannot match both levels on these tails
    old = fit_isotonic(y[: n // 2], mu[: n // 2], s_raw[: n // 2]).report(y[n // 2 :], mu[n // 2 :], s_raw[n // 2 :])
    assert abs(old["cov68"] - 0.68) + abs(old["cov95"] - 0.95) > 0.02
    assert rep["nll"] < old["nll"]
    # isotonic shape: a nonlinear sigma map is learned as well; round trip through JSON
    iso = fit_two_quantile(y[: n // 2], mu[: n // 2], s_raw[: n // 2] ** 0.5)
    assert iso.method == "isotonic" and np.all(np.diff(iso.knots_y) >= 0)
    rep2 = iso.report(y[n // 2 :], mu[n // 2 :], s_raw[n // 2 :] ** 0.5)
    assert rep2["cov68"] == pytest.approx(0.68, abs=0.015) and rep2["cov95"] == pytest.approx(0.95, abs=0.01)
    assert SigmaCalibration.from_dict(iso.to_dict()) == iso
    with pytest.raises(ValueError):
        fit_two_quantile(y[:3], mu[:3], s_raw[:3])


def test_cross_fit_never_scores_a_part_with_its_own_fit() -> None:
    y, mu, s = _data(4000, "gaussian", seed=8, true_factor=2.0)
    seen = []

    def fit(yy: np.ndarray, mm: np.ndarray, ss: np.ndarray) -> SigmaCalibration:
        seen.append(len(yy))
        return fit_scale(yy, mm, ss, families=("gaussian",))

    labels = np.arange(4000) % 4
    res = cross_fit(y, mu, s, fit, parts=labels)
    assert seen == [3000] * 4 and [p["part"] for p in res["parts"]] == [0, 1, 2, 3]
    assert res["calibrated"]["n"] == 4000 and res["calibrated"]["cov95"] == pytest.approx(0.95, abs=0.02)
    assert res["raw"]["cov95"] < 0.75
    res5 = cross_fit(y, mu, s, fit, parts=5, seed=1)
    assert len(res5["parts"]) == 5 and res5["calibrated"]["n"] == 4000
    for bad in (1, np.zeros(4000)):
        with pytest.raises(ValueError):
            cross_fit(y, mu, s, fit, parts=bad)
    with pytest.raises(ValueError):
        cross_fit(y, mu, s, fit, parts=np.zeros(10))


def test_calibrate_heldout_ships_a_fit_on_all_rows_and_reports_it_cross_fitted() -> None:
    from oracles.training import calibrate_heldout

    y, mu, s = _data(6000, "laplace", seed=5, true_factor=2.0)
    cal, rep = calibrate_heldout(y, mu, s, seed=0)
    assert cal.method == "isotonic" and cal.family.endswith("@68") and cal.fitted_on["n"] == 6000
    assert rep["fit_rows"] == rep["report_rows"] == 6000 and len(rep["parts"]) == 5
    assert rep["calibrated"]["cov95"] == pytest.approx(0.95, abs=0.02) and rep["raw"]["cov68"] < 0.55
    assert rep["calibrated"]["cov68"] == pytest.approx(0.68, abs=0.02)
    small, rep_small = calibrate_heldout(y[:500], mu[:500], s[:500])
    # scale only; sigma is the 68 % half-width: 2 x the Laplace's std x w68 (0.81)
    assert small.method == "scale" and small.scale == pytest.approx(2.0 * -np.log(0.32) / np.sqrt(2), rel=0.2)
    none, rep_none = calibrate_heldout(y[:3], mu[:3], s[:3])
    assert none.method == "identity" and rep_none["fit_rows"] == 0

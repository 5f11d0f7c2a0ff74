"""The learned P(E_hull <= t | composition) (issue 20), pure: toy features, no database."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from alcore.errors import ConfigError
from alcore.hull_probability import HullSettings, fit_hull_model, hull_labels


def _toy(n: int = 40, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A linearly separable set: stable iff the first feature is negative (margin 0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, 0] = np.where(np.arange(n) % 2 == 0, -1.0, 1.0) * (0.5 + rng.uniform(size=n))
    return x, x[:, 0] < 0


def test_labels_take_the_lowest_e_hull_and_leave_out_verdicts_without_one():
    trials = [
        {"formula": "LiF", "verdict": "unstable", "e_form": -1.0, "e_hull": 0.4},
        {"formula": "LiF", "verdict": "near_hull", "e_form": -1.2, "e_hull": 0.05},  # best polymorph decides
        {"formula": "MgO", "verdict": "unstable", "e_form": -0.5, "e_hull": 0.3},
        {"formula": "NaCl", "verdict": "stable", "e_form": -2.0, "e_hull": 0.0},
        {"formula": "KBr", "verdict": "failed", "e_form": None, "e_hull": None},
        {"formula": "CaS", "verdict": "unconverged", "e_form": -1.0, "e_hull": 0.0},
        {"formula": "SrO", "verdict": "e_form_only", "e_form": -1.0, "e_hull": None},
        {"formula": "AlN", "verdict": "unstable", "e_form": 0.5, "e_hull": None},  # E_hull >= E_form > t
        {"formula": "BaF", "verdict": "unstable", "e_form": 0.05, "e_hull": None},  # may still be <= t
        {"formula": "ZnO", "verdict": "unstable", "e_form": -0.2, "e_hull": float("nan")},
    ]
    assert hull_labels(trials, 0.1) == {"AlN": False, "LiF": True, "MgO": False, "NaCl": True}
    assert hull_labels(trials, 0.0) == {"AlN": False, "BaF": False, "LiF": False, "MgO": False, "NaCl": True}
    assert list(hull_labels(trials, 0.1)) == sorted(hull_labels(trials, 0.1))


def test_learns_a_separable_toy_set_with_a_fixed_seed():
    x, y = _toy()
    model = fit_hull_model(x, y, HullSettings(min_verdicts=8, seed=3))
    assert model.kind == "logistic" and model.active and model.note is None
    assert (model.n_verdicts, model.n_stable) == (40, 20)
    xt, yt = _toy(200, seed=1)  # held-out points of the same rule
    p = model.predict(xt)
    assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))
    assert np.mean((p > 0.5) == yt) >= 0.95
    assert roc_auc_score(yt, p) > 0.99 and p[yt].mean() > 0.7 and p[~yt].mean() < 0.3  # Platt-calibrated: tempered
    again = fit_hull_model(x, y, HullSettings(min_verdicts=8, seed=3)).predict(xt)
    assert np.array_equal(p, again)  # deterministic for a fixed seed


def test_probabilities_are_monotone_and_consistent():
    x, y = _toy()
    model = fit_hull_model(x, y, HullSettings())
    grid = np.zeros((101, x.shape[1]))
    grid[:, 0] = np.linspace(-3, 3, 101)  # more positive first feature: further from the stable side
    p = model.predict(grid)
    assert np.all(np.diff(p) <= 1e-12) and p[0] > 0.9 and p[-1] < 0.1
    one_by_one = np.concatenate([model.predict(grid[i : i + 1]) for i in range(len(grid))])
    assert np.allclose(one_by_one, p)  # a row's probability does not depend on its batch
    bad = grid[:2].copy()
    bad[1, 2] = np.nan  # a formula that could not be featurised: the training base rate
    assert model.predict(bad)[1] == pytest.approx(0.5)


def test_falls_back_when_a_class_is_missing_or_verdicts_are_few():
    x, y = _toy()
    one_class = fit_hull_model(x[y], y[y], HullSettings())
    assert one_class.kind == "off" and one_class.predict(x) is None and "one class only" in one_class.note
    few = fit_hull_model(x[:5], y[:5], HullSettings(min_verdicts=8))
    assert few.kind == "off" and "too few structure verdicts: 5" in few.note
    off = fit_hull_model(x, y, HullSettings(enabled=False))
    assert off.kind == "off" and "off in the config" in off.note
    nan_rows = x.copy()
    nan_rows[:35, 1] = np.nan  # rows that cannot be featurised do not count as verdicts
    assert fit_hull_model(nan_rows, y, HullSettings(min_verdicts=8)).kind == "off"


def test_a_small_class_uses_the_knn_beta_bernoulli_fallback():
    x, y = _toy()
    keep = np.flatnonzero(~y).tolist() + np.flatnonzero(y)[:2].tolist()  # 20 unstable, 2 stable
    model = fit_hull_model(x[keep], y[keep], HullSettings())
    assert model.kind == "knn" and "kNN Beta-Bernoulli" in model.note
    p = model.predict(np.vstack([x[keep][-1], x[keep][0]]))
    # prior: base rate 2/22 with strength 2; 5 neighbours: the stable point has both stable ones near
    assert 0 < p[1] < p[0] < 1 and p[1] == pytest.approx(2 * (2 / 22) / 7, abs=0.15)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("threshold", -0.1, "threshold"), ("threshold", float("nan"), "threshold"), ("min_verdicts", 1, "min_verdicts")],
)
def test_bad_settings_are_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        HullSettings(**{field: value})

"""P(E_hull <= threshold | composition), learned from a campaign's own structure verdicts (issue 20).

The second factor of decode-then-select's P(feasible) = P(E_form < t_form) * P(E_hull <= t_hull).
Once the structure stage (``alflow structures run --campaign X``, or the campaign's ``structures``
section) has relaxed and judged candidates of the campaign, each judged formula is a training
example:

* :func:`hull_labels`: one label per formula from its trials. Only trials whose verdict makes a
  claim about the hull count (:data:`JUDGED`: ``stable``, ``near_hull``, ``unstable``); ``failed``,
  ``unconverged`` and ``e_form_only`` trials have no E_hull and are left out. A formula is positive
  when its lowest E_hull over those trials is <= the threshold (the best polymorph found decides);
  an ``unstable`` trial without an E_hull (E_form >= 0, no hull computed) counts as above the
  threshold only when its E_form is (E_hull >= E_form whenever the elements lie on the hull).
* :func:`fit_hull_model`: a classifier on composition features of those formulas. It is used only
  with at least ``min_verdicts`` labelled formulas and both classes present; otherwise it is
  ``off`` and the caller uses P(E_hull) = 1 and records :attr:`HullModel.note` (why). With at least
  :data:`MIN_PER_CLASS_CALIBRATED` formulas in each class it is scikit-learn's
  ``LogisticRegression`` (standardised features, L2) calibrated by Platt scaling over stratified
  cross-validation (``CalibratedClassifierCV(method="sigmoid")``); with fewer in the smaller class
  it is a Beta-Bernoulli k-nearest-neighbour estimate (prior: the training base rate, strength
  :data:`PRIOR_STRENGTH` formulas; :data:`K_NEIGHBOURS` neighbours in standardised feature space).

Pure: features come in as arrays (the campaign uses the oracles' composition descriptors), verdicts
as plain mappings; no database, no file I/O. Unit tests: ``tests/alcore/test_hull_probability.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alcore.errors import ConfigError

#: Verdicts that carry an E_hull claim (see ``oracles/stability/verdicts.py``); the others
#: (``failed``, ``unconverged``, ``e_form_only``) are not training data.
JUDGED = ("stable", "near_hull", "unstable")
#: Smallest class size for the calibrated logistic model (one member per cross-validation fold).
MIN_PER_CLASS_CALIBRATED = 3
#: Neighbours of the Beta-Bernoulli fallback.
K_NEIGHBOURS = 5
#: Prior strength (in pseudo-formulas) of the Beta-Bernoulli fallback.
PRIOR_STRENGTH = 2.0
#: Why the model is off when the config turns it off.
DISABLED_NOTE = "off in the config (acquisition.hull.enabled: false)"


@dataclass(frozen=True)
class HullSettings:
    """How P(E_hull <= ``threshold``) is learned: on/off (``enabled``), the threshold in eV/atom
    (the structure stage's ``e_hull_max``, 0.1 by default: ``stable`` and ``near_hull`` are
    positives), the fewest labelled formulas ``min_verdicts`` (>= 2) before the model is used, the
    L2 inverse strength ``c`` of the logistic model and the ``seed`` of its cross-validation split."""

    enabled: bool = True
    threshold: float = 0.1
    min_verdicts: int = 8
    c: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ConfigError(f"hull threshold must be a finite E_hull >= 0 eV/atom, got {self.threshold}")
        if int(self.min_verdicts) != self.min_verdicts or self.min_verdicts < 2:
            raise ConfigError(f"min_verdicts must be an integer >= 2 (one of each class), got {self.min_verdicts}")
        if not (math.isfinite(self.c) and self.c > 0):
            raise ConfigError(f"c must be a positive number, got {self.c}")


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (missing, NaN, None)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def hull_labels(trials: Iterable[Mapping[str, Any]], threshold: float) -> dict[str, bool]:
    """One training label per formula from structure trials (mappings with ``formula``, ``verdict``,
    ``e_form`` and ``e_hull`` in eV/atom): True when the formula's lowest E_hull over its
    :data:`JUDGED` trials is <= ``threshold``, False when every such trial is above it. Formulas
    without a judged trial (only ``failed``/``unconverged``/``e_form_only``) are absent; so is a
    formula whose only evidence is an ``unstable`` trial with no E_hull and 0 <= E_form <= threshold
    (then E_hull may still be <= threshold). Returns the labels sorted by formula."""
    best: dict[str, float] = {}  # formula -> lowest E_hull (or E_form lower bound) seen
    for t in trials:
        verdict = str(t.get("verdict"))
        if verdict not in JUDGED:
            continue
        e_hull = _finite(t.get("e_hull"))
        if e_hull is None and verdict == "unstable":
            e_form = _finite(t.get("e_form"))
            e_hull = e_form if e_form is not None and e_form > threshold else None  # a lower bound above t
        if e_hull is None:
            continue
        formula = str(t["formula"])
        best[formula] = min(e_hull, best.get(formula, math.inf))
    return {f: best[f] <= threshold for f in sorted(best)}


@dataclass(frozen=True)
class HullModel:
    """A fitted P(E_hull <= ``threshold``) model, or an ``off`` one.

    ``kind``: ``logistic`` (calibrated), ``knn`` (Beta-Bernoulli fallback) or ``off``; ``n_verdicts``
    and ``n_stable`` the labelled formulas it saw (and how many were positive); ``note`` why it is
    off or a fallback (None for the calibrated model).
    """

    kind: str
    n_verdicts: int
    n_stable: int
    threshold: float
    note: str | None = None
    _estimator: Any = field(default=None, repr=False, compare=False)
    _x: np.ndarray | None = field(default=None, repr=False, compare=False)
    _y: np.ndarray | None = field(default=None, repr=False, compare=False)
    _scale: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        """True when the model predicts (``kind`` is not ``off``)."""
        return self.kind != "off"

    @property
    def base_rate(self) -> float:
        """Share of positive formulas in the training data (NaN without data)."""
        return self.n_stable / self.n_verdicts if self.n_verdicts else float("nan")

    def summary(self) -> dict[str, Any]:
        """Plain-data description (stored in the acquire stage's result)."""
        return {
            "kind": self.kind,
            "n_verdicts": self.n_verdicts,
            "n_stable": self.n_stable,
            "threshold": self.threshold,
            "note": self.note,
        }

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """P(E_hull <= threshold) (n,) in [0, 1] for features ``x`` (n, d) (the training layout), or
        None when the model is ``off``. A row with a non-finite feature gets the training base rate."""
        if not self.active:
            return None
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ConfigError(f"hull model: features must be (n, d), got shape {x.shape}")
        out = np.full(len(x), self.base_rate)
        ok = np.all(np.isfinite(x), axis=1)
        if ok.any():
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                out[ok] = self._knn(x[ok]) if self.kind == "knn" else self._estimator.predict_proba(x[ok])[:, 1]
        return np.clip(out, 0.0, 1.0)

    def _knn(self, x: np.ndarray) -> np.ndarray:
        """Beta-Bernoulli estimate from the ``K_NEIGHBOURS`` nearest training formulas (standardised)."""
        assert self._x is not None and self._y is not None and self._scale is not None
        mean, scale = self._scale
        z = (x - mean) / scale
        d2 = ((z[:, None, :] - self._x[None, :, :]) ** 2).sum(-1)  # (n, N)
        k = min(K_NEIGHBOURS, len(self._y))
        nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
        positives = self._y[nearest].sum(axis=1)
        return (PRIOR_STRENGTH * self.base_rate + positives) / (PRIOR_STRENGTH + k)


def off_model(note: str, threshold: float, n_verdicts: int = 0, n_stable: int = 0) -> HullModel:
    """An ``off`` model that says why (``note``): the caller uses P(E_hull) = 1."""
    return HullModel("off", n_verdicts, n_stable, threshold, note)


def fit_hull_model(x: np.ndarray, stable: np.ndarray, settings: HullSettings) -> HullModel:
    """Fit P(E_hull <= threshold | features) on ``x`` (N, d) composition features of the judged
    formulas and ``stable`` (N,) bool labels (:func:`hull_labels`); rows with a non-finite feature
    are dropped. Returns an ``off`` model (with its reason) when ``settings.enabled`` is False,
    fewer than ``settings.min_verdicts`` rows remain or one class is missing; the calibrated
    logistic model with >= :data:`MIN_PER_CLASS_CALIBRATED` of each class; else the kNN fallback.
    Deterministic for a fixed ``settings.seed``."""
    t = settings.threshold
    if not settings.enabled:
        return off_model(DISABLED_NOTE, t)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(stable, dtype=bool)
    if x.ndim != 2 or len(x) != len(y):
        raise ConfigError(f"hull model: need features (N, d) and N labels, got {x.shape} and {y.shape}")
    ok = np.all(np.isfinite(x), axis=1)
    x, y = x[ok], y[ok]
    n, n_pos = len(y), int(y.sum())
    if n < settings.min_verdicts:
        return off_model(
            f"too few structure verdicts: {n} judged formulas < min_verdicts {settings.min_verdicts}", t, n, n_pos
        )
    if n_pos == 0 or n_pos == n:
        which = "stable/near-hull" if n_pos == 0 else "unstable"
        return off_model(f"one class only: no {which} formula among {n} judged", t, n, n_pos)
    minority = min(n_pos, n - n_pos)
    if minority < MIN_PER_CLASS_CALIBRATED:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        note = f"kNN Beta-Bernoulli fallback: {minority} formula(s) in the smaller class < {MIN_PER_CLASS_CALIBRATED}"
        return HullModel("knn", n, n_pos, t, note, _x=(x - mean) / scale, _y=y.astype(np.float64), _scale=(mean, scale))
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    base = make_pipeline(StandardScaler(), LogisticRegression(C=settings.c, max_iter=2000))
    folds = StratifiedKFold(n_splits=min(5, minority), shuffle=True, random_state=settings.seed)
    with threadpool_limits(1):  # a few hundred rows: one BLAS thread, no contention on shared cores
        model = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=True).fit(x, y)
    return HullModel("logistic", n, n_pos, t, None, _estimator=model)

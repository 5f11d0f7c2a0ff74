"""Recipes for the shipped oracles: which data, which split, which hyper-parameters.

Pure computation on the committed data sets (read through :func:`alcore.paths.data_file`); writing
weights is done by ``flows/pipelines/oracles.py``. Each recipe returns the trained oracle plus a metadata
dict (data sha256, split, metrics, params, wall time) that is stored next to the weights.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from alcore.composition import reduced_counts
from alcore.errors import ConfigError, InvalidFormulaError
from alcore.paths import data_file
from oracles.calibration import SigmaCalibration, cross_fit, fit_two_quantile
from oracles.descriptors import DESCRIPTOR_VERSION, EXT_DESCRIPTOR_VERSION, featuriser_for_version
from oracles.resnet import ResNetOracle, TrainConfig, merge_members, train_resnet

#: matbench's fixed cross-validation seed (``KFold(n_splits=5, shuffle=True, random_state=...)``).
MATBENCH_SEED = 18012019


@dataclass(frozen=True)
class Recipe:
    """How one named oracle is trained: data file, columns, property, split and weights file stem."""

    name: str
    property: str
    data: tuple[str, str]
    formula_col: str
    target_col: str
    split: str  # "agd_test_500" | "matbench_fold0" | "random10" | "mp_union_val10" | "mp_gap_val10"
    stem: str
    config: TrainConfig
    descriptor: str = DESCRIPTOR_VERSION  # the featuriser's layout (oracles.descriptors)
    seeds: tuple[int, ...] = ()  # one run per seed, merged into one ensemble (empty: config.seed)
    run_epochs: tuple[int, ...] = ()  # epochs of each seed's run (empty: config.epochs for every run)
    dedupe_min: bool = False
    weights_dtype: str | None = None  # "float16": network weights stored in half precision


RECIPES: dict[str, Recipe] = {
    "resnet-agd": Recipe(
        "resnet-agd",
        "band_gap",
        ("bandgap", "agd_exp1_42k.csv"),
        "composition",
        "Eg",
        "agd_test_500",
        "bandgap_resnet_agd",
        TrainConfig(hidden=128, n_members=5, epochs=30),
    ),
    "resnet-mp-gap": Recipe(
        "resnet-mp-gap",
        "band_gap",
        ("bandgap", "matbench_mp_gap.csv"),
        "formula",
        "target",
        "matbench_fold0",
        "bandgap_resnet_mp_gap",
        TrainConfig(hidden=256, n_members=5, epochs=40),
    ),
    "eform": Recipe(
        "eform",
        "e_form",
        ("formation", "matbench_mp_e_form.csv"),
        "formula",
        "target",
        "random10",
        "eform_resnet_mp",
        TrainConfig(hidden=256, n_members=5, epochs=40),
        dedupe_min=True,
    ),
    # the default band-gap oracle of new campaigns (chosen on the matbench 5-fold protocol, see
    # docs/oracles.md); the shipped weights were trained with the same recipe by the fold-batched GPU
    # trainer benchmarks/bandgap/train_batched.py (run "plain_union_m10", set "final")
    "resnet-mp-union": Recipe(
        "resnet-mp-union",
        "band_gap",
        ("bandgap", "matbench_mp_gap.csv"),
        "formula",
        "target",
        "mp_union_val10",
        "bandgap_resnet_mp_union",
        TrainConfig(hidden=256, n_members=10, epochs=80),
        weights_dtype="float16",
    ),
    # the richer "ext" descriptor (session 13, docs/oracles.md "Shipping the richer descriptor"):
    # matbench rows only, all but the same 10 % calibration hold-out as resnet-mp-union; CPU-trained;
    # session 14 added a third, 120-epoch run and the members' median as the point prediction
    "resnet-mp-ext": Recipe(
        "resnet-mp-ext",
        "band_gap",
        ("bandgap", "matbench_mp_gap.csv"),
        "formula",
        "target",
        "mp_gap_val10",
        "bandgap_resnet_mp_ext",
        TrainConfig(hidden=256, n_members=5, epochs=80, seed=MATBENCH_SEED, point="median"),
        weights_dtype="float16",
        descriptor=EXT_DESCRIPTOR_VERSION,
        seeds=(MATBENCH_SEED, MATBENCH_SEED + 1, MATBENCH_SEED + 2),
        run_epochs=(80, 80, 120),
    ),
}

#: Seed and size of the calibration hold-out of the "mp_union_val10" split (same rows as the GPU
#: trainer's "final" set: ``default_rng(1005).permutation(n)[:round(0.1 n)]``).
UNION_VAL_SEED = 1005
UNION_VAL_FRACTION = 0.1


def sha256_file(path: Any) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reduced_key(formula: str) -> str:
    try:
        return "".join(f"{s}{c}" for s, c in reduced_counts(formula))
    except InvalidFormulaError:
        return formula


def ground_state_per_formula(df: pd.DataFrame, formula_col: str, target_col: str) -> pd.DataFrame:
    """Collapse polymorphs: one row per reduced formula with the minimum target (the ground state).

    Takes a frame with formula and target columns; returns a new frame (first formula spelling kept).
    """
    key = df[formula_col].map(_reduced_key)
    idx = df.assign(_key=key).groupby("_key")[target_col].idxmin()
    return df.loc[np.sort(idx.to_numpy())].reset_index(drop=True)


def mp_gap_union() -> tuple[pd.DataFrame, int]:
    """matbench_mp_gap (all rows, all polymorphs) followed by the ``agd_exp1_42k`` rows whose reduced
    formula does not occur in matbench_mp_gap (one row per formula in that file; a formula present in
    matbench keeps only matbench's rows). Returns ``(frame with formula/target/source, n_matbench)``.
    """
    mb = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))
    agd = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv"))
    known = set(mb.formula.map(_reduced_key))
    extra = agd[~agd.composition.map(_reduced_key).isin(known)]
    extra = pd.DataFrame({"formula": extra.composition.to_numpy(), "target": extra.Eg.to_numpy()})
    df = pd.concat([mb.assign(source="matbench_mp_gap"), extra.assign(source="agd_exp1_42k")], ignore_index=True)
    return df, len(mb)


def load_recipe_data(recipe: Recipe) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, str]:
    """Data of a recipe: ``(frame, train_idx, test_idx, data_sha256)``; indices into the frame.

    For ``mp_union_val10`` the frame is :func:`mp_gap_union`, ``test_idx`` is the 10 % calibration
    hold-out of the matbench rows (a validation set: the test numbers of this recipe come from the
    5-fold benchmark) and the sha256 is that of matbench_mp_gap.csv; ``mp_gap_val10`` is the same
    hold-out of matbench_mp_gap without the AGD rows.
    """
    path = data_file(*recipe.data)
    if recipe.split in ("mp_union_val10", "mp_gap_val10"):
        df, n_mb = mp_gap_union()
        if recipe.split == "mp_gap_val10":
            df = df.iloc[:n_mb]
        perm = np.random.default_rng(UNION_VAL_SEED).permutation(n_mb)
        nv = int(round(UNION_VAL_FRACTION * n_mb))
        test = np.sort(perm[:nv])
        train = np.setdiff1d(np.arange(len(df)), test)
        return df, train, test, sha256_file(path)
    df = pd.read_csv(path)
    if recipe.dedupe_min:
        df = ground_state_per_formula(df, recipe.formula_col, recipe.target_col)
    n = len(df)
    if recipe.split == "agd_test_500":
        test_ids = set(pd.read_csv(data_file("bandgap", "agd_test_500.csv"))["id"])
        is_test = df["id"].isin(test_ids).to_numpy()
        test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
    elif recipe.split == "matbench_fold0":
        train, test = matbench_folds(n)[0]
    elif recipe.split == "random10":
        perm = np.random.default_rng(0).permutation(n)
        test, train = np.sort(perm[: n // 10]), np.sort(perm[n // 10 :])
    else:
        raise ConfigError(f"unknown split {recipe.split!r}")
    return df, train, test, sha256_file(path)


def matbench_folds(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The matbench v0.1 folds for a task of n rows: 5 x (train_idx, test_idx)."""
    from sklearn.model_selection import KFold

    return list(KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(np.arange(n)))


def metrics(y_true: np.ndarray, y_pred: np.ndarray, std: np.ndarray | None = None) -> dict[str, float]:
    """MAE, RMSE, R^2 (and mean predicted std) of finite predictions; counts the non-finite ones."""
    ok = np.isfinite(y_pred)
    e = y_pred[ok] - y_true[ok]
    ss = float(((y_true[ok] - y_true[ok].mean()) ** 2).sum())
    out = {
        "mae": float(np.abs(e).mean()),
        "rmse": float(np.sqrt((e**2).mean())),
        "r2": float(1 - (e**2).sum() / ss) if ss > 0 else float("nan"),
        "n": int(ok.sum()),
        "n_failed": int((~ok).sum()),
    }
    if std is not None:
        out["mean_std"] = float(np.nanmean(std[ok]))
    return out


def calibrate_heldout(
    y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, seed: int = 0, min_isotonic: int = 2000, n_parts: int = 5
) -> tuple[SigmaCalibration, dict[str, Any]]:
    """Fit the sigma calibration on the held-out rows and report it cross-fitted.

    Takes held-out targets, predicted means and raw sigmas (N,). The shipped map is the two-parameter
    quantile recalibration (:func:`oracles.calibration.fit_two_quantile`: isotonic shape, scale k,
    ``t<nu>@68`` family; scale-only shape with fewer than ``min_isotonic`` rows) fitted on all rows. The
    report is cross-fitted (:func:`oracles.calibration.cross_fit`): ``n_parts`` seeded random parts,
    each scored with the map fitted on the other parts, so no row is scored by a map fitted on it; the
    means over parts before (``raw``, same family) and after (``calibrated``). Returns
    ``(calibration, report)``.
    """
    ok = np.flatnonzero(np.isfinite(y) & np.isfinite(mu) & np.isfinite(sigma))
    if len(ok) < 8 * n_parts:  # too few held-out rows to fit anything: identity map, said so in the report
        return SigmaCalibration(), {"fit_rows": 0, "report_rows": 0, "note": f"only {len(ok)} held-out rows"}
    y, mu, sigma = y[ok], mu[ok], sigma[ok]
    iso = len(ok) * (n_parts - 1) // n_parts >= min_isotonic

    def fit(yy: np.ndarray, mm: np.ndarray, ss: np.ndarray) -> SigmaCalibration:
        return fit_two_quantile(yy, mm, ss, isotonic=iso)

    cal = fit_two_quantile(y, mu, sigma, isotonic=iso, fitted_on={"rows": "all held-out rows"})
    cf = cross_fit(y, mu, sigma, fit, parts=n_parts, seed=seed)
    report = {
        "fit_rows": int(len(ok)),
        "report_rows": int(len(ok)),
        "family": cal.family,
        "method": "two_quantile" + (" (isotonic shape)" if iso else " (scale only)"),
        "cross_fit": f"{n_parts} random parts (seed {seed}), each scored with the map fitted on the others",
        "raw": cf["raw"],
        "calibrated": cf["calibrated"],
        "parts": [{k: p[k] for k in ("part", "calibration")} | {"calibrated": p["calibrated"]} for p in cf["parts"]],
    }
    return cal, report


def recipe_runs(recipe: Recipe, epochs: int | None = None, seed: int | None = None) -> list[tuple[int, int]]:
    """``(seed, epochs)`` of each run the recipe trains (one per ``recipe.seeds``, else one run).

    ``epochs`` overrides every run's epochs; ``seed`` shifts every run's seed alike (the first
    becomes ``seed``).
    """
    seeds = recipe.seeds or (recipe.config.seed,)
    if seed is not None:
        seeds = tuple(int(seed) + s - seeds[0] for s in seeds)
    if epochs is not None:
        run_epochs = (int(epochs),) * len(seeds)
    else:
        run_epochs = recipe.run_epochs or (recipe.config.epochs,) * len(seeds)
    if len(run_epochs) != len(seeds):
        raise ConfigError(f"recipe {recipe.name!r}: {len(run_epochs)} run_epochs for {len(seeds)} seeds")
    return list(zip(seeds, run_epochs, strict=True))


def train_recipe(
    name: str,
    epochs: int | None = None,
    seed: int | None = None,
    max_train: int | None = None,
    progress: Callable[[int, float], None] | None = None,
    **overrides: Any,
) -> tuple[ResNetOracle, dict[str, Any]]:
    """Train the named recipe (see :data:`RECIPES`) and evaluate it on its held-out split.

    ``epochs``/``seed``/other ``TrainConfig`` fields override the recipe; ``max_train`` keeps only
    the first that many training rows (quick runs and tests). A recipe with ``seeds`` trains one run
    per seed (:func:`recipe_runs`) and merges them (:func:`oracles.resnet.merge_members`).
    Returns ``(oracle, metadata)`` with ``metadata`` = data file + sha256, split description and
    sizes, test metrics, params and wall time (:func:`evaluate_recipe`).
    """
    if name not in RECIPES:
        raise ConfigError(f"no training recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[name]
    cfg = recipe.config
    if overrides:
        cfg = replace(cfg, **overrides)
    t0 = time.perf_counter()
    data = load_recipe_data(recipe)
    df, train = data[0], data[1]
    if max_train is not None:
        train = train[: int(max_train)]
    f = df[recipe.formula_col].astype(str).to_numpy()[train]
    y = df[recipe.target_col].to_numpy(dtype=np.float64)[train]
    featuriser = featuriser_for_version(recipe.descriptor)
    runs = [
        train_resnet(
            list(f),
            y,
            property=recipe.property,
            name=name,
            config=replace(cfg, seed=s, epochs=e),
            featuriser=featuriser,
            progress=progress,
        )
        for s, e in recipe_runs(recipe, epochs, seed)
    ]
    oracle = merge_members(runs) if len(runs) > 1 else runs[0]
    return oracle, evaluate_recipe(name, oracle, max_train=max_train, started=t0, data=data)


def evaluate_recipe(
    name: str,
    oracle: ResNetOracle,
    max_train: int | None = None,
    started: float | None = None,
    data: tuple[pd.DataFrame, np.ndarray, np.ndarray, str] | None = None,
) -> dict[str, Any]:
    """Score a trained oracle of recipe ``name`` on the recipe's held-out rows and fit its sigma map there.

    Stores the test metrics, split and calibration in ``oracle.info`` and returns the training
    metadata (data file + sha256, split sizes, held-out metrics, calibration report, params, wall
    time since ``started`` (a ``time.perf_counter()`` value)). ``max_train`` as in :func:`train_recipe`;
    ``data``: the recipe's :func:`load_recipe_data` result when the caller already has it.
    """
    recipe = RECIPES[name]
    t0 = time.perf_counter() if started is None else started
    df, train, test, sha = data if data is not None else load_recipe_data(recipe)
    if max_train is not None:
        train = train[: int(max_train)]
    f = df[recipe.formula_col].astype(str).to_numpy()
    y = df[recipe.target_col].to_numpy(dtype=np.float64)
    pred = oracle.predict(list(f[test]), calibrated=False)
    cal, cal_report = calibrate_heldout(y[test], pred.mean, pred.std)
    meta = {
        "oracle": name,
        "data": "/".join(recipe.data),
        "data_sha256": sha,
        "rows": int(len(df)),
        "dedupe": "min target per reduced formula (ground-state polymorph)" if recipe.dedupe_min else None,
        "split": {
            "kind": recipe.split,
            "n_train": int(len(train)),
            "n_test": int(len(test)),
            "seed": MATBENCH_SEED if recipe.split == "matbench_fold0" else 0,
        },
        "test_metrics": metrics(y[test], pred.mean, pred.std),
        "params": int(sum(p.numel() for p in oracle.model.parameters())),
        "train_wall_s": oracle.info.get("wall_s"),
        "total_wall_s": round(time.perf_counter() - t0, 2),
        "torch_threads": torch.get_num_threads(),
        "calibration_report": cal_report,
    }
    if "parts" in oracle.info:  # merged from several runs (Recipe.seeds)
        meta["train_wall_s"] = sum(p.get("wall_s", 0.0) for p in oracle.info["parts"])
        meta["seeds"] = oracle.config.extra.get("merged_seeds")
        meta["run_epochs"] = oracle.config.extra.get("merged_epochs")
    if recipe.split in ("mp_union_val10", "mp_gap_val10"):
        meta["split"].update({"seed": UNION_VAL_SEED, "held_out_is": "calibration/validation hold-out, not a test"})
    if recipe.split == "mp_union_val10":
        meta["extra_data"] = {
            "file": "bandgap/agd_exp1_42k.csv",
            "sha256": sha256_file(data_file("bandgap", "agd_exp1_42k.csv")),
        }
    oracle.info.update(
        {
            "test_metrics": meta["test_metrics"],
            "data_sha256": sha,
            "split": meta["split"],
            "calibration": cal.to_dict(),
        }
    )
    return meta

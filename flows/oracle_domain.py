"""The applicability domain of a shipped oracle, built from its recipe's data and cached on disk.

:class:`oracles.domain.Domain` is the pure logic; this module does the I/O: it reads the recipe's
training formulas and held-out split (:func:`oracles.training.load_recipe_data`), calibrates the bounds
on up to :data:`CALIBRATION_N` held-out formulas with the oracle's own ensemble std, and caches the
result under ``<ALFLOW_DATA_DIR>/cache`` keyed by the sha256 of the data, of the weights and of their
JSON (the calibration). Used by
``alflow oracles predict``; the campaign loop can call :func:`oracle_domain` the same way to flag
acquired candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: held-out formulas used to calibrate the domain bounds (a seeded subsample of the test split)
CALIBRATION_N = 1000


def _domain_cache_path(stem: str, data_sha: str, weights: Path) -> Path:
    from flows.settings import get_settings
    from oracles.training import sha256_file

    wsha = sha256_file(weights.with_suffix(".safetensors"))[:12]
    meta = weights.with_suffix(".json")  # the sigma calibration lives there: a new one rebuilds the std bound
    if meta.exists():
        wsha += "-" + sha256_file(meta)[:8]
    return get_settings().data_dir / "cache" / f"domain-{stem}-{data_sha[:12]}-{wsha}.npz"


def calibrated_domain(trained: list[str], held_out: list[str], oracle: Any, source: str = "") -> Any:
    """The :class:`oracles.domain.Domain` of the ``trained`` formulas, its bounds calibrated on
    ``held_out`` formulas the oracle never saw (their distance and the oracle's ensemble std)."""
    from oracles.domain import Domain

    return Domain.from_formulas(trained, source=source).calibrate(held_out, oracle.predict(held_out).std)


def oracle_domain(name: str, oracle: Any, weights_dir: Path) -> Any:
    """The :class:`oracles.domain.Domain` of a shipped oracle: its recipe's training formulas, calibrated
    on up to :data:`CALIBRATION_N` held-out formulas (distance and this oracle's ensemble std). Cached
    in ``<data dir>/cache`` (keyed by data and weights sha256); None for an oracle without a recipe."""
    from alcore.paths import data_file
    from oracles.domain import Domain
    from oracles.registry import ALIASES
    from oracles.training import RECIPES, load_recipe_data, sha256_file

    recipe = RECIPES.get(ALIASES.get(name, name))
    if recipe is None:
        return None
    cache = _domain_cache_path(recipe.stem, sha256_file(data_file(*recipe.data)), weights_dir / recipe.stem)
    if cache.exists():
        with np.load(cache) as z:
            return Domain.from_arrays(dict(z))
    df, train, test, _ = load_recipe_data(recipe)
    formulas = df[recipe.formula_col].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    held = formulas[np.sort(rng.choice(test, size=min(CALIBRATION_N, len(test)), replace=False))]
    domain = calibrated_domain(list(formulas[train]), list(held), oracle, source="/".join(recipe.data))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **domain.to_arrays())
    return domain

"""Recipe logic of oracles.training that needs no training run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alcore.errors import ConfigError
from oracles.training import RECIPES, recipe_runs


def test_recipe_runs_pair_each_seed_with_its_epochs() -> None:
    recipe = replace(RECIPES["resnet-mp-ext"], seeds=(7, 8, 9), run_epochs=(80, 80, 120))
    assert recipe_runs(recipe) == [(7, 80), (8, 80), (9, 120)]
    assert recipe_runs(recipe, epochs=2) == [(7, 2), (8, 2), (9, 2)]  # a quick run overrides every run
    assert recipe_runs(recipe, seed=100) == [(100, 80), (101, 80), (102, 120)]  # seeds shift alike
    plain = RECIPES["resnet-mp-gap"]
    assert recipe_runs(plain) == [(plain.config.seed, plain.config.epochs)]
    with pytest.raises(ConfigError, match="2 run_epochs for 3 seeds"):
        recipe_runs(replace(recipe, run_epochs=(80, 120)))

"""Ship ``resnet-mp-ext``: merge its per-seed runs, fit the sigma map on the hold-out, write the weights.

The recipe (``oracles.training.RECIPES["resnet-mp-ext"]``) trains one 5-member run per seed (seeds
18012019-18012021 at 80, 80 and 120 epochs) and merges them, predicting the members' median;
``alflow oracles train resnet-mp-ext`` does that in one process. On 2 cores the runs were trained in
parallel processes instead (``train_and_save`` on the recipe reduced to one seed and its epochs,
float16 weights), and this script merges those files (:func:`oracles.resnet.merge_members`; the parts
must be the recipe's ``(seed, epochs)`` in order), sets the recipe's point prediction, scores the
merged model on the recipe's 10 % hold-out and fits its sigma map there
(:func:`oracles.training.evaluate_recipe`), adds the matbench 5-fold figures from ``score_folds.py``
and writes ``data/weights/bandgap_resnet_mp_ext.{safetensors,json}``.

Usage::

    python benchmarks/bandgap/export_ext.py --parts /work/probe/final /work/probe/final_s1 \\
        /work/probe/s14/final_s2 --cv benchmarks/results/bandgap_ext.json \\
        --row "ext w256, runs 1-3 pooled, mean/median cross-fitted"
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from alcore.paths import WEIGHTS_DIR
from flows.pipelines.oracles import save_recipe_weights
from oracles.resnet import ResNetOracle, merge_members
from oracles.training import RECIPES, evaluate_recipe, recipe_runs

NAME = "resnet-mp-ext"


def main() -> None:
    """Merge, evaluate, calibrate and write the shipped weights; print the hold-out metrics."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=Path, nargs="+", required=True, help="folders holding one run's weights each")
    ap.add_argument("--cv", type=Path, required=True, help="score_folds.py JSON with the 5-fold figures")
    ap.add_argument("--row", required=True, help="the row of --cv that matches the shipped model")
    ap.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES[NAME]
    runs = [ResNetOracle.load(d / recipe.stem) for d in args.parts]
    parts = [(r.config.seed, r.config.epochs) for r in runs]
    if parts != recipe_runs(recipe):
        raise SystemExit(f"the parts' (seed, epochs) {parts} are not the recipe's {recipe_runs(recipe)}")
    oracle = merge_members(runs, name=NAME) if len(runs) > 1 else runs[0]
    oracle.config = replace(oracle.config, point=recipe.config.point)  # parts were trained as plain runs
    meta = evaluate_recipe(NAME, oracle)
    cv = json.loads(args.cv.read_text())["results"][args.row]["summary"]["candidate"]
    meta["cv_5fold_matbench"] = {**cv, "by": f"benchmarks/bandgap/score_folds.py ({args.cv.name}: {args.row})"}
    meta["parts_trained_by"] = "train_and_save('resnet-mp-ext') reduced to one (seed, epochs), one process each"
    report = {**meta["calibration_report"], "held_out": recipe.split}  # top level, as bench_calibration.py --write
    st, js = save_recipe_weights(NAME, oracle, {"training": meta, "calibration_report": report}, args.out_dir)
    print(json.dumps({"hold_out": meta["test_metrics"], "calibration": meta["calibration_report"]["calibrated"]}))
    print(f"wrote {st} and {js}")


if __name__ == "__main__":
    main()

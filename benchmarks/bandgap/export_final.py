"""Turn the GPU trainer's "final" weights into a shipped, calibrated ``ResNetOracle``.

Reads ``final_<group>.npz`` (from ``train_batched.py``), rebuilds the ensemble as an
:class:`oracles.resnet.ResNetOracle`, checks on the calibration hold-out that the CPU predictions
(descriptors computed from the formula strings by the project's featuriser) match the GPU's, fits
the sigma calibration on half of the hold-out and reports it on the other half
(:func:`oracles.training.calibrate_heldout`), and writes ``data/weights/<stem>.{safetensors,json}``
with float16 network weights and the metadata (data sha256, split, metrics, calibration, training
budget, provenance).

Usage::

    python benchmarks/bandgap/export_final.py --final /tmp/dev2/final_plain_m10.npz \\
        --preds /tmp/dev2/preds_E.npz --summary /tmp/dev2/summary.json --run plain_union_m10
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from alcore.paths import WEIGHTS_DIR, data_file  # noqa: E402
from oracles.descriptors import DESCRIPTOR_VERSION  # noqa: E402
from oracles.gap_metrics import gap_metrics  # noqa: E402
from oracles.resnet import ResNetOracle  # noqa: E402
from oracles.training import RECIPES, calibrate_heldout, load_recipe_data, metrics, sha256_file  # noqa: E402

NAME = "resnet-mp-union"


def main() -> None:
    """Export, verify, calibrate and save the shipped model."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--final", required=True)
    ap.add_argument("--preds", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--run", default="plain_union_m10")
    ap.add_argument("--cv-json", default=str(ROOT / "benchmarks" / "results" / "bandgap.json"))
    ap.add_argument("--out-dir", default=str(WEIGHTS_DIR))
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES[NAME]
    z = np.load(args.final)
    pre = f"{args.run}__"
    state = {k[len(pre) :]: torch.from_numpy(np.ascontiguousarray(z[k])) for k in z.files if k.startswith(pre)}
    summary = json.loads(Path(args.summary).read_text())
    run = summary["runs"][args.run]
    cfg = asdict(recipe.config)
    for k in ("hidden", "n_layers", "batch_size", "lr", "weight_decay", "epochs", "seed"):
        assert cfg[k] == run["run"][k], (k, cfg[k], run["run"][k])
    assert cfg["n_members"] == run["run"]["members"]
    meta = {"name": NAME, "property": "band_gap", "descriptor_version": DESCRIPTOR_VERSION, "config": cfg, "info": {}}
    oracle = ResNetOracle.from_state(state, meta)

    df, train, val, sha = load_recipe_data(recipe)
    dev_rows = np.load(args.preds)[f"{args.run}__final_val_rows"]
    assert np.array_equal(np.sort(dev_rows), val), "hold-out rows differ from the GPU run's"
    dev_val = np.maximum(np.load(args.preds)[f"{args.run}__final_val"].astype(np.float64), 0).mean(0)
    f = df.formula.astype(str).to_numpy()
    y = df.target.to_numpy(float)
    pred = oracle.predict(list(f[val]), calibrated=False)
    gpu_cpu = float(np.abs(pred.mean - dev_val).max())
    # float16 storage: predictions of the half-precision weights vs float32
    half = ResNetOracle.from_state(
        {k: v.half().float() if k.startswith("model.") else v for k, v in state.items()}, meta
    )
    pred16 = half.predict(list(f[val]), calibrated=False)
    fp16_diff = float(np.abs(pred16.mean - pred.mean).max())
    val_metrics = {**metrics(y[val], pred16.mean, pred16.std), **gap_metrics(y[val], pred16.mean)}
    cal, rep = calibrate_heldout(y[val], pred16.mean, pred16.std)
    cv = (
        json.loads(Path(args.cv_json).read_text())["models"].get("resnet-mp-union (L1 m10)")
        if Path(args.cv_json).exists()
        else None
    )
    n_extra = int((df.source == "agd_exp1_42k").sum())
    info = {
        "n_train": int(len(train)),
        "epochs": cfg["epochs"],
        "wall_s": run["wall_s"],
        "test_metrics": val_metrics,
        "data_sha256": sha,
        "split": {"kind": recipe.split, "n_train": int(len(train)), "n_val": int(len(val)), "seed": 1005},
        "calibration": cal.to_dict(),
    }
    half.info = info
    extra = {
        "training": {
            "data": "bandgap/matbench_mp_gap.csv (all rows) + bandgap/agd_exp1_42k.csv rows whose reduced formula "
            "is not in matbench_mp_gap",
            "data_sha256": sha,
            "extra_data_sha256": sha256_file(data_file("bandgap", "agd_exp1_42k.csv")),
            "n_matbench_train": int(len(train) - n_extra),
            "n_agd_extra": n_extra,
            "held_out": f"{len(val)} matbench rows (default_rng(1005) permutation, first 10 %): calibration "
            "(half A fits, half B reports); not a test set - test numbers are the 5-fold CV below",
            "validation_metrics": val_metrics,
            "cv_5fold_matbench": {k: cv[k] for k in ("mae", "mae_sd", "spearman", "auc_metal", "auc_wide", "cal")}
            if cv
            else None,
            "budget": {
                "device": "NVIDIA H100 80GB, trained in one run together with the 5 CV folds (fold-batched)",
                "steps": run["steps"],
                "steps_per_epoch": run["steps_per_epoch"],
                "wall_s_all_60_networks": run["wall_s"],
                "matmul": "TF32 on the GPU",
            },
            "provenance": "benchmarks/bandgap/train_batched.py run plain_union_m10 set final; exported by "
            "benchmarks/bandgap/export_final.py",
            "gpu_vs_cpu_max_abs_diff_eV": gpu_cpu,
            "float16_vs_float32_max_abs_diff_eV": fp16_diff,
        },
        "calibration_report": rep,
    }
    st, js = half.save(Path(args.out_dir) / recipe.stem, extra_metadata=extra, weights_dtype=torch.float16)
    print(f"GPU vs CPU max |diff| {gpu_cpu:.2e} eV; fp16 vs fp32 max |diff| {fp16_diff:.2e} eV")
    print(f"validation (hold-out) {json.dumps({k: round(v, 4) for k, v in val_metrics.items()})}")
    print(f"calibration report (half B): {json.dumps(rep['calibrated'])}")
    print(f"wrote {st} ({st.stat().st_size / 1e6:.1f} MB), {js}")


if __name__ == "__main__":
    main()

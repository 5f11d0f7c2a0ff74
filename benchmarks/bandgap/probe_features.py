"""Probe (issue 21): do richer composition features lower the matbench_mp_gap MAE?

One matbench fold (fold 0, KFold seed 18012019), the shipped ``resnet-mp-gap`` recipe (width 256,
5 layers, 5 members, 40 epochs, batch 256, L1, 1 torch thread, seed 18012019 as the shipped fold-0
run), trained on the fold's training rows only; the only change is the featuriser:

* ``base``: the shipped descriptor (``oracles.descriptors``, 301 floats);
* ``ext``: base + the 103-d atomic-fraction vector (matminer's ElementFraction) + the atomic-orbital
  band edges of pymatgen's ``MolecularOrbitals`` (HOMO, LUMO, LUMO - HOMO in Hartree and the
  "metal" flag; MODNet/matminer's AtomicOrbitals) + fraction-weighted statistics of each element's
  highest occupied orbital energy.

Usage: ``python benchmarks/bandgap/probe_features.py --features ext --out results.json``.
No experimental band gap is read. Prints one line of metrics and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alcore.paths import data_file
from oracles.descriptors import ExtendedFeaturiser, Featuriser
from oracles.gap_metrics import gap_metrics
from oracles.resnet import TrainConfig, train_resnet
from oracles.training import MATBENCH_SEED, matbench_folds, metrics


def main() -> None:
    """Train fold 0 with the chosen featuriser and print/write its test metrics."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", choices=["base", "ext"], default="ext")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--seed", type=int, default=MATBENCH_SEED, help="training seed (members' inits, batch order)")
    ap.add_argument("--preds", type=Path, help="also write the test rows' member predictions (.npz)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    df = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))
    f = df["formula"].astype(str).to_numpy()
    y = df["target"].to_numpy(dtype=np.float64)
    train, test = matbench_folds(len(df))[args.fold]
    feat = ExtendedFeaturiser() if args.features == "ext" else Featuriser()
    cfg = TrainConfig(hidden=256, n_layers=5, n_members=args.members, epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    oracle = train_resnet(list(f[train]), y[train], config=cfg, featuriser=feat, name=f"probe-{args.features}")
    pred = oracle.predict(list(f[test]), calibrated=False)
    m = metrics(y[test], pred.mean) | {"gap": gap_metrics(y[test], pred.mean)}
    if args.preds:
        X, _ = feat.transform(list(f[test]))
        members = oracle.predict_members(X)
        np.savez_compressed(args.preds, test_idx=test, y=y[test], mean=pred.mean, std=pred.std, members=members)
    out = {
        "features": args.features,
        "fold": args.fold,
        "epochs": args.epochs,
        "members": args.members,
        "seed": args.seed,
        "n_features": feat.n_features,
        "metrics": m,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

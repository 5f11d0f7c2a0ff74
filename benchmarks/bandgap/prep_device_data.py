"""Pack the band-gap training data for the fold-batched GPU trainer (``train_batched.py``).

The device has no pymatgen, so the composition descriptors cannot be computed there from formula
strings. This script parses every formula here with the project's own code
(:mod:`oracles.descriptors`) into padded element indices and atomic fractions, and writes them with
the element table (19 imputed properties + the 200-d matscholar embedding), the targets and an
integer code of each reduced formula to one compressed ``.npz``. ``train_batched.featurise`` rebuilds
exactly :func:`oracles.descriptors._featurise_parsed` from it (checked by ``--check``).

Usage::

    python benchmarks/bandgap/prep_device_data.py --out /work/main/.devwork/gap/data.npz --check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from alcore.paths import data_file  # noqa: E402
from oracles.descriptors import _fractions, element_table, featurise, pad_parsed  # noqa: E402
from oracles.training import _reduced_key, sha256_file  # noqa: E402


def pack(formulas: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Padded element indices (N, K) int16 and atomic fractions (N, K) float64 of N formulas."""
    table = element_table()
    return pad_parsed([_fractions(f, table) for f in formulas], np.int16)


def main() -> None:
    """Write the packed arrays; with ``--check`` compare the device featuriser to the project's."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    mb = pd.read_csv(data_file("bandgap", "matbench_mp_gap.csv"))
    agd = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv"))
    keys_mb = mb.formula.map(_reduced_key).to_numpy()
    keys_agd = agd.composition.map(_reduced_key).to_numpy()
    vocab = {k: i for i, k in enumerate(dict.fromkeys([*keys_mb, *keys_agd]))}
    idx_mb, frac_mb = pack(mb.formula.astype(str).tolist())
    idx_agd, frac_agd = pack(agd.composition.astype(str).tolist())
    t = element_table()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        idx_mb=idx_mb,
        frac_mb=frac_mb,
        y_mb=mb.target.to_numpy(np.float64),
        key_mb=np.array([vocab[k] for k in keys_mb], dtype=np.int64),
        idx_agd=idx_agd,
        frac_agd=frac_agd,
        y_agd=agd.Eg.to_numpy(np.float64),
        key_agd=np.array([vocab[k] for k in keys_agd], dtype=np.int64),
        props=t.properties,
        emb=t.embedding,
        sha_mb=np.array(sha256_file(data_file("bandgap", "matbench_mp_gap.csv"))),
        sha_agd=np.array(sha256_file(data_file("bandgap", "agd_exp1_42k.csv"))),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(mb)} matbench rows, {len(agd)} AGD rows")
    if args.check:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_batched import featurise as dev_featurise

        rows = np.random.default_rng(0).choice(len(mb), 3000, replace=False)
        mine = dev_featurise(idx_mb[rows], frac_mb[rows], t.properties, t.embedding)
        ref, _ = featurise(mb.formula.astype(str).to_numpy()[rows].tolist())
        err = float(np.abs(mine - ref).max())
        print(f"max |device - project| descriptor difference on 3000 rows: {err:.2e}")
        assert err < 1e-4, err


if __name__ == "__main__":
    main()

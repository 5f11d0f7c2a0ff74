"""Build the CHGNet reference set for E_hull in Mg-Mn-O (cached to data/cccgan/chgnet_refs.json).

References = Materials Project elements, binaries and ternaries of Mg-Mn-O (from the MEGNet 2018 MP
snapshot; their CIFs are stored in the JSON so a rebuild needs no external file) plus, for chosen
reduced formulas, the smallest distinct training structures; every one relaxed by CHGNet with the
same settings as the candidates. ``python -m generators.cccgan.references`` rebuilds the file.

fcc Mn (mp-8634, 1 atom, 0.08 eV/atom above alpha-Mn in MP) stands in for alpha-Mn (29 atoms) to
keep the cost down; the Mn corner does not bound any oxide in the region the GAN samples.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from generators.cccgan.dataset import load_dataset
from generators.cccgan.evaluate import REFS_FILE
from generators.cccgan.representation import image_to_structure

#: MP ids of the reference phases (element / binary / known ternary).
MP_IDS: tuple[str, ...] = (
    "mp-153",
    "mp-8634",
    "mp-611836",  # Mg, Mn (fcc stand-in), O2
    "mp-1265",
    "mp-19006",
    "mp-18759",
    "mp-770543",  # MgO, MnO, Mn3O4, Mn2O3
    "mp-19395",
    "mp-2589",
    "mp-18922",  # MnO2, MgO2, Mn5O8
    "mp-770618",
    "mp-770423",
    "mp-19239",  # MgMnO3, Mg2Mn3O8, Mg6MnO8
)
#: Reduced formulas whose training structures join the references (distinct, smallest cells first).
TRAIN_FORMULAS: tuple[str, ...] = ("MgMn2O4", "Mg2MnO4", "MgMnO3", "MgMnO2", "Mg2Mn2O5")
MP_FILE = Path("/work/shared/data/structures/mp_megnet_36k.jsonl.gz")


def _mp_structures(ids: Sequence[str], path: Path) -> dict[str, tuple[str, str]]:
    """``{material_id: (reduced formula, cif)}`` for ``ids`` read from the MEGNet MP snapshot."""
    want, out = set(ids), {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            mid = rec["props"].get("material_id")
            if mid in want:
                out[mid] = (rec["reduced_formula"], rec["cif"])
    return out


def _parse(cif: str) -> Structure:
    return CifParser.from_str(cif).parse_structures(primitive=True)[0]


def training_picks(per_formula: int = 2) -> list[tuple[str, Structure]]:
    """Up to ``per_formula`` distinct smallest training structures for each of :data:`TRAIN_FORMULAS`."""
    ds = load_dataset()
    sm = StructureMatcher()
    picks = []
    for formula in TRAIN_FORMULAS:
        rows = []
        for i, im in enumerate(ds.images):
            s = image_to_structure(im)
            if s.composition.reduced_formula == formula:
                rows.append((len(s), i, s))
        rows.sort(key=lambda t: (t[0], t[1]))
        chosen: list[Structure] = []
        for _, i, s in rows:
            prim = s.get_primitive_structure()
            if any(sm.fit(prim, c) for c in chosen):
                continue
            chosen.append(prim)
            picks.append((f"train:{ds.names[i]}#{i}", prim))
            if len(chosen) >= per_formula:
                break
    return picks


def build(mp_file: Path = MP_FILE, per_formula: int = 2, steps: int = 150, out: Path = REFS_FILE) -> list[dict]:
    """Relax every reference with CHGNet and write ``out``; returns the reference records."""
    from generators.cccgan.stability import FMAX, relax

    old = {r["name"]: r for r in json.loads(out.read_text())["references"]} if out.exists() else {}
    items: list[tuple[str, Structure, str]] = []
    if mp_file.exists():
        for mid, (_, cif) in _mp_structures(MP_IDS, mp_file).items():
            items.append((mid, _parse(cif), "Materials Project (MEGNet 2018 snapshot), CC BY 4.0"))
    else:  # rebuild from the CIFs stored last time
        items += [(n, _parse(r["cif"]), r["source"]) for n, r in old.items() if n.startswith("mp-")]
    items += [(n, s, "data/cccgan training set") for n, s in training_picks(per_formula)]
    records = []
    for name, s, source in items:
        t0 = time.perf_counter()
        r = relax(s, steps=steps)
        records.append(
            {
                "name": name,
                "formula": r.structure.composition.formula.replace(" ", ""),
                "reduced_formula": r.structure.composition.reduced_formula,
                "nsites": len(s),
                "energy": round(r.energy, 6),
                "energy_per_atom": round(r.energy_per_atom, 6),
                "relax_steps": r.steps,
                "converged": r.converged,
                "seconds": round(time.perf_counter() - t0, 1),
                "source": source,
                "cif": r.structure.to(fmt="cif"),
            }
        )
        print(
            f"{name:45s} {records[-1]['reduced_formula']:10s} {r.energy_per_atom:9.4f} eV/atom "
            f"{r.steps:4d} steps {records[-1]['seconds']:6.1f} s",
            flush=True,
        )
    payload = {
        "model": "CHGNet 0.4.2",
        "fmax_eV_per_A": FMAX,
        "max_steps": steps,
        "relax_cell": True,
        "references": records,
        "n": len(records),
        "energy_per_atom_range": [
            float(np.min([r["energy_per_atom"] for r in records])),
            float(np.max([r["energy_per_atom"] for r in records])),
        ],
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return records


def main() -> None:
    """CLI entry: ``python -m generators.cccgan.references [--per-formula 2] [--steps 150]``."""
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-formula", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    build(per_formula=args.per_formula, steps=args.steps)


if __name__ == "__main__":
    main()
